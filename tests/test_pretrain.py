"""Pretraining end to end on real text: learning, exact resume after a kill, NaN stop, bad input.

Small configurations (hidden 32, 32-token sequences) on a slice of the built-in corpus (Python's
docs) with a 300-token BPE tokenizer, so each run takes seconds; every test runs on the current
Keras backend.
"""

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import BACKEND, pretrain_kwargs, write_pretraining_data

pytest.importorskip("tensorflow")

from keras_gpt1 import GPT1CausalLM  # noqa: E402
from keras_gpt1.cli import main  # noqa: E402
from keras_gpt1.data.corpus import demo_corpus_lines  # noqa: E402
from keras_gpt1.training import latest_checkpoint, list_checkpoints  # noqa: E402
from keras_gpt1.workflows import pretrain  # noqa: E402

ARCHITECTURE = dict(num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=32)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(corpus file, tokenizer directory): ~60 KB of the built-in corpus, 300-token BPE."""
    return write_pretraining_data(tmp_path_factory.mktemp("pretrain_data"), max_bytes=60_000, vocabulary_size=300)


def small_run(data, output, **overrides):
    settings = dict(architecture=ARCHITECTURE, sequence_length=32, batch_size=8, validation_batches=4)
    return pretrain_kwargs(data, output, **{**settings, **overrides})


class LossRecorder(keras.callbacks.Callback):
    """The running training loss after every batch (Keras resets it at each interval's start)."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


@pytest.mark.once("jax")  # many steps: compiled (tests/conftest.py)
def test_cli_loss_falls_on_real_text_and_writes_a_preset(data, tmp_path, capsys):
    corpus, tokenizer = data
    output = tmp_path / "run"
    argv = ["pretrain", "--corpus", corpus, "--tokenizer", tokenizer, "--output", str(output)]
    argv += ["--num-layers", "2", "--num-heads", "2", "--hidden-dim", "32", "--intermediate-dim", "64"]
    argv += ["--max-sequence-length", "32", "--batch-size", "8", "--steps", "200", "--eval-interval", "100"]
    argv += ["--learning-rate", "5e-3", "--dropout", "0", "--validation-batches", "4", "--sample-length", "6"]
    argv += ["--rematerialize"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    before = float(out.split("Validation perplexity before training: ")[1].split()[0])
    after = float(out.split("Validation perplexity after 200 updates: ")[1].split()[0])
    assert before > 200  # ~ the vocabulary size: an untrained model is uniform
    assert after < 0.3 * before, out
    assert "Sample (top-k 40, temperature 0.8, seed 0): the function returns" in out
    with open(output / "run.json") as f:
        assert json.load(f)["settings"]["steps"] == 200
    assert [step for step, _ in list_checkpoints(output / "checkpoints")] == [100, 200]
    # TensorBoard event files for training and validation (TensorFlow installs `tensorboard`).
    for split in ("train", "validation"):
        assert any(name.startswith("events.out.tfevents") for name in os.listdir(output / "logs" / split))
    lm = GPT1CausalLM.from_preset(str(output))  # the run directory is a preset
    assert lm.tokenizer is not None and lm.backbone.num_layers == 2
    assert lm.backbone.rematerialize  # --rematerialize reached the model and its saved config


def test_demo_corpus_keeps_the_text_of_restructuredtext_markup():
    from keras_gpt1.data.corpus import _paragraphs

    text = ":func:`len` returns ``None`` when the :py:class:`list` is empty, as `this` says.\n\n>>> len([])"
    assert list(_paragraphs(text)) == ["len returns None when the list is empty, as this says."]
    assert not any("`" in line for line in demo_corpus_lines(max_bytes=200_000))


def test_demo_settings_fill_only_the_flags_left_out():
    from keras_gpt1.cli import build_parser
    from keras_gpt1.cli.pretrain import DEMO_SETTINGS, _apply_demo_settings

    def parsed(*argv):
        args = build_parser().parse_args(["pretrain", *argv])
        _apply_demo_settings(args)
        return args

    demo = parsed()
    assert {name: getattr(demo, name) for name in DEMO_SETTINGS} == DEMO_SETTINGS
    assert parsed("--steps", "7", "--batch-size", "4").steps == 7
    assert parsed("--steps", "7", "--batch-size", "4").batch_size == 4
    assert parsed("--epochs", "2").steps is None  # epochs, not the demo's steps
    # Your corpus or another preset: pretrain()'s own defaults, a batch of 32.
    for argv in (["--corpus", "a.txt"], ["--model", "gpt1"]):
        args = parsed(*argv)
        assert (args.steps, args.learning_rate, args.dropout, args.batch_size) == (None, None, None, 32)


@pytest.mark.once
def test_loss_curve_png_and_seeded_sample(data, tmp_path, capsys):
    """The run draws its loss curve next to the preset and ends with a reproducible top-k sample."""
    pytest.importorskip("matplotlib")
    from keras_gpt1.workflows.pretraining import sample_text

    result = pretrain(**small_run(data, tmp_path / "run", steps=4, eval_interval=2, sample_length=5, verbose=2))
    out = capsys.readouterr().out
    png = tmp_path / "run" / "loss_curve.png"
    assert f"Loss curve written to {png}." in out
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert f"Sample (top-k 40, temperature 0.8, seed 0): {result.sample}" in out
    assert result.sample.startswith("the function returns")
    assert sample_text(result.model, "the function returns", 5, seed=0) == result.sample


def test_loss_curve_without_matplotlib_is_one_info_line(tmp_path, capsys, monkeypatch):
    import importlib

    from keras_gpt1.workflows import loss_curve

    pretrain_module = importlib.import_module("keras_gpt1.workflows.pretraining")  # the module, not the function

    monkeypatch.setattr(loss_curve, "matplotlib_available", lambda: False)
    assert loss_curve.write_loss_curve(tmp_path / "a.png", [1], [2.0]) is None
    pretrain_module._plot_loss_curve(str(tmp_path), {"loss": [2.0]}, {}, 0, 1, 1, verbose=1)
    assert capsys.readouterr().out == "Loss curve skipped: matplotlib is not installed.\n"
    assert os.listdir(tmp_path) == []


def test_loss_curve_needs_one_value_per_interval(tmp_path):
    pytest.importorskip("matplotlib")
    from keras_gpt1.workflows.loss_curve import write_loss_curve

    for train, validation in [([2.0], None), ([2.0, 1.0], [2.0]), ([2.0, 1.0], [2.0, 1.0, 0.5])]:
        with pytest.raises(ValueError, match="one value per interval"):
            write_loss_curve(tmp_path / "a.png", [1, 2], train, validation)
    assert not os.path.exists(tmp_path / "a.png")


@pytest.mark.integration
@pytest.mark.xla  # the killed run is a subprocess, which compiles with the library's default
def test_resume_after_kill_matches_an_uninterrupted_run(data, tmp_path):
    """SIGKILL mid-interval, rerun the same call: the loss trajectory and weights continue exactly.

    Dropout is on, so this also checks that the dropout RNG state is restored.
    """
    kwargs = small_run(data, tmp_path / "full", steps=24, eval_interval=8, dropout=0.1)
    full_losses = LossRecorder()
    full = pretrain(**kwargs, callbacks=[full_losses])
    assert len(full_losses.losses) == 24

    # The same run in a fresh process, killed hard in the middle of the second interval.
    interrupted = dict(kwargs, output=str(tmp_path / "interrupted"))
    script = (
        "import json, os, signal, sys, keras\n"
        "from keras_gpt1.workflows import pretrain\n"
        "class Kill(keras.callbacks.Callback):\n"
        "    n = 0\n"
        "    def on_train_batch_end(self, batch, logs=None):\n"
        "        self.n += 1\n"
        "        if self.n == 13: os.kill(os.getpid(), signal.SIGKILL)\n"
        "pretrain(**json.loads(sys.argv[1]), callbacks=[Kill()])\n"
    )
    env = dict(os.environ, KERAS_BACKEND=BACKEND)
    process = subprocess.run([sys.executable, "-c", script, json.dumps(interrupted)], env=env, timeout=300)
    assert process.returncode == -signal.SIGKILL
    assert [step for step, _ in list_checkpoints(tmp_path / "interrupted" / "checkpoints")] == [8]

    resumed_losses = LossRecorder()
    resumed = pretrain(**interrupted, callbacks=[resumed_losses])
    assert resumed.resumed_from == 8
    np.testing.assert_allclose(resumed_losses.losses, full_losses.losses[8:], rtol=1e-5)
    for a, b in zip(full.model.variables, resumed.model.variables):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-5, atol=1e-7)
    assert resumed.validation_perplexity == pytest.approx(full.validation_perplexity, rel=1e-5)

    # Rerunning a finished run trains nothing more. Optimizer settings may change on a resume
    # (to recover from a divergence); settings that define the run may not.
    again = pretrain(**dict(interrupted, learning_rate=5e-4))
    assert again.resumed_from == 24 and again.history == {}
    with open(tmp_path / "interrupted" / "run.json") as f:
        assert json.load(f)["settings"]["learning_rate"] == 5e-4
    with pytest.raises(ValueError, match="different settings.*batch_size"):
        pretrain(**dict(interrupted, batch_size=4))


@pytest.mark.once
def test_nan_stops_and_keeps_the_last_good_checkpoint(data, tmp_path):
    """Also runs in mixed_bfloat16 with 2 micro-batches per update, so the NaN is caught there."""

    class Poison(keras.callbacks.Callback):
        count = 0

        def on_train_begin(self, logs=None):
            self.compute_dtype = self.model.backbone.transformer_layers[0].compute_dtype

        def on_train_batch_begin(self, batch, logs=None):
            self.count += 1
            if self.count == 13:  # the first micro-batch of update 7
                kernel = self.model.backbone.transformer_layers[0].c_fc.kernel
                kernel.assign(np.full(kernel.shape, np.nan, "float32"))

    kwargs = small_run(data, tmp_path / "run", steps=12, eval_interval=4)
    kwargs.update(precision="mixed_bfloat16", gradient_accumulation_steps=2)
    poison = Poison()
    with pytest.raises(
        FloatingPointError,
        match=r"became nan at update 7.*ckpt-00000008.*rerun with the same settings.*lower `learning_rate`",
    ):
        pretrain(**kwargs, callbacks=[poison])
    assert poison.compute_dtype == "bfloat16"
    run = tmp_path / "run"
    # Checkpoints count micro-batches: update 4 is micro-batch 8. Nothing after the NaN was kept.
    assert [step for step, _ in list_checkpoints(run / "checkpoints")] == [8]
    state = json.load(open(os.path.join(latest_checkpoint(run / "checkpoints"), "state.json")))
    assert state["state"]["update"] == 4 and np.isfinite(state["state"]["logs"]["loss"])
    assert not os.path.exists(run / "model.weights.h5")  # no preset from a NaN model


@pytest.mark.parametrize("head_chunk_size, rematerialize", [(None, False), (100, True)])
def test_mixed_bfloat16_with_gradient_accumulation_learns(data, tmp_path, head_chunk_size, rematerialize):
    """bfloat16 compute, float32 weights; 2 micro-batches of 4 per update; the schedule and the
    update count follow updates, not micro-batches; validation perplexity falls. Also with the
    memory options: the LM head and loss computed in chunks (from bfloat16 hidden states) and
    the blocks rematerialized."""
    kwargs = small_run(data, tmp_path / "run", steps=40, eval_interval=20, dropout=0.0)
    kwargs.update(
        precision="mixed_bfloat16",
        gradient_accumulation_steps=2,
        learning_rate=5e-3,
        warmup_steps=4,
        head_chunk_size=head_chunk_size,
        rematerialize=rematerialize,
    )
    result = pretrain(**kwargs)
    lm = result.model
    assert lm.backbone.rematerialize == rematerialize
    assert lm.backbone.transformer_layers[0].compute_dtype == "bfloat16"
    assert {v.dtype for v in lm.trainable_variables} == {"float32"}
    assert int(keras.ops.convert_to_numpy(lm.optimizer.iterations)) == 40  # updates
    assert result.history["learning_rate"][-1] == pytest.approx(0.0, abs=1e-9)  # cosine reached 0
    # Checkpoints count micro-batches (the data position): update 20 is micro-batch 40.
    assert [step for step, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [40, 80]
    assert result.validation_perplexity < 0.65 * result.initial_validation_perplexity  # ~300 -> ~150


def test_checkpoints_are_atomic_and_keep_the_last_k(tmp_path):
    from keras_gpt1.training import callbacks as callbacks_module
    from keras_gpt1.training import restore_checkpoint, save_checkpoint

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    directory = tmp_path / "checkpoints"
    for step in (10, 20, 30, 40):
        save_checkpoint(directory, model, step, state={"n": step}, keep=2)
    assert [step for step, _ in list_checkpoints(directory)] == [30, 40]
    assert sorted(os.listdir(directory)) == ["ckpt-00000030", "ckpt-00000040"]

    # A crash while writing leaves neither a partial checkpoint nor a temporary directory.
    saved = [keras.ops.convert_to_numpy(v) for v in model.variables]
    original = callbacks_module._save_variables

    def crash(path, variables):
        if path.endswith(callbacks_module.OPTIMIZER_FILE):
            raise OSError("disk full")
        original(path, variables)

    callbacks_module._save_variables = crash
    try:
        with pytest.raises(OSError, match="disk full"):
            save_checkpoint(directory, model, 50, keep=2)
    finally:
        callbacks_module._save_variables = original
    assert sorted(os.listdir(directory)) == ["ckpt-00000030", "ckpt-00000040"]
    # A directory without its `state.json` (written last) is not a checkpoint.
    os.makedirs(directory / "ckpt-00000060")
    assert latest_checkpoint(directory).endswith("ckpt-00000040")

    model.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)  # move away from the saved values
    info = restore_checkpoint(latest_checkpoint(directory), model)
    assert info == {"step": 40, "state": {"n": 40}}
    for variable, value in zip(model.variables, saved):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)


# --- bad input: each a clear error before any training starts ---


def _cli_error(argv, capsys):
    assert main(["pretrain", *argv]) == 2
    return capsys.readouterr().err


def test_bad_input_errors(data, tmp_path, capsys):
    corpus, tokenizer = data
    common = ["--tokenizer", tokenizer, "--steps", "2", "--no-tensorboard"]

    err = _cli_error(["--corpus", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "a"), *common], capsys)
    assert "missing.txt' does not exist" in err

    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    err = _cli_error(["--corpus", str(empty), "--output", str(tmp_path / "b"), *common], capsys)
    assert "empty.txt' is empty" in err

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
    err = _cli_error(["--corpus", str(latin1), "--output", str(tmp_path / "c"), *common], capsys)
    assert "latin1.txt' is not UTF-8 text" in err and "line 1" in err

    short = tmp_path / "short.txt"
    short.write_text("just a few words\n", encoding="utf-8")
    err = _cli_error(
        ["--corpus", str(short), "--output", str(tmp_path / "d"), "--sequence-length", "64", *common], capsys
    )
    assert "fewer than one window of sequence_length + 1 = 65 tokens" in err

    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    err = _cli_error(["--corpus", corpus, "--output", str(blocker / "out"), *common], capsys)
    assert "is not writable" in err

    err = _cli_error(["--corpus", corpus, "--output", str(tmp_path / "e"), "--sequence-length", "129", *common], capsys)
    assert "longer than the model's context of 128" in err

    err = _cli_error(
        [
            "--corpus",
            corpus,
            "--output",
            str(tmp_path / "f"),
            "--batch-size",
            "6",
            "--gradient-accumulation-steps",
            "4",
            *common,
        ],
        capsys,
    )
    assert "divisible" in err
    # None of them trained anything.
    for name in "abcdef":
        assert not os.path.exists(tmp_path / name / "checkpoints")


# --- distribution: a partial last validation batch under JAX data parallelism ---


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution data parallelism: JAX")
@pytest.mark.integration
def test_data_parallel_validation_with_a_partial_last_batch(data, tmp_path):
    """2 virtual devices: the odd-sized last validation batch is padded with zero-weight rows.

    Unpadded, JAX refuses to split it (IndivisibleError). Padded, the validation perplexity is
    the single-device one: the dummy rows carry no weight.
    """
    from keras_gpt1.data.lm_dataset import LMDataset
    from keras_gpt1.tokenizers import GPT1Tokenizer

    corpus, tokenizer = data
    batch_size = 4
    for fraction in (0.05, 0.1, 0.2, 0.25):  # find a split whose last batch has an odd size
        counts = LMDataset(
            [corpus], GPT1Tokenizer.from_preset(tokenizer), 32, batch_size, validation_fraction=fraction
        ).count()
        if counts["validation_windows"] % 2:
            break
    assert counts["validation_windows"] % 2, counts
    kwargs = small_run(data, tmp_path / "run", steps=4, eval_interval=2, dropout=0.0, batch_size=batch_size)
    kwargs.update(validation_fraction=fraction, validation_batches=None)
    script = (
        "import json, sys\n"
        "from keras_gpt1.distribution import distribution_scope\n"
        "from keras_gpt1.workflows import pretrain\n"
        "kwargs = json.loads(sys.argv[1])\n"
        "single = pretrain(**dict(kwargs, output=kwargs['output'] + '-single'))\n"
        "with distribution_scope('data', '2') as dist:\n"
        "    assert dist.num_replicas == 2\n"
        "    parallel = pretrain(**kwargs)\n"
        "    try:\n"
        "        pretrain(**dict(kwargs, output=kwargs['output'] + '-odd', batch_size=3))\n"
        "        odd = None\n"
        "    except ValueError as e:\n"
        "        odd = str(e)\n"
        "print('RESULT', json.dumps([[r.initial_validation_perplexity, r.validation_perplexity]\n"
        "                            for r in (single, parallel)] + [odd]))\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    process = subprocess.run(
        [sys.executable, "-c", script, json.dumps(kwargs)], env=env, capture_output=True, text=True, timeout=300
    )
    assert process.returncode == 0, process.stderr[-4000:]
    single, parallel, odd = json.loads(process.stdout.split("RESULT ")[1])
    np.testing.assert_allclose(parallel, single, rtol=1e-5)
    assert "must be divisible by the 2 data-parallel devices" in odd
