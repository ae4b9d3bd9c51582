"""File helpers shared by presets, checkpoints and converters.

Everything a user asked us to write goes through `atomic_write`: a crash halfway leaves the old
file in place, never a truncated one. Everything we read goes through `read_json`/`require_file`,
so a missing or corrupt file is reported by name.
"""

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds.

    Example:
    ```python
    with atomic_path("out/model.weights.h5") as tmp:
        model.save_weights(tmp)
    ```
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # Keep the real suffix: Keras picks the file format from it.
    base = os.path.basename(path)
    suffix = base[base.index(".") :] if "." in base else ""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    os.unlink(tmp)  # Some writers refuse to overwrite; let them create the file.
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path, text):
    """Writes `text` to `path` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def atomic_write_json(path, obj):
    """Writes `obj` as indented JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


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


def ensure_writable_dir(path):
    """Creates `path` if needed and checks that files can be written in it."""
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise PermissionError(f"Output directory {path!r} is not writable: {e.strerror}.") from None
    return path
