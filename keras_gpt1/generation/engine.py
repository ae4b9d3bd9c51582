"""The decode-engine protocol: the two model calls the decode loop makes, and the KV cache.

Generation is split in two. The decode loop (`decode_loop.py`) owns everything about tokens:
the prompt buffer, ragged rows, the logits processors, the samplers and beam search, stop ids,
seeds. An engine owns the model: it turns token ids into next-token logits and keeps the KV
cache. Every engine implements `DecodeEngine`, so each runs under the same loop and the same
conformance test (`tests/test_decode_engines.py`): the Keras layers (`keras_engine.py`, every
backend), the PyTorch fast path (`torch_engine.py`) and the export's TensorFlow step
(`keras_gpt1/export/decode_step.py`).

The calls, for a batch of `rows`:

- `prefill(token_ids, length, cache_length) -> (logits, cache)`: `token_ids` `[rows, n]` at
  positions `0 .. n - 1`; returns a new cache for `cache_length` positions holding their keys
  and values, and the float32 logits `[rows, vocabulary]` that follow position `length - 1`
  (`length <= n`, a Python int or a scalar tensor: a compiled loop pads the prefill to a
  bucket of `n` positions, whose extra cache entries the steps overwrite before any query
  reads them).
- `step(token_ids, cache, index) -> (logits, cache)`: `token_ids` `[rows]`, the tokens at
  position `index`; writes their keys and values at cache position `index` and returns the
  float32 logits `[rows, vocabulary]` that follow them, and the cache.
- `reorder(cache, rows) -> cache`: the cache with its rows taken in the order of `rows` (an
  int `[rows]` tensor), for beam search; by default every tensor of the cache along axis 0.

**The cache** is the engine's own: a tensor or a nest (tuples) of tensors, whose axis 0 is the
rows, allocated by `prefill` for `cache_length` positions and the same shapes at every step.
The loop never looks inside: it hands the cache back to the engine, and reorders its rows only
through `reorder`. The built-in engines keep one `(keys, values)` pair per layer, the Keras
layers (and the export) `[rows, positions, heads, head_dim]`, the PyTorch engine
`[rows, heads, positions, head_dim]`, which its attention kernel reads.

What is not in the protocol, on purpose: how next-token logits become tokens. Rules that change
the logits before a token is picked (a repetition penalty, banned ids) are the loop's logits
processors (`decode_loop.LogitsProcessor`), written once for every engine.

An engine also says, as class methods, whether it can run a model (`unsupported_reason`) and
how to build one for it (`build`). `registry.py` lists the engines that `generate_ids(engine=)`
chooses from; adding one is one module and one line there.

Example:
```python
engine = KerasEngine.build(lm)
logits, cache = engine.prefill(token_ids, length=3, cache_length=16)   # token_ids [rows, 3]
logits, cache = engine.step(ops.argmax(logits, axis=-1), cache, 3)     # the token at position 3
```
"""

import keras
from keras import ops


class EngineUnavailable(RuntimeError):
    """An engine that accepted a model (`unsupported_reason` was None) failed while it was built,
    e.g. on a private API that changed; `make_engine("auto")` then falls back to the next engine."""


class DecodeEngine:
    """Base class of the decode engines (see the module docstring for the protocol).

    Subclasses set `name` (what `generate_ids(engine=...)` calls them) and implement `prefill`
    and `step`; `reorder` takes every cache tensor's rows along axis 0, which an engine whose
    cache must keep its addresses (the PyTorch engine's CUDA graph) overrides.
    """

    name = None
    # Whether a compiled loop over this engine may be compiled by XLA (TensorFlow's
    # `jit_compile`; JAX always compiles with XLA, and an engine that cannot is TensorFlow-only).
    xla = True

    @classmethod
    def unsupported_reason(cls, lm):
        """None where this engine runs `lm`, else why it cannot (a phrase that completes
        "engine='name' cannot run this model: ...")."""
        return None

    @classmethod
    def supports(cls, lm):
        return cls.unsupported_reason(lm) is None

    @classmethod
    def build(cls, lm):
        """The engine for `lm` (called only where `unsupported_reason(lm)` is None); raises
        `EngineUnavailable` where building fails."""
        return cls(lm)

    def prefill(self, token_ids, length, cache_length):
        raise NotImplementedError

    def step(self, token_ids, cache, index):
        raise NotImplementedError

    def reorder(self, cache, rows):
        return keras.tree.map_structure(lambda tensor: ops.take(tensor, rows, axis=0), cache)
