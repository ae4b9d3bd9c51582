"""Reading and writing the model side of a preset directory (layout in `keras_gpt1.presets`).

`resolve_preset` is the one door through which every `from_preset` passes: it turns a name that
means *pretrained weights* (`"gpt1"`, `"hf://owner/name"`) into a local preset directory and
leaves everything else as it is. Fetching and converting belong to a layer above the models
(`keras_gpt1.hub`), which models must not import; so that layer registers itself here with
`register_remote_resolver` when the package is imported, and this module only calls what was
registered (dependency injection keeps the imports flowing downward).
"""

import os

from keras_gpt1 import presets
from keras_gpt1.utils.files import atomic_path, atomic_write_json, read_json, require_file

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


def is_preset_dir(preset):
    return isinstance(preset, (str, os.PathLike)) and os.path.isdir(preset)


def load_backbone_config(preset):
    """The backbone config of a built-in preset name or a preset directory."""
    if isinstance(preset, str) and preset in presets.BUILTIN_PRESETS:
        return dict(presets.BUILTIN_PRESETS[preset]["config"])
    if isinstance(preset, str) and preset.startswith(HF_PREFIX):
        raise ValueError(f"{preset!r} is a Hugging Face handle: pass it through resolve_preset first.")
    if not is_preset_dir(preset):
        raise ValueError(
            f"Unknown preset {preset!r}: not a directory, and not a built-in preset "
            f"(one of {sorted(presets.BUILTIN_PRESETS)})."
        )
    path = os.path.join(preset, presets.CONFIG_FILE)
    data = read_json(path, "preset config")
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ValueError(f"Corrupt preset config {path!r}: expected {{'class_name': ..., 'config': {{...}}}}.")
    if data.get("class_name") != BACKBONE_CLASS_NAME:
        raise ValueError(
            f"Preset config {path!r} describes {data.get('class_name')!r}, not {BACKBONE_CLASS_NAME}."
        )
    config = dict(data["config"])
    for key in ("name", "trainable"):
        config.pop(key, None)
    return config


def _count_tensors(h5_path):
    import h5py

    counts = []
    with h5py.File(h5_path, "r") as f:
        f.visititems(lambda name, obj: counts.append(1) if isinstance(obj, h5py.Dataset) else None)
    return len(counts)


def load_backbone_weights(backbone, preset_dir):
    path = require_file(os.path.join(preset_dir, presets.WEIGHTS_FILE), "preset weights")
    try:
        # Keras skips surplus tensors with only a warning; a preset must match exactly.
        found, expected = _count_tensors(path), len(backbone.weights)
        if found != expected:
            raise ValueError(
                f"it holds {found} tensors but the config in {presets.CONFIG_FILE} "
                f"describes a model with {expected}"
            )
        backbone.load_weights(path)
    except Exception as e:  # h5py and Keras raise many types; the user needs the file name.
        raise ValueError(f"Could not load preset weights {path!r}: {e}") from e


def save_backbone(backbone, preset_dir):
    os.makedirs(preset_dir, exist_ok=True)
    config = backbone.get_config()
    config.pop("name", None)
    config.pop("trainable", None)
    with atomic_path(os.path.join(preset_dir, presets.WEIGHTS_FILE)) as tmp:
        backbone.save_weights(tmp)
    atomic_write_json(
        os.path.join(preset_dir, presets.CONFIG_FILE),
        {"module": "keras_gpt1", "class_name": BACKBONE_CLASS_NAME, "config": config},
    )


def load_tokenizer(preset):
    """The preset's `GPT1Tokenizer`, or None if it has none (built-in names have none)."""
    if not is_preset_dir(preset):
        return None
    if not os.path.exists(os.path.join(preset, presets.TOKENIZER_CONFIG_FILE)):
        return None
    from keras_gpt1.tokenizers import GPT1Tokenizer  # needs TensorFlow; only when used

    return GPT1Tokenizer.from_preset(preset)
