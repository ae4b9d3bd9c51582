"""Preset directories: which format a preset is in, and reading the ones KerasHub cannot.

Presets are written by KerasHub's own saver (`save_to_preset` on the backbone, the causal LM,
the tokenizer), so `keras_hub.models.Backbone.from_preset(dir)` and friends load them. Two
kinds of preset are ours to read:

- built-in names (`"gpt1"`, `"gpt1_tiny"`, in `keras_gpt1.presets`) as architectures (a name
  with published weights reaches here only with `load_weights=False`);
- directories written before keras_gpt1 used KerasHub's format: their `config.json` is
  `{"module": "keras_gpt1", "class_name": "GPT1Backbone", "config": {...}}`, with no
  `registered_name`, which KerasHub's loader refuses ("Unrecognized format").

`resolve_preset` is the one door through which every `from_preset` passes: it turns a name that
means *pretrained weights* (`"gpt1"`, `"hf://owner/name"`) into a local preset directory and
leaves everything else as it is. Fetching and converting belong to a layer above the models
(`keras_gpt1.hub`), which models must not import; so that layer registers itself here with
`register_remote_resolver` when the package is imported, and this module only calls what was
registered (dependency injection keeps the imports flowing downward).
"""

import os

import keras

from keras_gpt1 import presets
from keras_gpt1.utils.checks import check_preset_config, check_weight_shapes
from keras_gpt1.utils.files import read_json, require_file

BACKBONE_CLASS_NAME = "GPT1Backbone"
HF_PREFIX = "hf://"

# `resolver(repo_id, load_weights) -> preset directory`, installed by `keras_gpt1.hub`.
_remote_resolver = None


def register_remote_resolver(resolver):
    """Installs the function that fetches `hf://` presets; returns the one it replaces.

    Example:
    ```python
    previous = register_remote_resolver(lambda repo_id, load_weights: "presets/my_copy")
    ```
    """
    global _remote_resolver
    previous, _remote_resolver = _remote_resolver, resolver
    return previous


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
    if _remote_resolver is None:
        raise RuntimeError(
            f"No resolver for {preset!r}: import keras_gpt1 (it registers keras_gpt1.hub), or "
            "convert the repository with `keras-gpt1 convert` and load the directory."
        )
    return _remote_resolver(repo_id, load_weights)


def as_preset(preset):
    """`preset` as KerasHub's loaders take it: a `pathlib.Path` becomes a string."""
    return os.fspath(preset) if isinstance(preset, os.PathLike) else preset


def is_preset_dir(preset):
    return isinstance(preset, (str, os.PathLike)) and os.path.isdir(preset)


def _read_config(preset):
    return read_json(os.path.join(preset, presets.CONFIG_FILE), "preset config")


def is_builtin(preset):
    return isinstance(preset, str) and preset in presets.BUILTIN_PRESETS


def is_keras_hub_preset(preset):
    """True for a preset KerasHub's loader reads: a remote handle (`hf://`, `kaggle://`, ...)
    or a directory whose `config.json` carries a Keras `registered_name`."""
    if is_builtin(preset):
        return False
    if isinstance(preset, str) and "://" in preset:
        return True
    if not is_preset_dir(preset):
        return False
    data = _read_config(preset)
    return isinstance(data, dict) and "registered_name" in data


def _check_known(preset):
    if is_builtin(preset) or is_preset_dir(preset):
        return
    raise ValueError(
        f"Unknown preset {preset!r}: not a directory, not a remote handle (hf://, kaggle://), "
        f"and not a built-in preset (one of {sorted(presets.BUILTIN_PRESETS)})."
    )


def check_preset_class(preset, expected_cls, config_file=presets.CONFIG_FILE):
    """Refuses a local KerasHub preset whose `config_file` holds a class other than
    `expected_cls` (or a subclass), naming both: a Gemma preset given to `GPT1Backbone`, say."""
    if not is_preset_dir(preset):
        return  # Remote handles: KerasHub's loader checks the class once downloaded.
    path = os.path.join(preset, config_file)
    data = read_json(path, "preset config")
    name = data.get("registered_name") if isinstance(data, dict) else None
    found = keras.saving.get_registered_object(name) if name else None
    if found is None or not (isinstance(found, type) and issubclass(found, expected_cls)):
        shown = found.__name__ if isinstance(found, type) else (name or data.get("class_name"))
        raise ValueError(
            f"Preset {os.fspath(preset)!r} holds a {shown} ({config_file} registered name "
            f"{name!r}), not a {expected_cls.__name__}. Load it with its own class, e.g. "
            f"`keras_hub.models.Backbone.from_preset(...)`."
        )


def check_saved_config(preset):
    """Refuses a local KerasHub preset whose `config.json` holds a wrong type or value (a string
    where a size belongs, a zero size), naming the file and the key, before Keras builds from it."""
    if is_preset_dir(preset):
        path = os.path.join(preset, presets.CONFIG_FILE)
        config = _read_config(preset).get("config")
        check_preset_config(config if isinstance(config, dict) else {}, path)


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
    """The backbone config (constructor arguments) of a built-in name or a preset directory of
    either format; `dtype` is left out (it belongs to how a model is loaded, not its shape)."""
    preset = resolve_preset(as_preset(preset), load_weights=False)
    if is_builtin(preset):
        return dict(presets.BUILTIN_PRESETS[preset]["config"])
    if is_keras_hub_preset(preset) and is_preset_dir(preset):
        config = dict(_read_config(preset)["config"])
    else:
        config = load_legacy_backbone_config(preset)
    for key in ("name", "trainable", "dtype"):
        config.pop(key, None)
    return config


def load_legacy_backbone_config(preset):
    """The backbone config of a built-in name or a pre-KerasHub preset directory."""
    if is_builtin(preset):
        return dict(presets.BUILTIN_PRESETS[preset]["config"])
    _check_known(preset)
    path = os.path.join(preset, presets.CONFIG_FILE)
    data = read_json(path, "preset config")
    if not isinstance(data, dict):
        raise ValueError(f"Corrupt preset config {path!r}: expected {{'class_name': ..., 'config': {{...}}}}.")
    if "class_name" not in data and "model_type" in data:
        raise ValueError(
            f"Preset config {path!r} describes a Hugging Face {data['model_type']!r} model, not a "
            f"{BACKBONE_CLASS_NAME}. Convert a Hugging Face checkpoint with `keras-gpt1 convert`."
        )
    if data.get("class_name") != BACKBONE_CLASS_NAME or not isinstance(data.get("config"), dict):
        if "class_name" in data and data.get("class_name") != BACKBONE_CLASS_NAME:
            raise ValueError(
                f"Preset config {path!r} describes {data.get('class_name')!r}, not a {BACKBONE_CLASS_NAME}."
            )
        raise ValueError(f"Corrupt preset config {path!r}: expected {{'class_name': ..., 'config': {{...}}}}.")
    config = dict(data["config"])
    for key in ("name", "trainable"):
        config.pop(key, None)
    return check_preset_config(config, path)


def has_single_weights_file(preset):
    """A local preset whose weights are one `model.weights.h5` (or none at all, an error the
    checked loader names), not KerasHub's sharded `model.weights.json` + shards."""
    return is_preset_dir(preset) and not os.path.exists(os.path.join(preset, "model.weights.json"))


def load_backbone_weights(backbone, preset_dir):
    path = require_file(os.path.join(preset_dir, presets.WEIGHTS_FILE), "preset weights")
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
