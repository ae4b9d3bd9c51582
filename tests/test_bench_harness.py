"""The benchmarks' worker protocol (tools/bench/harness.py): one process per measurement, one JSON
result line back, and a clear error for each way a worker can let its driver down.

The workers here are small functions in a module written to a temporary folder (put on the
workers' PYTHONPATH), so each case is a real process doing exactly the wrong thing: raising,
exiting before its result, printing garbage, printing two results, overrunning its time.
"""

import sys

import pytest

from tools.bench import harness

pytestmark = [pytest.mark.once, pytest.mark.integration]

WORKERS = """
import os, time

def echo(**kwargs):
    return dict(kwargs, backend=os.environ.get("KERAS_BACKEND"), cwd=os.getcwd())

def fails():
    raise RuntimeError("the model did not fit")

def exits_early():
    print("loading the model...", flush=True)
    os._exit(0)

def prints_garbage():
    print("RESULT {tokens/s: fast}", flush=True)
    os._exit(0)

def prints_two_results():
    print("RESULT {}", flush=True)
    return {}

def returns_a_list():
    return [1, 2]

def sleeps():
    time.sleep(60)

def adder(offset):
    def handle(value):
        if value < 0:
            os._exit(3)
        return {"sum": value + offset}
    return handle
"""


@pytest.fixture
def workers(tmp_path):
    (tmp_path / "fake_workers.py").write_text(WORKERS)
    return {"PYTHONPATH": str(tmp_path)}


def _run(name, env, **kwargs):
    return harness.run(f"fake_workers:{name}", env=env, label=name, **kwargs)


def test_a_worker_returns_its_dict_from_the_repository_root_on_the_backend_asked(workers):
    result = _run("echo", workers, kwargs={"shape": [8, 512], "policy": "mixed_bfloat16"}, backend="jax")
    assert result == {"shape": [8, 512], "policy": "mixed_bfloat16", "backend": "jax", "cwd": harness.ROOT}


def test_a_failing_worker_names_itself_and_shows_its_traceback(workers):
    with pytest.raises(harness.WorkerError, match=r"^fails: the worker failed \(exit code 1\)") as caught:
        _run("fails", workers)
    assert "RuntimeError: the model did not fit" in str(caught.value)


@pytest.mark.parametrize(
    "name, message",
    [
        ("exits_early", r"exits_early: the worker printed no result line, where one `RESULT \{json\}` line belongs"),
        ("prints_garbage", r"prints_garbage: the worker's result is not a JSON object: '\{tokens/s: fast\}'"),
        ("prints_two_results", r"prints_two_results: the worker printed 2 result lines"),
        ("returns_a_list", r"(?s)returns_a_list: the worker failed .*TypeError: a worker returns a dict"),
    ],
)
def test_a_worker_without_one_readable_result_is_an_error(workers, name, message):
    with pytest.raises(harness.WorkerError, match=message):
        _run(name, workers)


def test_a_worker_past_its_time_is_stopped(workers):
    with pytest.raises(harness.WorkerError, match=r"sleeps: the worker timed out after 2 s"):
        _run("sleeps", workers, timeout=2)


def test_a_long_lived_worker_answers_each_request_then_reports_its_exit(workers):
    with harness.Worker("fake_workers:adder", {"offset": 10}, env=workers, label="adder") as adder:
        assert [adder.ask(value=v)["sum"] for v in (1, 2, 3)] == [11, 12, 13]
        with pytest.raises(harness.WorkerError, match=r"adder: the worker exited \(exit code 3\) before answering"):
            adder.ask(value=-1)


def test_workers_are_named_by_module_so_a_script_run_by_path_is_refused(monkeypatch):
    assert harness.function_name(harness.report) == "tools.bench.harness:report"

    def measure():
        return {}

    measure.__module__ = "__main__"
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", None, raising=False)
    with pytest.raises(ValueError, match=r"python -m tools.bench.<name>"):
        harness.function_name(measure)
