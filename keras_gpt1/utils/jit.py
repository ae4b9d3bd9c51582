"""The models' `jit_compile="auto"`: XLA on TensorFlow on a CPU too, except for native bfloat16.

Keras's "auto" turns XLA off for TensorFlow on a machine without accelerators. GPT-1's float32
training step is faster with it there too (`python -m tools.bench.benchmark train --backends tensorflow --jit
true false` measures it; docs/performance.md), so `GPT1CausalLM.compile` and
the task models' `compile` ask for it. The exception is a model computing in bfloat16 on a CPU with
native bfloat16 (`keras_gpt1.utils.cpu_features`): XLA's CPU matmuls do not use the bfloat16
units, TensorFlow's own (oneDNN) kernels do, so there "auto" stays Keras's choice (no XLA).
Everything else stays Keras's choice too: other backends, an explicit `jit_compile`, `run_eagerly=True`, tf.distribute (where Keras turns XLA off), and a
model Keras's own `model_supports_jit` rejects (TensorFlow op determinism, a layer with
`supports_jit=False`, TensorFlow on an Apple GPU): asking for XLA there would only make Keras warn
and turn it off again.
"""

import keras


def resolve_jit_compile(model, jit_compile="auto", run_eagerly=False):
    """The `jit_compile` to pass to `keras.Model.compile` for `model`: True for "auto" on
    TensorFlow outside tf.distribute (unless bfloat16 compute on a native-bfloat16 CPU), else
    `jit_compile` unchanged.

    Example:
    ```python
    resolve_jit_compile(lm)          # True on TensorFlow, "auto" (Keras decides) elsewhere
    resolve_jit_compile(lm, False)   # False
    ```
    """
    if not (isinstance(jit_compile, str) and jit_compile == "auto") or run_eagerly:
        return jit_compile
    if keras.config.backend() != "tensorflow":
        return jit_compile
    import tensorflow as tf

    # Keras's own test for a strategy: one active now, or one the model was built under.
    if tf.distribute.has_strategy() or getattr(model, "_distribute_strategy", None) is not None:
        return jit_compile
    if _bfloat16_on_native_cpu(model):
        return jit_compile
    try:
        from keras.src.trainers.trainer import model_supports_jit
    except ImportError:  # moved in a later Keras: its `jit_compile` setter still checks
        return True
    return True if model_supports_jit(model) else jit_compile


def _bfloat16_on_native_cpu(model):
    """True when `model` computes in bfloat16 on a CPU-only TensorFlow with native bfloat16."""
    import tensorflow as tf

    from keras_gpt1.utils.cpu_features import has_native_bfloat16

    compute_dtype = getattr(getattr(model, "dtype_policy", None), "compute_dtype", None)
    if compute_dtype != "bfloat16" or tf.config.list_logical_devices("GPU"):
        return False
    return has_native_bfloat16()
