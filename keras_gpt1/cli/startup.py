"""What the `keras-gpt1` command does before the library is imported: silence TensorFlow's and
absl's start-up lines, unless the subcommand was given `--verbose`.

TensorFlow prints its start-up lines from C++ while it is imported: some through its own logging,
which `TF_CPP_MIN_LOG_LEVEL` governs, and some (`port.cc`, `cudart_stub.cc`, absl's "All log
messages before absl::InitializeLog()") before that setting is read, so the variable alone leaves
them. They can only be caught where they are written, on file descriptor 2: `quiet_import` points
it at a temporary file while the library is imported and then writes back every line but
TensorFlow's logging records (a crash inside that import would take the captured lines with it:
`--verbose` shows them). After the import, `TF_CPP_MIN_LOG_LEVEL=3` keeps TensorFlow's C++ logging
quiet, and TensorFlow's and absl's Python loggers report errors only. A value the user set for
`TF_CPP_MIN_LOG_LEVEL` is kept.

`keras_gpt1/__init__.py` explains why the package's own import waits for this when the process is
the `keras-gpt1` command.

Example:
```python
from keras_gpt1.cli.startup import quiet_import

with quiet_import(quiet=True):
    import keras_gpt1
```
"""

import contextlib
import logging
import os
import re
import sys
import tempfile

# One record of TensorFlow's C++ logging: severity (info, warning, error), date, time (TensorFlow
# writes `00:00:<seconds since 1970>`), thread, file:line. Fatal records (F) are kept.
_LOG_RECORD = re.compile(rb"^[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ")
_ABSL_PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def is_startup_line(line):
    """Whether `line` (bytes) is one of the lines `quiet_import` drops.

    >>> is_startup_line(b"I0000 00:00:1796687895.805757   11859 cudart_stub.cc:31] Could not find cuda drivers")
    True
    >>> is_startup_line(b"keras-gpt1 pretrain: error: --steps must be a positive integer")
    False
    """
    return line.startswith(_ABSL_PREAMBLE) or _LOG_RECORD.match(line) is not None


@contextlib.contextmanager
def quiet_import(quiet=True):
    """Inside, TensorFlow's and absl's start-up lines are dropped from standard error (nothing is
    changed when `quiet` is false); after it, their later logging says errors only."""
    if not quiet:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                captured.seek(0)
                kept = b"".join(line for line in captured if not is_startup_line(line))
                if kept:
                    with open(2, "wb", closefd=False) as stderr:
                        stderr.write(kept)
    finally:
        os.close(saved)
    for name in ("tensorflow", "absl"):
        if name in logging.Logger.manager.loggerDict:  # absl sets its logger's class when imported
            logging.getLogger(name).setLevel(logging.ERROR)
