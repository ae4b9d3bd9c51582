"""`PretrainConfig` refuses bad options by their Python argument's name; the CLI words the same
errors with its flags; no library error names a flag (docs/pretraining.md, "From Python")."""

import argparse
import ast
import dataclasses
import math
import pathlib
import re

import keras
import numpy as np
import pytest

from keras_gpt1.cli import flag_wording, main
from keras_gpt1.workflows import PretrainConfig
from keras_gpt1.workflows.pretrain_config import MAX_SEED

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parents[1] / "keras_gpt1"

# Not an integer, whatever the bounds: a float, a numeric string, a bool, NaN.
NOT_INTEGERS = [1.5, "3", True, float("nan")]
# Not a finite number, whatever the bounds.
NOT_NUMBERS = [float("inf"), float("-inf"), float("nan"), "1e-3", True, None]


def _refused(argument, **kwargs):
    """The message of the ValueError `PretrainConfig(**kwargs)` raises; it names `argument`."""
    with pytest.raises(ValueError) as info:
        PretrainConfig(**kwargs)
    message = str(info.value)
    assert f"`{argument}`" in message, message
    assert "--" not in message, message  # a flag: the CLI's word, not the library's
    return message


@pytest.mark.parametrize(
    "name, low, optional",
    [
        ("steps", 1, True),
        ("batch_size", 1, False),
        ("gradient_accumulation_steps", 1, False),
        ("sequence_length", 1, True),
        ("warmup_steps", 0, True),
        ("vocabulary_size", 4, False),
        ("validation_batches", 1, True),
        ("eval_interval", 1, True),
        ("keep_checkpoints", 1, True),
        ("seed", 0, False),
        ("sample_length", 0, False),
        ("head_chunk_size", 1, True),
    ],
)
def test_integer_options(name, low, optional):
    for bad in [low - 1, low - 5, *NOT_INTEGERS] + ([] if optional else [None]):
        message = _refused(name, **{name: bad})
        assert "must be an integer" in message and repr(bad) in message, message
    # NumPy integers are integers; the stored value is a Python int.
    value = PretrainConfig(**{name: np.int64(low + 1)}, **({"steps": 100} if name == "warmup_steps" else {}))
    assert type(getattr(value, name)) is int and getattr(value, name) == low + 1
    if optional:
        assert getattr(PretrainConfig(**{name: None}), name) is None


def test_seed_fits_numpy():
    assert PretrainConfig(seed=MAX_SEED).seed == MAX_SEED
    assert "[0, 4294967295]" in _refused("seed", seed=MAX_SEED + 1)


@pytest.mark.parametrize(
    "name, too_small, too_large, optional",
    [
        ("learning_rate", [0, -1e-3], [], True),
        ("epochs", [0, -1], [], True),
        ("weight_decay", [-0.01], [], False),
        ("global_clipnorm", [0, -1.0], [], True),
        ("validation_fraction", [-0.1], [0.5, 0.9], False),
        ("dropout", [-0.1], [1, 1.5], True),
    ],
)
def test_number_options(name, too_small, too_large, optional):
    for bad in too_small + too_large + [v for v in NOT_NUMBERS if not (optional and v is None)]:
        message = _refused(name, **{name: bad})
        assert "must be a finite number" in message and repr(bad) in message, message
    assert getattr(PretrainConfig(**{name: np.float32(0.25)}), name) == 0.25


def test_learning_rate_message():
    assert _refused("learning_rate", learning_rate=math.inf) == "`learning_rate` must be a finite number > 0; got inf."


@pytest.mark.parametrize("name", ["rematerialize", "resume", "tensorboard"])
def test_switches_are_true_or_false(name):
    for bad in ["yes", "False", 1, 0, None]:
        assert "must be True or False" in _refused(name, **{name: bad})
    assert getattr(PretrainConfig(**{name: np.bool_(True)}), name) is True


def test_paths_and_text():
    for bad in [3, [], [""], ["a.txt", 3], {"a.txt"}, ""]:
        _refused("corpus", corpus=bad)
    for name in ("preset", "output"):
        for bad in [None, "", 3, ["a"]]:
            _refused(name, **{name: bad})
    for bad in [5, "", ["dir"]]:
        _refused("tokenizer", tokenizer=bad)
    for bad in ["", "  ", None, 3]:
        _refused("text_field", text_field=bad)
    for bad in [None, 3]:
        _refused("sample_prompt", sample_prompt=bad)
    # Paths become strings; one corpus path or a list of them become a tuple.
    config = PretrainConfig(corpus=pathlib.Path("a.txt"), output=pathlib.Path("run"), preset=pathlib.Path("p"))
    assert (config.corpus, config.output, config.preset) == (("a.txt",), "run", "p")
    assert PretrainConfig(corpus=["a.txt", pathlib.Path("b/*.txt")]).corpus == ("a.txt", "b/*.txt")


def test_architecture():
    for bad in [["num_layers", 2], "num_layers=2"]:
        _refused("architecture", architecture=bad)
    assert "'layers'" in _refused("architecture", architecture={"layers": 2})
    for bad in [0, -2, 2.0, "2"]:
        _refused("num_layers", architecture={"num_layers": bad})
    # None leaves the preset's value (the CLI passes every key, most of them None).
    assert PretrainConfig(architecture={"num_layers": np.int32(2), "num_heads": None}).architecture == {"num_layers": 2}


def test_callbacks_jit_compile_and_verbose():
    callback = keras.callbacks.Callback()
    for bad in [callback, [callback, "print"], "callback"]:
        _refused("callbacks", callbacks=bad)
    assert PretrainConfig(callbacks=[callback]).callbacks == (callback,)
    for bad in ["xla", None, 1]:
        _refused("jit_compile", jit_compile=bad)
    for bad in [3, -1, True, "loud", 1.0]:
        _refused("verbose", verbose=bad)
    assert PretrainConfig(verbose="auto").verbose == "auto"


@pytest.mark.parametrize(
    "kwargs, arguments",
    [
        (dict(steps=10, epochs=1), ["steps", "epochs"]),
        (dict(batch_size=6, gradient_accumulation_steps=4), ["batch_size", "gradient_accumulation_steps"]),
        (dict(batch_size=4, gradient_accumulation_steps=8), ["batch_size", "gradient_accumulation_steps"]),
        (dict(steps=10, warmup_steps=10), ["warmup_steps", "steps"]),
        (dict(steps=10, warmup_steps=50), ["warmup_steps", "steps"]),
        (
            dict(sequence_length=64, architecture={"max_sequence_length": 32}),
            ["sequence_length", "max_sequence_length"],
        ),
        (dict(architecture={"hidden_dim": 32, "num_heads": 3}), ["hidden_dim", "num_heads"]),
    ],
)
def test_conflicting_options(kwargs, arguments):
    message = _refused(arguments[0], **kwargs)
    for argument in arguments[1:]:
        assert f"`{argument}`" in message, message


def test_replace_checks_again_and_micro_batch():
    config = PretrainConfig(batch_size=8, gradient_accumulation_steps=2, steps=10)
    assert config.micro_batch_size == 4
    with pytest.raises(ValueError, match="`steps` must be an integer >= 1"):
        dataclasses.replace(config, steps=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = 20


def test_pretrain_takes_a_config_or_keywords(tmp_path):
    from keras_gpt1.workflows import pretrain

    output = tmp_path / "never_created"
    with pytest.raises(TypeError, match="takes a PretrainConfig or keyword arguments"):
        pretrain(["a.txt"])
    with pytest.raises(TypeError, match="unexpected keyword argument 'lr'"):
        pretrain(output=str(output), lr=1e-3)
    # Keywords replace a config's values, and are checked like it.
    with pytest.raises(ValueError, match="`learning_rate` must be a finite number > 0; got nan"):
        pretrain(PretrainConfig(output=str(output)), learning_rate=float("nan"))
    assert not output.exists()


def test_pretrain_runs_from_a_config(tmp_path):
    pytest.importorskip("tensorflow")
    from conftest import pretrain_kwargs, write_pretraining_data

    from keras_gpt1.workflows import pretrain

    (tmp_path / "data").mkdir()
    data = write_pretraining_data(tmp_path / "data", max_bytes=12_000, vocabulary_size=200)
    architecture = dict(num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=16)
    config = PretrainConfig(**pretrain_kwargs(
        data, tmp_path / "run", architecture=architecture, sequence_length=16, batch_size=4, steps=2,
        eval_interval=1, validation_batches=1,
        # Compiling costs more than these few tiny steps, except on JAX, whose uncompiled step
        # compiles op by op.
        jit_compile=keras.config.backend() == "jax",
    ))  # fmt: skip
    result = pretrain(config)
    assert result.steps == 2 and result.validation_perplexity > 0
    assert pretrain(config).resumed_from == 2  # the same config resumes the finished run
    again = pretrain(config, resume=False, steps=3, eval_interval=3)
    assert again.resumed_from is None and again.steps == 3


# --- the command line: the same errors, worded with flags ---


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--learning-rate", "inf"], "error: --learning-rate must be a finite number > 0; got inf."),
        (["--learning-rate", "-1"], "error: --learning-rate must be a finite number > 0; got -1.0."),
        (["--clipnorm", "0"], "error: --clipnorm must be a finite number > 0; got 0.0."),
        (["--keep-checkpoints", "0"], "error: --keep-checkpoints must be an integer >= 1; got 0."),
        (["--seed", "-1"], "error: --seed must be an integer in [0, 4294967295]; got -1."),
        (["--steps", "3", "--warmup-steps", "5"], "error: --warmup-steps (5) must be smaller than --steps (3)."),
        (["--batch-size", "6", "--gradient-accumulation-steps", "4"], "--batch-size (6) must be divisible by --gradient-accumulation-steps (4)"),
        (["--hidden-dim", "32", "--num-heads", "3"], "error: --hidden-dim (32) must be divisible by --num-heads (3)."),
        (["--mesh", "2x4"], "error: --mesh 2x4 needs --distribute data or --distribute model."),
        (["--distribute", "data", "--mesh", "2x4"], "use --distribute model with --mesh 2x4, or --mesh 8 for data parallelism."),
    ],
)  # fmt: skip
def test_cli_errors_name_the_flags(tmp_path, capsys, argv, message):
    output = tmp_path / "run"
    assert main(["pretrain", "--output", str(output), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "`" not in err and "Traceback" not in err, err
    assert not output.exists()


def test_flag_wording():
    args = argparse.Namespace(
        command="x", func=None, learning_rate=None, mesh=None, overwrite=False, preset=None,
        flag_names={"mode": "--distribute", "resume=False": "--restart", "preset": "--model"},
    )  # fmt: skip
    cases = {
        "`learning_rate` must be > 0.": "--learning-rate must be > 0.",
        "`mesh='2x4'` needs `mode='data'`.": "--mesh 2x4 needs --distribute data.",
        "pass `overwrite=True` or `resume=False`": "pass --overwrite or --restart",
        "`preset` has no tokenizer": "--model has no tokenizer",
        # Not an argument of this command: left as it is.
        "`jit_compile` and `learning_rate_typo` and `x = 1`": "`jit_compile` and `learning_rate_typo` and `x = 1`",
        "no arguments here": "no arguments here",
    }
    for message, worded in cases.items():
        assert flag_wording(message, args) == worded


# --- the rule, kept: library errors name Python arguments ---

# `--name` not after a letter, digit or `=` (XLA_FLAGS=--xla_... is an environment variable).
FLAG = re.compile(r"(?<![\w=-])--[a-z][a-z-]*")


def _strings_in(node):
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str):
            yield child.value


@pytest.mark.once
def test_library_errors_name_no_flags():
    """Every string inside a `raise` outside the command line (`keras_gpt1.cli`) is free of
    `--flag`s, except a whole command the user may type (it starts with `keras-gpt1 `)."""
    offenders = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        if path.relative_to(PACKAGE_ROOT).parts[0] == "cli":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for text in _strings_in(node.exc):
                    if FLAG.search(text) and "keras-gpt1 " not in text:
                        offenders.append(f"{path.relative_to(PACKAGE_ROOT)}:{node.lineno}: {text!r}")
    assert not offenders, "\n".join(offenders)


def test_the_flag_rule_sees_a_flag():
    """The pattern of the check above catches the wording it forbids (and not XLA_FLAGS)."""
    assert FLAG.search("--mesh 2x4 needs --distribute data")
    assert FLAG.search("start over with --restart.")
    assert not FLAG.search("XLA_FLAGS=--xla_force_host_platform_device_count=8")
    assert not FLAG.search("`mesh='2x4'` needs `mode='data'`")
