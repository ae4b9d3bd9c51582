"""The models' `jit_compile="auto"`: XLA on TensorFlow on a CPU too.

Keras's "auto" turns XLA off for TensorFlow on a machine without accelerators. GPT-1's training
step is faster with it there too (`tools/benchmark.py train --backends tensorflow --jit auto
true` measures it; docs/performance.md), so `GPT1CausalLM.compile` and `GPT1TaskModel.compile`
ask for it. Everything else stays Keras's choice: other backends, an
explicit `jit_compile`, `run_eagerly=True`, tf.distribute (where Keras turns XLA off), and a
model Keras's own `model_supports_jit` rejects (TensorFlow op determinism, a layer with
`supports_jit=False`, TensorFlow on an Apple GPU): asking for XLA there would only make Keras warn
and turn it off again.
"""

import keras


def resolve_jit_compile(model, jit_compile="auto", run_eagerly=False):
    """The `jit_compile` to pass to `keras.Model.compile` for `model`: True for "auto" on
    TensorFlow outside tf.distribute, else `jit_compile` unchanged.

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
    try:
        from keras.src.trainers.trainer import model_supports_jit
    except ImportError:  # moved in a later Keras: its `jit_compile` setter still checks
        return True
    return True if model_supports_jit(model) else jit_compile
