"""The export's worker: one export in a fresh `KERAS_BACKEND=tensorflow` process, as JSON.

The SavedModel graph is traced from Keras's TensorFlow backend, and a process's Keras backend is
fixed once Keras is imported. So a JAX or PyTorch process exports through this worker:
`export_in_worker` (the caller's side) starts `python -m keras_gpt1.export.worker`, writes one
request to its standard input and reads one response from its standard output.

    request:  {"model": "<preset dir>", "output_dir": "<base dir>", "options": {<ExportOptions>}}
    response: {"path": "<base dir>/<version>"}
          or  {"error": {"type": "ValueError", "message": "...", ...}}

An error is data: its class, its message, the attributes JSON can hold, and for an `OSError`
its errno and file name. An error of a class the command line reports as the user's
(`USER_ERRORS`: a bad option, a missing preset, a full or read-only disk, an output folder in
use) is raised in the caller as the same class with the same message, so the command line and the
Python API report it exactly as they do on TensorFlow. Any other (a bug) comes back as a `RuntimeError` holding the worker's traceback.
Whatever the export prints goes to standard error, so standard output holds the response alone.

Example:
```python
from keras_gpt1.export import ExportOptions
from keras_gpt1.export.worker import export_in_worker
export_in_worker("my_preset", "/tmp/gpt1_serving", ExportOptions(version=2))   # "/tmp/gpt1_serving/2"
```
"""

import json
import os
import subprocess
import sys
import traceback

from keras_gpt1.export import ExportOptions

# The process the caller starts (a list, so that a test can replace it).
COMMAND = [sys.executable, "-m", "keras_gpt1.export.worker"]
# The classes `keras-gpt1`'s `main` (keras_gpt1/cli/main.py) reports as the user's: an error of
# one of them (or of a subclass) crosses the process boundary as itself.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    PermissionError,
    ConnectionError,
    FloatingPointError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    OSError,
)
_REQUEST_KEYS = ("model", "output_dir", "options")


# === The caller's side ===


def export_in_worker(preset_dir, output_dir, options):
    """Exports the preset `preset_dir` with `options` (an `ExportOptions`) in a worker process;
    returns the version directory, or raises the worker's error (see the module docstring)."""
    request = {"model": os.fspath(preset_dir), "output_dir": os.fspath(output_dir), "options": options.to_json()}
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = subprocess.run(
        COMMAND, input=json.dumps(request), env=env, capture_output=True, text=True, errors="replace"
    )
    return read_response(result.returncode, result.stdout, result.stderr)


def read_response(returncode, stdout, stderr):
    """The version directory a worker's response names, or its error raised; a response that is
    missing or malformed is a RuntimeError quoting it and the end of the worker's stderr."""
    try:
        response = json.loads(stdout)
    except json.JSONDecodeError:
        response = None
    error = response.get("error") if isinstance(response, dict) else None
    if isinstance(error, dict) and isinstance(error.get("type"), str) and isinstance(error.get("message"), str):
        raise error_from_data(error)
    if isinstance(response, dict) and set(response) == {"path"} and isinstance(response["path"], str):
        return response["path"]
    what = "no response" if not stdout.strip() else f"a malformed response {stdout[:1000]!r}"
    raise RuntimeError(
        f"The export worker (python {' '.join(COMMAND[1:])}, KERAS_BACKEND=tensorflow) gave {what} (exit code "
        f"{returncode}); expected one JSON object holding `path` or `error`. Its standard error ended:\n"
        f"{stderr[-4000:]}"
    )


def error_from_data(data):
    """The exception an error response describes: for a user error, one of the same class (when
    this process has its module loaded, else its nearest class in `USER_ERRORS`) with the same
    message; otherwise a RuntimeError naming it, with the worker's traceback."""
    base = {kind.__name__: kind for kind in USER_ERRORS}.get(data.get("base"))
    if base is None:
        return RuntimeError(
            f"The export worker failed with {data['type']}: {data['message']}\n{data.get('traceback', '')}".rstrip()
        )
    kind = getattr(sys.modules.get(data.get("module")), data["type"], None)
    if not (isinstance(kind, type) and issubclass(kind, base)):
        kind = base
    arguments = data.get("args")
    arguments = arguments if isinstance(arguments, list) else [data["message"]]
    try:
        error = kind(*arguments)
    except Exception:  # a class whose constructor takes other arguments: its base says the same
        error = base(*arguments)
    if isinstance(error, OSError):
        for name in ("errno", "strerror", "filename", "filename2"):
            if data.get(name) is not None:
                setattr(error, name, data[name])
    attributes = data.get("attributes")
    for name, value in attributes.items() if isinstance(attributes, dict) else ():
        setattr(error, name, value)
    return error


# === The worker's side ===


def error_data(error):
    """An exception as the JSON an error response holds (see `error_from_data`)."""
    kind = type(error)
    data = {"type": kind.__name__, "module": kind.__module__, "message": str(error)}
    base = next((c for c in kind.__mro__ if c in USER_ERRORS), None)
    if base is None:
        data["traceback"] = "".join(traceback.format_exception(error))
        return data
    data["base"] = base.__name__
    data["args"] = [a if a is None or isinstance(a, (str, int, float, bool)) else str(a) for a in error.args]
    data["attributes"] = {name: value for name, value in vars(error).items() if _is_json(value)}  # `holder`, say
    if isinstance(error, OSError):
        data["errno"], data["strerror"] = error.errno, error.strerror
        for name in ("filename", "filename2"):
            value = getattr(error, name)
            data[name] = value if value is None or isinstance(value, (str, int)) else os.fsdecode(value)
    return data


def _is_json(value):
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def handle(request):
    """Runs one request (a decoded JSON object) in this process; returns the version directory."""
    if not isinstance(request, dict) or sorted(request) != sorted(_REQUEST_KEYS):
        raise ValueError(
            f"An export request is a JSON object with the keys {', '.join(_REQUEST_KEYS)}; got {request!r}."
        )
    options = ExportOptions.from_json(request["options"])
    from keras_gpt1.export.saved_model import export_in_process

    return export_in_process(request["model"], request["output_dir"], options)


def main():
    """Reads one request from stdin, writes one response to stdout; exit status 0 for a `path`,
    1 for an `error`."""
    responses = os.fdopen(os.dup(1), "w")  # the response's own channel
    os.dup2(2, 1)  # anything else written to stdout, by Python or by TensorFlow, goes to stderr
    try:
        response = {"path": handle(json.load(sys.stdin))}
    except Exception as e:  # every failure is an answer
        response = {"error": error_data(e)}
    with responses:
        responses.write(json.dumps(response) + "\n")
    return 0 if "path" in response else 1


if __name__ == "__main__":
    sys.exit(main())
