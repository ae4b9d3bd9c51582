"""Command-line faults that must end in one line: Ctrl-C during `pretrain` (exit 130, how to
resume, checkpoints intact), `--tokenizer` given a file, and an over-long `generate` (a suggestion
that is itself valid). See docs/reliability.md."""

import re

import keras
import numpy as np
import pytest
from conftest import TINY_CONFIG, write_pretraining_data

pytest.importorskip("tensorflow")

from keras_gpt1.cli import main  # noqa: E402
from keras_gpt1.training import callbacks as callbacks_module  # noqa: E402
from keras_gpt1.training import latest_checkpoint, list_checkpoints  # noqa: E402
from keras_gpt1.workflows import pretraining  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(corpus file, tokenizer directory): ~12 KB of the built-in corpus, 200-token BPE."""
    return write_pretraining_data(tmp_path_factory.mktemp("cli_data"), max_bytes=12_000, vocabulary_size=200)


@pytest.fixture(autouse=True)
def _pretrain_without_compiling(monkeypatch):
    """`keras-gpt1 pretrain` here runs eagerly (`jit_compile=False`, which the command line does
    not offer): compiling costs more than the three tiny updates these tests train."""
    import dataclasses

    from keras_gpt1.cli import pretrain as training_cli

    config_from_args = training_cli.config_from_args
    monkeypatch.setattr(
        training_cli,
        "config_from_args",
        lambda *args, **kwargs: dataclasses.replace(config_from_args(*args, **kwargs), jit_compile=False),
    )


def pretrain_argv(data, output, *extra):
    corpus, tokenizer = data
    return [
        "pretrain", "--corpus", corpus, "--tokenizer", tokenizer, "--output", str(output),
        "--num-layers", "1", "--num-heads", "2", "--hidden-dim", "16", "--intermediate-dim", "32",
        "--max-sequence-length", "16", "--sequence-length", "16", "--batch-size", "4",
        "--steps", "3", "--eval-interval", "1", "--validation-batches", "1",
        "--no-tensorboard", "--sample-length", "0", *extra,
    ]  # fmt: skip


def one_line(err, command="pretrain"):
    """The single `keras-gpt1 COMMAND:` line of `err` (backends may log other lines to stderr)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"keras-gpt1 {command}:")]
    assert len(lines) == 1, err
    return lines[0]


# === Ctrl-C during pretrain ===


class _CtrlC(keras.callbacks.Callback):
    """Raises KeyboardInterrupt (what Ctrl-C raises) as batch `at` (1-based) begins."""

    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_begin(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            raise KeyboardInterrupt


def _interrupt_between_batches(monkeypatch):
    fit_callbacks = pretraining._fit_callbacks

    def with_ctrl_c(*args, **kwargs):
        callbacks, nan_guard = fit_callbacks(*args, **kwargs)
        return [*callbacks, _CtrlC(at=2)], nan_guard  # after update 1 and its checkpoint

    monkeypatch.setattr(pretraining, "_fit_callbacks", with_ctrl_c)


def _interrupt_while_writing_the_second_checkpoint(monkeypatch):
    write_manifest, calls = callbacks_module._write_manifest, []

    def ctrl_c_on_the_second(directory):
        calls.append(directory)
        if len(calls) == 2:  # the model, optimizer and state files are written; the manifest is not
            raise KeyboardInterrupt
        write_manifest(directory)

    monkeypatch.setattr(callbacks_module, "_write_manifest", ctrl_c_on_the_second)


@pytest.mark.once  # the interrupt is caught by the training loop and the command line, not a backend
@pytest.mark.parametrize(
    "when, rerun", [(_interrupt_between_batches, False), (_interrupt_while_writing_the_second_checkpoint, True)]
)
def test_ctrl_c_during_pretrain_says_how_to_resume_and_the_rerun_resumes(
    data, tmp_path, monkeypatch, capsys, when, rerun
):
    output = tmp_path / "run"
    with monkeypatch.context() as patch:
        when(patch)
        assert main(pretrain_argv(data, output)) == 130
    line = one_line(capsys.readouterr().err)
    assert re.fullmatch(
        r"keras-gpt1 pretrain: interrupted\. Rerun the same command to resume from the newest checkpoint, "
        r"'.*ckpt-00000001'\.",
        line,
    ), line
    # The checkpoint state is valid: one whole checkpoint, nothing half-written beside it.
    checkpoints = output / "checkpoints"
    assert [step for step, _ in list_checkpoints(checkpoints)] == [1]
    assert latest_checkpoint(checkpoints).endswith("ckpt-00000001")
    assert [p.name for p in checkpoints.iterdir()] == ["ckpt-00000001"]
    if not rerun:
        return
    # The same command resumes from it and finishes.
    assert main(pretrain_argv(data, output)) == 0
    out = capsys.readouterr().out
    assert "Resuming from" in out and "ckpt-00000001" in out
    assert (output / "model.weights.h5").is_file()


@pytest.mark.once
def test_ctrl_c_before_training_or_with_restart(data, tmp_path, monkeypatch, capsys):
    output = tmp_path / "run"

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # while the corpus is read: nothing to keep
        patch.setattr(pretraining, "_read_corpus", ctrl_c)
        assert main(pretrain_argv(data, output)) == 130
    line = one_line(capsys.readouterr().err)
    assert line == "keras-gpt1 pretrain: interrupted. Training had not started; rerun the same command to start it."
    assert not output.exists()
    # With --restart, rerunning the same command would delete the checkpoints: the hint says so.
    with monkeypatch.context() as patch:
        _interrupt_between_batches(patch)
        assert main(pretrain_argv(data, output, "--restart")) == 130
    line = one_line(capsys.readouterr().err)
    assert "Rerun the same command without --restart to resume from the newest checkpoint" in line, line


# === --tokenizer given a file ===


@pytest.mark.once
def test_pretrain_tokenizer_that_is_a_file_says_what_it_got(data, tmp_path, capsys):
    import os

    corpus, tokenizer = data
    vocab = [os.path.join(root, "vocab.json") for root, _, files in os.walk(tokenizer) if "vocab.json" in files][0]
    for given, hint in [(corpus, ""), (vocab, f" Did you mean the directory holding it, '{os.path.dirname(vocab)}'?")]:
        argv = pretrain_argv(data, tmp_path / "run")
        argv[argv.index("--tokenizer") + 1] = given
        assert main(argv) == 2
        line = one_line(capsys.readouterr().err)
        assert line == (
            "keras-gpt1 pretrain: error: --tokenizer must be a tokenizer directory (written by `keras-gpt1 "
            f"train-tokenizer`) or a preset directory; got '{given}', which is a file.{hint}"
        )
        assert not (tmp_path / "run").exists()
    argv[argv.index("--tokenizer") + 1] = str(tmp_path / "nowhere")
    assert main(argv) == 2
    assert "does not exist" in one_line(capsys.readouterr().err)


# === generate: an over-long request suggests what is valid ===


@pytest.mark.once
@pytest.mark.parametrize("length, max_new_tokens", [(24, 1), (24, 5), (24, 100), (20, 10), (23, 2)])
def test_a_request_past_the_context_suggests_a_valid_one(length, max_new_tokens):
    from keras_gpt1.generation.prompts import check_prompts

    context = TINY_CONFIG["max_sequence_length"]  # 24
    prompts = [np.arange(3, dtype="int32"), np.arange(length, dtype="int32") % 50]
    with pytest.raises(ValueError) as refused:
        check_prompts(prompts, 97, context, max_new_tokens)
    message = str(refused.value)
    assert "<= 0" not in message and message.startswith(f"Prompt 1's {length} tokens"), message
    # Follow each suggestion: the request it describes is accepted.
    room = re.search(r"`max_new_tokens` <= (\d+)", message)
    if room:
        assert length < context and int(room.group(1)) >= 1
        check_prompts(prompts, 97, context, int(room.group(1)))
    keep, new = map(
        int, re.search(r"shorten the prompts to at most (\d+) tokens each \(room for (\d+) new\)", message).groups()
    )
    assert keep >= 1 and new == min(max_new_tokens, context - 1)
    check_prompts([prompt[-keep:] for prompt in prompts], 97, context, new)


@pytest.mark.once
def test_generate_command_over_the_context_names_the_flag(tmp_path, capsys):
    from keras_gpt1.models import GPT1Backbone, GPT1CausalLM

    preset = str(tmp_path / "preset")
    GPT1CausalLM(GPT1Backbone(**TINY_CONFIG)).save_to_preset(preset)
    ids = " ".join(str(i % 50) for i in range(TINY_CONFIG["max_sequence_length"]))
    assert main(["generate", "--model", preset, "--prompt-ids", ids, "--max-new-tokens", "4"]) == 2
    line = one_line(capsys.readouterr().err, "generate")
    assert "Prompt 0's 24 tokens + --max-new-tokens 4 = 28 exceeds the model's context of 24 positions" in line
    assert line.endswith("shorten the prompt to at most 20 tokens (room for 4 new).") and "<= 0" not in line


@pytest.mark.once
def test_a_diverged_pretrain_command_exits_1_with_one_line(data, tmp_path, capsys):
    assert main(pretrain_argv(data, tmp_path / "run", "--learning-rate", "1e38")) == 1
    line = one_line(capsys.readouterr().err)
    assert re.match(r"keras-gpt1 pretrain: error: The training loss became (nan|inf) at update [23]; ", line), line
    assert "with a lower --learning-rate" in line or "lower --learning-rate and start again" in line, line
    assert not (tmp_path / "run" / "model.weights.h5").exists()


@pytest.mark.once
def test_version_prints_the_installed_version(capsys):
    """`keras-gpt1 --version` prints the version pip installed, which is the package's own."""
    import keras_gpt1

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"keras-gpt1 {keras_gpt1.__version__}"
