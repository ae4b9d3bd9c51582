"""Fine-tuning under bad numbers and labels: every float option refuses NaN and infinity (the
command line, `finetune`, the optimizer and schedules, the task models); a run whose loss or
weights become NaN or infinite stops and saves nothing; a task file's label is one scalar, one
class per numeric value; a LoRA rank above the adapted kernels' rank is refused. See
docs/reliability.md."""

import math
import re

import keras
import numpy as np
import pytest
from conftest import TINY_CONFIG, file_tree

pytest.importorskip("tensorflow")

from keras_gpt1.cli import build_parser, main  # noqa: E402
from keras_gpt1.models import GPT1Backbone  # noqa: E402
from keras_gpt1.tasks.data import read_task_file  # noqa: E402
from keras_gpt1.workflows.finetuning import finetune  # noqa: E402

NON_FINITE = ["nan", "inf", "-inf"]

ROWS = "".join(
    f"the {w} fox {'runs' if i % 2 else 'sleeps'},{i % 2}\n"
    for i, w in enumerate(["quick", "brown", "lazy", "red", "old", "big", "sly", "small"])
)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """`(preset, train.csv, earlier fine-tuned model)`: a tiny pretrained backbone with its
    tokenizer, 8 labelled rows, and a model fine-tuned on them (the output a later run replaces)."""
    from keras_gpt1.tokenizers import train_tokenizer

    directory = tmp_path_factory.mktemp("finetune_reliability")
    corpus = directory / "corpus.txt"
    corpus.write_text("the quick brown fox runs and sleeps over the lazy dog\n" * 5, encoding="utf-8")
    tokenizer = train_tokenizer([str(corpus)], num_merges=20)
    keras.utils.set_random_seed(3)
    preset = str(directory / "preset")
    GPT1Backbone(**dict(TINY_CONFIG, vocabulary_size=tokenizer.vocabulary_size())).save_to_preset(preset)
    tokenizer.save_to_preset(preset)
    train = directory / "train.csv"
    train.write_text("text,label\n" + ROWS, encoding="utf-8")
    earlier = str(directory / "earlier")
    finetune("classification", str(train), preset=preset, output=earlier, epochs=1, batch_size=4, verbose=0)
    return preset, str(train), earlier


# === Every float option refuses NaN and infinity ===

# The smallest command line of each command that has float flags; each float flag is added to it.
# A command given a float flag later must be added here: the test below fails until it is.
BASE_ARGV = {
    "pretrain": ["--corpus", "corpus.txt", "--output", "{out}"],
    "finetune": ["--task", "classification", "--train", "t.csv", "--model", "p", "--output", "{out}"],
    "generate": ["--model", "m", "--prompt-ids", "1 2"],
}


def _float_flags():
    """`(command, flag)` for every option of every subcommand that argparse reads as a float."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    found = []
    for command, subparser in subparsers.choices.items():
        for action in subparser._actions:
            if action.type is float:
                found.append((command, action.option_strings[-1]))
    return found


FLOAT_FLAGS = _float_flags()


@pytest.mark.once
def test_every_float_flag_is_covered():
    assert len(FLOAT_FLAGS) >= 13, FLOAT_FLAGS  # pretrain 6, finetune 5, generate 2
    assert {command for command, _ in FLOAT_FLAGS} <= set(BASE_ARGV)


@pytest.mark.once
@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("command, flag", FLOAT_FLAGS)
def test_every_float_flag_refuses_non_finite_values_in_one_line(tmp_path, capsys, command, flag, value):
    out = tmp_path / "out"
    argv = [command, *(a.format(out=out) for a in BASE_ARGV[command]), f"{flag}={value}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"keras-gpt1 {command}: error: {flag} must be"), err
    assert value in lines[0]
    assert not out.exists() or not any(out.iterdir())  # refused before anything was written


@pytest.mark.once
@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("lm_weight", math.nan, "`lm_weight` must be a finite number >= 0"),
        ("lm_weight", math.inf, "`lm_weight` must be a finite number >= 0"),
        ("lm_weight", -0.5, "`lm_weight` must be a finite number >= 0"),
        ("learning_rate", math.inf, "`learning_rate` must be a finite number > 0"),
        ("learning_rate", np.float32("nan"), "`learning_rate` must be a finite number > 0"),
        ("warmup_fraction", -math.inf, "`warmup_fraction` must be a finite number >= 0 and < 1"),
        ("weight_decay", math.nan, "`weight_decay` must be a finite number >= 0"),
        ("dropout", math.inf, "`dropout` must be a finite number >= 0 and < 1"),
        ("dropout", "0.1", "`dropout` must be a finite number"),
    ],
)
def test_finetune_refuses_non_finite_numbers_before_reading_anything(tmp_path, argument, value, message):
    # The train file does not exist: the number is refused first.
    with pytest.raises(ValueError, match=re.escape(message)):
        finetune("classification", str(tmp_path / "missing.csv"), preset="nowhere", **{argument: value})


def test_optimizer_schedules_and_task_models_refuse_non_finite_numbers():
    from keras_gpt1.tasks import GPT1TextClassifier
    from keras_gpt1.training import WarmupCosine
    from keras_gpt1.training.optimizers import create_optimizer
    from keras_gpt1.training.schedules import WarmupLinear

    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="`learning_rate` must be a finite number > 0"):
            create_optimizer(bad)
        with pytest.raises(ValueError, match="`weight_decay` must be a finite number >= 0"):
            create_optimizer(1e-3, weight_decay=bad)
        with pytest.raises(ValueError, match="`global_clipnorm` must be a finite number >= 0"):
            create_optimizer(1e-3, global_clipnorm=bad)
        with pytest.raises(ValueError, match="`peak_learning_rate` must be a finite number > 0"):
            WarmupLinear(bad, total_steps=10)
        with pytest.raises(ValueError, match="`peak_learning_rate` must be a finite number > 0"):
            WarmupCosine(bad, warmup_steps=1, total_steps=10)
    backbone = GPT1Backbone(**TINY_CONFIG)
    for argument in ("lm_weight", "dropout"):
        with pytest.raises(ValueError, match=f"`{argument}` must be a finite number"):
            GPT1TextClassifier(backbone, num_classes=2, **{argument: math.nan})
    create_optimizer(WarmupLinear(1e-3, total_steps=10), weight_decay=None, global_clipnorm=None)  # still fine


# === A diverged fine-tuning run stops and saves nothing ===


class _Poison(keras.callbacks.Callback):
    """Sets one kernel of the model to NaN after global batch `at` (1-based)."""

    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            kernel = self.model.backbone.transformer_layers[0].c_fc.kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


@pytest.mark.parametrize(
    "how, message",
    [
        # A NaN weight after batch 3: the loss of batch 4 (epoch 2 of 2 batches, its batch 2) is NaN.
        (dict(callbacks=[_Poison(3)]), r"loss became nan at step 4 of 6 \(epoch 2, batch 2\)"),
        # After the last batch: no loss sees it, the weights check does.
        (dict(callbacks=[_Poison(6)]), r"After 6 steps \(3 epochs\) the fine-tuned weight '.*c_fc/kernel'"),
        # A learning rate so high an update overflows the weights: the second (warmup starts at 0).
        (dict(learning_rate=1e38), r"loss became (nan|inf) at step 3 of 6 \(epoch 2, batch 1\)"),
    ],
)
def test_a_diverged_finetune_stops_and_leaves_the_earlier_model(small_run, tmp_path, how, message):
    import shutil

    preset, train, earlier = small_run
    output = tmp_path / "model"
    shutil.copytree(earlier, output)
    before = file_tree(output)
    with pytest.raises(FloatingPointError, match=message + r".*`output` '.*model' was left as it was"):
        finetune("classification", train, preset=preset, output=str(output), epochs=3, batch_size=4, verbose=0, **how)
    assert file_tree(output) == before


@pytest.mark.once
def test_a_diverged_finetune_command_exits_1_with_one_line(small_run, tmp_path, capsys):
    preset, train, _ = small_run
    output = tmp_path / "model"
    argv = ["finetune", "--task", "classification", "--train", train, "--model", preset, "--output", str(output)]
    assert main(argv + ["--batch-size", "4", "--epochs", "2", "--learning-rate", "1e38"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.match(
        r"keras-gpt1 finetune: error: The fine-tuning loss became (nan|inf) at step 3 of 4 \(epoch 2, batch 1\)", err
    )
    assert "Lower --learning-rate (or --lm-weight), or raise --warmup." in err
    assert not (output / "finetune.json").exists() and not (output / "model.weights.h5").exists()


@pytest.mark.once
def test_metadata_json_refuses_nan_naming_the_key(tmp_path):
    from keras_gpt1.utils.files import atomic_write_json

    path = tmp_path / "finetune.json"
    for obj, key in [
        ({"recipe": {"lm_weight": math.nan}}, r"recipe\.lm_weight \(nan\)"),
        ({"history": {"loss": [0.5, math.inf]}}, r"history\.loss\[1\] \(inf\)"),
        ([1.0, -math.inf], r"\[1\] \(-inf\)"),
    ]:
        with pytest.raises(ValueError, match=r"Cannot write '.*finetune\.json': " + key + " is not a finite number"):
            atomic_write_json(path, obj)
        assert not path.exists()


# === Labels are scalars, one class per value ===


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.once
@pytest.mark.parametrize(
    "label, message",
    [
        ('["neg"]', r"the label must be a string or a number; got a list \(\[\"neg\"\]\)"),
        ('{"name": "neg"}', r"the label must be a string or a number; got a dict"),
        ("true", r"the label must be a string or a number; got a bool \(true\)"),
        ("false", r"the label must be a string or a number; got a bool \(false\)"),
        ("null", r"the label \(column 'label'\) is null"),
        ("NaN", r"the label nan is a number that is not finite"),
        ("-Infinity", r"the label -inf is a number that is not finite"),
        ('"inf"', r"the label 'inf' is a number that is not finite"),
        ("1e999", r"the label inf is a number that is not finite"),
    ],
)
def test_a_jsonl_label_that_is_not_one_finite_scalar_is_refused_with_file_and_line(tmp_path, label, message):
    path = _write(tmp_path / "train.jsonl", '{"text": "a", "label": "pos"}\n\n{"text": "b", "label": %s}\n' % label)
    with pytest.raises(ValueError, match=r"train\.jsonl:3: " + message):
        read_task_file(path, "classification")


@pytest.mark.once
@pytest.mark.parametrize(
    "name, labels, classes, indices",
    [
        ("a.csv", ["1", "1.0", "0", "01", "1e0", "+1", " 1 "], ["0", "1"], [1, 1, 0, 1, 1, 1, 1]),
        ("b.tsv", ["0.5", ".5", "0.50", "5e-1", "2", "2.00"], ["0.5", "2"], [0, 0, 0, 0, 1, 1]),
        ("c.jsonl", [1, 1.0, "1", "1.0", 0, "0", -0.0], ["0", "1"], [1, 1, 1, 1, 0, 0, 0]),
        ("d.csv", ["-1", "-1.0", "007", "7"], ["-1", "7"], [0, 0, 1, 1]),
        # Text stays text, as written (stripped): no number is read from it.
        ("e.csv", ["1_000", "0x1", "pos", "1_000 "], ["0x1", "1_000", "pos"], [1, 0, 2, 1]),
    ],
)
def test_numeric_spellings_of_one_value_are_one_class(tmp_path, name, labels, classes, indices):
    import json

    if name.endswith(".jsonl"):
        body = "".join(json.dumps({"text": f"t{i}", "label": label}) + "\n" for i, label in enumerate(labels))
    else:
        sep = "\t" if name.endswith(".tsv") else ","
        body = f"text{sep}label\n" + "".join(f"t{i}{sep}{label}\n" for i, label in enumerate(labels))
    data = read_task_file(_write(tmp_path / name, body), "classification")
    assert data.label_names == classes and data.labels.tolist() == indices
    # Declared classes are read the same way, and a later file's spelling maps onto them.
    declared = read_task_file(_write(tmp_path / name, body), "classification", label_names=data.label_names)
    assert declared.labels.tolist() == indices


@pytest.mark.once
def test_declared_classes_are_scalars_and_distinct_values(tmp_path):
    path = _write(tmp_path / "t.csv", "text,label\na,1.0\nb,0\n")
    assert read_task_file(path, "classification", label_names=["0", "1"]).labels.tolist() == [1, 0]
    assert read_task_file(path, "classification", label_names=[np.int64(1), 0.0]).labels.tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"Declared classes \['1', '1.0'\] contain duplicates"):
        read_task_file(path, "classification", label_names=["1", "1.0"])
    with pytest.raises(ValueError, match=r"A declared class must be a string or a number; got a list"):
        read_task_file(path, "classification", label_names=[["0"], "1"])


@pytest.mark.once
@pytest.mark.parametrize(
    "label, message",
    [
        ("nan", r"the label 'nan' is not a finite number"),
        ("Infinity", r"the label 'Infinity' is not a finite number"),
        ("1e999", r"the label '1e999' is not a finite number"),
        ("high", r"a regression label must be a number; got 'high'"),
        ("1_0", r"a regression label must be a number; got '1_0'"),
    ],
)
def test_regression_labels_must_be_finite_numbers(tmp_path, label, message):
    path = _write(tmp_path / "sts.csv", f"first,second,label\na,b,1.5\nc,d,{label}\n")
    with pytest.raises(ValueError, match=r"sts\.csv:3: " + message):
        read_task_file(path, "similarity", regression=True)


@pytest.mark.once
@pytest.mark.parametrize("label", ["[2.5]", '{"score": 2.5}', "true", "NaN", "-Infinity"])
def test_regression_labels_in_jsonl_must_be_finite_scalars(tmp_path, label):
    path = _write(tmp_path / "sts.jsonl", '{"first": "a", "second": "b", "label": %s}\n' % label)
    with pytest.raises(
        ValueError, match=r"sts\.jsonl:1: (a regression label must be a number|the label .* is not a finite)"
    ):
        read_task_file(path, "similarity", regression=True)


# === LoRA rank ===


@pytest.mark.once
@pytest.mark.parametrize("rank", ["33", "100000"])
def test_finetune_lora_rank_above_the_width_is_refused_naming_the_flag(small_run, tmp_path, capsys, rank):
    preset, _, _ = small_run
    train = str(tmp_path / "missing.csv")  # refused before the data is read
    argv = [
        "finetune",
        "--task",
        "classification",
        "--train",
        train,
        "--model",
        preset,
        "--output",
        str(tmp_path / "o"),
    ]
    assert main(argv + ["--lora-rank", rank]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert (
        f"error: --lora-rank ({rank}) must be at most 32, the model's hidden_dim: an adapted kernel is 32 x 96" in err
    )
    assert not (tmp_path / "o" / "finetune.json").exists()


@pytest.mark.once
@pytest.mark.parametrize("rank", ["0", "-3"])
def test_finetune_lora_rank_below_one_is_refused(small_run, tmp_path, capsys, rank):
    preset, train, _ = small_run
    argv = [
        "finetune",
        "--task",
        "classification",
        "--train",
        train,
        "--model",
        preset,
        "--output",
        str(tmp_path / "o"),
    ]
    assert main(argv + ["--lora-rank", rank]) == 2
    assert "error: --lora-rank must be an integer >= 1" in capsys.readouterr().err


def test_enable_lora_rank_is_bounded_by_the_adapted_kernels():
    backbone = GPT1Backbone(**TINY_CONFIG)  # hidden 32: c_attn 32 x 96, c_fc 32 x 64, c_proj 64 x 32
    for rank, targets in [(33, None), (100000, None), (33, ["c_fc"]), (33, ["c_attn", "c_fc"])]:
        with pytest.raises(ValueError, match=r"`rank` \(\d+\) must be at most 32: an adapted kernel is 32 x \d+"):
            backbone.enable_lora(rank, target_layer_names=targets)
    assert not any(getattr(layer, "lora_enabled", False) for layer in backbone._flatten_layers())
    backbone.enable_lora(32)  # the width itself is a valid rank
    assert backbone.transformer_layers[0].attention.c_attn.lora_rank == 32


# === A quantized preset ===


def test_a_quantized_preset_is_refused_before_anything_is_built(small_run, tmp_path):
    """A quantized preset has no float weights to train: `finetune` names it, instead of comparing
    its int8 tensors with a float model's."""
    from keras_gpt1.models import GPT1CausalLM

    preset, train, _ = small_run
    lm = GPT1CausalLM.from_preset(preset)
    lm.quantize("int8")
    lm.save_to_preset(str(tmp_path / "quantized"))
    with pytest.raises(
        ValueError, match=r"is quantized \(config.json `dtype`\); training and conversion need float weights"
    ):
        finetune("classification", train, preset=str(tmp_path / "quantized"), output=str(tmp_path / "out"), verbose=0)
    assert not (tmp_path / "out").exists()
