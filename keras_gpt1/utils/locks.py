"""One writer per output folder: an exclusive OS lock on a small file inside it.

Every command that writes a folder (`pretrain`, `finetune`, `convert`, `export`,
`train-tokenizer`, `save_to_preset`) holds `output_lock(folder)` while it writes. A second writer
is refused at once with an `OutputInUseError` naming the holder (pid, host, command, start time),
read from the JSON the holder keeps in the lock file.

The lock is `fcntl.flock` (`msvcrt.locking` on Windows), which the kernel releases when the
process ends, however it ends: a `kill -9` never leaves a stale lock behind, only a lock file the
next writer takes over. The file is deleted on release, so a finished preset or export holds no
trace of it; it starts with a dot and not with `.tmp-`, so temporaries cleanup, `replace_in_dir`
and checkpoint listings never see it as part of a model.

This module uses the standard library only (a subprocess can load it by path, cheaply).
"""

import contextlib
import datetime
import functools
import inspect
import json
import os
import socket
import sys
import threading

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

LOCK_FILE = ".keras-gpt1.lock"

# Folders this process holds: `{real path: (thread id, fd, depth)}`. The same thread may lock a
# folder again (pretrain's final `save_to_preset` inside the run's own lock); any other writer,
# another thread of this process included, is refused, as the kernel refuses another process.
_held = {}
_held_guard = threading.Lock()


class OutputInUseError(ValueError):
    """Another writer holds the output folder. `holder` is what it recorded: `{"pid", "host",
    "command", "started"}` (empty when it had not written it yet)."""

    def __init__(self, message, holder=None):
        super().__init__(message)
        self.holder = holder or {}


def _command_line():
    """What is writing, as the user started it: `keras-gpt1 pretrain --output runs/a`, `train.py`."""
    argv = list(sys.argv) or ["python"]
    line = " ".join([os.path.basename(argv[0]) or "python", *argv[1:]])
    return line if len(line) <= 200 else line[:197] + "..."


def describe_holder(holder):
    """`pid 1234 on host h (keras-gpt1 pretrain ..., started 2026-01-01 12:00:00 UTC)`, or a
    vaguer phrase when the holder's record is missing (it had not written it yet)."""
    if not holder.get("pid"):
        return "another process (it has not said which yet)"
    details = ", ".join(
        part
        for part in (
            holder.get("command") or holder.get("writer"),
            f"started {holder['started']}" if holder.get("started") else "",
        )
        if part
    )
    host = f" on host {holder['host']}" if holder.get("host") else ""
    return f"pid {holder['pid']}{host}" + (f" ({details})" if details else "")


def _read_holder(path):
    try:
        with open(path, encoding="utf-8") as f:
            holder = json.load(f)
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _try_lock(fd):
    """True if this descriptor now holds the lock, False if another does (never waits)."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:
        return False


def _unlock(fd):
    with contextlib.suppress(OSError):
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        else:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _in_use_error(directory, path, flag):
    """The refusal of a second writer, naming the holder recorded in the lock file at `path`."""
    holder = _read_holder(path)
    return OutputInUseError(
        f"Output directory {directory!r} is in use by {describe_holder(holder)}; wait for it to "
        f"finish or choose another {flag}.",
        holder,
    )


def _acquire(directory, path, flag):
    """The descriptor of `path`, locked; raises `OutputInUseError` if another writer holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _try_lock(fd):
            os.close(fd)
            raise _in_use_error(directory, path, flag)
        # The previous holder deletes the file as it lets go: a lock taken on a file no longer
        # at `path` excludes nobody, so take the new one instead.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            same = False
        if same:
            return fd
        _unlock(fd)
        os.close(fd)


@contextlib.contextmanager
def output_lock(directory, writer=None, flag="`output`"):
    """Holds the exclusive lock on the folder `directory` (created if missing) for the block.

    `writer` says what writes (default: this process's command line); `flag` is the argument
    the refusal names (`` `output` ``, which the CLI shows as `--output`). A folder this call
    created and left empty is removed again, so a refused or failed command leaves no empty
    folder behind. The same thread may nest locks on one folder.

    Example:
    ```python
    with output_lock("runs/a", "pretrain"):
        write_the_run("runs/a")     # a second writer gets OutputInUseError naming this process
    ```
    """
    directory = os.fspath(directory)
    created = not os.path.exists(directory)
    os.makedirs(directory, exist_ok=True)
    key = os.path.realpath(directory)
    me = threading.get_ident()
    with _held_guard:
        entry = _held.get(key)
        if entry is not None and entry[0] == me:
            _held[key] = (me, entry[1], entry[2] + 1)
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield directory
        finally:
            with _held_guard:
                owner, fd, depth = _held[key]
                _held[key] = (owner, fd, depth - 1)
        return
    path = os.path.join(directory, LOCK_FILE)
    with _held_guard:
        if key in _held:  # another thread of this process: answered from the table, file untouched
            raise _in_use_error(directory, path, flag)
        fd = _acquire(directory, path, flag)
        _held[key] = (me, fd, 1)
    try:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": _command_line(),
            "writer": writer,
            "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        }
        with contextlib.suppress(OSError):  # the record is a courtesy: the lock is what excludes
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(record).encode("utf-8"))
        yield directory
    finally:
        with _held_guard:
            _held.pop(key, None)
            # Deleted while still locked, so a writer that opens the path next makes a fresh file.
            with contextlib.suppress(OSError):
                os.unlink(path)
            _unlock(fd)
            os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(directory)  # only if empty: what the block wrote stays


def holding_output(parameter, writer, before=None):
    """Decorates a function that writes the folder given as its argument `parameter` to run
    holding that folder's `output_lock` from its first check to its last write (a None folder:
    no lock). `before(folder)` runs first, outside the lock (e.g. a check that names an output
    that is an existing file before anything is created).

    Example:
    ```python
    @holding_output("output_dir", "export", before=check_not_a_file)
    def export(model, output_dir): ...
    ```
    """

    def decorate(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            folder = signature.bind(*args, **kwargs).arguments.get(parameter)
            if folder is None:
                return function(*args, **kwargs)
            if before is not None:
                before(folder)
            with output_lock(folder, writer):
                return function(*args, **kwargs)

        return wrapper

    return decorate


def lock_holder(directory):
    """The record of the process holding `directory`'s lock, or None when no one holds it.

    Example:
    ```python
    lock_holder("runs/a")   # {"pid": 1234, "host": ..., "command": "keras-gpt1 pretrain ...", ...}
    ```
    """
    path = os.path.join(os.fspath(directory), LOCK_FILE)
    if not os.path.exists(path):
        return None
    with _held_guard:
        if os.path.realpath(os.fspath(directory)) in _held:
            return _read_holder(path)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            _unlock(fd)
            return None
        return _read_holder(path)
    finally:
        os.close(fd)
