"""The compile cache: generation's and scoring's functions compiled once per model and shape.

A compiled decode loop is specialised to its static configuration (batch, buffer length, prefill
length, sampler, ...). Lengths are rounded up to buckets (`round_up`) so a few compiled shapes
serve every prompt, and `compiled` keeps the compiled functions on the model, keyed by that
configuration and the model's variables, so the next call with the same shapes reuses them.

Per backend, `compiled` wraps each function in `jax.jit` (weights passed as arguments inside a
`StatelessScope`, so they are not baked into the program as constants),
`tf.function(jit_compile=True)`, or an eager `torch.no_grad()` call (PyTorch compiles nothing
here: see `torch_engine.py`).

Example:
```python
length = round_up(prompt_length + 32, LENGTH_BUCKET, context)
fns = compiled(lm, ("score", batch, length), lambda: {"score": score_fn})
fns["score"](token_ids, padding_mask)
```
"""

import keras

# Bucket sizes: total length (cache length) and prefill length are rounded up to these, so the
# number of distinct compiled shapes stays small.
LENGTH_BUCKET = 64
PREFILL_BUCKET = 16


def round_up(n, bucket, cap):
    """`n` rounded up to a multiple of `bucket`, at most `cap`."""
    return min(-(-n // bucket) * bucket, cap)


def compiled(lm, key, build, xla=True):
    """Caches compiled callables per model and static configuration.

    `build()` returns a dict of plain functions over backend tensors; this wraps each for the
    backend: `jax.jit` (weights passed as arguments inside a `StatelessScope`, so they are not
    baked into the program as constants), `tf.function(jit_compile=xla)`, or eager no-grad torch.
    The returned dict lives as long as the compiled functions, so callers may also keep what
    belongs with them in it (the streamed generation's chunk timings, under `"chunk_timings"`).
    """
    backend = keras.config.backend()
    if backend == "torch":
        # Nothing to compile; rebuilding each call keeps the engine's weight views current.
        import torch

        def eager(fn):
            def call(*args):
                with torch.no_grad():
                    return fn(*args)

            return call

        return {name: eager(fn) for name, fn in build().items()}
    variables = lm.variables
    key = key + (xla, tuple(id(v) for v in variables))
    # Stored on the model itself (bypassing Keras attribute tracking): the compiled functions
    # close over the model, so a weak-keyed global cache would keep every model alive.
    per_model = lm.__dict__.setdefault("_keras_gpt1_compiled", {})
    if key in per_model:
        return per_model[key]
    functions = build()
    wrapped = {}
    if backend == "jax":
        import jax

        for name, fn in functions.items():

            def pure(values, *args, _fn=fn):
                with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                    return _fn(*args)

            # The step function's state (with the cache) is donated: XLA updates it in place.
            jitted = jax.jit(pure, donate_argnums=(1,) if name in ("step", "chunk") else ())

            def call(*args, _jitted=jitted):
                return _jitted([v.value for v in variables], *args)

            wrapped[name] = call
    elif backend == "tensorflow":
        import tensorflow as tf

        for name, fn in functions.items():
            wrapped[name] = tf.function(fn, jit_compile=xla, reduce_retracing=False)
    per_model[key] = wrapped
    return wrapped
