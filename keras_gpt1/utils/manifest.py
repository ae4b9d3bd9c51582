"""Checksum manifests: the size and SHA-256 of the files a directory holds, checked before they are read.

One implementation for checkpoints and presets. A disk error, an interrupted copy or a stray
edit can truncate or change a weights file without making it unreadable: h5py and NumPy then load
garbage, and the model scores -1e24 instead of failing. A `manifest.json` written beside the
files, after them, lets a loader refuse such a file by name before it reads a byte of it.

- A checkpoint lists every file it holds (`write_manifest(directory)`), written once.
- A preset lists its binary files (weights, weight shards, tokenizer assets), not its JSON
  configs, which users edit by hand and which are checked by content instead. Several savers
  write into one preset (a backbone, then a tokenizer), so each updates the entries of the files
  it wrote and keeps the others (`write_manifest(directory, names, keep_others=True)`).

A directory without a manifest (written by hand, by an older release, by another library) is
not checked here: `verify_files` returns without a word, and the file's own format checks apply.

Example:
```python
write_manifest("my_preset", ["model.weights.h5"], keep_others=True)
verify_files("my_preset", ["model.weights.h5"], "preset")   # ValueError if changed since
```
"""

import hashlib
import json
import os

from keras_gpt1.utils.files import atomic_path

MANIFEST_FILE = "manifest.json"

# Files already hashed in this process and unchanged since (same size, inode, mtime and ctime; a
# write changes the ctime, which `os.utime` cannot set back), so that the several loaders a
# `from_preset` passes through hash a 500 MB weights file once, not three times.
_verified = set()


def file_sha256(path):
    """The SHA-256 of the file `path`, as hex, read in 4 MB blocks (memory stays flat).

    Example:
    ```python
    file_sha256("model.weights.h5")   # "9f86d08..."
    ```
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry(path):
    return {"size": os.path.getsize(path), "sha256": file_sha256(path)}


def _full(directory, name):
    return os.path.join(directory, *name.split("/"))


def read_manifest(directory):
    """The `{name: {"size", "sha256"}}` entries of `directory`'s manifest; None if it has none.

    Raises a ValueError naming the manifest if it is unreadable (an unlisted file cannot be
    told from a damaged one, so a damaged manifest is itself damage).
    """
    path = os.path.join(directory, MANIFEST_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            files = json.load(f)["files"]
        if not isinstance(files, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str)
            for e in files.values()
        ):
            raise TypeError("expected {'files': {name: {'size': int, 'sha256': str}}}")
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise ValueError(f"{MANIFEST_FILE} is unreadable ({e})") from None
    return files


def write_manifest(directory, names=None, keep_others=False):
    """Writes `directory/manifest.json` with the size and SHA-256 of each file in `names`.

    `names` are paths relative to `directory`, with `/` (`"assets/tokenizer/vocab.json"`); None
    lists every file directly in `directory`. With `keep_others`, entries of an existing
    manifest for other files that still exist are kept (a tokenizer saved into a preset keeps the
    backbone's entries). The manifest is written atomically and flushed to disk, last.

    Example:
    ```python
    write_manifest("run/checkpoints/.tmp-ckpt")                 # every file in it
    write_manifest("my_preset", ["model.weights.h5"], keep_others=True)
    ```
    """
    directory = os.fspath(directory)
    if names is None:
        names = sorted(n for n in os.listdir(directory) if n != MANIFEST_FILE)
    files = {}
    if keep_others:
        try:
            files = {n: e for n, e in (read_manifest(directory) or {}).items() if os.path.isfile(_full(directory, n))}
        except ValueError:
            files = {}  # a damaged manifest is replaced; what it listed is no longer known
    for name in names:
        files[name] = _entry(_full(directory, name))
    manifest = {"files": dict(sorted(files.items()))}
    with atomic_path(os.path.join(directory, MANIFEST_FILE), "manifest") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())


def _first_problem(directory, names):
    """`(name, reason)` of the first listed file that does not match the manifest, or None."""
    expected = read_manifest(directory)
    if expected is None:
        return None
    for name in expected if names is None else [n for n in names if n in expected]:
        entry, path = expected[name], _full(directory, name)
        if not os.path.isfile(path):
            return name, "is missing"
        stat = os.stat(path)
        if stat.st_size != entry["size"]:
            return name, f"has {stat.st_size} bytes, the manifest says {entry['size']} (truncated?)"
        key = (os.path.realpath(path), stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, entry["sha256"])
        if key in _verified:
            continue
        if file_sha256(path) != entry["sha256"]:
            return name, "does not match its checksum"
        _verified.add(key)
    return None


def manifest_problem(directory, names=None):
    """None if the files of `directory` match its manifest, else the first problem, in words.

    Checks the entries named in `names` (None: every entry), the size first (cheap, and it
    catches truncation), then the SHA-256. A directory without a manifest has no problem here;
    an unreadable manifest raises a ValueError.

    Example:
    ```python
    manifest_problem("ckpt-00000100")   # None, or "model_variables.npz does not match its checksum"
    ```
    """
    problem = _first_problem(os.fspath(directory), names)
    return None if problem is None else " ".join(problem)


def verify_files(directory, names, what="preset"):
    """Raises an error naming the file if one of `names` (relative to `directory`) differs from
    what `directory/manifest.json` lists: its size first, then its SHA-256 (a ValueError), or it
    is gone (a FileNotFoundError). Files the manifest does not list, and directories without a
    manifest, pass unchecked.

    Example:
    ```python
    verify_files("my_preset", ["model.weights.h5"])
    # ValueError: Preset file 'my_preset/model.weights.h5' is corrupt or truncated: ...
    ```
    """
    directory = os.fspath(directory)
    manifest = os.path.join(directory, MANIFEST_FILE)
    try:
        problem = _first_problem(directory, list(names))
    except ValueError as e:
        raise ValueError(
            f"The {what} {directory!r} is damaged: its {e}. Restore the {what} from a backup or save it again."
        ) from None
    if problem is None:
        return
    name, reason = problem
    path = _full(directory, name)
    if reason == "is missing":
        raise FileNotFoundError(f"{what.capitalize()} file {path!r} is missing ({manifest!r} lists it).")
    raise ValueError(
        f"{what.capitalize()} file {path!r} is corrupt or truncated: it {reason} (checked against {manifest!r}). "
        f"Restore it from a backup or save the {what} again."
    )
