"""`generate` and `generate_ids`: the public entry points, and streaming.

`generate` takes any prompt form (`prompts.py`) and returns the same form; `generate_ids` does
the work on a list of id arrays: it checks the arguments, picks an engine (`make_engine`), builds
the decode loop (`decode_loop.py`) and runs it compiled (`compile_cache.py`).

Per backend:
- JAX: prefill and the whole while-loop in one `jax.jit` (weights passed as arguments).
- TensorFlow: the same loop inside `tf.function(jit_compile=True)` (XLA).
- PyTorch: an eager loop over the decode step of `torch_engine.TorchEngine` (the model's own
  weights, a cache updated in place), or of the Keras layers where that engine declines a model.

With a `streamer` callback, JAX and TensorFlow run the same compiled loop in chunks of steps
and hand each chunk's tokens to the streamer when it finishes: one compiled call per chunk
(sized from the measured cost of a call and of a step, see `next_chunk`) instead of one per
token, so streaming costs about what the fully compiled loop does (`tools/bench_generate.py`
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
from keras_gpt1.generation.decode_loop import PAD_TOKEN_ID, DecodeLoop, KerasEngine, column
from keras_gpt1.generation.prompts import check_prompts, check_stop_ids, detokenize, normalize_prompts
from keras_gpt1.generation.samplers import Beam, get_sampler
from keras_gpt1.generation.torch_engine import EngineUnavailable, TorchEngine, cached_torch_engine
from keras_gpt1.utils.checks import as_int32_ids, check_integer

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


def make_engine(lm, engine="auto"):
    """The engine that makes the model calls: `"keras"` (the Keras layers), `"torch"`
    (`TorchEngine`, a ValueError saying why where it cannot run the model), or `"auto"`: the
    PyTorch engine where it runs the model, else the Keras layers (also, with a warning, when a
    private PyTorch API the engine needs fails while it is built)."""
    if engine == "auto":
        if not TorchEngine.supports(lm):
            return KerasEngine(lm)
        try:
            return cached_torch_engine(lm)
        except EngineUnavailable as error:
            warnings.warn(f"Generating through the Keras layers: the PyTorch engine is unavailable: {error}.")
            return KerasEngine(lm)
    if engine == "torch":
        reason = TorchEngine.unsupported_reason(lm)
        if reason is not None:
            raise ValueError(f"engine='torch' cannot run this model: {reason}. Use engine='keras'.")
        try:
            return cached_torch_engine(lm)
        except EngineUnavailable as error:
            raise ValueError(f"engine='torch' cannot run this model: {error}. Use engine='keras'.") from error
    if engine == "keras":
        return KerasEngine(lm)
    raise ValueError(f"Unknown engine {engine!r}; choose 'auto', 'keras' or 'torch'.")


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
    **sampler_args,
):
    """Generates from a list of 1-D int prompts (of any lengths) and returns numpy arrays.

    Each row gets `max_new_tokens` new tokens, or, with `max_length` (KerasHub's meaning),
    grows to `max_length` tokens in all, prompt included (give one or the other).

    Returns a dict: `"token_ids"` `[batch, total]` (prompt, then new tokens, then padding 0),
    `"padding_mask"` (True on real tokens), `"prompt_lengths"`, `"lengths"`; `"logits"`
    `[batch, total, vocab]` if `return_logits` (row `j` holds the logits that chose token `j`;
    meaningful for `j >= min(prompt_lengths)`), `"scores"` (summed log-probabilities) for beam
    search. A stop token is kept in the output; the row ends after it.

    `streamer(ids)`, if given, is called after every step with an int array `[batch]`: the token
    just produced for each row, or -1 where a row is still in its prompt or already finished.

    Example:
    ```python
    out = generate_ids(lm, [np.array([5, 6, 7]), np.array([8])], max_new_tokens=4)
    out["token_ids"][1, :out["lengths"][1]]      # [8, x, x, x, x]
    ```
    """
    backbone = lm.backbone
    sampler = get_sampler(sampler, **sampler_args)
    context = backbone.max_sequence_length
    prompts = [
        as_int32_ids(np.reshape(p, -1) if hasattr(p, "shape") else p, f"Prompt {i}").reshape(-1)
        for i, p in enumerate(prompts)
    ]
    if not prompts:
        raise ValueError("No prompts given.")
    lengths = np.array([p.size for p in prompts], dtype="int32")
    if max_length is not None:
        if max_new_tokens is not None:
            raise ValueError("Give `max_length` (total tokens, prompt included) or `max_new_tokens`, not both.")
        max_length = check_integer("max_length", max_length, 2, context)
        if lengths.max() >= max_length:
            i = int(np.argmax(lengths))
            raise ValueError(
                f"Prompt {i} has {int(lengths[i])} tokens, leaving no room below `max_length` "
                f"({max_length}, the output length, prompt included). Raise `max_length` or shorten it."
            )
        ends = np.full_like(lengths, max_length)
        max_new_tokens = int(max_length - lengths.min())
    else:
        max_new_tokens = check_integer("max_new_tokens", 32 if max_new_tokens is None else max_new_tokens, 1)
        ends = None
        longest = int(lengths.max())
        if longest < context < longest + max_new_tokens:
            # Positions are learned and absolute: nothing fits past the context, so the request is
            # capped (as the exported signatures cap it) rather than refused or silently cut.
            warnings.warn(
                f"max_new_tokens={max_new_tokens} does not fit after the longest prompt ({longest} "
                f"tokens) in the model's context of {context} positions; generating at most "
                f"{context - longest} new tokens.",
                UserWarning,
                stacklevel=3,
            )
            max_new_tokens = context - longest
    check_prompts(prompts, backbone.vocabulary_size, context, max_new_tokens)
    if ends is None:
        ends = lengths + int(max_new_tokens)
    stop = check_stop_ids(stop_token_ids, backbone.vocabulary_size)
    is_beam = isinstance(sampler, Beam)
    if is_beam and sampler.num_beams > backbone.vocabulary_size:
        raise ValueError(f"num_beams ({sampler.num_beams}) exceeds the vocabulary size.")
    if is_beam and (streamer is not None or return_logits):
        raise ValueError("Beam search does not stream or return logits (its hypotheses reorder).")
    if seed is None:
        seed = int(np.random.randint(0, 2**31 - 1))
    else:
        seed = check_integer("seed", seed, -(2**31), 2**31 - 1)  # it enters the loop as an int32

    batch = len(prompts)
    total = int(ends.max())
    max_length = round_up(total, LENGTH_BUCKET, context)
    prefill_len = int(lengths.min())
    prefill_bucket = round_up(prefill_len, PREFILL_BUCKET, max_length)
    tokens = np.zeros((batch, max_length), dtype="int32")
    for i, p in enumerate(prompts):
        tokens[i, : p.size] = p

    eng = make_engine(lm, engine)
    if eng.name == "torch":
        # Eager: prefill exactly the shared prefix; no bucketing needed.
        prefill_bucket = prefill_len
    loop = DecodeLoop(
        eng, sampler, batch, max_length, prefill_bucket, bool(stop), return_logits, backbone.vocabulary_size
    )
    stepwise = streamer is not None or keras.config.backend() == "torch"
    key = (
        "stepwise" if stepwise else "loop",
        eng.name,
        batch,
        max_length,
        prefill_bucket,
        len(stop),
        return_logits,
        sampler.key(),
    )
    fns = compiled(
        lm,
        key,
        lambda: {
            "init": loop.init,
            "step": loop.body,
            "chunk": loop.run_chunk,
            "run": loop.run,
            "outputs": loop.outputs,
        },
    )

    if keras.config.backend() == "torch":
        args = (
            ops.convert_to_tensor(tokens),
            ops.convert_to_tensor(lengths),
            prefill_len,
            ops.convert_to_tensor(ends.astype("int32")),
            seed,
            ops.convert_to_tensor(np.array(stop, "int32")) if stop else None,
        )
    else:
        args = (
            ops.convert_to_tensor(tokens),
            ops.convert_to_tensor(lengths),
            ops.convert_to_tensor(np.int32(prefill_len)),
            ops.convert_to_tensor(ends.astype("int32")),
            ops.convert_to_tensor(np.int32(seed)),
            ops.convert_to_tensor(np.array(stop, "int32")) if stop else None,
        )

    if not stepwise:
        out = fns["run"](*args)
    elif streamer is not None and keras.config.backend() != "torch":
        # The chunk timings stay with the compiled loop, so later calls size their chunks at once.
        timings = fns.setdefault("chunk_timings", [])
        out = loop.outputs(_stream_in_chunks(fns, args, streamer, lengths, int(ends.max()) - 1, timings))
    else:
        state = fns["init"](*args)
        _stream(streamer, state, prefill_len, lengths)
        end = int(ends.max()) - 1
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
            _stream(streamer, state, None, lengths)
        out = loop.outputs(state)

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


def _on_gpu(tensor):
    device = getattr(tensor, "device", None)  # a torch.device on PyTorch
    return getattr(device, "type", None) == "cuda"


def _stream_in_chunks(fns, args, streamer, lengths, end, timings):
    """Runs the compiled loop a chunk of steps at a time, streaming each chunk's tokens.

    `timings` holds the `(steps, seconds)` of this loop's earlier chunk calls, and gets this
    call's appended (the last MAX_TIMINGS are kept).
    """
    state = fns["init"](*args)
    _stream(streamer, state, None, lengths)
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


def _stream(streamer, state, prefill_len, lengths):
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
