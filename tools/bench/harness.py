"""The benchmarks' worker protocol, written once: each measurement in a fresh process, one JSON
result read back.

A benchmark measures each contender (a library, a backend, a weight type) in a process of its own:
`KERAS_BACKEND` is fixed per process, a process's peak memory (`ru_maxrss`) is its own, and one
contender's compiled functions and threads do not slow the next. `run` starts

    python -m tools.bench.harness '{"function": "tools.bench.train:measure", "kwargs": {...}}'

from the repository root, with the backend in its environment. That worker imports the function,
calls it with the keyword arguments and prints the dict it returns as one line, `RESULT {json}`,
on stdout (whatever else the libraries print is left alone); `run` returns that dict. A worker
that exits with an error, runs past its time, prints no result line or several, or one that is
not a JSON object raises `WorkerError`, whose message names the worker and ends with the tail of
its stderr: the traceback, when there is one.

`Worker` keeps one process up for many requests (the serving benchmark alternates calls between
two live processes): its function returns a handler, and each JSON request written to the
worker's stdin gets one `RESULT` line back.

Example (from the repository root):
```python
from tools.bench import harness

harness.run("tools.bench.ceilings:measure_ceilings", {"quick": True, "libraries": ["tensorflow"]})
```
"""

import importlib
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULT_PREFIX = "RESULT "
STDERR_TAIL_CHARS = 3000


class WorkerError(RuntimeError):
    """A worker process that failed, timed out, or gave no readable result."""


def function_name(function):
    """`"module:qualified_name"` of `function`, which workers import; a string passes through.

    A function of a module run with `python -m` is named by the module's import name, not
    `__main__`; one of a script run by its path cannot be imported by a worker and is refused.
    """
    if isinstance(function, str):
        return function
    module = function.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is None:
            raise ValueError(
                f"{function.__qualname__} belongs to a script run by its path, which a worker cannot "
                "import: run it as a module from the repository root (`python -m tools.bench.<name>`)."
            )
        module = spec.name
    return f"{module}:{function.__qualname__}"


def _command(function, kwargs, serve=False):
    request = json.dumps({"function": function_name(function), "kwargs": dict(kwargs or {})})
    return [sys.executable, "-m", "tools.bench.harness", *(["--serve"] if serve else []), request]


def _environment(backend, env):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    environment.update(env or {})
    if backend:
        environment["KERAS_BACKEND"] = backend
    return environment


def _tail(stderr):
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    stderr = (stderr or "").strip()
    return f"; its stderr ends:\n{stderr[-STDERR_TAIL_CHARS:]}" if stderr else "; it wrote nothing to stderr"


def run(function, kwargs=None, *, backend=None, timeout=None, label=None, env=None):
    """`function(**kwargs)` in a fresh worker process (with `KERAS_BACKEND=backend` when given,
    `env` added to the environment); returns the dict it returned. `function` is a function of an
    importable module or its `"module:name"`; `kwargs` and the result are JSON. `label` names the
    worker in errors (default: the function's name). Raises `WorkerError`."""
    label = label or function_name(function)
    command, environment = _command(function, kwargs), _environment(backend, env)
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=environment)
    except subprocess.TimeoutExpired as e:
        raise WorkerError(f"{label}: the worker timed out after {timeout} s{_tail(e.stderr)}") from None
    return _read_result(proc.stdout, proc.returncode, proc.stderr, label)


def _read_result(stdout, returncode, stderr, label):
    """The JSON object of the one `RESULT` line of a finished worker's `stdout`, or `WorkerError`."""
    if returncode != 0:
        raise WorkerError(f"{label}: the worker failed (exit code {returncode}){_tail(stderr)}")
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if len(lines) != 1:
        found = "no result line" if not lines else f"{len(lines)} result lines"
        raise WorkerError(
            f"{label}: the worker printed {found}, where one `RESULT {{json}}` line belongs{_tail(stderr)}"
        )
    return _parse(lines[0], label)


def _parse(line, label):
    text = line[len(RESULT_PREFIX) :].strip()
    try:
        result = json.loads(text)
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        raise WorkerError(f"{label}: the worker's result is not a JSON object: {text[:200]!r}")
    return result


class Worker:
    """A worker process that stays up: `function(**kwargs)` runs once in it and returns a handler;
    `ask(**request)` sends it one request and returns the dict the handler returned. Close it (or
    use it as a context manager) when done.

    Example:
    ```python
    with Worker("tools.bench.serve:library", {...}, backend="tensorflow") as library:
        library.ask(kind="generate", texts=["the cat"])
    ```
    """

    def __init__(self, function, kwargs=None, *, backend=None, label=None, env=None):
        self.label = label or function_name(function)
        self._stderr = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a chatty worker cannot block
        self._proc = subprocess.Popen(
            _command(function, kwargs, serve=True),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=ROOT,
            env=_environment(backend, env),
        )

    def ask(self, **request):
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise self._exited() from None
        while True:
            line = self._proc.stdout.readline()
            if not line:
                raise self._exited()
            if line.startswith(RESULT_PREFIX):
                return _parse(line, self.label)

    def _exited(self):
        code = self._proc.wait()
        self._stderr.seek(0)
        return WorkerError(
            f"{self.label}: the worker exited (exit code {code}) before answering{_tail(self._stderr.read())}"
        )

    def close(self, timeout=60):
        if self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# === The worker's side ===


def _resolve(name):
    module_name, _, qualified_name = name.partition(":")
    target = importlib.import_module(module_name)
    for part in qualified_name.split("."):
        target = getattr(target, part)
    return target


def report(result):
    """Prints `result` (a dict) as the worker's `RESULT` line."""
    if not isinstance(result, dict):
        raise TypeError(f"a worker returns a dict (its JSON result); got {type(result).__name__}")
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    serve = argv[:1] == ["--serve"]
    request = json.loads(argv[-1])
    function = _resolve(request["function"])
    if not serve:
        report(function(**request["kwargs"]))
        return
    handle = function(**request["kwargs"])
    for line in sys.stdin:
        report(handle(**json.loads(line)))


if __name__ == "__main__":
    main()
