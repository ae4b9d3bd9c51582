"""`KerasEngine`: the decode engine that calls the model's own Keras layers.

The reference engine: it runs every model (any dtype, quantization mode, LoRA, subclassed
layers) on every backend, and its calls are `keras.ops`, so a whole decode loop over it
traces into `jax.jit` or `tf.function(jit_compile=True)`. Its cache is the backbone's
(`GPT1Backbone.empty_cache`: `[rows, positions, heads, head_dim]` per layer), written by
`call_with_cache`.

Example:
```python
engine = KerasEngine(lm)
logits, cache = engine.prefill(np.array([[5, 6, 7]]), 3, 16)      # logits after position 2
logits, cache = engine.step(np.array([8]), cache, 3)
```
"""

from keras import ops

from keras_gpt1.generation.engine import DecodeEngine


class KerasEngine(DecodeEngine):
    """Model calls through the Keras layers (`call_with_cache`): traceable on every backend."""

    name = "keras"

    def __init__(self, lm):
        self.backbone = lm.backbone

    def prefill(self, token_ids, length, cache_length):
        cache = self.backbone.empty_cache(ops.shape(token_ids)[0], cache_length)
        hidden, cache = self.backbone.call_with_cache(token_ids, cache, 0)
        return self.head(ops.take(hidden, length - 1, axis=1)), cache

    def step(self, token_ids, cache, index):
        hidden, cache = self.backbone.call_with_cache(token_ids[:, None], cache, index)
        return self.head(hidden[:, 0]), cache

    def head(self, hidden):
        """float32 logits of hidden states `[rows, hidden]` through the tied token table."""
        return ops.cast(self.backbone.token_embedding(hidden, reverse=True), "float32")
