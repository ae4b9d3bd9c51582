"""The export's options and its worker protocol (`keras_gpt1.export.worker`), without exporting.

An export from JAX or PyTorch runs in a TensorFlow worker that answers with one JSON object. The
checks here: an error raised in the worker arrives in the caller as the same class with the same
message (and errno, file name) for every class the command line reports as the user's, anything
else as a RuntimeError with the worker's traceback; a missing or malformed response is named;
options are keywords, checked once, and a typo'd one is refused with its name. The export itself,
through a real worker, is tests/test_export.py's (and, onto a full disk, test_reliability_disk.py's).
"""

import errno
import json
import subprocess
import sys

import pytest

from keras_gpt1.export import ExportOptions, export_saved_model
from keras_gpt1.export import worker
from keras_gpt1.hub import PretrainedWeightsUnavailable
from keras_gpt1.tokenizers.vocab_files import VocabularyError
from keras_gpt1.utils.files import DiskFullError, ReadOnlyFileSystemError, disk_full_error
from keras_gpt1.utils.locks import OutputInUseError

pytestmark = pytest.mark.once


def _through_the_protocol(error):
    """What the caller raises for a worker whose export raised `error`: its JSON response, as
    `main` writes it, read back by `read_response`."""
    stdout = json.dumps({"error": worker.error_data(error)}) + "\n"
    with pytest.raises(BaseException) as caught:
        worker.read_response(1, stdout, "")
    return caught.value


def _user_errors(tmp_path):
    return [
        ValueError("`version` must be an integer in [1, 9223372036854775807]; got 0."),
        FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "missing")),
        FileNotFoundError("Model directory 'missing' does not exist (expected a preset)."),
        disk_full_error("SavedModel", tmp_path / "serving" / "1", 10**9, before=True),
        ReadOnlyFileSystemError(f"Cannot write the SavedModel {str(tmp_path)!r}: the filesystem is read-only."),
        PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "out")),
        OutputInUseError("Another export is writing 'serving' (pid 12, host h).", {"pid": 12}),
        VocabularyError("vocab.json line 3: duplicate token 'a'."),
        PretrainedWeightsUnavailable("The Hugging Face Hub could not be reached."),
        IsADirectoryError(errno.EISDIR, "Is a directory", str(tmp_path)),
        NotADirectoryError(errno.ENOTDIR, f"{str(tmp_path)!r} is a file"),
        FloatingPointError("The loss became NaN."),
        OSError(errno.EROFS, "Read-only file system", str(tmp_path)),
    ]


def test_a_user_error_raised_in_the_worker_arrives_as_the_same_class_with_the_same_message(tmp_path):
    for error in _user_errors(tmp_path):
        arrived = _through_the_protocol(error)
        assert type(arrived) is type(error), (error, arrived)
        assert str(arrived) == str(error) and vars(arrived) == vars(error)
        if isinstance(error, OSError):  # what the command line prints for a full or read-only disk
            got = (arrived.errno, arrived.strerror, arrived.filename)
            assert got == (error.errno, error.strerror, error.filename), error
    full = _through_the_protocol(disk_full_error("SavedModel", tmp_path / "s", 10**9))
    assert isinstance(full, DiskFullError) and full.errno == errno.ENOSPC and "needs about" in full.strerror


def test_a_user_error_of_a_class_this_process_has_not_loaded_arrives_as_its_nearest_reported_class():
    data = worker.error_data(ValueError("`max_length` must be an integer >= 2; got 1."))
    data.update(type="ExportOnlyError", module="keras_gpt1.not_loaded_here")
    with pytest.raises(ValueError) as caught:
        worker.read_response(1, json.dumps({"error": data}), "")
    assert type(caught.value) is ValueError and str(caught.value) == "`max_length` must be an integer >= 2; got 1."


def test_any_other_error_is_a_runtime_error_naming_it_with_the_worker_traceback():
    try:
        {}["missing"]
    except KeyError as e:
        data = worker.error_data(e)
    with pytest.raises(RuntimeError, match="The export worker failed with KeyError: 'missing'") as caught:
        worker.read_response(1, json.dumps({"error": data}), "")
    assert "Traceback (most recent call last)" in str(caught.value) and '{}["missing"]' in str(caught.value)


@pytest.mark.parametrize(
    "stdout, named",
    [
        ("", "gave no response"),
        ("Traceback (most recent call last):\n", "malformed response 'Traceback"),
        ("[1, 2]", "malformed response '[1, 2]'"),
        ('{"path": 3}', "malformed response"),
        ('{"error": "it broke"}', "malformed response"),
        ('{"error": {"message": "no type"}}', "malformed response"),
        ('{"path": "/a/1", "extra": true}', "malformed response"),
    ],
)
def test_a_missing_or_malformed_response_is_named_with_the_workers_stderr(stdout, named):
    with pytest.raises(RuntimeError, match="export worker") as caught:
        worker.read_response(-9, stdout, "the worker's last words")
    message = str(caught.value)
    assert named in message and "exit code -9" in message and "the worker's last words" in message, message
    assert "expected one JSON object holding `path` or `error`" in message


def test_a_worker_that_prints_garbage_or_dies_is_named(monkeypatch, tmp_path):
    """Real processes standing in for the worker: the caller reads what they leave on stdout."""
    options = ExportOptions()
    cases = [
        ("print('Loading the model...')", "malformed response 'Loading the model...\\\\n'"),
        ("import sys; sys.stderr.write('Killed'); sys.exit(137)", "(?s)gave no response .*exit code 137.*Killed"),
        ("import json; print(json.dumps({'path': 'x/1'}))", None),
    ]
    for script, named in cases:
        monkeypatch.setattr(worker, "COMMAND", [sys.executable, "-c", script])
        if named is None:
            assert worker.export_in_worker(str(tmp_path), str(tmp_path / "out"), options) == "x/1"
        else:
            with pytest.raises(RuntimeError, match=named):
                worker.export_in_worker(str(tmp_path), str(tmp_path / "out"), options)


def test_the_request_is_one_json_object_with_the_options_by_name(monkeypatch, tmp_path):
    echo = "import json, sys; print(json.dumps({'path': json.dumps(json.load(sys.stdin))}))"
    monkeypatch.setattr(worker, "COMMAND", [sys.executable, "-c", echo])
    options = ExportOptions(version=4, max_new_tokens=7, dtype="int8", task="entailment", overwrite=True)
    request = json.loads(worker.export_in_worker(str(tmp_path / "preset"), str(tmp_path / "out"), options))
    assert request == {
        "model": str(tmp_path / "preset"),
        "output_dir": str(tmp_path / "out"),
        "options": {"version": 4, "max_length": None, "max_new_tokens": 7, "task": "entailment",
                    "overwrite": True, "dtype": "int8"},
    }  # fmt: skip
    assert ExportOptions.from_json(request["options"]) == options


def test_a_malformed_request_is_refused_naming_its_keys():
    with pytest.raises(ValueError, match="keys model, output_dir, options"):
        worker.handle({"model": "p", "output": "o", "options": {}})
    with pytest.raises(TypeError, match="Unknown export option `versoin`"):
        worker.handle({"model": "p", "output_dir": "o", "options": {"versoin": 2}})


def test_the_worker_writes_only_its_response_on_stdout(tmp_path):
    """`main` of the real module, in its own process, with an export that prints to stdout (in
    Python and below it) and then fails: stdout holds the one JSON response."""
    script = (
        "import os, sys\n"
        "import keras_gpt1.export.worker as w\n"
        "def handle(request):\n"
        "    print('progress from Python'); sys.stdout.flush(); os.write(1, b'from C\\n')\n"
        "    raise FileNotFoundError(2, 'No such file or directory', request['model'])\n"
        "w.handle = handle\n"
        "sys.exit(w.main())\n"
    )
    request = {"model": str(tmp_path / "missing"), "output_dir": str(tmp_path), "options": {}}
    proc = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(request), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "progress from Python" in proc.stderr and "from C" in proc.stderr
    with pytest.raises(FileNotFoundError) as caught:
        worker.read_response(proc.returncode, proc.stdout, proc.stderr)
    assert caught.value.filename == str(tmp_path / "missing") and caught.value.errno == errno.ENOENT


# === Options: keywords, checked once ===


def test_options_are_keywords_and_a_typo_is_refused_with_its_name(tmp_path):
    with pytest.raises(TypeError, match=r"Unknown export option `max_new_token` \(did you mean `max_new_tokens`\?\)"):
        export_saved_model(str(tmp_path / "preset"), str(tmp_path / "out"), max_new_token=8)
    with pytest.raises(TypeError, match="Unknown export option `quantize`: the options are version, max_length"):
        ExportOptions.from_keywords(ExportOptions(), quantize="int8")
    with pytest.raises(TypeError, match="positional argument"):
        ExportOptions(2)
    with pytest.raises(TypeError, match="`options` must be an ExportOptions; got a int"):
        export_saved_model(str(tmp_path / "preset"), str(tmp_path / "out"), 2)
    assert not (tmp_path / "out").exists()
    base = ExportOptions(version=2, dtype="bfloat16")
    assert ExportOptions.from_keywords(base, version=5) == ExportOptions(version=5, dtype="bfloat16")
    with pytest.raises(AttributeError):
        base.version = 3  # frozen: checked when made, never changed after


@pytest.mark.parametrize(
    "keywords, named",
    [
        (dict(version=0), "`version` must be an integer in"),
        (dict(version="1"), "`version` must be an integer"),
        (dict(max_length=1), "`max_length` must be an integer >= 2"),
        (dict(max_new_tokens=0), "`max_new_tokens` must be an integer in"),
        (dict(task=["entailment"]), "`task` must be a task name"),
        (dict(overwrite="yes"), "`overwrite` must be True or False"),
        (dict(dtype="float16"), "Unknown export dtype 'float16': choose one of float32, bfloat16, int8"),
    ],
)
def test_a_bad_option_is_refused_naming_it(keywords, named, tmp_path):
    with pytest.raises(ValueError, match=named):
        ExportOptions(**keywords)
    with pytest.raises(ValueError, match=named):  # before any process starts or anything is written
        export_saved_model(str(tmp_path / "preset"), str(tmp_path / "out"), **keywords)
    assert not (tmp_path / "out").exists()


def test_options_travel_as_plain_json():
    np = pytest.importorskip("numpy")
    options = ExportOptions(version=np.int64(3), max_length=np.int32(16), max_new_tokens=np.int64(5))
    assert json.loads(json.dumps(options.to_json())) == {"version": 3, "max_length": 16, "max_new_tokens": 5,
                                                         "task": None, "overwrite": False, "dtype": None}  # fmt: skip
    assert ExportOptions.from_json(options.to_json()) == options
    with pytest.raises(ValueError, match="must be a JSON object"):
        ExportOptions.from_json([3])
