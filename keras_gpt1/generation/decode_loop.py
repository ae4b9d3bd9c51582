"""The decode loop in `keras.ops`: prefill once, then one-token steps over a KV cache.

`DecodeLoop` holds one decode configuration (shapes, sampler, engine, logits processors) and its
state, a dict of tensors plus the cache, the same on every backend. `init` prefills and picks the
first token, `body` is one step, `cond` says whether any row still runs. The model calls go
through a decode engine (the protocol in `engine.py`); everything between an engine's logits and
the next token is here, once for every engine: the logits processors, then the sampler or beam
search, then the prompt, stop and length rules.

How a batch of prompts of different lengths is decoded (every row's first token sits at
position 0, as GPT-1's absolute positions require):

1. Prompts are right-padded into a `[batch, max_length]` buffer (`max_length` bucketed, see
   `compile_cache.py`), so shapes are static and compiled loops are reused.
2. Prefill runs the first `p = min(prompt lengths)` positions (bucketed too; the extra positions
   write cache entries that are overwritten before any query can read them).
3. Each step feeds the token at position `i` (writing its keys/values at cache index `i`) and
   picks the token at `i + 1`. A row still inside its prompt keeps its prompt token instead of the
   sampled one, so all rows advance in lockstep with no padding inside the cache.
4. A row stops at a stop token or after its last new token; the loop ends when all rows have
   stopped.

The loop is `keras.ops.while_loop`, with no per-backend code: on JAX it lowers to the same
StableHLO as a hand-written `jax.lax.while_loop`, on TensorFlow to the same `tf.while_loop` graph,
and on PyTorch it is the same Python loop (where `generate_ids` steps from the host anyway), so
nothing is gained by dispatching by hand. `tools/bench/while_loop.py` times the two side by side;
docs/generation.md has the comparison.

Example:
```python
loop = DecodeLoop(KerasEngine(lm), Greedy(), batch=2, max_length=64, prefill_length=3,
                  has_stop=False, collect_logits=False, vocabulary_size=40478)
out = loop.run(token_ids, lengths, prefill_len, ends, seed, None)   # {"token_ids", "lengths"}
```
"""

import keras
from keras import ops

from keras_gpt1.generation.samplers import MASKED_LOGIT, Beam

# Written after a row has stopped (the output's padding mask says which positions are real).
PAD_TOKEN_ID = 0


class LogitsProcessor:
    """A rule that changes every step's next-token logits before a token is picked (a
    repetition penalty, banned ids, a minimum length). The decode loop applies its processors
    in order, in `keras.ops`, to whatever engine made the logits, before the sampler or beam
    search sees them (and `return_logits` returns what they saw).

    Subclasses implement `__call__(logits, tokens, position, prompt_lengths)`: `logits` float32
    `[rows, vocabulary]` for the token at `position` (a scalar, traced in a compiled loop);
    `tokens` `[rows, max_length]`, the sequences so far (real up to `position - 1`);
    `prompt_lengths` `[rows]`. It returns logits of the same shape. A row still inside its prompt
    keeps its prompt token whatever the logits say. `key()` is a hashable summary of the
    configuration, which keys the compiled loops.

    Example:
    ```python
    class BanIds(LogitsProcessor):
        def __init__(self, ids):
            self.ids = tuple(ids)

        def __call__(self, logits, tokens, position, prompt_lengths):
            banned = ops.any(ops.arange(logits.shape[-1])[:, None] == ops.array(self.ids)[None, :], axis=1)
            return ops.where(banned[None, :], MASKED_LOGIT, logits)

        def key(self):
            return ("BanIds", self.ids)

    generate_ids(lm, prompts, max_new_tokens=8, logits_processors=[BanIds([5])])
    ```
    """

    def __call__(self, logits, tokens, position, prompt_lengths):
        raise NotImplementedError

    def key(self):
        return (type(self).__name__,)


def _uniform(seed, step, shape):
    """Uniform noise in [0, 1) from `(seed, step)`, stateless so it can live inside a compiled loop."""
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        key = jax.random.fold_in(jax.random.PRNGKey(seed), step)
        return jax.random.uniform(key, shape, dtype="float32")
    if backend == "tensorflow":
        import tensorflow as tf

        seeds = tf.stack([tf.cast(seed, "int32"), tf.cast(step, "int32")])
        return tf.random.stateless_uniform(shape, seed=seeds, dtype="float32")
    # Eager torch: seed and step are Python ints here.
    return keras.random.uniform(shape, dtype="float32", seed=(int(seed) * 1000003 + int(step)) % (2**31 - 1))


def column(tokens, j):
    """`tokens[:, j]` for a traced scalar `j`."""
    return ops.slice(tokens, (0, j), (ops.shape(tokens)[0], 1))[:, 0]


def _filled_like(x, value):
    """`x`'s shape and dtype, every element `value` (a Python or traced scalar), made on `x`'s
    device. Not `full_like` or `where(c, value, x)`: on PyTorch those copy the scalar from the
    host, and before such a copy PyTorch waits for every kernel queued on the GPU."""
    return ops.zeros_like(x) + value


def _is_stop(token_ids, stop_ids):
    if stop_ids is None:
        return ops.zeros(ops.shape(token_ids), "bool")
    return ops.any(ops.equal(token_ids[:, None], stop_ids[None, :]), axis=1)


class DecodeLoop:
    """One decode configuration: the static parts (shapes, sampler, engine) closed over."""

    def __init__(
        self,
        engine,
        sampler,
        batch,
        max_length,
        prefill_length,
        has_stop,
        collect_logits,
        vocabulary_size,
        logits_processors=(),
    ):
        self.engine = engine
        self.logits_processors = tuple(logits_processors)
        self.sampler = sampler
        self.beam = isinstance(sampler, Beam)
        self.num_beams = sampler.num_beams if self.beam else 1
        self.batch = batch
        self.max_length = max_length
        self.prefill_length = prefill_length
        self.has_stop = has_stop
        self.collect_logits = collect_logits
        self.vocabulary_size = vocabulary_size

    # --- the state is a dict of tensors (plus the cache), the same on every backend ---

    def init(self, tokens, lengths, prefill_len, ends, seed, stop_ids):
        rows = self.batch * self.num_beams
        if self.beam:
            tokens = ops.repeat(tokens, self.num_beams, axis=0)
        logits, cache = self.engine.prefill(tokens[:, : self.prefill_length], prefill_len, self.max_length)
        state = dict(
            tokens=tokens,
            cache=cache,
            index=prefill_len - 1,
            done=ops.zeros((self.batch,), "bool"),
            out_len=ops.zeros((rows,), "int32") + ops.cast(prefill_len, "int32"),
            lengths=lengths,
            ends=ends,
            seed=seed,
        )
        if self.has_stop:
            state["stop_ids"] = stop_ids
        if self.beam:
            first = ops.one_hot(ops.zeros((self.batch,), "int32"), self.num_beams, dtype="float32")
            state["scores"] = (1.0 - first) * MASKED_LOGIT
            state["finished"] = ops.zeros((rows,), "bool")
        if self.collect_logits:
            state["logits"] = ops.zeros((rows, self.max_length, self.vocabulary_size), "float32")
        return self.advance(state, logits)

    def cond(self, state):
        return ops.logical_and(state["index"] < ops.max(state["ends"]) - 1, ops.logical_not(ops.all(state["done"])))

    def body(self, state):
        token = column(state["tokens"], state["index"])
        logits, cache = self.engine.step(token, state["cache"], state["index"])
        state = dict(state, cache=cache)
        return self.advance(state, logits)

    def advance(self, state, logits):
        """Picks the token at position `index + 1` from `logits` and writes it."""
        logits = self.process_logits(state, logits)
        if self.beam:
            return self._advance_beam(state, logits)
        j = state["index"] + 1
        tokens, done, lengths = state["tokens"], state["done"], state["lengths"]
        if self.sampler.needs_noise:
            noise = _uniform(state["seed"], j, (self.batch, self.vocabulary_size))
        else:
            noise = None
        sampled = self.sampler.choose(logits, noise)
        in_prompt = j < lengths
        token = ops.where(in_prompt, column(tokens, j), sampled)
        token = ops.where(done, _filled_like(token, PAD_TOKEN_ID), token)
        new = dict(state)
        new["tokens"] = ops.slice_update(tokens, (0, j), ops.cast(token, tokens.dtype)[:, None])
        new["out_len"] = ops.where(done, state["out_len"], _filled_like(state["out_len"], j + 1))
        stop = ops.logical_or(_is_stop(token, state.get("stop_ids")), j >= state["ends"] - 1)
        new["done"] = ops.logical_or(done, ops.logical_and(ops.logical_not(in_prompt), stop))
        new["index"] = j
        if self.collect_logits:
            new["logits"] = ops.slice_update(state["logits"], (0, j, 0), logits[:, None, :])
        return new

    def process_logits(self, state, logits):
        """The logits processors, in order, on the logits for position `index + 1`."""
        if not self.logits_processors:
            return logits
        lengths = state["lengths"]
        if self.beam:
            lengths = ops.repeat(lengths, self.num_beams, axis=0)
        for processor in self.logits_processors:
            logits = processor(logits, state["tokens"], state["index"] + 1, lengths)
        return logits

    def _advance_beam(self, state, logits):
        batch, beams, vocab = self.batch, self.num_beams, self.vocabulary_size
        j = state["index"] + 1
        tokens, finished = state["tokens"], state["finished"]
        log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        # A finished hypothesis may only grow by padding, at no cost: its score is frozen.
        pad_only = ops.where(ops.arange(vocab) == PAD_TOKEN_ID, 0.0, MASKED_LOGIT)
        log_probs = ops.where(finished[:, None], pad_only[None, :], log_probs)
        candidates = ops.reshape(state["scores"], (batch * beams, 1)) + log_probs
        top_scores, top_index = ops.top_k(ops.reshape(candidates, (batch, beams * vocab)), beams)
        source_beam = top_index // vocab
        next_token = ops.cast(top_index % vocab, "int32")
        # Rows still inside their prompt keep their beams, scores and the prompt token.
        in_prompt = (j < state["lengths"])[:, None]
        prompt_token = ops.reshape(column(tokens, j), (batch, beams))
        source_beam = ops.where(in_prompt, ops.arange(beams, dtype="int32")[None, :], ops.cast(source_beam, "int32"))
        next_token = ops.where(in_prompt, prompt_token, next_token)
        scores = ops.where(in_prompt, state["scores"], top_scores)
        source = ops.reshape(ops.arange(batch, dtype="int32")[:, None] * beams + source_beam, (-1,))

        tokens = ops.take(tokens, source, axis=0)
        cache = self.engine.reorder(state["cache"], source)
        finished = ops.take(finished, source, axis=0)
        out_len = ops.take(state["out_len"], source, axis=0)
        next_token = ops.reshape(next_token, (-1,))
        token = ops.where(finished, _filled_like(next_token, PAD_TOKEN_ID), next_token)
        new = dict(state, cache=cache, scores=scores, index=j)
        new["tokens"] = ops.slice_update(tokens, (0, j), ops.cast(token, tokens.dtype)[:, None])
        new["out_len"] = ops.where(finished, out_len, _filled_like(out_len, j + 1))
        lengths = ops.repeat(state["lengths"], beams, axis=0)
        ends = ops.repeat(state["ends"], beams, axis=0)
        stop = ops.logical_or(_is_stop(token, state.get("stop_ids")), j >= ends - 1)
        new["finished"] = ops.logical_or(finished, ops.logical_and(j >= lengths, stop))
        # Hypotheses are sorted by score: a row is done when its best one is.
        new["done"] = ops.reshape(new["finished"], (batch, beams))[:, 0]
        return new

    def outputs(self, state):
        out = {"token_ids": state["tokens"], "lengths": state["out_len"]}
        if self.beam:
            pick = ops.arange(self.batch, dtype="int32") * self.num_beams
            out = {k: ops.take(v, pick, axis=0) for k, v in out.items()}
            out["scores"] = state["scores"][:, 0]
        if self.collect_logits:
            out["logits"] = state["logits"]
        return out

    def run_chunk(self, state, limit):
        """Runs the loop until position `limit` (a scalar tensor) is written, or the loop ends."""
        return _while(lambda s: ops.logical_and(self.cond(s), s["index"] < limit), self.body, state)

    def run(self, *args):
        state = self.init(*args)
        return self.outputs(_while(self.cond, self.body, state))


def _while(cond, body, state):
    """`keras.ops.while_loop` over the state dict: `lax.while_loop` on JAX, `tf.while_loop` on
    TensorFlow (compiled by XLA inside `tf.function(jit_compile=True)`), a Python loop on PyTorch."""
    return ops.while_loop(cond, body, state)
