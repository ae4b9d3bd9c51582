"""Training precision by capability: what `precision="auto"` (`--precision auto`) becomes.

`mixed_bfloat16` keeps float32 variables and computes in bfloat16. It pays off only where the
hardware multiplies bfloat16 natively and the backend's kernels use those units; elsewhere the
casts cost time and the matmuls run at the float32 rate. So "auto" chooses it when all hold:

- no accelerator is visible (on a GPU or TPU choose the precision yourself: `mixed_bfloat16` on
  Ampere and later, `mixed_float16` is not offered);
- the CPU has native bfloat16 (`keras_gpt1.utils.cpu_features.has_native_bfloat16`);
- the backend is one whose bfloat16 training step was measured faster than its float32 one on
  such a CPU (`BFLOAT16_BACKENDS`; docs/pretraining.md, "Precision and compilation");
- the model is wide enough for its matmuls to dominate the step (`MIN_BFLOAT16_HIDDEN_DIM`): for
  small models (the demo's) the casts cost more than the bfloat16 matmuls save.

Everything else trains in float32, which is what an AVX2-only CPU always gets. The choice is
made once per run and saved with it; an explicit `"float32"` or `"mixed_bfloat16"` is never
changed.
"""

import keras

from keras_gpt1.utils.cpu_features import has_native_bfloat16

PRECISIONS = ("auto", "float32", "mixed_bfloat16")
# Backends whose mixed_bfloat16 training step beats their float32 one on a native-bfloat16 CPU:
# TensorFlow's oneDNN kernels use the bfloat16 units when XLA is off (`keras_gpt1.utils.jit`), and
# so do PyTorch's eager CPU matmuls. JAX compiles with XLA, whose CPU matmuls do not.
BFLOAT16_BACKENDS = ("tensorflow", "torch")
MIN_BFLOAT16_HIDDEN_DIM = 512


def accelerator_present():
    """True when the current backend sees a GPU or TPU."""
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


def check_precision(precision, name="precision"):
    """`precision` if it is one of `PRECISIONS`, else a ValueError naming `name`."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, PRECISIONS))}; got {precision!r}.")
    return precision


def resolve_precision(precision="auto", hidden_dim=None, backend=None):
    """The dtype policy name to train with: `"float32"` or `"mixed_bfloat16"`.

    Args:
        precision: `"auto"` (the rules in this module's docstring), `"float32"` or
            `"mixed_bfloat16"` (returned unchanged).
        hidden_dim: the model's width (None: treated as wide enough).
        backend: the Keras backend (default: the current one).

    Example:
    ```python
    resolve_precision("auto", hidden_dim=768)   # "mixed_bfloat16" on TensorFlow or PyTorch on e.g. a Zen 4 CPU
    resolve_precision("auto", hidden_dim=64)    # "float32": too small to gain
    ```
    """
    check_precision(precision)
    if precision != "auto":
        return precision
    backend = backend or keras.config.backend()
    if backend not in BFLOAT16_BACKENDS:
        return "float32"
    if hidden_dim is not None and int(hidden_dim) < MIN_BFLOAT16_HIDDEN_DIM:
        return "float32"
    if not has_native_bfloat16() or accelerator_present():
        return "float32"
    return "mixed_bfloat16"
