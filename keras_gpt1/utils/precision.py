"""Precision: one vocabulary for what a model computes in, and `resolve_precision`, the one place
where a choice (`"auto"` included) becomes the precision a model is built in.

Every command that lets you choose takes `--precision` (`precision=` for `pretrain` and
`finetune`; `dtype=` for `export_saved_model`, as Keras names a model's weights), with these
values or the subset its work has a use for:

| value | what the model holds and computes | taken by |
|---|---|---|
| `"auto"` | training: `"mixed_bfloat16"` where it was measured faster, else `"float32"` (below) | `pretrain`, `finetune` (the default) |
| `"float32"` | float32 weights and compute | every command |
| `"mixed_bfloat16"` | float32 weights, bfloat16 compute (Keras's dtype policy of that name) | `pretrain`, `finetune` |
| `"bfloat16"` | bfloat16 weights and compute: half the bytes read per generated token | `generate`, `score`, `export` |
| `"int8"` | Keras's `quantize("int8")` of the model's weights | `generate`, `score`, `export` |

Training takes `TRAINING_PRECISIONS`: its updates need float32 variables, so bfloat16 weights
and int8 are refused. Inference takes `INFERENCE_PRECISIONS`: there the point is fewer bytes per
token, which `mixed_bfloat16`'s float32 weights do not give; left out, a model keeps the
precision it was saved in. The resolved float names are Keras dtype policy names, which is what
Keras calls a model's `dtype` (`from_preset(..., dtype=...)`).

`"auto"` chooses `mixed_bfloat16` when all of these hold, and float32 otherwise (which an
AVX2-only CPU always gets):

- no accelerator is visible (on a GPU or TPU choose the precision yourself: `mixed_bfloat16` on
  Ampere and later, `mixed_float16` is not offered);
- the CPU has native bfloat16 (`keras_gpt1.utils.cpu_features.has_native_bfloat16`);
- the backend is one whose bfloat16 training step was measured faster than its float32 one on
  such a CPU (`BFLOAT16_BACKENDS`; docs/pretraining.md, "Precision and compilation");
- the model is wide enough for its matmuls to dominate the step (`MIN_BFLOAT16_HIDDEN_DIM`): for
  small models (the demo's) the casts cost more than the bfloat16 matmuls save.

The choice is made once per run, applied to the model whatever precision its preset was saved
in, and saved with the run; an explicit value is never changed. This module imports no Keras at
import time, so the command line's parser reads the vocabulary without starting a backend.
"""

from keras_gpt1.utils.cpu_features import has_native_bfloat16

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "bfloat16", "int8")
TRAINING_PRECISIONS = ("auto", "float32", "mixed_bfloat16")
INFERENCE_PRECISIONS = ("float32", "bfloat16", "int8")
# Backends whose mixed_bfloat16 training step beats their float32 one on a native-bfloat16 CPU:
# TensorFlow's oneDNN kernels use the bfloat16 units when XLA is off (`keras_gpt1.utils.jit`), and
# so do PyTorch's eager CPU matmuls. JAX compiles with XLA, whose CPU matmuls do not.
BFLOAT16_BACKENDS = ("tensorflow", "torch")
MIN_BFLOAT16_HIDDEN_DIM = 512


def accelerator_present():
    """True when the current backend sees a GPU or TPU."""
    import keras

    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def check_precision(precision, choices=TRAINING_PRECISIONS, name="precision"):
    """`precision` if it is one of `choices` (a subset of `PRECISIONS`), else a ValueError
    naming `name` and the choices."""
    if not isinstance(precision, str) or precision not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}; got {precision!r}.")
    return precision


def resolve_precision(precision="auto", hidden_dim=None, backend=None, choices=TRAINING_PRECISIONS):
    """The precision to build the model in: `precision` checked against `choices`, with `"auto"`
    decided by the rules in this module's docstring; never `"auto"`.

    Args:
        precision: one of `choices`.
        hidden_dim: the model's width (None: treated as wide enough).
        backend: the Keras backend (default: the current one).
        choices: the values the caller takes: `TRAINING_PRECISIONS` (the default) or
            `INFERENCE_PRECISIONS`.

    Example:
    ```python
    resolve_precision("auto", hidden_dim=768)   # "mixed_bfloat16" on TensorFlow or PyTorch on e.g. a Zen 4 CPU
    resolve_precision("auto", hidden_dim=64)    # "float32": too small to gain
    resolve_precision("int8", choices=INFERENCE_PRECISIONS)   # "int8"
    ```
    """
    check_precision(precision, choices)
    if precision != "auto":
        return precision
    if backend is None:
        import keras

        backend = keras.config.backend()
    if backend not in BFLOAT16_BACKENDS:
        return "float32"
    if hidden_dim is not None and int(hidden_dim) < MIN_BFLOAT16_HIDDEN_DIM:
        return "float32"
    if not has_native_bfloat16() or accelerator_present():
        return "float32"
    return "mixed_bfloat16"
