"""Data- and model-parallel training of GPT-1 with the engines Keras already has.

* JAX: `keras.distribution.DataParallel` (variables replicated, batch split) and
  `keras.distribution.ModelParallel` on a 2-D `batch × model` device mesh, with `gpt1_layout_map`
  sharding the weights Megatron-style (see `LAYOUT_RULES`). XLA's GSPMD partitioner inserts the
  collectives.
* TensorFlow: `tf.distribute.MirroredStrategy` for data parallelism on one host, or
  `tf.distribute.MultiWorkerMirroredStrategy` when `TF_CONFIG` describes several workers. Keras
  3.15's TensorFlow `keras.distribution` backend is a DTensor prototype marked "do not use", so
  model parallelism on TensorFlow is refused with a pointer to JAX.
* PyTorch: Keras 3.15 has no distribution backend for torch (`keras.distribution` needs JAX or
  TensorFlow, and `fit` has no `torch.distributed` integration); asking for one raises an error
  that names the alternatives.

The one entry point for training code is `distribution_scope(mode, mesh)`: build, compile and fit
the model inside it.

Example (JAX, 8 devices):
```python
from keras_gpt1 import BUILTIN_PRESETS, GPT1CausalLM
from keras_gpt1.distribution import distribution_scope

config = BUILTIN_PRESETS["gpt1"]["config"]
with distribution_scope("model", "2x4", model_config=config) as dist:
    lm = GPT1CausalLM.from_preset("gpt1")
    dist.verify(lm)          # raises if a weight meant to be sharded is not
    lm.compile()
    lm.fit(dataset)          # a batched tf.data.Dataset; its batches are global batches
```
"""

from keras_gpt1.distribution.devices import maybe_initialize_multi_host, use_virtual_cpu_devices
from keras_gpt1.distribution.layout import (
    DATA_AXIS,
    LAYOUT_RULES,
    MODEL_AXIS,
    MODES,
    GPT1ModelParallel,
    check_model_config,
    gpt1_layout_map,
    parse_mesh,
)
from keras_gpt1.distribution.replicas import scale_loss_for_replicas, unscale_loss_for_replicas
from keras_gpt1.distribution.scope import GPT1Distribution, configure_distribution, distribution_scope
