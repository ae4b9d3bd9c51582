"""The paper's fine-tuning recipe as two functions: `finetune` (files → trained task preset) and
`evaluate` (task preset + file → GLUE metrics). Needs TensorFlow (tokenizer and tf.data); the
model itself trains on whichever Keras backend is active.

Recipe defaults (all overridable): learning rate 6.25e-5, batch 32, 3 epochs, linear warmup over
0.2 % of the updates then linear decay to 0 (`WarmupLinear`), Adam with decoupled weight decay
0.01 on matrices and global-norm clipping 1.0 (`create_optimizer`), classifier dropout 0.1, and
the auxiliary LM loss with λ = 0.5. The context length defaults, as in the original code, to the
longest packed training example, capped at the model's context.

A fine-tuned directory is a KerasHub task preset (`keras_hub.models.TextClassifier.from_preset`,
or the family's own class, loads it, preprocessor included) plus `finetune.json`, which records what `evaluate` needs to read new files the same way: the task,
column mapping, classes, context length, and the run's settings, history and validation metrics.
"""

import dataclasses
import math
import os

from keras_gpt1 import presets
from keras_gpt1.tasks import data as task_data
from keras_gpt1.tasks.registry import get_family
from keras_gpt1.utils.checks import check_integer, check_number
from keras_gpt1.utils import artifacts
from keras_gpt1.utils.files import (
    atomic_write_json,
    check_free_space,
    check_writable_dir,
    estimated_weights_file_bytes,
    read_json,
    replace_in_dir,
)
from keras_gpt1.utils.locks import holding_output
from keras_gpt1.utils.precision import TRAINING_PRECISIONS, check_precision, resolve_precision

RECIPE = {
    "learning_rate": 6.25e-5,
    "batch_size": 32,
    "epochs": 3,
    "warmup_fraction": 0.002,
    "weight_decay": 0.01,
    "dropout": 0.1,
    "lm_weight": 0.5,
}


@dataclasses.dataclass
class FinetuneResult:
    """What `finetune` returns.

    Attributes:
        model: the trained `GPT1TextClassifier` / `GPT1Similarity` / `GPT1MultipleChoice`.
        history: `model.fit`'s history (`loss`, `task_loss`, `lm_loss`, ...) per epoch.
        metrics: the validation set's GLUE metrics (None without validation data).
        sequence_length: the packed context length used.
        label_names: the classes in index order (None for regression and multiple choice).
        output: the preset directory written (None if not saved).
    """

    model: object
    history: dict
    metrics: object
    sequence_length: int
    label_names: object
    output: object = None


def _check_batch_size(batch_size):
    """`batch_size` as an int: positive, and (under a `keras.distribution`) a multiple of the
    data-parallel devices."""
    batch_size = check_integer("batch_size", batch_size, 1)
    from keras_gpt1.data import lm_dataset

    lm_dataset.check_data_parallel_batch(batch_size)
    return batch_size


def _load_tokenizer(preset, tokenizer):
    from keras_gpt1.models import preset_io

    tokenizer = tokenizer or preset_io.load_tokenizer(preset)
    if tokenizer is None:
        raise ValueError(
            f"Preset {preset!r} has no tokenizer ({'a built-in name' if not preset_io.is_preset_dir(preset) else 'no tokenizer.json'}): "
            "fine-tuning needs one. Use a preset saved with its tokenizer (from `keras-gpt1 "
            "pretrain` or `keras-gpt1 convert`), or pass `tokenizer=` from Python."
        )
    return tokenizer


# `output` is locked from the first check to the last write: a second writer into it is refused at
# once, naming this one. An existing file or an unwritable place is named before anything is made.
@holding_output("output", "finetune", before=check_writable_dir)
def finetune(
    task,
    train,
    validation=None,
    preset="gpt1",
    output=None,
    columns=None,
    label_names=None,
    regression=False,
    lm_weight=RECIPE["lm_weight"],
    learning_rate=RECIPE["learning_rate"],
    batch_size=RECIPE["batch_size"],
    epochs=RECIPE["epochs"],
    warmup_fraction=RECIPE["warmup_fraction"],
    weight_decay=RECIPE["weight_decay"],
    dropout=RECIPE["dropout"],
    sequence_length=None,
    seed=0,
    tokenizer=None,
    callbacks=None,
    verbose="auto",
    lora_rank=None,
    precision="auto",
    overwrite=False,
):
    """Fine-tunes a pretrained preset on a task file with the paper's recipe.

    Args:
        task: `"classification"`, `"entailment"`, `"similarity"` or `"multiple-choice"`.
        train, validation: `.csv` / `.tsv` / `.jsonl` files (see `keras_gpt1.tasks.data`).
        preset: a preset directory with a tokenizer (pretrained or converted). Missing rows for
            the start, delimiter and extract tokens are added, drawn N(0, 0.02).
        output: directory to save the fine-tuned task preset and `finetune.json` (None: don't).
        columns: role → column mapping (e.g. `{"text": "sentence"}`).
        label_names: the declared classes in index order (default: the training file's sorted
            distinct labels).
        regression: similarity only: predict a number (STS-B) instead of classes.
        lm_weight: λ of the auxiliary LM loss (0 turns it off).
        learning_rate, batch_size, epochs, warmup_fraction, weight_decay, dropout: the recipe.
            Under a `keras.distribution`, `batch_size` must be a multiple of the data-parallel
            devices, and a partial last batch is padded with zero-weight rows (`make_dataset`).
        sequence_length: packed length (default: the longest packed training example, capped
            at the model's context; longer inputs are truncated evenly per segment).
        seed: seeds weight init of the head and new rows, dropout and shuffling (0 by default,
            as pretraining, so a run repeats itself and the CLI gives what Python gives; None
            leaves the random state as it is).
        tokenizer: a `GPT1Tokenizer`, if the preset has none.
        callbacks: extra Keras callbacks for `fit`.
        verbose: `fit`'s verbosity.
        lora_rank: if set, train only rank-`lora_rank` LoRA adapters (on each block's `c_attn`,
            `GPT1Backbone.enable_lora`) and the task head; the rest of the backbone, the token
            embedding included, stays as pretrained. The saved preset holds the adapters merged
            into the kernels (Keras merges them when saving weights), so it loads, evaluates and
            exports as any other. Adapters usually want a higher learning rate than full
            fine-tuning (e.g. 1e-3).
        precision: `"auto"` (`mixed_bfloat16` where it was measured faster: a wide model on
            TensorFlow or PyTorch on a CPU with native bfloat16; else float32, see
            `keras_gpt1.utils.precision`), `"float32"` or `"mixed_bfloat16"`.
        overwrite: let `output` be a folder holding another kind of model (a pretraining run, a
            converted preset, a Hugging Face model, a tokenizer), deleted as a whole when the new
            model is written. An earlier fine-tuned model there is replaced without it; SavedModel
            exports never are. A second writer into `output` is refused while this one runs.

    Returns:
        A `FinetuneResult`.

    Example:
    ```python
    result = finetune("classification", "train.csv", "dev.csv", preset="my_pretrained",
                      output="sst2_model", columns={"text": "sentence"})
    result.metrics   # {'accuracy': ..., 'f1': ..., 'mcc': ...}
    ```
    """
    import keras

    from keras_gpt1.training.callbacks import StopOnNaN
    from keras_gpt1.training.optimizers import create_optimizer
    from keras_gpt1.training.schedules import WarmupLinear

    family = get_family(task)
    batch_size = _check_batch_size(batch_size)
    epochs = check_integer("epochs", epochs, 1)
    recipe = _check_recipe_numbers(lm_weight, learning_rate, warmup_fraction, weight_decay, dropout)
    lm_weight, learning_rate, warmup_fraction, weight_decay, dropout = recipe
    if lora_rank is not None:
        lora_rank = check_integer("lora_rank", lora_rank, 1)
    check_precision(precision, TRAINING_PRECISIONS)
    if output is not None:  # writable: checked by `holding_output` before it took the lock
        artifacts.check_output_artifact(output, (artifacts.FINETUNED,), "`overwrite=True`", overwrite)
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    from keras_gpt1.models import preset_io

    # "gpt1" / hf:// handles become the cached pretrained preset (downloaded the first time).
    preset = preset_io.resolve_preset(preset)
    backbone_config = preset_io.load_backbone_config(preset)  # an unknown preset fails here
    if lora_rank is not None:
        from keras_gpt1.models.lora import check_lora_rank

        # Before the data is read: the default target, each block's c_attn, is `hidden_dim` x 3 `hidden_dim`.
        width = int(backbone_config["hidden_dim"])
        check_lora_rank(lora_rank, [(width, 3 * width)], name="lora_rank", limit_name="the model's hidden_dim")
    # Data files are read and checked before anything heavy is built.
    train_data = task_data.read_task_file(train, task, columns, label_names, regression)
    validation_data = None
    if validation is not None:
        validation_data = task_data.read_task_file(validation, task, columns, train_data.label_names, regression)

    tokenizer = _load_tokenizer(preset, tokenizer)
    context = int(backbone_config["max_sequence_length"])
    if sequence_length is None:
        sequence_length = min(family.packed_length(tokenizer, train_data.texts), context)
    elif check_integer("sequence_length", sequence_length, 1) > context:
        raise ValueError(
            f"`sequence_length` {sequence_length} is longer than the model's context of {context} positions."
        )
    preprocessor = family.make_preprocessor(tokenizer, sequence_length)

    # The precision it trains in, whatever its preset was saved in (as `pretrain` does).
    policy = resolve_precision(precision, backbone_config.get("hidden_dim"))
    num_classes = len(train_data.label_names) if train_data.label_names else None
    model = family.task_class.from_preset(
        preset,
        preprocessor=preprocessor,
        dropout=dropout,
        lm_weight=lm_weight,
        dtype=policy,
        **family.model_kwargs(num_classes, regression),
    )
    if lora_rank is not None:
        model.backbone.enable_lora(lora_rank)  # freezes the backbone; the head stays trainable
    if output is not None:
        # Before training, not after: a model that cannot be saved is not worth the hours.
        check_free_space(output, estimated_weights_file_bytes(model.weights), "fine-tuned model")

    steps_per_epoch = math.ceil(len(train_data) / batch_size)
    schedule = WarmupLinear(learning_rate, total_steps=steps_per_epoch * epochs, warmup_fraction=warmup_fraction)
    model.compile(optimizer=create_optimizer(learning_rate=schedule, weight_decay=weight_decay))

    train_ds = task_data.make_dataset(train_data, preprocessor, batch_size, shuffle=True, seed=seed)
    nan_guard = StopOnNaN()  # first, so that no later callback sees a diverged batch as normal
    history = model.fit(train_ds, epochs=epochs, callbacks=[nan_guard, *(callbacks or ())], verbose=verbose)
    history = {k: [float(v) for v in values] for k, values in history.history.items()}
    # A diverged run is never scored or saved: an earlier model in `output` stays as it was.
    _check_finite_training(model, nan_guard, steps_per_epoch, epochs, output)

    metrics = None
    if validation_data is not None:
        metrics = _score(model, validation_data, batch_size, regression)

    if output is not None:
        # An earlier model in `output` is replaced only once the new one is completely written.
        # Every file of whatever model was there goes (`artifacts.MODEL_ENTRIES`): none is left to
        # mix with this one.
        needed = estimated_weights_file_bytes(model.weights)
        with replace_in_dir(output, artifacts.MODEL_ENTRIES, "fine-tuned model", needed) as staging:
            model.save_to_preset(staging)
            atomic_write_json(
                os.path.join(staging, presets.FINETUNE_FILE),
                {
                    "task": task,
                    "columns": task_data._merge_columns(task, columns),
                    "label_names": train_data.label_names,
                    "regression": bool(regression),
                    "num_choices": train_data.num_choices,
                    "sequence_length": sequence_length,
                    "recipe": {
                        "preset": os.fspath(preset),
                        "learning_rate": learning_rate,
                        "batch_size": batch_size,
                        "epochs": epochs,
                        "warmup_fraction": warmup_fraction,
                        "weight_decay": weight_decay,
                        "dropout": dropout,
                        "lm_weight": lm_weight,
                        "lora_rank": lora_rank,
                        "precision": policy,
                        "seed": seed,
                        "train": os.fspath(train),
                        "validation": None if validation is None else os.fspath(validation),
                    },
                    "history": history,
                    "validation_metrics": metrics,
                },
            )
    return FinetuneResult(model, history, metrics, sequence_length, train_data.label_names, output)


def _check_recipe_numbers(lm_weight, learning_rate, warmup_fraction, weight_decay, dropout):
    """The recipe's float settings as finite floats in their ranges, checked before any file is
    read: NaN or infinity would train a NaN model (`lm_weight=inf`) or silently drop a loss term."""
    return (
        check_number("lm_weight", lm_weight, 0),
        check_number("learning_rate", learning_rate, 0, low_open=True),
        check_number("warmup_fraction", warmup_fraction, 0, 1, high_open=True),
        check_number("weight_decay", weight_decay, 0),
        check_number("dropout", dropout, 0, 1, high_open=True),
    )


def _check_finite_training(model, nan_guard, steps_per_epoch, epochs, output):
    """Raises a `FloatingPointError` naming the step and epoch if the training loss became NaN or
    infinite (`nan_guard`, a `StopOnNaN`, stopped `fit` there), or if a trained weight is not
    finite after all (the last update can break the weights after the last loss was logged)."""
    import numpy as np
    from keras import ops

    kept = f"`output` {os.fspath(output)!r} was left as it was" if output is not None else "nothing was saved"
    advice = "Lower `learning_rate` (or `lm_weight`), or raise `warmup_fraction`."
    if nan_guard.bad_step is not None:
        epoch, batch = divmod(nan_guard.bad_step - 1, steps_per_epoch)
        raise FloatingPointError(
            f"The fine-tuning loss became {nan_guard.bad_value} at step {nan_guard.bad_step} of "
            f"{steps_per_epoch * epochs} (epoch {epoch + 1}, batch {batch + 1}); training stopped and {kept}. {advice}"
        )
    for variable in model.trainable_variables:
        if not np.isfinite(ops.convert_to_numpy(variable)).all():
            raise FloatingPointError(
                f"After {steps_per_epoch * epochs} steps ({epochs} epochs) the fine-tuned weight "
                f"{variable.path!r} holds NaN or infinite values; {kept}. {advice}"
            )


def _score(model, data, batch_size, regression):
    import numpy as np

    predictions = model.predict(task_data.make_dataset(data, model.preprocessor, batch_size), verbose=0)
    # Under a keras.distribution the last batch is padded with dummy rows: their predictions
    # come last and are dropped, so they never reach the metrics.
    predictions = np.asarray(predictions)[: len(data)]
    return get_family(data.task).metrics(data.labels, predictions, regression=regression)


def evaluate(model_dir, data, columns=None, batch_size=RECIPE["batch_size"]):
    """The GLUE metrics of a fine-tuned directory (written by `finetune`) on a labelled file.

    The file is read with the training run's column mapping (unless `columns` overrides it),
    classes and context length.

    Example:
    ```python
    evaluate("sst2_model", "dev.csv")   # {'accuracy': 0.91, 'f1': 0.91, 'mcc': 0.82}
    ```
    """
    batch_size = _check_batch_size(batch_size)
    info_path = os.path.join(os.fspath(model_dir), presets.FINETUNE_FILE)
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"Model directory {os.fspath(model_dir)!r} does not exist.")
    info = read_json(info_path, "fine-tuning record (written by `keras-gpt1 finetune`)")
    try:
        family = get_family(info["task"])
        saved_columns = info["columns"]
        regression = bool(info.get("regression", False))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"Corrupt fine-tuning record {info_path!r}: {e}.") from None
    merged = dict(saved_columns)
    merged.update(columns or {})
    # Multiple choice: any number of candidates (the same in every row of the file).
    examples = task_data.read_task_file(data, family.name, merged, info.get("label_names"), regression)
    _check_holds_task_model(model_dir, info_path)
    # The saved preprocessor packs as in training (its sequence length is the run's).
    model = family.task_class.from_preset(os.fspath(model_dir))
    if model.preprocessor is None:
        raise ValueError(f"{os.fspath(model_dir)!r} has no tokenizer (tokenizer.json); cannot read text.")
    return _score(model, examples, batch_size, regression)


def _check_holds_task_model(model_dir, info_path):
    """Raises unless `model_dir`'s `task.json` is a fine-tuned task's: a `finetune.json` beside a
    causal LM's (another command wrote its model into the folder) would otherwise load a fresh,
    untrained head and score it."""
    from keras_gpt1.models import preset_io

    if preset_io.holds_task_model(os.fspath(model_dir)):
        return
    task_path = os.path.join(os.fspath(model_dir), presets.TASK_CONFIG_FILE)
    found = (
        f"its {presets.TASK_CONFIG_FILE} holds a causal language model, not a fine-tuned task"
        if os.path.isfile(task_path)
        else f"it has no {presets.TASK_CONFIG_FILE} (the task head's config)"
    )
    raise ValueError(
        f"{os.fspath(model_dir)!r} has a fine-tuning record ({info_path!r}) but {found}: the folder mixes "
        "two models. Fine-tune into it again (`keras-gpt1 finetune --overwrite`, or `overwrite=True` from "
        "Python), or pick the fine-tuned model's own folder."
    )
