"""`generate` and `generate_ids`: the public entry points, and streaming.

`generate` takes any prompt form (`prompts.py`) and returns the same form; `generate_ids` does
the work on a list of id arrays: it checks the arguments and caps the request
(`prompts.new_token_allowance`), picks a decode engine (`registry.make_engine`), builds the
decode loop over it (`decode_loop.py`) and runs it compiled (`compile_cache.py`).

Per backend:
- JAX: prefill and the whole while-loop in one `jax.jit` (weights passed as arguments).
- TensorFlow: the same loop inside `tf.function(jit_compile=True)` (XLA).
- PyTorch: nothing is compiled; the host runs the loop's steps eagerly, over the PyTorch engine
  (the model's own weights, a cache updated in place) or the Keras layers where that engine
  declines a model.

With a `streamer` callback, JAX and TensorFlow run the same compiled loop in chunks of steps
and hand each chunk's tokens to the streamer when it finishes: one compiled call per chunk
(sized from the measured cost of a call and of a step, see `next_chunk`) instead of one per
token, so streaming costs about what the fully compiled loop does (`tools/bench/generate.py`
measures the ratio). PyTorch runs its step loop eagerly anyway and streams every step.

Example:
```python
lm = GPT1CausalLM.from_preset("gpt1_tiny", dropout=0.0)
out = generate(lm, [[5, 6, 7], [8, 9]], max_new_tokens=4)   # a list of two id lists
```
"""

import time
import warnings

import keras
import numpy as np
from keras import ops

from keras_gpt1.generation.compile_cache import LENGTH_BUCKET, PREFILL_BUCKET, compiled, round_up
from keras_gpt1.generation.decode_loop import PAD_TOKEN_ID, DecodeLoop, LogitsProcessor, column
from keras_gpt1.generation.engine import DecodeEngine
from keras_gpt1.generation.prompts import (
    check_prompts,
    check_stop_ids,
    detokenize,
    new_token_allowance,
    normalize_prompts,
)
from keras_gpt1.generation.registry import make_engine
from keras_gpt1.generation.samplers import Beam, get_sampler
from keras_gpt1.utils.checks import as_int32_ids, check_integer
from keras_gpt1.utils.generation_defaults import DEFAULT_MAX_NEW_TOKENS

# Streaming on JAX and TensorFlow: each compiled call costs a fixed amount on top of its steps (a
# dispatch and a read-back, and, for int8 or bfloat16 weights on a CPU, XLA converting every
# weight to a wider type once per call, outside its loop), so the loop runs in chunks of steps.
# The first chunk has STREAM_CHUNK steps (the first tokens show at once), the second twice as
# many, and from the two timings `next_chunk` separates the per-call cost from the per-step
# cost (when the first call compiled, it measures a third chunk instead). Later chunks are as
# long as the pace fits in STREAM_INTERVAL seconds, and long enough that the per-call cost stays
# within STREAM_OVERHEAD of the chunk's steps. The timings are kept with the compiled loop, so a
# later call sizes every chunk at once, with no measuring chunks (its first token shows after
# the prefill call either way).
STREAM_CHUNK = 8
STREAM_INTERVAL = 0.2
STREAM_OVERHEAD = 0.05
MAX_TIMINGS = 32


def generate_ids(
    lm,
    prompts,
    max_new_tokens=None,
    sampler="greedy",
    stop_token_ids=None,
    seed=None,
    streamer=None,
    return_logits=False,
    engine="auto",
    max_length=None,
    logits_processors=(),
    **sampler_args,
):
    """Generates from a list of 1-D int prompts (of any lengths) and returns numpy arrays.

    Each row gets `max_new_tokens` new tokens, or as many as fit after its prompt in the
    context (with a warning; `new_token_allowance` has the rule), or, with `max_length`
    (KerasHub's meaning), grows to `max_length` tokens in all, prompt included (give one or the
    other).

    Returns a dict: `"token_ids"` `[batch, total]` (prompt, then new tokens, then padding 0),
    `"padding_mask"` (True on real tokens), `"prompt_lengths"`, `"lengths"`; `"logits"`
    `[batch, total, vocab]` if `return_logits` (row `j` holds the logits that chose token `j`,
    after the logits processors; meaningful for `j >= min(prompt_lengths)`), `"scores"` (summed
    log-probabilities) for beam search. A stop token is kept in the output; the row ends after it.

    `streamer(ids)`, if given, is called after every step with an int array `[batch]`: the token
    just produced for each row, or -1 where a row is still in its prompt or already finished.
    `engine` is a registered engine's name (`"auto"`, `"keras"`, `"torch"`: `registry.py`) or a
    `DecodeEngine`; `logits_processors`, `decode_loop.LogitsProcessor`s applied to every step's
    logits, whatever the engine.

    Example:
    ```python
    out = generate_ids(lm, [np.array([5, 6, 7]), np.array([8])], max_new_tokens=4)
    out["token_ids"][1, :out["lengths"][1]]      # [8, x, x, x, x]
    ```
    """
    backbone = lm.backbone
    sampler = get_sampler(sampler, **sampler_args)
    prompts, lengths, ends = _prompts_and_ends(backbone, prompts, max_new_tokens, max_length)
    stop, seed = _checked_search(sampler, backbone.vocabulary_size, stop_token_ids, seed, streamer, return_logits)
    # PyTorch compiles nothing: the host steps the loop, and the prefill covers exactly the
    # prefix every row has. A compiled loop is specialised to its shapes, so they are bucketed.
    eager = keras.config.backend() == "torch"
    width = round_up(int(ends.max()), LENGTH_BUCKET, backbone.max_sequence_length)
    prefill_len = int(lengths.min())
    prefill_width = prefill_len if eager else round_up(prefill_len, PREFILL_BUCKET, width)
    chosen = make_engine(lm, engine)
    processors = tuple(logits_processors)
    if not all(isinstance(p, LogitsProcessor) for p in processors):
        raise ValueError(f"`logits_processors` must be LogitsProcessor objects; got {processors!r}.")
    loop = DecodeLoop(
        chosen,
        sampler,
        len(prompts),
        width,
        prefill_width,
        bool(stop),
        return_logits,
        backbone.vocabulary_size,
        processors,
    )
    # A registered engine is rebuilt from the model on every call; an engine object passed in is its own key.
    engine_key = id(chosen) if isinstance(engine, DecodeEngine) else chosen.name
    key = (streamer is not None or eager, engine_key, len(prompts), width, prefill_width, len(stop), return_logits)
    key += (sampler.key(), tuple(p.key() for p in processors))
    fns = compiled(
        lm, key, lambda: {"init": loop.init, "step": loop.body, "chunk": loop.run_chunk, "run": loop.run}, chosen.xla
    )
    args = _loop_inputs(prompts, width, lengths, prefill_len, ends, seed, stop, eager)
    end = int(ends.max()) - 1
    if streamer is None and not eager:
        out = fns["run"](*args)
    elif not eager:
        # The chunk timings stay with the compiled loop, so later calls size their chunks at once.
        timings = fns.setdefault("chunk_timings", [])
        out = loop.outputs(_stream_in_chunks(fns, args, streamer, lengths, end, timings))
    else:
        out = loop.outputs(_step_from_host(fns, args, streamer, lengths, end, loop.beam))
    out = {k: ops.convert_to_numpy(v) for k, v in out.items()}
    final = int(out["lengths"].max())
    result = {
        "token_ids": out["token_ids"][:, :final],
        "padding_mask": np.arange(final)[None, :] < out["lengths"][:, None],
        "prompt_lengths": lengths,
        "lengths": out["lengths"].astype("int32"),
    }
    if "scores" in out:
        result["scores"] = out["scores"]
    if return_logits:
        result["logits"] = out["logits"][:, :final]
    return result


def _checked_search(sampler, vocabulary_size, stop_token_ids, seed, streamer, return_logits):
    """The stop ids as a tuple and the seed as an int (drawn when None), checked with the sampler."""
    stop = check_stop_ids(stop_token_ids, vocabulary_size)
    if isinstance(sampler, Beam):
        if sampler.num_beams > vocabulary_size:
            raise ValueError(f"num_beams ({sampler.num_beams}) exceeds the vocabulary size.")
        if streamer is not None or return_logits:
            raise ValueError("Beam search does not stream or return logits (its hypotheses reorder).")
    if seed is None:
        seed = int(np.random.randint(0, 2**31 - 1))
    return stop, check_integer("seed", seed, -(2**31), 2**31 - 1)  # it enters the loop as an int32


def _prompts_and_ends(backbone, prompts, max_new_tokens, max_length):
    """The prompts as checked int32 arrays, their lengths, and where each row ends (its prompt
    and new tokens): at `max_length`, or after `max_new_tokens` capped by `new_token_allowance`
    (with a warning naming the cap)."""
    context = backbone.max_sequence_length
    prompts = [
        as_int32_ids(np.reshape(p, -1) if hasattr(p, "shape") else p, f"Prompt {i}").reshape(-1)
        for i, p in enumerate(prompts)
    ]
    if not prompts:
        raise ValueError("No prompts given.")
    lengths = np.array([p.size for p in prompts], dtype="int32")
    longest, i = int(lengths.max()), int(np.argmax(lengths))
    if max_length is not None:
        if max_new_tokens is not None:
            raise ValueError("Give `max_length` (total tokens, prompt included) or `max_new_tokens`, not both.")
        max_length = check_integer("max_length", max_length, 2, context)
        if longest >= max_length:
            raise ValueError(
                f"Prompt {i} has {longest} tokens, leaving no room below `max_length` "
                f"({max_length}, the output length, prompt included). Raise `max_length` or shorten it."
            )
        check_prompts(prompts, backbone.vocabulary_size, context, max_length - longest)
        return prompts, lengths, np.full_like(lengths, max_length)
    requested = check_integer("max_new_tokens", DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens, 1)
    # A prompt that fills the whole context has no room at all: `check_prompts` refuses it.
    check_prompts(
        prompts,
        backbone.vocabulary_size,
        context,
        requested if longest >= context else min(requested, context - longest),
    )
    allowed = ops.convert_to_numpy(new_token_allowance(lengths, min(requested, context), context)).astype("int32")
    capped = int((allowed < requested).sum())
    if capped:
        rows = f"prompt {i} ({longest} tokens)" if capped == 1 else f"{capped} of the prompts"
        warnings.warn(
            f"max_new_tokens={requested} does not fit after {rows} in the model's context of {context} "
            f"positions: every prompt is kept whole, and each row generates what fits after it, at most "
            f"{context - longest} new tokens after prompt {i}.",
            UserWarning,
            stacklevel=4,
        )
    return prompts, lengths, lengths + allowed


def _loop_inputs(prompts, width, lengths, prefill_len, ends, seed, stop, eager):
    """`DecodeLoop.init`'s arguments: the prompts right-padded to `width`, and the scalars as
    int32 tensors, or as Python ints for an eager loop (reading a tensor back on the host would
    wait for the device)."""
    tokens = np.zeros((len(prompts), width), dtype="int32")
    for i, p in enumerate(prompts):
        tokens[i, : p.size] = p

    def scalar(value):
        return int(value) if eager else ops.convert_to_tensor(np.int32(value))

    stop_ids = ops.convert_to_tensor(np.array(stop, "int32")) if stop else None
    tensors = [ops.convert_to_tensor(x) for x in (tokens, lengths, ends.astype("int32"))]
    return tensors[0], tensors[1], scalar(prefill_len), tensors[2], scalar(seed), stop_ids


def _step_from_host(fns, args, streamer, lengths, end, is_beam):
    """Runs the loop one step per call from the host (PyTorch), streaming every step."""
    state = fns["init"](*args)
    _stream(streamer, state, lengths)
    # Reading `done` back makes the host wait for the device. On a GPU it is read every few
    # steps, so the host queues the next steps while the GPU runs; steps after every row has
    # stopped write only padding, so the output is the same. (Not for beam search: there the
    # extra steps re-rank finished hypotheses, which could swap two of equal score.)
    check_every = 8 if streamer is None and not is_beam and _on_gpu(state["done"]) else 1
    steps = 0
    while int(ops.convert_to_numpy(state["index"])) < end and (
        steps % check_every or not bool(ops.convert_to_numpy(ops.all(state["done"])))
    ):
        state = fns["step"](state)
        steps += 1
        _stream(streamer, state, lengths)
    return state


def _on_gpu(tensor):
    device = getattr(tensor, "device", None)  # a torch.device on PyTorch
    return getattr(device, "type", None) == "cuda"


def _stream_in_chunks(fns, args, streamer, lengths, end, timings):
    """Runs the compiled loop a chunk of steps at a time, streaming each chunk's tokens.

    `timings` holds the `(steps, seconds)` of this loop's earlier chunk calls, and gets this
    call's appended (the last MAX_TIMINGS are kept).
    """
    state = fns["init"](*args)
    _stream(streamer, state, lengths)
    shown = int(ops.convert_to_numpy(state["index"]))
    while shown < end and not bool(ops.convert_to_numpy(ops.all(state["done"]))):
        chunk = next_chunk(timings)
        # A tail shorter than a chunk joins this chunk: one call fewer, each paying the
        # per-call cost.
        limit = end if end - shown < 2 * chunk else shown + chunk
        limit = ops.convert_to_tensor(np.int32(limit))
        start = time.perf_counter()
        state = fns["chunk"](state, limit)
        index = int(ops.convert_to_numpy(state["index"]))
        timings.append((index - shown, time.perf_counter() - start))
        del timings[:-MAX_TIMINGS]
        tokens = ops.convert_to_numpy(state["tokens"])
        out_len = ops.convert_to_numpy(state["out_len"])
        for j in range(shown + 1, index + 1):
            # Written for a row: past its prompt and before the row stopped (`out_len` stops
            # growing then; later positions hold padding).
            fresh = (j >= lengths) & (j < out_len)
            streamer(np.where(fresh, tokens[:, j], -1).astype("int64"))
        shown = index
    return state


def next_chunk(timings):
    """Steps for the next streamed chunk, from the `(steps, seconds)` of the chunks so far.

    A call costs `overhead + steps * step` seconds; a least-squares line through the timings
    gives both. A first chunk that took at least as long as the next, with no more steps than
    it, compiled the loop, and is left out. The chunk is at least STREAM_CHUNK steps, at least
    what the pace fits in STREAM_INTERVAL, and at least enough steps that `overhead` is within
    STREAM_OVERHEAD of them.
    """
    if len(timings) >= 2 and timings[0][0] <= timings[1][0] and timings[0][1] >= timings[1][1]:
        timings = timings[1:]
    if not timings:
        return STREAM_CHUNK
    steps = np.array([n for n, _ in timings], "float64")
    seconds = np.array([t for _, t in timings], "float64")
    if len(set(steps.tolist())) < 2:
        return 2 * timings[-1][0]  # another size, so the line can be fitted
    step, overhead = np.polyfit(steps, seconds, 1)
    if step <= 0:  # noise swamped the per-step cost: treat the time as all steps
        step, overhead = float(seconds.sum() / steps.sum()), 0.0
    overhead = max(overhead, 0.0)
    return int(max(STREAM_CHUNK, STREAM_INTERVAL / step, np.ceil(overhead / (STREAM_OVERHEAD * step))))


def _stream(streamer, state, lengths):
    if streamer is None:
        return
    j = int(ops.convert_to_numpy(state["index"]))
    tokens = ops.convert_to_numpy(column(state["tokens"], j))
    out_len = ops.convert_to_numpy(state["out_len"])
    # New for a row: past its prompt and actually written (not padding after it stopped).
    fresh = (j >= lengths) & (out_len == j + 1)
    streamer(np.where(fresh, tokens, -1).astype("int64"))


def generate(
    lm,
    inputs,
    max_new_tokens=None,
    sampler="greedy",
    stop_token_ids=None,
    seed=None,
    streamer=None,
    max_length=None,
    strip_prompt=False,
    **sampler_args,
):
    """Generates continuations; the output mirrors the input's form.

    - a string → a string (prompt + continuation, detokenized; stop tokens dropped);
    - a list of strings → a list of strings;
    - a list of ids → a list of ids (prompt + new tokens, a stop token included);
    - a list of id lists → a list of id lists;
    - a 2-D array or `{"token_ids", "padding_mask"}` dict → a dict of right-padded numpy arrays.

    `sampler` is a name (`"greedy"`, `"random"`, `"top_k"`, `"top_p"`, `"beam"`) or a `Sampler`;
    `sampler_args` go to it (`temperature=`, `k=`, `p=`, `num_beams=`). `stop_token_ids` end a
    row independently of the others. `seed` makes sampling reproducible. `max_length` (KerasHub's
    meaning: output length, prompt included) replaces `max_new_tokens`; `strip_prompt=True`
    returns only the generated tokens (text).

    Example:
    ```python
    lm.generate([5, 6, 7], max_new_tokens=8)                   # greedy, token ids
    lm.generate("the cat", max_new_tokens=8, sampler="top_p", p=0.9, seed=0)
    ```
    """
    prompts, form = normalize_prompts(inputs, getattr(lm, "tokenizer", None))
    out = generate_ids(
        lm, prompts, max_new_tokens, sampler, stop_token_ids, seed, streamer, max_length=max_length, **sampler_args
    )
    starts = out["prompt_lengths"] if strip_prompt else np.zeros_like(out["prompt_lengths"])
    rows = [ids[s:n] for ids, s, n in zip(out["token_ids"], starts, out["lengths"])]
    if form in ("text", "texts"):
        stop = set(check_stop_ids(stop_token_ids, lm.backbone.vocabulary_size))
        texts = [detokenize(lm.tokenizer, [t for t in row.tolist() if t not in stop]) for row in rows]
        return texts[0] if form == "text" else texts
    if form == "ids":
        return rows[0].tolist()
    if form == "ids_batch":
        return [row.tolist() for row in rows]
    if not strip_prompt:
        return {"token_ids": out["token_ids"], "padding_mask": out["padding_mask"]}
    width = max(row.size for row in rows)
    token_ids = np.full((len(rows), width), PAD_TOKEN_ID, dtype=out["token_ids"].dtype)
    for i, row in enumerate(rows):
        token_ids[i, : row.size] = row
    return {
        "token_ids": token_ids,
        "padding_mask": np.arange(width)[None, :] < np.array([r.size for r in rows])[:, None],
    }
