"""Reading and writing the model side of a preset directory (layout in `keras_gpt1.presets`)."""

import os

from keras_gpt1 import presets
from keras_gpt1.utils.checks import check_preset_config, check_weight_shapes
from keras_gpt1.utils.files import atomic_path, atomic_write_json, read_json, require_file

BACKBONE_CLASS_NAME = "GPT1Backbone"


def is_preset_dir(preset):
    return isinstance(preset, (str, os.PathLike)) and os.path.isdir(preset)


def load_backbone_config(preset):
    """The backbone config of a built-in preset name or a preset directory."""
    if isinstance(preset, str) and preset in presets.BUILTIN_PRESETS:
        return dict(presets.BUILTIN_PRESETS[preset]["config"])
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
    return check_preset_config(config, path)


def load_backbone_weights(backbone, preset_dir):
    path = require_file(os.path.join(preset_dir, presets.WEIGHTS_FILE), "preset weights")
    try:
        # Keras skips surplus tensors with only a warning; a preset must match exactly.
        check_weight_shapes(path, backbone.weights, presets.CONFIG_FILE)
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
