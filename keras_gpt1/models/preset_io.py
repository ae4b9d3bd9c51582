"""Preset directories: checking them before KerasHub's loader reads them, and the names it cannot.

Presets are written by KerasHub's own saver (`save_to_preset` on the backbone, the causal LM,
the tokenizer), so `keras_hub.models.Backbone.from_preset(dir)` and friends load them. Built-in
names (`"gpt1"`, `"gpt1_tiny"`, in `keras_gpt1.presets`) are ours to read, as architectures (a
name with published weights reaches here only with `load_weights=False`). Anything else a
loader would fail on deep inside KerasHub (an unknown name, a Hugging Face `config.json`, one in
the format keras_gpt1 wrote before its presets were KerasHub's) is refused here, naming the
file and what to do.

`resolve_preset` is the one door through which every `from_preset` passes: it turns a name that
means *pretrained weights* (`"gpt1"`, `"hf://owner/name"`) into a local preset directory, fetched
and converted by `keras_gpt1.hub` (in the models' layer: loading a model by name is its job), and
leaves everything else as it is.
"""

import fnmatch
import json
import os

import keras
import numpy as np

from keras_gpt1 import presets
from keras_gpt1.tokenizers import check_tokenizer_config
from keras_gpt1.utils import manifest
from keras_gpt1.utils.checks import (
    check_fits_in_memory,
    check_preset_config,
    check_weight_shapes,
    is_integer,
    read_weight_shapes,
)
from keras_gpt1.utils.files import read_json, require_file

BACKBONE_CLASS_NAME = "GPT1Backbone"
HF_PREFIX = "hf://"


def resolve_preset(preset, load_weights=True):
    """The local preset that `preset` names: what every `from_preset` loads.

    - A built-in name with published weights (`"gpt1"`) and `load_weights=True` means those
      weights: they are fetched like the `hf://` handle the name stands for.
    - `"hf://owner/name"`: an `OpenAIGPTLMHeadModel` repository on the Hugging Face Hub,
      downloaded and converted once, then read from the cache (see `keras_gpt1.hub`). With
      `load_weights=False` only its architecture is fetched.
    - Anything else (a directory, `"gpt1_tiny"`, `"gpt1"` with `load_weights=False`, which is
      the built-in architecture with random weights) is returned unchanged.

    Example:
    ```python
    resolve_preset("gpt1", load_weights=False)   # "gpt1": the 117M architecture, nothing fetched
    resolve_preset("presets/mine")               # "presets/mine"
    ```
    """
    if not isinstance(preset, str):
        return preset
    builtin = presets.BUILTIN_PRESETS.get(preset)
    if builtin is not None:
        if not load_weights or "weights" not in builtin:
            return preset
        preset = builtin["weights"]
    if not preset.startswith(HF_PREFIX):
        return preset
    repo_id = preset[len(HF_PREFIX) :]
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"Malformed Hugging Face handle {preset!r}: expected 'hf://owner/name'.")
    from keras_gpt1.hub import fetch_preset  # huggingface_hub and the converter: only to fetch

    return fetch_preset(repo_id, load_weights)


def as_preset(preset):
    """`preset` as KerasHub's loaders take it: a `pathlib.Path` becomes a string."""
    return os.fspath(preset) if isinstance(preset, os.PathLike) else preset


def is_preset_dir(preset):
    return isinstance(preset, (str, os.PathLike)) and os.path.isdir(preset)


def _read_config(preset):
    return read_json(os.path.join(preset, presets.CONFIG_FILE), "preset config")


def is_builtin(preset):
    return isinstance(preset, str) and preset in presets.BUILTIN_PRESETS


def is_remote(preset):
    """True for a handle KerasHub's loader downloads (`kaggle://`, ...); `hf://` names are
    resolved to a local directory before this is asked."""
    return isinstance(preset, str) and "://" in preset


def check_preset_class(preset, expected_cls):
    """Refuses a preset that is not a KerasHub preset of `expected_cls` (or a subclass), naming
    the file: an unknown name; a directory whose `config.json` is missing, corrupt, a Hugging
    Face config (convert it) or in the format keras_gpt1 wrote before its presets were KerasHub's
    (`keras_gpt1.presets.earlier_format_error`); a preset of another class, naming both (a Gemma
    preset given to `GPT1Backbone`, say). Built-in names are not presets: the caller reads them."""
    if is_remote(preset):
        return  # KerasHub's loader checks the class once downloaded.
    if not is_preset_dir(preset):
        raise ValueError(
            f"Unknown preset {preset!r}: not a directory, not a remote handle (hf://, kaggle://), "
            f"and not a built-in preset (one of {sorted(presets.BUILTIN_PRESETS)})."
        )
    path = os.path.join(preset, presets.CONFIG_FILE)
    data = read_json(path, "preset config")
    if not isinstance(data, dict) or "registered_name" not in data:
        _refuse_other_format(path, data, expected_cls.__name__)
    name = data["registered_name"]
    found = keras.saving.get_registered_object(name) if name else None
    if found is None or not (isinstance(found, type) and issubclass(found, expected_cls)):
        shown = found.__name__ if isinstance(found, type) else (name or data.get("class_name"))
        raise ValueError(
            f"Preset {os.fspath(preset)!r} holds a {shown} ({presets.CONFIG_FILE} registered name "
            f"{name!r}), not a {expected_cls.__name__}. Load it with its own class, e.g. "
            f"`keras_hub.models.Backbone.from_preset(...)`."
        )


def _refuse_other_format(path, data, class_name):
    """The error for a `config.json` (parsed as `data`) without a Keras `registered_name`."""
    if isinstance(data, dict) and "class_name" not in data and "model_type" in data:
        raise ValueError(
            f"Preset config {path!r} describes a Hugging Face {data['model_type']!r} model, not a "
            f"{class_name}. Convert a Hugging Face checkpoint with `keras-gpt1 convert`."
        )
    if isinstance(data, dict) and data.get("class_name") == class_name:
        raise presets.earlier_format_error(path)
    raise ValueError(
        f"Corrupt preset config {path!r}: expected KerasHub's "
        f'{{"registered_name": ..., "config": {{...}}}} of a {class_name}.'
    )


def check_saved_config(preset):
    """Refuses a local KerasHub preset whose `config.json` holds a wrong type or value (a string
    where a size belongs, a zero size, a missing key, `"rematerialize": "yes"`), naming the file
    and the key, before Keras builds from it."""
    if is_preset_dir(preset):
        path = os.path.join(preset, presets.CONFIG_FILE)
        config = _read_config(preset).get("config")
        check_preset_config(config if isinstance(config, dict) else {}, path)


def check_saved_tokenizer_configs(preset):
    """Refuses a preset whose `tokenizer.json`, or the tokenizer config inside its
    `preprocessor.json`, holds a value the tokenizer would misread (`"standardize": "klingon"`),
    naming the file, the key and the allowed values. Both are checked: KerasHub's loader builds
    the tokenizer from `preprocessor.json` when there is one and never reads `tokenizer.json`, so
    an edit there would otherwise load silently and do nothing."""
    if not is_preset_dir(preset):
        return
    path = os.path.join(preset, presets.TOKENIZER_CONFIG_FILE)
    if os.path.isfile(path):
        data = read_json(path, "tokenizer config")
        if isinstance(data, dict) and isinstance(data.get("config"), dict):
            check_tokenizer_config(data["config"], path)
    path = os.path.join(preset, "preprocessor.json")
    if os.path.isfile(path):
        data = read_json(path, "preprocessor config")
        tokenizer = data.get("config", {}).get("tokenizer") if isinstance(data, dict) else None
        if isinstance(tokenizer, dict) and isinstance(tokenizer.get("config"), dict):
            check_tokenizer_config(tokenizer["config"], f"{path} (its tokenizer)")


def with_saved_dtype(preset, kwargs):
    """`kwargs` with the preset's saved dtype policy map when the caller gave no `dtype`.

    KerasHub's backbone loader replaces the saved dtype with the caller's (None by default),
    which would rebuild a quantized backbone unquantized and then fail to load its int8
    weights; a `DTypePolicyMap` must be kept as saved. Float policies follow KerasHub: the
    weights load into the current default policy.
    """
    if kwargs.get("dtype") is not None or not is_preset_dir(preset):
        return kwargs
    saved = _read_config(preset).get("config", {}).get("dtype")
    if isinstance(saved, dict) and "DTypePolicyMap" in str(saved.get("class_name")):
        return {**kwargs, "dtype": saved}
    return kwargs


def load_backbone_config(preset):
    """The backbone config (constructor arguments) of a built-in name or a preset directory,
    checked like `GPT1Backbone.from_preset` checks it; `dtype` is left out (it belongs to how a
    model is loaded, not its shape)."""
    preset = resolve_preset(as_preset(preset), load_weights=False)
    if is_builtin(preset):
        return dict(presets.BUILTIN_PRESETS[preset]["config"])
    if is_remote(preset):
        raise ValueError(
            f"Preset {preset!r} is a remote handle, whose config is read once it is downloaded: load it "
            "with `GPT1Backbone.from_preset(...)` and use a local copy written by `save_to_preset`."
        )
    from keras_gpt1.models.backbone import GPT1Backbone  # backbone.py imports this module

    check_preset_class(preset, GPT1Backbone)
    config = dict(_read_config(preset)["config"])
    # What builds a model from this config (pretrain, finetune, the conversion to Hugging Face)
    # builds float weights: a quantized preset (Keras's `Quantized*DTypePolicy`) is named here,
    # before its weights are compared with a float model's.
    if "Quantized" in json.dumps(config.get("dtype")):
        raise ValueError(
            f"Preset {os.fspath(preset)!r} is quantized ({presets.CONFIG_FILE} `dtype`); training and "
            "conversion need float weights: use the float preset it was made from, and quantize the result."
        )
    check_saved_config(preset)
    for key in ("name", "trainable", "dtype"):
        config.pop(key, None)
    return config


def backbone_config_json(config):
    """The `config.json` of a `GPT1Backbone` of `config` (constructor arguments), as KerasHub's
    saver writes it, without building the backbone (the 117M one would allocate its weights).

    Example:
    ```python
    backbone_config_json(presets.BUILTIN_PRESETS["gpt1"]["config"])["registered_name"]   # "keras_gpt1>GPT1Backbone"
    ```
    """
    return {
        "module": "keras_gpt1.models.backbone",
        "class_name": BACKBONE_CLASS_NAME,
        "config": dict(config),
        "registered_name": f"keras_gpt1>{BACKBONE_CLASS_NAME}",
    }


def saved_backbone_config(preset, overrides):
    """The constructor arguments a local KerasHub preset's `config.json` gives, with the
    caller's `overrides` (dtype included); None for a remote handle (nothing to read yet)."""
    if not is_preset_dir(preset):
        return None
    config = _read_config(preset).get("config")
    return {**(config if isinstance(config, dict) else {}), **overrides}


def has_single_weights_file(preset):
    """A local preset whose weights are one `model.weights.h5` (or none at all, an error the
    checked loader names), not KerasHub's sharded `model.weights.json` + shards."""
    return is_preset_dir(preset) and not os.path.exists(os.path.join(preset, "model.weights.json"))


def load_backbone_weights(backbone, preset_dir):
    path = require_file(os.path.join(preset_dir, presets.WEIGHTS_FILE), "preset weights")
    verify_preset_files(preset_dir, [presets.WEIGHTS_FILE])
    try:
        # Keras skips surplus tensors with only a warning; a preset must match exactly.
        check_weight_shapes(path, backbone.weights, presets.CONFIG_FILE)
        backbone.load_weights(path)
    except Exception as e:  # h5py and Keras raise many types; the user needs the file name.
        raise ValueError(f"Could not load preset weights {path!r}: {e}") from e


def has_tokenizer(preset):
    return is_preset_dir(preset) and os.path.exists(os.path.join(preset, presets.TOKENIZER_CONFIG_FILE))


CAUSAL_LM_CLASS_NAME = "GPT1CausalLM"


def holds_task_model(preset):
    """True if the preset's `task.json` holds a fine-tuning model (classifier, ...), not the
    causal LM KerasHub's saver writes there for `GPT1CausalLM.save_to_preset`."""
    path = os.path.join(preset, presets.TASK_CONFIG_FILE) if is_preset_dir(preset) else None
    if path is None or not os.path.isfile(path):
        return False
    data = read_json(path, "task config")
    return not (isinstance(data, dict) and data.get("class_name") == CAUSAL_LM_CLASS_NAME)


def has_preprocessor(preset):
    return is_preset_dir(preset) and os.path.exists(os.path.join(preset, "preprocessor.json"))


def load_tokenizer(preset, load_weights=True):
    """The preset's `GPT1Tokenizer`, or None if it has none (architecture names have none)."""
    preset = resolve_preset(as_preset(preset), load_weights)
    if not has_tokenizer(preset):
        return None
    from keras_gpt1.tokenizers import GPT1Tokenizer  # needs TensorFlow; only when used

    return GPT1Tokenizer.from_preset(preset)


def read_preset_json(preset, name):
    """The JSON file `name` of a preset directory (a ValueError names a corrupt one)."""
    return read_json(os.path.join(preset, name), name)


# === Verified presets: a checksum manifest of the binary files (keras_gpt1.utils.manifest) ===


def _matching(preset_dir, patterns):
    names = os.listdir(preset_dir) if os.path.isdir(preset_dir) else []
    return sorted(n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns))


def write_preset_manifest(preset_dir, backbone=False, tokenizer=False, task=False):
    """Records in `preset_dir/manifest.json` the binary files a saver just wrote there (JSON
    configs are left out: users edit them by hand, and they are checked by content): the backbone's
    weights (or shards), the tokenizer's assets, the task head's weights. Entries for files
    another saver wrote stay, so a backbone saved and then a tokenizer saved into the same
    directory are both listed. Called last by every keras_gpt1 `save_to_preset`.

    Example:
    ```python
    backbone.save_to_preset("my_preset")     # calls write_preset_manifest("my_preset", backbone=True)
    ```
    """
    preset_dir = os.fspath(preset_dir)
    names = []
    if backbone:
        names += _matching(preset_dir, presets.WEIGHTS_PATTERNS)
    if tokenizer:
        names += [n for n in presets.TOKENIZER_ASSET_FILES if os.path.isfile(os.path.join(preset_dir, n))]
    if task and os.path.isfile(os.path.join(preset_dir, presets.TASK_WEIGHTS_FILE)):
        names.append(presets.TASK_WEIGHTS_FILE)
    manifest.write_manifest(preset_dir, names, keep_others=True)


def verify_preset_files(preset_dir, names):
    """Checks the files `names` of a local preset against its manifest before they are read: a
    ValueError names a file that is corrupt or truncated (its size, then its SHA-256), a
    FileNotFoundError one that is listed but gone. A preset without a manifest (written by hand,
    by an older release, by KerasHub's generic saver) passes, and loads as before."""
    if is_preset_dir(preset_dir):
        manifest.verify_files(os.fspath(preset_dir), names, "preset")


def verify_weights_file(filepath):
    """`verify_preset_files` for a weights file given by path (`model.weights.h5`, the sharded
    `model.weights.json` and its shards, `task.weights.h5`), as `load_weights` receives it from
    any loader, KerasHub's auto classes included."""
    filepath = os.fspath(filepath)
    directory, name = os.path.split(os.path.abspath(filepath))
    names = [name]
    if name.endswith(".json") and os.path.isfile(filepath):  # sharded: the shards it maps to
        try:
            weight_map = read_json(filepath, "sharded weights index").get("weight_map", {})
            for value in weight_map.values():
                names += value if isinstance(value, list) else [value]
        except (ValueError, AttributeError):
            pass  # Keras's own loader names a corrupt index
    verify_preset_files(directory, sorted(set(n for n in names if isinstance(n, str))))


# === config.json against the weights, before anything is allocated ===


def backbone_weight_shapes(config):
    """The tensor shapes a `GPT1Backbone` of `config` holds, computed without building it (a
    config asking for 10**12 rows allocates nothing here). tests/test_reliability_presets.py
    checks this list against a real backbone's `weights`.

    Example:
    ```python
    len(backbone_weight_shapes(presets.BUILTIN_PRESETS["gpt1"]["config"]))   # 2 + 12 * 12
    ```
    """
    v, h = config["vocabulary_size"], config["hidden_dim"]
    i, length = config["intermediate_dim"], config.get("max_sequence_length", 512)
    block = [(h, 3 * h), (3 * h,), (h, h), (h,), (h,), (h,), (h, i), (i,), (i, h), (h,), (h,), (h,)]
    return [(length, h), (v, h)] + block * config["num_layers"]


def _dimensions_in_weights(shapes):
    """The config values the tensors of a weights file imply, read from their paths in Keras's
    layout (`layers/gpt1_embedding/...`); keys it cannot find are left out."""
    found, blocks = {}, set()
    for path, shape in shapes.items():
        parts = path.split("/")
        if len(parts) > 1 and parts[0] == "layers" and parts[1].startswith("gpt1_block"):
            blocks.add(parts[1])
        if path.endswith("token_embedding/vars/0") and len(shape) == 2:
            found["vocabulary_size"], found["hidden_dim"] = shape
        elif path.endswith("gpt1_embedding/vars/0") and len(shape) == 2:
            found["max_sequence_length"] = shape[0]
        elif path.endswith("c_fc/vars/0") and len(shape) == 2:
            found["intermediate_dim"] = shape[1]
    if blocks:
        found["num_layers"] = len(blocks)
    return found


def _is_quantized(dtype):
    return isinstance(dtype, dict) and "DTypePolicyMap" in str(dtype.get("class_name"))


def check_config_against_weights(preset_dir, config):
    """Refuses a preset whose `config.json` (with the caller's overrides, `config`) describes
    other tensors than its `model.weights.h5` holds, reading the file's metadata only: a
    `max_sequence_length` of 20,000,000 in a 124 KB preset is a ValueError naming config.json,
    the key and both values, before gigabytes are allocated for it. Quantized presets (their
    int8 tensors and scales differ from the float layout) and sharded ones are checked against
    the built model instead, when their weights load."""
    path = os.path.join(preset_dir, presets.WEIGHTS_FILE)
    needed = ("vocabulary_size", "num_layers", "hidden_dim", "intermediate_dim", "max_sequence_length")
    if not os.path.isfile(path) or _is_quantized(config.get("dtype")):
        return
    if not all(is_integer(config.get(k, 512)) for k in needed):
        return  # the constructor names a wrong type
    verify_preset_files(preset_dir, [presets.WEIGHTS_FILE])
    config_path = os.path.join(os.fspath(preset_dir), presets.CONFIG_FILE)
    try:
        shapes = read_weight_shapes(path)
    except OSError as e:  # not an HDF5 file at all
        raise ValueError(f"Could not load preset weights {path!r}: {e}") from None
    held = _dimensions_in_weights(shapes)
    count = 2 + 12 * config["num_layers"]  # compared first: `num_layers: 10**9` lists nothing
    if count == len(shapes):
        try:
            check_weight_shapes(path, backbone_weight_shapes(config), presets.CONFIG_FILE)
            return
        except ValueError as e:
            problem = str(e)
    else:
        problem = (
            f"it holds {len(shapes)} tensors but the config in {presets.CONFIG_FILE} describes a model with {count}"
        )
    differs = [k for k in needed if k in held and config.get(k, 512) != held[k]]
    detail = "".join(
        f' {config_path!r} says "{k}" is {config.get(k, 512)}; the weights hold {held[k]}.' for k in differs
    )
    raise ValueError(f"Could not load preset weights {path!r}: {problem}.{detail}")


def backbone_parameter_count(config):
    """The number of weights a `GPT1Backbone` of `config` holds, from its sizes alone.

    Example:
    ```python
    backbone_parameter_count(presets.BUILTIN_PRESETS["gpt1"]["config"])   # 116,534,784
    ```
    """
    one = backbone_weight_shapes(dict(config, num_layers=1))  # the embeddings, then one block
    sizes = [int(np.prod(shape, dtype=object)) for shape in one]
    return sum(sizes[:2]) + config["num_layers"] * sum(sizes[2:])


def check_backbone_memory(config, preset):
    """Refuses a backbone `config` whose weights alone would not fit in the memory available now
    (estimated from its sizes and its dtype policy's variable dtype), naming the config's file,
    before a raw `ResourceExhaustedError`/`MemoryError` from inside the backend."""
    needed = ("vocabulary_size", "num_layers", "hidden_dim", "intermediate_dim", "max_sequence_length")
    if not all(is_integer(config.get(k, 512)) for k in needed) or _is_quantized(config.get("dtype")):
        return
    try:
        policy = keras.dtype_policies.get(config.get("dtype") or keras.config.dtype_policy())
        itemsize = np.dtype(policy.variable_dtype).itemsize
    except Exception:  # an unreadable dtype: the config check names it
        itemsize = 4
    count = backbone_parameter_count(config)
    where = os.path.join(os.fspath(preset), presets.CONFIG_FILE) if is_preset_dir(preset) else repr(preset)
    sizes = ", ".join(f"{k}={config.get(k, 512)}" for k in needed)
    check_fits_in_memory(count * itemsize, f"The backbone {where} describes ({sizes}: {count:,} parameters)")


# === The tokenizer against the embedding ===


def check_tokenizer_fits(preset, backbone, tokenizer):
    """Refuses a preset whose tokenizer and backbone do not belong together: the embedding's
    rows must be the tokenizer's ids (`vocabulary_size()`), or its text ids alone
    (`base_vocabulary_size`: a pretrained backbone whose fine-tuning tokens get their rows when a
    task is built). Otherwise generation would sample ids the tokenizer cannot read back, or the
    tokenizer produce ids the embedding has no row for, failing much later in `detokenize`."""
    if tokenizer is None or not hasattr(tokenizer, "base_vocabulary_size"):
        return
    try:
        ids, text_ids = int(tokenizer.vocabulary_size()), int(tokenizer.base_vocabulary_size)
    except (ValueError, TypeError, AttributeError):
        return  # no vocabulary loaded: nothing to compare
    rows = int(backbone.vocabulary_size)
    if rows in (ids, text_ids):
        return
    preset = os.fspath(preset)
    raise ValueError(
        f"The tokenizer of preset {preset!r} does not fit its backbone: "
        f"{os.path.join(presets.TOKENIZER_ASSETS_DIR, presets.VOCAB_FILE)} and {presets.TOKENIZER_CONFIG_FILE} "
        f"give {ids} token ids ({text_ids} of text), but {presets.CONFIG_FILE} and {presets.WEIGHTS_FILE} give "
        f"the embedding {rows} rows. Were the tokenizer files copied from another model? Save the model and its "
        "tokenizer together, or pass the matching `tokenizer=`."
    )
