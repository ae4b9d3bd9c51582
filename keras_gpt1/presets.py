"""The preset directory layout (KerasHub's), and the built-in architecture presets.

A preset directory holds:

    config.json                 {"registered_name": "keras_gpt1>GPT1Backbone", "config": {...}}
    model.weights.h5            backbone weights
    task.json, task.weights.h5  only for task models (classifier, multiple choice, ...)
    tokenizer.json              {"registered_name": "keras_gpt1>GPT1Tokenizer", "config": {...}}
    assets/tokenizer/vocab.json, assets/tokenizer/merges.txt   (Hugging Face format)
    manifest.json               size and SHA-256 of the binary files above (not the JSON
                                configs), checked by every loader before it reads them

Built-in names describe architectures. One also names published weights (`"weights"`, a
Hugging Face handle): `from_preset("gpt1")` loads OpenAI's GPT-1, fetched and converted once by
`keras_gpt1.hub`; `from_preset("gpt1", load_weights=False)` is the 117M architecture randomly
initialised. `gpt1_tiny` has no published weights: it is always a small random model.
"""

from keras_gpt1.utils.manifest import MANIFEST_FILE

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
TASK_CONFIG_FILE = "task.json"
TASK_WEIGHTS_FILE = "task.weights.h5"
TOKENIZER_CONFIG_FILE = "tokenizer.json"
TOKENIZER_ASSETS_DIR = "assets/tokenizer"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
# What `finetune` records beside a task preset (task, columns, metrics), read by `evaluate` and the export.
FINETUNE_FILE = "finetune.json"
# The binary files of a preset, which its manifest lists: the backbone's weights (one file or
# shards), the tokenizer's assets, a task head's weights.
WEIGHTS_PATTERNS = (WEIGHTS_FILE, "model_*.weights.h5")
TOKENIZER_ASSET_FILES = tuple(f"{TOKENIZER_ASSETS_DIR}/{name}" for name in (VOCAB_FILE, MERGES_FILE))

# What a preset directory's model consists of (glob patterns, top-level entries), as KerasHub's
# saver and `finetune` write it: replacing a model replaces these, and any other file in the
# directory (a README, notes) stays.
PRESET_ENTRIES = (
    CONFIG_FILE,
    "metadata.json",
    WEIGHTS_FILE,
    "model.weights.json",
    "model_*.weights.h5",
    TASK_CONFIG_FILE,
    TASK_WEIGHTS_FILE,
    TOKENIZER_CONFIG_FILE,
    "preprocessor.json",
    "assets",
    "finetune.json",
    MANIFEST_FILE,
)

# Base vocabulary of the original release: 40,000 merges + 478 base symbols.
GPT1_BASE_VOCABULARY_SIZE = 40478

BUILTIN_PRESETS = {
    "gpt1": {
        "description": "OpenAI's pretrained GPT-1 (117M), from the Hugging Face Hub; "
        "load_weights=False gives the architecture with random weights.",
        "weights": "hf://openai-community/openai-gpt",
        "config": {
            "vocabulary_size": GPT1_BASE_VOCABULARY_SIZE,
            "num_layers": 12,
            "num_heads": 12,
            "hidden_dim": 768,
            "intermediate_dim": 3072,
            "max_sequence_length": 512,
            "dropout": 0.1,
        },
    },
    "gpt1_tiny": {
        "description": "2 layers, hidden 64, random weights (no pretrained weights exist): "
        "for tests, demos and CPU experiments.",
        "config": {
            "vocabulary_size": 1024,
            "num_layers": 2,
            "num_heads": 2,
            "hidden_dim": 64,
            "intermediate_dim": 256,
            "max_sequence_length": 128,
            "dropout": 0.1,
        },
    },
}


def earlier_format_error(path):
    """The error for a preset file (`config.json`, `tokenizer.json`) keras_gpt1 wrote before its
    presets were KerasHub's: `{"module": "keras_gpt1", "class_name": ..., "config": {...}}`
    without a `registered_name`. No loader reads that format, so the error says how to convert.

    Example:
    ```python
    str(earlier_format_error("old/config.json"))   # "'old/config.json' is in the format ..."
    ```
    """
    return ValueError(
        f"{path!r} is in the format keras_gpt1 wrote before its presets were KerasHub's (no "
        '"registered_name"), which it no longer reads. Re-run `keras-gpt1 convert` on the original '
        "checkpoint, or rebuild the preset in Python from its config and files and `save_to_preset` it "
        '(docs/keras_hub.md, "Presets in the earlier format", shows how).'
    )
