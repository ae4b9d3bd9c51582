"""File helpers shared by presets, checkpoints and converters.

Everything a user asked us to write goes through `atomic_write`: a crash halfway leaves the old
file in place, never a truncated one. Everything we read goes through `read_json`/`require_file`,
so a missing or corrupt file is reported by name.
"""

import contextlib
import errno
import fnmatch
import json
import math
import os
import shutil
import tempfile
import time

# Temporaries written beside their final place: `atomic_path` files and `atomic_dir` directories.
TEMPORARY_PREFIX = ".tmp-"
# An old directory or file renamed aside while its replacement moves in, deleted right after.
OLD_PREFIX = ".old-"
# A staging directory this old was left by a killed process (a live writer touches its own
# within seconds), so `replace_in_dir` deletes it. `.old-*` ones are never deleted: after a kill
# in the middle of a swap they hold the only copy of the earlier files.
STALE_STAGING_S = 3600


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def follow_umask(path):
    """Gives `path` (and, for a directory, everything in it) the permissions a plain `open` or
    `mkdir` would: `tempfile` makes private 0600 files and 0700 directories, which a server
    running as another user (TF Serving in a container) could not read."""
    mask = _umask()
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            os.chmod(root, 0o777 & ~mask)
            for name in files:
                os.chmod(os.path.join(root, name), 0o666 & ~mask)
    elif os.path.exists(path):
        os.chmod(path, 0o666 & ~mask)


def _format_bytes(n):
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000


class DiskFullError(OSError):
    """A full disk (`errno.ENOSPC`), with a message naming what was being written and where."""


class ReadOnlyFileSystemError(PermissionError):
    """A write refused by a read-only filesystem (`errno.EROFS`), naming what was to be written
    and where; a `PermissionError`, so the command line prints it as one line (exit 2)."""

    def __init__(self, message):
        super().__init__(message)
        self.errno = errno.EROFS


def _existing_directory(path):
    """The directory whose filesystem would hold `path`: `path` itself if it is a directory (a
    mount point, say), else its nearest existing parent."""
    if os.path.isdir(path):
        return os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path)) or "."
    while not os.path.isdir(directory) and os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)
    return directory


def disk_full_error(what, path, needed_bytes=None, before=False):
    """An `OSError(ENOSPC)` that says what was being written, where, and how much space it needs
    (when known) against what is free; `before=True`: refused before anything was written."""
    free = shutil.disk_usage(_existing_directory(path)).free
    need = f"it needs about {_format_bytes(needed_bytes)}, " if needed_bytes else ""
    if before:
        return DiskFullError(
            errno.ENOSPC,
            f"No space left on the device for {what} {os.fspath(path)!r}: {need}{_format_bytes(free)} free. "
            "Nothing was written; free some space and retry.",
        )
    return DiskFullError(
        errno.ENOSPC,
        f"No space left on the device while writing {what} {os.fspath(path)!r}: {need}"
        f"{_format_bytes(free)} free. Nothing partial was left behind; free some space and retry.",
    )


def check_free_space(path, needed_bytes, what="file"):
    """Raises the `DiskFullError` of `disk_full_error` before anything is written when the
    filesystem that would hold `path` has less than `needed_bytes` free.

    Writing into a full disk is not always a clean error: h5py (Keras's `.weights.h5`) crashes
    the whole process with a segmentation fault when the disk fills while it writes, leaving a
    partial file behind. So every writer that knows its size checks it first.

    Example:
    ```python
    check_free_space("out/model.weights.h5", estimated_weights_file_bytes(model.weights), "weights")
    ```
    """
    if needed_bytes and shutil.disk_usage(_existing_directory(path)).free < needed_bytes:
        raise disk_full_error(what, path, needed_bytes, before=True)


# An h5 weights file stores 2.2-2.7 KB of headers per tensor besides the data (measured with
# Keras 3 and h5py 3); the constant covers the JSON files a preset writes beside it.
_H5_BYTES_PER_TENSOR = 4096
_PRESET_FILES_BYTES = 16 * 1024


def estimated_weights_file_bytes(variables):
    """About how many bytes `variables` take in a Keras `.weights.h5` (a little over, never under):
    the data, the file's per-tensor headers and room for a preset's JSON files.

    Example:
    ```python
    estimated_weights_file_bytes(backbone.weights)   # ~500 MB for GPT-1
    ```
    """
    total = _PRESET_FILES_BYTES
    for variable in variables:
        digits = "".join(c for c in str(getattr(variable.dtype, "name", variable.dtype)) if c.isdigit())
        itemsize = max(1, int(digits or 32) // 8)  # "float32" -> 4, "bfloat16" -> 2, "int8" -> 1
        size = 1
        for dim in variable.shape:
            size *= int(dim)
        total += size * itemsize + _H5_BYTES_PER_TENSOR
    return total


def read_only_error(what, path):
    """The `ReadOnlyFileSystemError` for writing `what` to `path` on a read-only filesystem."""
    return ReadOnlyFileSystemError(
        f"Cannot write {what} {os.fspath(path)!r}: the filesystem is read-only. "
        "Nothing was written; pick a writable place."
    )


@contextlib.contextmanager
def disk_full_reported(what, path, needed_bytes=None):
    """Turns a full disk (or an exceeded quota) inside the block into a `DiskFullError`, and a
    read-only filesystem into a `ReadOnlyFileSystemError`, naming `what` and `path` (the innermost
    such block names the error: it knows best what was being written)."""
    try:
        yield
    except OSError as e:
        if isinstance(e, (DiskFullError, ReadOnlyFileSystemError)):
            raise
        if e.errno == errno.EROFS:
            raise read_only_error(what, path) from None
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise disk_full_error(what, path, needed_bytes) from None


@contextlib.contextmanager
def writing_in_place(directory, what="preset", needed_bytes=None):
    """For a writer that puts its files straight into `directory` (KerasHub's preset saver):
    checks the free space first (`check_free_space`), reports a full disk or a read-only
    filesystem by name (`disk_full_reported`), and when the block fails, removes the entries it
    created (the directory too, if it made it), so a failed save leaves no half-written preset.

    Example:
    ```python
    with writing_in_place("my_preset", "preset", estimated_weights_file_bytes(model.weights)):
        keras_hub_saver.save_task(model)
    ```
    """
    directory = os.fspath(directory)
    if os.path.basename(os.path.normpath(directory)).startswith(TEMPORARY_PREFIX):
        # A staging directory (`replace_in_dir`, `atomic_dir`): the block that made it checked
        # the space, names the final path in its errors and removes the staging on failure.
        yield directory
        return
    with disk_full_reported(what, directory, needed_bytes):
        check_free_space(directory, needed_bytes, what)
        existed = set(os.listdir(directory)) if os.path.isdir(directory) else None
        try:
            yield directory
        except BaseException:
            if existed is None:
                shutil.rmtree(directory, ignore_errors=True)
            elif os.path.isdir(directory):
                for name in set(os.listdir(directory)) - existed:
                    entry = os.path.join(directory, name)
                    if os.path.isdir(entry) and not os.path.islink(entry):
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        with contextlib.suppress(OSError):
                            os.unlink(entry)
            raise


@contextlib.contextmanager
def atomic_dir(path, what="directory", needed_bytes=None):
    """Yields a temporary directory beside `path`, renamed onto `path` (replacing it) only if the
    block succeeds; a crash or a full disk leaves no partial `path`. Its files follow the umask.

    Example:
    ```python
    with atomic_dir("exports/1", "SavedModel") as tmp:
        tf.saved_model.save(module, tmp)
    ```
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    with disk_full_reported(what, path, needed_bytes):
        check_free_space(path, needed_bytes, what)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=TEMPORARY_PREFIX + os.path.basename(path) + "-", dir=parent)
    try:
        with disk_full_reported(what, path, needed_bytes):
            yield tmp
            follow_umask(tmp)
            _swap_into_place(tmp, os.path.abspath(path))
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_into_place(new, path):
    """Renames the directory `new` onto `path`. An existing `path` is renamed aside first and
    deleted only once `new` is in place, so that no failure (or crash) between the two loses it;
    if `new` cannot be moved in, the old directory is moved back."""
    if not os.path.lexists(path):
        os.replace(new, path)
        return
    aside = tempfile.mkdtemp(prefix=OLD_PREFIX + os.path.basename(path) + "-", dir=os.path.dirname(path))
    os.rmdir(aside)  # only its unique name is needed: the old directory is renamed there
    os.rename(path, aside)
    try:
        os.rename(new, path)
    except BaseException:
        os.rename(aside, path)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _is_owned(name, owned):
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in owned)


@contextlib.contextmanager
def replace_in_dir(directory, owned, what="model", needed_bytes=None):
    """Yields an empty staging directory inside `directory`; if the block succeeds, the entries
    written there replace `directory`'s own (those named like `owned`, glob patterns, or like an
    entry just written), and every other file in `directory` stays as it was.

    The new files are complete (and, if the block checks them, verified) before any old one is
    touched. The swap renames the old entries into a second staging directory, renames the new
    ones in, then deletes the old: if a rename fails, what was moved goes back, so an exception
    at any point (a full disk, a failed check) leaves `directory` byte for byte as it was, with
    no temporary behind. Staging inside `directory` (not beside it) means the same filesystem as
    the final place, and only `directory` itself needs to be writable, a mount point included.

    Example:
    ```python
    with replace_in_dir("hf_out", ["config.json", "model.safetensors"]) as staging:
        write_model(staging)
        verify(staging)          # raising here keeps the old model
    ```
    """
    directory = os.fspath(directory)
    created = not os.path.exists(directory)
    with disk_full_reported(what, directory, needed_bytes):
        check_free_space(directory, needed_bytes, what)  # before anything is created
        os.makedirs(directory, exist_ok=True)
        remove_stale_temporaries(directory, min_age_s=STALE_STAGING_S)
        staging = tempfile.mkdtemp(prefix=TEMPORARY_PREFIX + "new-", dir=directory)
    aside = None
    try:
        with disk_full_reported(what, directory, needed_bytes):
            yield staging
            follow_umask(staging)
            new = sorted(os.listdir(staging))
            temporaries = {os.path.basename(staging)}
            aside = tempfile.mkdtemp(prefix=OLD_PREFIX, dir=directory)
            temporaries.add(os.path.basename(aside))
            old = [
                name
                for name in sorted(os.listdir(directory))
                if name not in temporaries and (name in new or _is_owned(name, owned))
            ]
            _move_entries(directory, aside, old)
            try:
                _move_entries(staging, directory, new)
            except BaseException:
                _move_entries(aside, directory, old)
                raise
    except BaseException:
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    finally:
        for tmp in (staging, aside):
            if tmp is not None and os.path.exists(tmp):
                shutil.rmtree(tmp, ignore_errors=True)


def _move_entries(source, target, names):
    """Renames `source/name` to `target/name` for each name; on a failure, the ones already
    moved go back to `source` before the error propagates."""
    moved = []
    try:
        for name in names:
            os.rename(os.path.join(source, name), os.path.join(target, name))
            moved.append(name)
    except BaseException:
        for name in reversed(moved):
            os.rename(os.path.join(target, name), os.path.join(source, name))
        raise


def remove_stale_temporaries(directory, min_age_s=0):
    """Deletes the temporaries (`.tmp-*`) a killed process left in `directory`; returns their names.

    Call it when a run starts: a `kill -9` mid-write skips the cleanup, and at 117M parameters
    one checkpoint temporary is gigabytes. Only entries older than `min_age_s` go.
    """
    if not os.path.isdir(directory):
        return []
    removed = []
    now = time.time()
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not name.startswith(TEMPORARY_PREFIX) or now - os.path.getmtime(path) < min_age_s:
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)
        removed.append(name)
    return removed


@contextlib.contextmanager
def atomic_path(path, what="file", needed_bytes=None):
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds.

    The file gets the permissions the umask gives a new file. A full disk raises an `OSError`
    (ENOSPC) naming `what` and `path`, with `needed_bytes` when known; no partial file remains.

    Example:
    ```python
    with atomic_path("out/model.weights.h5") as tmp:
        model.save_weights(tmp)
    ```
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    # Keep the real suffix: Keras picks the file format from it.
    base = os.path.basename(path)
    suffix = base[base.index(".") :] if "." in base else ""
    with disk_full_reported(what, path, needed_bytes):
        check_free_space(path, needed_bytes, what)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=suffix, dir=directory)
    os.close(fd)
    os.unlink(tmp)  # Some writers refuse to overwrite; let them create the file.
    try:
        with disk_full_reported(what, path, needed_bytes):
            yield tmp
            follow_umask(tmp)  # some writers (safetensors) create private 0600 files
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path, text, what="file"):
    """Writes `text` to `path` atomically (UTF-8)."""
    with atomic_path(path, what, len(text.encode("utf-8"))) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def _non_finite_entry(obj, where=""):
    """The key path (`recipe.lm_weight`, `history.loss[2]`) of the first NaN or infinite float in
    `obj`, or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return f"{where or 'the value'} ({obj})"
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        found = _non_finite_entry(value, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip("."))
        if found:
            return found
    return None


def atomic_write_json(path, obj):
    """Writes `obj` as indented JSON to `path` atomically. A NaN or infinite float is refused with
    a ValueError naming its key: Python would write `NaN`, which is not JSON (other readers fail on
    it) and would record a broken value silently."""
    try:
        text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError:
        where = _non_finite_entry(obj)
        if where is None:
            raise
        raise ValueError(
            f"Cannot write {os.fspath(path)!r}: {where} is not a finite number, which JSON cannot hold."
        ) from None
    atomic_write_text(path, text + "\n")


def require_file(path, what="file"):
    """Raises a `FileNotFoundError` naming `path` if it is not a file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Missing {what}: {path!r} does not exist or is not a file.")
    return path


def read_json(path, what="JSON file"):
    """Reads a JSON file; a missing or malformed file raises an error naming it (and the line)."""
    require_file(path, what)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"Corrupt {what} {path!r}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}."
        ) from None
    except UnicodeDecodeError as e:
        raise ValueError(f"Corrupt {what} {path!r}: not UTF-8 ({e}).") from None


def check_not_a_file(path, what="Output directory"):
    """Raises a ValueError if `path` exists but is not a directory (an output given as a file)."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is an existing file, not a directory; pick another path.")
    return path


def check_writable_dir(path):
    """Raises unless `path` is a directory files can be written in, or one that could be created
    there; creates nothing (a refused command leaves no empty directory behind)."""
    path = check_not_a_file(path)
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    try:
        if not os.path.isdir(existing):
            raise NotADirectoryError(errno.ENOTDIR, f"{existing!r} is a file")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as e:
        raise PermissionError(f"Output directory {path!r} is not writable: {e.strerror}.") from None
    return path


def ensure_writable_dir(path):
    """Creates `path` if needed and checks that files can be written in it."""
    path = check_not_a_file(path)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise PermissionError(f"Output directory {path!r} is not writable: {e.strerror}.") from None
    return path
