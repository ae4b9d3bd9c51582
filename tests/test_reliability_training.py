"""Pretraining and checkpoints under bad flags and faults: refused runs leave nothing behind, a
corrupt checkpoint is skipped (with a warning naming it), a full disk is reported by name, and a
corpus edited in place is noticed on resume. See docs/reliability.md."""

import errno
import json
import os

import keras
import numpy as np
import pytest
from conftest import pretrain_kwargs, write_pretraining_data

pytest.importorskip("tensorflow")

from keras_gpt1.cli import main  # noqa: E402
from keras_gpt1.training import callbacks as callbacks_module  # noqa: E402
from keras_gpt1.training import latest_checkpoint, list_checkpoints, save_checkpoint  # noqa: E402
from keras_gpt1.workflows import pretrain  # noqa: E402

ARCHITECTURE = dict(num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=16)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(corpus file, tokenizer directory): ~12 KB of the built-in corpus, 200-token BPE."""
    return write_pretraining_data(tmp_path_factory.mktemp("reliability_data"), max_bytes=12_000, vocabulary_size=200)


def run_kwargs(data, output, **overrides):
    settings = dict(
        architecture=ARCHITECTURE,
        sequence_length=16,
        batch_size=4,
        steps=2,
        eval_interval=1,
        validation_batches=1,
        jit_compile=False,
    )
    return pretrain_kwargs(data, output, **{**settings, **overrides})


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("keep_checkpoints", -1, "`keep_checkpoints` must be an integer >= 1"),
        ("keep_checkpoints", 0, "`keep_checkpoints` must be an integer >= 1"),
        ("learning_rate", float("inf"), "`learning_rate` must be a finite number > 0"),
        ("learning_rate", float("nan"), "`learning_rate` must be a finite number > 0"),
        ("learning_rate", -1e-3, "`learning_rate` must be a finite number > 0"),
        ("weight_decay", float("nan"), "`weight_decay` must be a finite number >= 0"),
        ("epochs", float("inf"), "`epochs` must be a finite number > 0"),
        ("dropout", 1.5, "`dropout` must be a finite number >= 0 and < 1"),
        ("corpus", ["missing.txt"], "does not exist"),
    ],
)
def test_refused_runs_leave_no_output_directory(data, tmp_path, flag, value, message):
    output = tmp_path / "new_run"
    with pytest.raises((ValueError, FileNotFoundError), match=message.replace("(", r"\(").replace("[", r"\[")):
        pretrain(**run_kwargs(data, output, **{flag: value}, **({"steps": None} if flag == "epochs" else {})))
    assert not output.exists()


def test_cli_refusals_are_one_line(data, tmp_path, capsys):
    corpus, tokenizer = data
    base = ["pretrain", "--corpus", corpus, "--tokenizer", tokenizer, "--steps", "2", "--no-tensorboard"]
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for extra, message in [
        (["--keep-checkpoints", "-1", "--output", str(tmp_path / "a")], "--keep-checkpoints must be an integer >= 1"),
        (["--learning-rate", "inf", "--output", str(tmp_path / "b")], "--learning-rate must be a finite number > 0"),
        (["--output", str(blocker)], "is an existing file"),
    ]:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert blocker.read_text() == "x"


def _tiny_compiled_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    return model


@pytest.mark.parametrize("damage", ["truncate", "flip", "no-manifest-truncated", "delete-file"])
def test_resume_skips_a_damaged_newest_checkpoint_with_a_warning(tmp_path, damage):
    model = _tiny_compiled_model()
    directory = tmp_path / "checkpoints"
    for step in (10, 20, 30):
        save_checkpoint(directory, model, step, keep=3)
    newest = directory / "ckpt-00000030"
    target = newest / callbacks_module.MODEL_FILE
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-40])
    elif damage == "flip":
        raw = bytearray(target.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        target.write_bytes(bytes(raw))
    elif damage == "no-manifest-truncated":  # as a checkpoint from before manifests existed
        os.unlink(newest / callbacks_module.MANIFEST_FILE)
        target.write_bytes(target.read_bytes()[:-40])
    else:
        os.unlink(newest / callbacks_module.OPTIMIZER_FILE)
    with pytest.warns(UserWarning, match="Skipping checkpoint .*ckpt-00000030.* Resuming from .*ckpt-00000020"):
        assert latest_checkpoint(directory).endswith("ckpt-00000020")


def test_no_valid_checkpoint_is_a_clear_error_and_old_checkpoints_stay_valid(tmp_path):
    model = _tiny_compiled_model()
    directory = tmp_path / "checkpoints"
    save_checkpoint(directory, model, 10)
    os.unlink(directory / "ckpt-00000010" / callbacks_module.MANIFEST_FILE)  # an older, intact one
    assert latest_checkpoint(directory).endswith("ckpt-00000010")
    (directory / "ckpt-00000010" / callbacks_module.MODEL_FILE).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="No valid checkpoint to resume from: .*ckpt-00000010.*`resume=False`"):
        latest_checkpoint(directory)


@pytest.mark.parametrize("failing_file", [callbacks_module.MODEL_FILE, callbacks_module.OPTIMIZER_FILE, "manifest"])
def test_disk_full_during_a_checkpoint_names_it_and_leaves_nothing_partial(tmp_path, monkeypatch, failing_file):
    model = _tiny_compiled_model()
    directory = tmp_path / "checkpoints"
    save_checkpoint(directory, model, 10)

    def full(path, *args):
        raise OSError(errno.ENOSPC, "No space left on device")

    if failing_file == "manifest":
        monkeypatch.setattr(callbacks_module, "_write_manifest", full)
    else:
        original = callbacks_module._save_variables
        monkeypatch.setattr(
            callbacks_module,
            "_save_variables",
            lambda path, variables: full(path) if path.endswith(failing_file) else original(path, variables),
        )
    with pytest.raises(
        OSError, match=r"No space left on the device while writing checkpoint .*ckpt-00000020.*needs about .* free"
    ) as info:
        save_checkpoint(directory, model, 20)
    assert info.value.errno == errno.ENOSPC
    assert sorted(os.listdir(directory)) == ["ckpt-00000010"]
    assert latest_checkpoint(directory).endswith("ckpt-00000010")


@pytest.mark.parametrize("keep", [0, -1, 1.5, "3"])
def test_keep_checkpoints_is_validated_where_checkpoints_are_written(tmp_path, keep):
    with pytest.raises(ValueError, match="keep_checkpoints"):
        callbacks_module.TrainingCheckpoint(tmp_path, keep=keep)
    with pytest.raises(ValueError, match="keep_checkpoints"):
        save_checkpoint(tmp_path, _tiny_compiled_model(), 1, keep=keep)
    assert list_checkpoints(tmp_path) == []


@pytest.mark.once
def test_resume_cleans_stale_temporaries_and_refuses_a_corpus_edited_in_place(data, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(open(data[0], encoding="utf-8").read(), encoding="utf-8")
    kwargs = run_kwargs(data, tmp_path / "run", corpus=[str(corpus)])
    pretrain(**kwargs)
    checkpoints = tmp_path / "run" / "checkpoints"
    stale = checkpoints / ".tmp-ckpt-00000006-abc"
    stale.mkdir()
    (stale / "model_variables.npz").write_bytes(b"partial")
    (tmp_path / "run" / ".tmp-abc.json").write_text("{")

    assert pretrain(**kwargs).resumed_from == 2  # the same corpus resumes
    assert not stale.exists() and not (tmp_path / "run" / ".tmp-abc.json").exists()

    text = corpus.read_text(encoding="utf-8")
    swapped = text[1] + text[0] + text[2:]  # the same size, other content
    assert swapped != text and len(swapped.encode()) == len(text.encode())
    corpus.write_text(swapped, encoding="utf-8")
    with pytest.raises(ValueError, match=r"Corpus file .*corpus.txt' changed content since the run"):
        pretrain(**kwargs)
    # The refused resume kept the run as it was.
    assert [step for step, _ in list_checkpoints(checkpoints)] == [1, 2]
    assert json.load(open(tmp_path / "run" / "run.json"))["settings"]["corpus"][0][2]


def test_corpus_comparison_names_the_changed_file():
    from keras_gpt1.workflows.pretraining import _check_same_corpus

    before = [["/d/a.txt", 10, "h1"], ["/d/b.txt", 20, "h2"]]
    _check_same_corpus(before, [list(e) for e in before], "run")  # the same: no error
    _check_same_corpus([e[:2] for e in before], before, "run")  # a run from before content hashes
    for current, message in [
        ([["/d/a.txt", 10, "h1"], ["/d/b.txt", 21, "h2"]], "'/d/b.txt' changed size"),
        ([["/d/a.txt", 10, "hX"], ["/d/b.txt", 20, "h2"]], "'/d/a.txt' changed content"),
        ([["/d/a.txt", 10, "h1"]], "The corpus files differ"),
        ([["/d/b.txt", 20, "h2"], ["/d/a.txt", 10, "h1"]], "The corpus files differ"),  # another order
    ]:
        with pytest.raises(ValueError, match=message):
            _check_same_corpus(before, current, "run")


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory):
    """`(output, result)` of a finished two-interval run, copied by the tests that damage it."""
    output = tmp_path_factory.mktemp("finished") / "run"
    return output, pretrain(**run_kwargs(data, output, steps=2, eval_interval=1))


@pytest.mark.once
@pytest.mark.parametrize(
    "lost",
    [["loss_curve.png", "model.weights.h5", "task.json"], ["loss_curve.png", "newest checkpoint"]],
    ids=["the curve and the final preset", "the curve and the last interval"],
)
def test_a_run_killed_during_its_final_save_draws_its_whole_loss_curve_on_resume(
    data, finished_run, tmp_path, monkeypatch, lost
):
    """A `kill -9` while the final preset is written leaves every checkpoint and no curve: the
    rerun has nothing left to train, and still draws the run's curve (from the intervals each
    checkpoint records). A rerun that trains the last interval again draws the whole run too."""
    import shutil

    pytest.importorskip("matplotlib")
    from keras_gpt1.workflows import loss_curve

    output = shutil.copytree(finished_run[0], tmp_path / "run")
    for name in lost:
        if name == "newest checkpoint":
            shutil.rmtree(latest_checkpoint(output / "checkpoints"))
        else:
            (output / name).unlink()
    drawn = []
    real = loss_curve.write_loss_curve

    def recording(path, updates, train_loss, validation_loss=None, initial_validation_loss=None):
        drawn.append((list(updates), list(train_loss), validation_loss is not None, initial_validation_loss))
        return real(path, updates, train_loss, validation_loss, initial_validation_loss=initial_validation_loss)

    monkeypatch.setattr(loss_curve, "write_loss_curve", recording)
    again = pretrain(**run_kwargs(data, output, steps=2, eval_interval=1))
    assert (output / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    initial = json.loads((output / "run.json").read_text())["initial_validation"]["loss"]
    [(updates, train_loss, with_validation, initial_loss)] = drawn
    assert updates == [1, 2] and with_validation and initial_loss == pytest.approx(initial)
    # The first run's intervals as its checkpoints recorded them (the retrained one: bit-exact).
    assert train_loss == pytest.approx(finished_run[1].history["loss"])
    assert len(again.history.get("loss", [])) == (1 if "newest checkpoint" in lost else 0)
