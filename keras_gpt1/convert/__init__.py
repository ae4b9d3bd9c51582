"""Weight conversion: Hugging Face `OpenAIGPTLMHeadModel` checkpoints and the original release's
layout, to and from keras_gpt1 presets.

All three directions share one tensor table (`mapping.py`); in memory a checkpoint is *canonical
weights*, a dict of NumPy arrays named like the Hugging Face base model.

Example:
```python
from keras_gpt1.convert import convert_hf_to_preset, convert_preset_to_hf
convert_hf_to_preset("openai-gpt/", "presets/gpt1")      # vocab.json + merges.txt come along
convert_preset_to_hf("presets/gpt1", "hf_again/")         # OpenAIGPTLMHeadModel.from_pretrained loads it
```
"""

from keras_gpt1.convert.hf import (
    convert_hf_to_preset,
    convert_preset_to_hf,
    hf_state_dict_to_weights,
    load_hf_checkpoint,
    save_hf_checkpoint,
)
from keras_gpt1.convert.mapping import (
    backbone_to_weights,
    check_weights,
    expected_shapes,
    weight_table,
    weights_to_backbone,
)
from keras_gpt1.convert.openai import (
    convert_openai_to_preset,
    load_openai_checkpoint,
    read_openai_checkpoint,
    write_openai_checkpoint,
)

__all__ = [
    "backbone_to_weights",
    "check_weights",
    "convert_hf_to_preset",
    "convert_openai_to_preset",
    "convert_preset_to_hf",
    "expected_shapes",
    "hf_state_dict_to_weights",
    "load_hf_checkpoint",
    "load_openai_checkpoint",
    "read_openai_checkpoint",
    "save_hf_checkpoint",
    "weight_table",
    "weights_to_backbone",
    "write_openai_checkpoint",
]
