"""One name per concept on the command line, and one definition per shared default.

Every subcommand takes its input model as `--model`, its input text as `--corpus`, writes to
`--output`, and chooses a precision with `--precision` from `keras_gpt1.utils.precision`'s
vocabulary. The old names work for one release as hidden aliases that print one deprecation
line. `DEFAULT_MAX_NEW_TOKENS` and the sampler names are defined once and read everywhere.
"""

import argparse
import contextlib
import io
import re

import pytest

from keras_gpt1.cli import build_parser, main
from keras_gpt1.utils.generation_defaults import DEFAULT_MAX_NEW_TOKENS, SAMPLER_NAMES
from keras_gpt1.utils.precision import INFERENCE_PRECISIONS, PRECISIONS, TRAINING_PRECISIONS

pytestmark = pytest.mark.once  # the parser and the constants do not depend on the backend

# What each subcommand reads and writes. A new subcommand must be added here (the first test
# fails until it is), so its flags are checked against the vocabulary.
READS_A_MODEL = {"convert", "pretrain", "generate", "score", "finetune", "evaluate", "export"}
READS_TEXT = {"pretrain", "train-tokenizer"}
WRITES = {"convert", "pretrain", "finetune", "export", "train-tokenizer"}
TRAINS = {"pretrain", "finetune"}
RUNS_A_MODEL = {"generate", "score", "export"}
# Names that other subcommands once used for these concepts: none may be a visible flag.
OTHER_NAMES = re.compile(r"--(from|preset|input|dtype|quantize|mixed-bfloat16|to-hf|from-hf|from-openai)\b")

# (subcommand, the old spelling, the new one, the rest of a valid command line)
RENAMED = [
    (
        "finetune",
        ["--from", "gpt1"],
        ["--model", "gpt1"],
        ["--task", "classification", "--train", "t.csv", "--output", "o"],
    ),
    ("pretrain", ["--preset", "gpt1"], ["--model", "gpt1"], []),
    ("pretrain", ["--mixed-bfloat16"], ["--precision", "mixed_bfloat16"], []),
    ("train-tokenizer", ["--input", "a.txt", "b.txt"], ["--corpus", "a.txt", "b.txt"], ["--output", "tok"]),
    ("convert", ["--from-hf", "hf"], ["--model", "hf"], ["--output", "p"]),
    ("convert", ["--from-openai", "orig"], ["--model", "orig"], ["--output", "p"]),
    ("convert", ["--to-hf", "p"], ["--model", "p"], ["--output", "hf"]),
    ("generate", ["--dtype", "bfloat16"], ["--precision", "bfloat16"], ["--model", "m", "--prompt", "hi"]),
    ("generate", ["--quantize", "int8"], ["--precision", "int8"], ["--model", "m", "--prompt", "hi"]),
    ("score", ["--dtype", "float32"], ["--precision", "float32"], ["--model", "m", "--text", "hi"]),
    ("export", ["--dtype", "int8"], ["--precision", "int8"], ["--model", "m", "--output", "o"]),
]


def _subparsers():
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def _visible_flags(subparser):
    return {
        option: action
        for action in subparser._actions
        if action.help is not argparse.SUPPRESS
        for option in action.option_strings
    }


def _help(command):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([command, "--help"])
    return out.getvalue()


def test_every_subcommand_names_its_model_text_and_output_alike():
    subparsers = _subparsers()
    assert set(subparsers) == READS_A_MODEL | READS_TEXT | WRITES
    for command, subparser in subparsers.items():
        flags = _visible_flags(subparser)
        assert ("--model" in flags) == (command in READS_A_MODEL), command
        assert ("--corpus" in flags) == (command in READS_TEXT), command
        assert ("--output" in flags) == (command in WRITES), command
        assert not [flag for flag in flags if OTHER_NAMES.fullmatch(flag)], command
        if command in READS_A_MODEL:
            assert flags["--model"].dest == "model", command
        assert ("--precision" in flags) == (command in TRAINS | RUNS_A_MODEL), command


@pytest.mark.parametrize("command", sorted(READS_A_MODEL | READS_TEXT | WRITES))
def test_help_lists_only_the_new_names(command):
    text = _help(command)
    assert not OTHER_NAMES.search(text), text
    assert "deprecated" not in text


def test_precision_values_are_one_vocabulary():
    """Every `--precision` takes training's or inference's subset of `PRECISIONS`, with the
    default its kind documents (`keras_gpt1.utils.precision`)."""
    for command, subparser in _subparsers().items():
        action = _visible_flags(subparser).get("--precision")
        if action is None:
            continue
        expected = TRAINING_PRECISIONS if command in TRAINS else INFERENCE_PRECISIONS
        assert tuple(action.choices) == expected and set(expected) <= set(PRECISIONS), command
        assert action.default == ("auto" if command in TRAINS else None), command


@pytest.mark.parametrize("command, old, new, rest", RENAMED, ids=[f"{c} {o[0]}" for c, o, _, _ in RENAMED])
def test_an_old_flag_still_works_and_says_what_replaces_it(command, old, new, rest, capsys):
    parser = build_parser()
    through_old = parser.parse_args([command, *old, *rest])
    warning = capsys.readouterr().err
    through_new = parser.parse_args([command, *new, *rest])
    assert capsys.readouterr().err == ""
    assert vars(through_old) == vars(through_new)
    replacement = new[0] if len(old) > 1 else " ".join(new)  # `--from X`: --model; `--mixed-bfloat16`: the pair
    assert warning == (
        f"keras-gpt1 {command}: warning: {old[0]} is deprecated and will be removed in the next release; "
        f"use {replacement}.\n"
    )


@pytest.mark.parametrize("command, old, new, rest", RENAMED, ids=[f"{c} {o[0]}" for c, o, _, _ in RENAMED])
def test_an_old_flag_with_its_new_name_is_refused(command, old, new, rest, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, *old, *new, *rest])
    assert exit_info.value.code == 2
    assert f"argument {new[0]}: not allowed with argument {old[0]}" in capsys.readouterr().err


def test_two_old_flags_for_one_new_one_are_refused(capsys):
    # `--dtype bfloat16 --quantize int8` meant both; one `--precision` cannot say that.
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["generate", "--model", "m", "--prompt", "hi", "--dtype", "bfloat16", "--quantize", "int8"]
        )
    assert "argument --quantize: not allowed with argument --dtype" in capsys.readouterr().err


def test_a_renamed_required_flag_is_still_required(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["finetune", "--task", "classification", "--train", "t.csv", "--output", "o"])
    assert "--model is required" in capsys.readouterr().err


def test_the_old_input_flag_runs_the_command(tmp_path, capsys):
    """End to end: `train-tokenizer --input` trains the same tokenizer as `--corpus`."""
    corpus = tmp_path / "words.txt"
    corpus.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 20, encoding="utf-8")
    common = ["--merges", "10", "--quiet"]
    assert main(["train-tokenizer", "--input", str(corpus), "--output", str(tmp_path / "old"), *common]) == 0
    assert "warning: --input is deprecated" in capsys.readouterr().err
    assert main(["train-tokenizer", "--corpus", str(corpus), "--output", str(tmp_path / "new"), *common]) == 0
    for name in ("vocab.json", "merges.txt"):
        assert (tmp_path / "old" / name).read_bytes() == (tmp_path / "new" / name).read_bytes()


# --- defaults defined once ---------------------------------------------------------------------


def test_max_new_tokens_default_is_one_constant():
    from keras_gpt1.export import ExportOptions
    from keras_gpt1.generation.samplers import SAMPLERS

    subparsers = _subparsers()
    for command in ("generate", "export"):
        assert _visible_flags(subparsers[command])["--max-new-tokens"].default == DEFAULT_MAX_NEW_TOKENS
    assert ExportOptions().max_new_tokens == DEFAULT_MAX_NEW_TOKENS
    # The sampler names: the library's table, in order, each class under its own name, and the help.
    assert tuple(SAMPLERS)[: len(SAMPLER_NAMES)] == SAMPLER_NAMES
    assert all(SAMPLERS[name].name == name for name in SAMPLER_NAMES)
    assert " | ".join(SAMPLER_NAMES) in " ".join(_help("generate").split())


def test_generate_without_a_length_makes_the_default_count():
    import numpy as np

    from conftest import TINY_CONFIG
    from keras_gpt1 import GPT1Backbone, GPT1CausalLM

    lm = GPT1CausalLM(GPT1Backbone(**dict(TINY_CONFIG, max_sequence_length=DEFAULT_MAX_NEW_TOKENS + 8)))
    out = lm.generate([[5, 6, 7]])
    assert np.asarray(out).shape[-1] == 3 + DEFAULT_MAX_NEW_TOKENS
