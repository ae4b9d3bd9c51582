"""What an output folder holds, and whether a command may write its own artifact there.

Each writing command accepts the folders it can add to or continue (`pretrain`: a run of its
own; `finetune`: a fine-tuned model; `export`: SavedModel exports; `train-tokenizer`: a
tokenizer), and refuses a folder holding anything else this library or Hugging Face writes,
naming what is there. The commands that replace models replace another kind only on request
(`overwrite=True`, `--overwrite`; for `pretrain`, `resume=False`, `--restart`), and then the old
artifact goes as a whole (`MODEL_ENTRIES`): nothing of it stays beside the new model to mix with
it (a classifier's `finetune.json` beside a pretrained model made `evaluate` misread the folder).
SavedModel exports and models never replace each other: they are different trees.
"""

import json
import os

from keras_gpt1 import presets

SAVED_MODEL = "a SavedModel"
EXPORT_BASE = "SavedModel exports"
RUN = "a pretraining run"
FINETUNED = "a fine-tuned task model"
PRESET = "a model"
HUGGING_FACE = "a Hugging Face model"
ORIGINAL = "an original-release checkpoint"
TOKENIZER = "a tokenizer"

# Kinds no model-writing command ever deletes, whatever the flags (and `export` writes only
# beside these).
EXPORTS = (SAVED_MODEL, EXPORT_BASE)

# A pretraining run's own entries besides its preset (`keras_gpt1.workflows.pretraining`).
RUN_ENTRIES = ("run.json", "checkpoints", "logs", "loss_curve.png")
# Hugging Face model files (`keras_gpt1.convert.hf.HF_ENTRIES`) and the original release's.
HUGGING_FACE_ENTRIES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*.safetensors",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "pytorch_model-*.bin",
    "generation_config.json",
    presets.VOCAB_FILE,
    presets.MERGES_FILE,
    "tokenizer_config.json",
    "special_tokens_map.json",
)
ORIGINAL_ENTRIES = ("params_shapes.json", "params_*.npy", "encoder_bpe_40000.json", "vocab_40000.bpe")
# Every file of every model kind: what a replacing write removes (glob patterns, top level).
MODEL_ENTRIES = presets.PRESET_ENTRIES + RUN_ENTRIES + HUGGING_FACE_ENTRIES + ORIGINAL_ENTRIES


def artifact_kind(directory):
    """`(kind, evidence)`: what `directory` holds (one of this module's kinds) and the entry that
    shows it, or `(None, None)` for a missing or empty folder or one of unrelated files.

    Example:
    ```python
    artifact_kind("runs/a")        # ("a pretraining run", "run.json")
    artifact_kind("sst2_model")    # ("a fine-tuned task model", "finetune.json")
    ```
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return None, None
    names = set(os.listdir(directory))

    def isdir(name):
        return name in names and os.path.isdir(os.path.join(directory, name))

    if "saved_model.pb" in names:
        return SAVED_MODEL, "saved_model.pb"
    for name in sorted(names):
        if name.isdigit() and os.path.isfile(os.path.join(directory, name, "saved_model.pb")):
            return EXPORT_BASE, os.path.join(name, "saved_model.pb")
    if "run.json" in names:
        return RUN, "run.json"
    if isdir("checkpoints"):
        return RUN, "checkpoints"
    for name in ("finetune.json", presets.TASK_WEIGHTS_FILE):
        if name in names:
            return FINETUNED, name
    if presets.CONFIG_FILE in names:
        return _config_kind(os.path.join(directory, presets.CONFIG_FILE)), presets.CONFIG_FILE
    if presets.WEIGHTS_FILE in names:
        return PRESET, presets.WEIGHTS_FILE
    for name in ("model.safetensors", "pytorch_model.bin"):
        if name in names:
            return HUGGING_FACE, name
    if "params_shapes.json" in names:
        return ORIGINAL, "params_shapes.json"
    for name in (presets.TOKENIZER_CONFIG_FILE, presets.VOCAB_FILE, presets.MERGES_FILE):
        if name in names:
            return TOKENIZER, name
    return None, None


def _config_kind(path):
    """A KerasHub preset's `config.json` names its class; a Hugging Face one does not."""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return PRESET  # unreadable: still a model's file, never silently replaced
    return PRESET if isinstance(config, dict) and "class_name" in config else HUGGING_FACE


def check_output_artifact(directory, accepted, replace_flag=None, replace=False, what="Output directory"):
    """`(kind, evidence)` of `directory` (see `artifact_kind`) if the command may write there:
    the kind is None or in `accepted`, or `replace` is set (`replace_flag` names it, e.g.
    `` `overwrite=True` ``) and the kind is a model's, not an export. Otherwise a ValueError names
    what the folder holds and, where there is one, the flag that allows replacing it.

    Example:
    ```python
    check_output_artifact("runs/a", accepted=(RUN,), replace_flag="`resume=False`")
    ```
    """
    kind, evidence = artifact_kind(directory)
    if kind is None or kind in accepted:
        return kind, evidence
    if kind in EXPORTS or replace_flag is None:
        raise ValueError(
            f"{what} {os.fspath(directory)!r} already holds {kind} ({evidence}), which this command never "
            "replaces; pick another directory."
        )
    if not replace:
        raise ValueError(
            f"{what} {os.fspath(directory)!r} already holds {kind} ({evidence}). Pick another directory, or "
            f"pass {replace_flag} to replace it (all of its model files are deleted)."
        )
    return kind, evidence
