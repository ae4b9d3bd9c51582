"""Generation with the KV cache, samplers, scoring, quantized/bf16 inference, and the CLI.

The oracle for cached decoding is the model's own full forward pass (no cache, padding mask),
recomputed from scratch for every new token; the oracle for beam search is exhaustive search.
"""

import io
import contextlib
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from conftest import BACKEND, TINY_CONFIG, to_numpy
from keras_gpt1 import GPT1Backbone, GPT1CausalLM
from keras_gpt1.generation import Beam, TopK, TopP, generate_ids, get_sampler

VOCAB = TINY_CONFIG["vocabulary_size"]
# Ragged prompts: the shortest (2) sets the prefill, the longest (7) is still in its prompt for
# five steps while the others generate.
PROMPT_LENGTHS = (4, 2, 7)
NEW_TOKENS = 6


def _prompts(lengths=PROMPT_LENGTHS, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, VOCAB, n).astype("int32") for n in lengths]


def _full_logits(lm, rows):
    """Full forward (no cache) over rows right-padded to the whole context: logits
    [batch, context, vocab]. One fixed length keeps `predict_on_batch` to one compile per batch
    size (eager JAX recompiles every op for every new shape)."""
    length = lm.backbone.max_sequence_length
    ids = np.zeros((len(rows), length), "int32")
    mask = np.zeros((len(rows), length), "int32")
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return np.asarray(lm.predict_on_batch({"token_ids": ids, "padding_mask": mask})).astype("float64")


def _greedy_by_recomputation(lm, prompts, new_tokens, stop=()):
    rows = [list(map(int, p)) for p in prompts]
    active = [True] * len(rows)
    for _ in range(new_tokens):
        logits = _full_logits(lm, rows)
        for i, row in enumerate(rows):
            if active[i]:
                row.append(int(logits[i, len(row) - 1].argmax()))
                active[i] = row[-1] not in stop
    return rows


@pytest.fixture(scope="module")
def lm():
    keras.utils.set_random_seed(7)
    return GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))


@pytest.fixture(scope="module")
def sharp_lm():
    """A model with peaked next-token distributions (random GPT-1 init gives nearly flat ones),
    so that top-k/top-p sets and quantization errors are meaningful."""
    keras.utils.set_random_seed(11)
    model = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    embedding = model.backbone.token_embedding.embeddings
    embedding.assign(embedding * 7.0)
    return model


@pytest.fixture(scope="module")
def greedy_run(lm):
    return generate_ids(lm, _prompts(), max_new_tokens=NEW_TOKENS, return_logits=True)


# --- correctness of cached decoding ---


def test_greedy_with_cache_equals_full_recomputation_ragged(lm, greedy_run):
    expected = _greedy_by_recomputation(lm, _prompts(), NEW_TOKENS)
    got = [ids[:n].tolist() for ids, n in zip(greedy_run["token_ids"], greedy_run["lengths"])]
    assert got == expected
    assert greedy_run["prompt_lengths"].tolist() == list(PROMPT_LENGTHS)
    assert greedy_run["lengths"].tolist() == [n + NEW_TOKENS for n in PROMPT_LENGTHS]
    for row, n in zip(greedy_run["padding_mask"], greedy_run["lengths"]):
        assert row.tolist() == [True] * n + [False] * (len(row) - n)


def test_cached_logits_equal_full_forward_at_every_step(lm, greedy_run):
    ids, lengths = greedy_run["token_ids"], greedy_run["lengths"]
    full = _full_logits(lm, [r[:n] for r, n in zip(ids, lengths)])
    start = min(PROMPT_LENGTHS)  # every step from the first one after the prefill
    checked = 0
    for i, n in enumerate(lengths):
        for j in range(start, n):
            np.testing.assert_allclose(greedy_run["logits"][i, j], full[i, j - 1], atol=1e-4, rtol=0)
            checked += 1
    assert checked == sum(n + NEW_TOKENS - start for n in PROMPT_LENGTHS)


@pytest.mark.skipif(BACKEND != "torch", reason="the Keras-layer engine is the default elsewhere")
def test_torch_keras_engine_agrees_with_functional_engine(lm, greedy_run):
    out = generate_ids(lm, _prompts(), max_new_tokens=NEW_TOKENS, engine="keras")
    np.testing.assert_array_equal(out["token_ids"], greedy_run["token_ids"])


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch engine's decode step")
def test_torch_engine_position_tensor_step_equals_eager_step(lm):
    """On a GPU every decode step is one CUDA graph replay of `_position_step`, whose shapes do
    not depend on the position: keys and values go in with `index_copy_` and attention reads the
    whole cache, masked past the position. On any device it must give the eager step's logits and
    cache (and on a GPU, so must `step`, the replayed graph)."""
    import torch

    from keras_gpt1.generation.registry import make_engine

    engine = make_engine(lm, "torch")
    length = TINY_CONFIG["max_sequence_length"]
    prompt = torch.tensor(np.stack([p[:2] for p in _prompts()]), device=engine.device)
    with torch.no_grad():
        caches = {name: engine.prefill(prompt, 2, length)[1] for name in ("eager", "position", "step")}
        tokens = prompt[:, 1]
        for index in range(2, 9):
            eager = engine._eager_step(tokens, caches["eager"], index)
            position = torch.tensor([index], device=engine.device)
            by_position = engine._position_step(tokens, caches["position"], position)
            stepped, _ = engine.step(tokens, caches["step"], index)
            for got, cache in ((by_position, caches["position"]), (stepped, caches["step"])):
                np.testing.assert_allclose(to_numpy(got), to_numpy(eager), atol=1e-5, rtol=0)
                for got_pair, eager_pair in zip(cache, caches["eager"]):
                    for got_part, eager_part in zip(got_pair, eager_pair):
                        np.testing.assert_allclose(to_numpy(got_part), to_numpy(eager_part), atol=1e-6, rtol=0)
            tokens = eager.argmax(-1)


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch engine's packed weights")
def test_torch_engine_is_kept_across_batch_sizes(lm):
    """The PyTorch engine's packed weights serve every batch size: generating for another number
    of prompts reuses the engine instead of packing the weights again, with the same tokens."""
    from keras_gpt1.generation.registry import make_engine

    prompts = _prompts()
    alone = generate_ids(lm, prompts[:1], max_new_tokens=NEW_TOKENS)
    engine = make_engine(lm)
    together = generate_ids(lm, prompts, max_new_tokens=NEW_TOKENS)
    assert make_engine(lm) is engine
    n = int(alone["lengths"][0])
    np.testing.assert_array_equal(together["token_ids"][0, :n], alone["token_ids"][0, :n])


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch engine's CPU decode attention")
def test_cpu_decode_attention_matches_scaled_dot_product_attention():
    """The numba kernel a CPU decode step uses writes the step's keys and values at `position`
    and attends over positions `0..position` only: it must give PyTorch's
    `scaled_dot_product_attention` over the filled part (the first and last cache slots
    included), leave the rest of the cache alone, and be what the engine runs on a CPU, with
    the same tokens and logits as the engine without it."""
    import torch

    from keras_gpt1.generation import cpu_attention
    from keras_gpt1.generation.registry import make_engine

    if not cpu_attention.available():
        pytest.skip("numba is not installed; the engine uses scaled_dot_product_attention")
    batch, heads, head_dim, length = 3, 4, 16, 10
    hidden = heads * head_dim
    generator = torch.Generator().manual_seed(0)
    for position in (0, 4, length - 1):
        keys, values = (torch.randn(batch, heads, length, head_dim, generator=generator) for _ in range(2))
        qkv = torch.randn(batch, 3 * hidden, generator=generator) * 3.0  # sharp softmax
        query, key, value = qkv.view(batch, 3, heads, 1, head_dim).unbind(1)
        want_keys, want_values = keys.clone(), values.clone()
        want_keys[:, :, position : position + 1] = key
        want_values[:, :, position : position + 1] = value
        want = torch.nn.functional.scaled_dot_product_attention(
            query, want_keys[:, :, : position + 1], want_values[:, :, : position + 1]
        )
        got = cpu_attention.decode_attention(qkv, keys, values, position, torch.empty(batch, hidden))
        np.testing.assert_allclose(got.numpy(), want.transpose(1, 2).reshape(batch, hidden).numpy(), atol=1e-5)
        np.testing.assert_array_equal(keys.numpy(), want_keys.numpy())
        np.testing.assert_array_equal(values.numpy(), want_values.numpy())

    with pytest.raises(ValueError, match="position 10 is outside the KV cache's 10 positions"):
        cpu_attention.decode_attention(qkv, keys, values, length, torch.empty(batch, hidden))

    # The engine runs the kernel on a CPU, and without it (no numba) decodes the same.
    model = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    engine = make_engine(model, "torch")
    assert engine._fused_attention == (engine.device.type == "cpu")
    fused = generate_ids(model, _prompts(), max_new_tokens=NEW_TOKENS, return_logits=True)
    engine._fused_attention = False
    plain = generate_ids(model, _prompts(), max_new_tokens=NEW_TOKENS, return_logits=True)
    np.testing.assert_array_equal(fused["token_ids"], plain["token_ids"])
    np.testing.assert_allclose(fused["logits"], plain["logits"], atol=1e-5, rtol=0)


def test_generation_follows_weight_changes():
    """Compiled loops and the PyTorch engine's prepacked weights are reused between calls, but
    never after a weight changed (training, loading): the output is the new weights' output."""
    keras.utils.set_random_seed(21)
    model = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    other = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    prompts = _prompts()
    before = generate_ids(model, prompts, max_new_tokens=NEW_TOKENS, return_logits=True)
    expected = generate_ids(other, prompts, max_new_tokens=NEW_TOKENS, return_logits=True)
    assert not np.allclose(before["logits"], expected["logits"])  # the two models differ
    model.set_weights(other.get_weights())
    after = generate_ids(model, prompts, max_new_tokens=NEW_TOKENS, return_logits=True)
    np.testing.assert_array_equal(after["token_ids"], expected["token_ids"])
    np.testing.assert_allclose(after["logits"], expected["logits"], atol=1e-5, rtol=0)


def test_single_prompt_forms(lm):
    prompt = _prompts()[0].tolist()
    ids = lm.generate(prompt, max_new_tokens=3)
    assert isinstance(ids, list) and ids[: len(prompt)] == prompt and len(ids) == len(prompt) + 3
    assert lm.generate(np.array(prompt), max_new_tokens=3) == ids
    batch = lm.generate({"token_ids": np.array([prompt]), "padding_mask": np.ones((1, len(prompt)))}, max_new_tokens=3)
    assert batch["token_ids"][0].tolist() == ids and batch["padding_mask"].all()


# --- samplers ---


def test_fixed_seed_gives_the_same_samples(lm):
    prompts = _prompts()
    a = lm.generate([p.tolist() for p in prompts], max_new_tokens=NEW_TOKENS, sampler="random", seed=3)
    b = lm.generate([p.tolist() for p in prompts], max_new_tokens=NEW_TOKENS, sampler="random", seed=3)
    c = lm.generate([p.tolist() for p in prompts], max_new_tokens=NEW_TOKENS, sampler="random", seed=4)
    assert a == b
    assert a != c  # 3 rows x 6 draws from ~97 nearly equal tokens: a collision is hopeless


def test_top_k_never_leaves_the_top_k(sharp_lm):
    k = 3
    # A high temperature flattens the distribution inside the top k, so draws leave the top 1.
    out = generate_ids(
        sharp_lm,
        _prompts(),
        max_new_tokens=NEW_TOKENS,
        sampler="top_k",
        k=k,
        temperature=3.0,
        seed=0,
        return_logits=True,
    )
    full = _full_logits(sharp_lm, [r[:n] for r, n in zip(out["token_ids"], out["lengths"])])
    outside_top1 = 0
    for i, (p, n) in enumerate(zip(PROMPT_LENGTHS, out["lengths"])):
        for j in range(p, n):
            token = out["token_ids"][i, j]
            assert token in np.argsort(-full[i, j - 1])[:k]
            assert token in np.argsort(-out["logits"][i, j])[:k]
            outside_top1 += token != full[i, j - 1].argmax()
    assert outside_top1 > 0  # it does sample, not just pick the best


def test_top_p_stays_inside_the_nucleus(sharp_lm):
    p = 0.6
    out = generate_ids(
        sharp_lm, _prompts(), max_new_tokens=NEW_TOKENS, sampler="top_p", p=p, seed=0, return_logits=True
    )
    sizes = []
    for i, (start, n) in enumerate(zip(PROMPT_LENGTHS, out["lengths"])):
        for j in range(start, n):
            logits = out["logits"][i, j].astype("float64")
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            order = np.argsort(-probs)
            # Smallest prefix of the sorted distribution with mass >= p.
            size = int(np.searchsorted(np.cumsum(probs[order]), p) + 1)
            sizes.append(size)
            assert out["token_ids"][i, j] in order[:size]
    assert max(sizes) < VOCAB // 2  # the nucleus really excludes tokens here


def test_beam_search_finds_the_exact_best_pair(lm):
    """With one beam per vocabulary entry, two steps of beam search are exhaustive."""
    prompts = _prompts((3, 5))
    out = generate_ids(lm, prompts, max_new_tokens=2, sampler=Beam(num_beams=VOCAB))
    for i, prompt in enumerate(prompts):
        first = _full_logits(lm, [prompt])[0, len(prompt) - 1]
        first = first - np.logaddexp.reduce(first)
        second = _full_logits(lm, [list(prompt) + [t] for t in range(VOCAB)])[:, len(prompt)]
        second = second - np.logaddexp.reduce(second, axis=-1, keepdims=True)
        total = first[:, None] + second
        best = np.unravel_index(total.argmax(), total.shape)
        assert out["token_ids"][i, len(prompt) : len(prompt) + 2].tolist() == [int(b) for b in best]
        np.testing.assert_allclose(out["scores"][i], total.max(), atol=1e-4)


# --- stop tokens ---


def test_stop_tokens_end_each_row_independently(lm, greedy_run):
    ids, lengths = greedy_run["token_ids"], greedy_run["lengths"]
    # Row 0's second new token becomes the stop token (if it also was its first, the first).
    row0_new = ids[0, PROMPT_LENGTHS[0] : lengths[0]].tolist()
    stop = row0_new[1]
    out = generate_ids(lm, _prompts(), max_new_tokens=NEW_TOKENS, stop_token_ids=[stop])
    for i, p in enumerate(PROMPT_LENGTHS):
        new = ids[i, p : lengths[i]].tolist()
        expected = new[: new.index(stop) + 1] if stop in new else new
        assert out["token_ids"][i, : out["lengths"][i]].tolist() == ids[i, :p].tolist() + expected
        assert not out["token_ids"][i, out["lengths"][i] :].any()  # padding after the end
    assert out["lengths"][0] <= PROMPT_LENGTHS[0] + 2
    # A stop token inside a prompt does not end that row.
    assert _greedy_by_recomputation(lm, _prompts(), NEW_TOKENS, stop=(stop,)) == [
        r[:n].tolist() for r, n in zip(out["token_ids"], out["lengths"])
    ]


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_streaming_gives_each_rows_tokens_in_order_with_the_same_output(lm, greedy_run, monkeypatch, chunk):
    # JAX and TensorFlow stream from compiled chunks of steps; chunk boundaries (1, an odd size,
    # more than the whole run) must not change which tokens are streamed, or the result.
    import importlib

    generate_module = importlib.import_module("keras_gpt1.generation.generate")

    monkeypatch.setattr(generate_module, "STREAM_CHUNK", chunk)
    monkeypatch.setattr(generate_module, "STREAM_INTERVAL", 0.0)  # chunks from `chunk` steps up
    ids = greedy_run["token_ids"]
    stop = int(ids[0, PROMPT_LENGTHS[0] + 1])  # row 0 stops early; the others keep going
    reference = generate_ids(lm, _prompts(), max_new_tokens=NEW_TOKENS, stop_token_ids=[stop])
    calls = []
    out = generate_ids(lm, _prompts(), max_new_tokens=NEW_TOKENS, stop_token_ids=[stop], streamer=calls.append)
    for key in ("token_ids", "lengths"):
        np.testing.assert_array_equal(out[key], reference[key])
    streamed = np.stack(calls)  # [calls, batch]: one call per position after the shortest prompt
    assert streamed.shape[1] == len(PROMPT_LENGTHS)
    for i, p in enumerate(PROMPT_LENGTHS):
        row = [int(t) for t in streamed[:, i] if t >= 0]
        assert row == reference["token_ids"][i, p : reference["lengths"][i]].tolist(), i


def test_streamed_chunks_grow_until_the_per_call_cost_is_small():
    """`next_chunk` sizes streamed chunks from `(steps, seconds)` timings: it fits the per-call
    and per-step costs and keeps the per-call cost within STREAM_OVERHEAD of a chunk's steps."""
    import importlib

    g = importlib.import_module("keras_gpt1.generation.generate")
    first = g.STREAM_CHUNK
    assert g.next_chunk([]) == first
    assert g.next_chunk([(first, 1.0)]) == 2 * first  # a second size, to fit the line
    # A first chunk slower than the second compiled the loop: it is left out, and one more
    # size is measured.
    compiled = (first, 30.0)
    assert g.next_chunk([compiled, (2 * first, 1.0)]) == 4 * first

    # 0.2 s a call (int8 weights converted by XLA per call), 30 ms a step; measured after a
    # first call that did not compile, and after one that did.
    def cost(steps):
        return (steps, 0.2 + steps * 0.03)

    for timings in ([cost(first), cost(2 * first)], [compiled, cost(2 * first), cost(4 * first)]):
        size = g.next_chunk(timings)
        assert size == int(np.ceil(0.2 / (g.STREAM_OVERHEAD * 0.03)))
        assert 0.2 / (size * 0.03) <= g.STREAM_OVERHEAD
    # Kept timings start wherever the last MAX_TIMINGS begin: a long chunk before a short one
    # took longer only because it ran more steps, and stays in the fit.
    assert g.next_chunk([cost(8 * first), cost(first)]) == int(np.ceil(0.2 / (g.STREAM_OVERHEAD * 0.03)))
    # No per-call cost and 1 ms steps: as many steps as fit in STREAM_INTERVAL.
    assert abs(g.next_chunk([(first, first * 1e-3), (2 * first, 2 * first * 1e-3)]) - g.STREAM_INTERVAL / 1e-3) <= 1
    # Slow steps and no per-call cost: the smallest chunk, so tokens show as they come.
    assert g.next_chunk([(first, first * 0.1), (2 * first, 2 * first * 0.1), (first, first * 0.1)]) == first
    # Noise that leaves the per-step cost negative is read as no per-call cost, never as a
    # negative step.
    assert g.next_chunk([(first, 1.0), (2 * first, 1.2), (first, 2.0)]) == first


@pytest.mark.skipif(BACKEND == "torch", reason="PyTorch streams its eager step loop, not chunks")
def test_streamed_chunk_timings_carry_over_to_the_next_call(lm, monkeypatch):
    # A later call with the same compiled loop sizes its chunks from the earlier call's timings.
    import importlib

    generate_module = importlib.import_module("keras_gpt1.generation.generate")
    seen = []
    real = generate_module.next_chunk

    def recording(timings):
        seen.append(len(timings))
        return real(timings)

    monkeypatch.setattr(generate_module, "STREAM_CHUNK", 1)
    monkeypatch.setattr(generate_module, "next_chunk", recording)
    generate_ids(lm, _prompts(), max_new_tokens=NEW_TOKENS, streamer=lambda ids: None)
    first_call = len(seen)
    assert first_call >= 1 and seen[0] == 0  # the first call's first chunk has no timings yet
    generate_ids(lm, _prompts(), max_new_tokens=NEW_TOKENS, streamer=lambda ids: None)
    assert seen[first_call] > seen[0]  # the second call starts from the first call's timings


@pytest.mark.skipif(BACKEND != "torch", reason="the host-side step loop runs on PyTorch")
def test_gpu_loop_reads_done_every_few_steps_with_the_same_output(lm, greedy_run, monkeypatch):
    """On a GPU the PyTorch loop reads `done` back every 8 steps, not every step, so it runs a
    few steps after every row has stopped. Forced off, then on: more steps, the same output."""
    import importlib

    from keras_gpt1.generation.decode_loop import DecodeLoop

    generate_module = importlib.import_module("keras_gpt1.generation.generate")  # not the function

    # Every row stops on its first new token; the longest prompt gets there last.
    stop = [int(ids[p]) for ids, p in zip(greedy_run["token_ids"], PROMPT_LENGTHS)]
    steps = []
    body = DecodeLoop.body

    def counted(self, state):
        steps.append(1)
        return body(self, state)

    monkeypatch.setattr(DecodeLoop, "body", counted)
    monkeypatch.setattr(generate_module, "_on_gpu", lambda tensor: False)
    expected = generate_ids(lm, _prompts(), max_new_tokens=NEW_TOKENS, stop_token_ids=stop)
    every_step = len(steps)
    steps.clear()
    monkeypatch.setattr(generate_module, "_on_gpu", lambda tensor: True)
    out = generate_ids(lm, _prompts(), max_new_tokens=NEW_TOKENS, stop_token_ids=stop)
    assert len(steps) > every_step
    assert set(out) == set(expected)
    for key in out:
        np.testing.assert_array_equal(out[key], expected[key])
    assert (out["lengths"] == np.array(PROMPT_LENGTHS) + 1).all()


# --- scoring ---


def test_score_matches_full_forward_log_softmax(lm):
    texts = [p.tolist() for p in _prompts((5, 3, 9))]
    results = lm.score(texts)
    for text, result in zip(texts, results):
        logits = _full_logits(lm, [text])[0]
        log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        expected = log_probs[np.arange(len(text) - 1), text[1:]]
        np.testing.assert_allclose(result["token_log_likelihoods"], expected, atol=1e-4)
        assert result["num_scored_tokens"] == len(text) - 1
        np.testing.assert_allclose(result["perplexity"], np.exp(-expected.mean()), rtol=1e-4)
    single = lm.score(texts[0])
    assert isinstance(single, dict)
    np.testing.assert_allclose(single["log_likelihood"], results[0]["log_likelihood"], atol=1e-4)


def test_score_with_stride_scores_every_token_once_with_its_window(lm):
    """A text longer than the context, in windows: token p (p >= 1) is scored from the first
    window reaching past it, window k holding tokens k*stride .. k*stride + context - 1; each
    expected value comes from a full forward pass over that window alone."""
    context = lm.backbone.max_sequence_length
    text = np.random.default_rng(3).integers(0, VOCAB, size=2 * context + 22).tolist()
    short = [5, 6, 7, 8]
    for stride in (1, 10, context - 1):
        result, short_result = lm.score([text, short], stride=stride, batch_size=4)
        expected = []
        for p in range(1, len(text)):
            begin = max(0, (p - context) // stride + 1) * stride
            window = text[begin : begin + context]
            logits = _full_logits(lm, [window])[0]
            log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
            expected.append(log_probs[p - begin - 1, text[p]])
            assert p - begin >= min(p, context - stride)  # the context the stride promises
        assert result["num_scored_tokens"] == len(text) - 1
        np.testing.assert_allclose(result["token_log_likelihoods"], expected, atol=1e-4)
        np.testing.assert_allclose(result["log_likelihood"], np.sum(expected, dtype="float64"), atol=1e-3)
        # A text that fits is scored as without a stride.
        np.testing.assert_allclose(
            short_result["token_log_likelihoods"], lm.score(short)["token_log_likelihoods"], atol=1e-5
        )
    with pytest.raises(ValueError, match="Pass `stride=`"):
        lm.score(text)
    for bad in (0, context, 2.5, True):
        with pytest.raises(ValueError, match=r"`stride` must be an integer in \[1, "):
            lm.score(text, stride=bad)


# --- int8 and bfloat16 inference ---


@pytest.mark.filterwarnings("ignore:Layer .* does not have a `quantize`")
def test_int8_and_bfloat16_generation_quality(sharp_lm, tmp_path):
    """Greedy agreement with float32 over the new tokens, and the largest logit error of each
    decode step (relative to the spread of the float32 logits)."""
    prompts = _prompts((4, 6, 3, 8, 5, 7), seed=1)
    path = str(tmp_path / "w.weights.h5")
    sharp_lm.save_weights(path)
    reference = generate_ids(sharp_lm, prompts, max_new_tokens=NEW_TOKENS)

    quantized = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    quantized.load_weights(path)
    quantized.quantize("int8")
    assert quantized.backbone.transformer_layers[0].c_fc.quantization_mode == "int8"
    bf16 = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG, dtype="bfloat16"))
    bf16.load_weights(path)
    assert bf16.backbone.transformer_layers[0].c_fc.kernel.dtype == "bfloat16"

    runs = [("int8", quantized, "keras"), ("bfloat16", bf16, "auto")]
    if BACKEND == "torch":
        from keras_gpt1.generation.torch_engine import TorchEngine

        # int8 through fbgemm's kernels as well as through Keras's int8 layers, on a CPU (on a
        # GPU, where fbgemm does not run, "auto" uses the Keras layers).
        reason = TorchEngine.unsupported_reason(quantized)
        assert reason is None or "on a GPU" in reason, reason
        if reason is None:
            runs.append(("int8 (PyTorch engine)", quantized, "torch"))
    report = {}
    for name, model, engine in runs:
        out = generate_ids(model, prompts, max_new_tokens=NEW_TOKENS, return_logits=True, engine=engine)
        agree, errors, spread = [], [], []
        full = _full_logits(sharp_lm, [r[:n] for r, n in zip(out["token_ids"], out["lengths"])])
        for i, (p, n) in enumerate(zip(out["prompt_lengths"], out["lengths"])):
            agree.append((out["token_ids"][i, p:n] == reference["token_ids"][i, p:n]).mean())
            errors.append(np.abs(out["logits"][i, p:n] - full[i, p - 1 : n - 1]).max())
            spread.append(full[i, p - 1 : n - 1].std())
        report[name] = (float(np.mean(agree)), float(max(errors) / np.mean(spread)))
    print(
        f"[{BACKEND}] "
        + "; ".join(f"{k}: greedy agreement {a:.3f}, max logit error {e:.4f} std" for k, (a, e) in report.items())
    )
    for agreement, error in report.values():
        assert 0 < error < 0.25  # lossy, but close
        assert agreement >= 0.75


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch engine's int8 linears")
@pytest.mark.filterwarnings("ignore:Layer .* does not have a `quantize`")
def test_torch_engine_int8_linears_use_kerass_int8_weights(sharp_lm, tmp_path):
    """The fbgemm linears hold Keras's own int8 weights and scales: against the float product
    with the dequantized weights (`int8 / scale`), only the activations' quantization error is
    left (about 1%). Reading the scale the other way round, or a transposed weight, is far off."""
    import torch

    from keras_gpt1.generation.registry import make_engine
    from keras_gpt1.generation.torch_engine import TorchEngine, _weights_on_cpu

    path = str(tmp_path / "w.weights.h5")
    sharp_lm.save_weights(path)
    quantized = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    quantized.load_weights(path)
    quantized.quantize("int8")
    if not _weights_on_cpu(quantized.backbone):
        pytest.skip("fbgemm's int8 linears run on a CPU")
    assert TorchEngine.supports(quantized)
    engine = make_engine(quantized, "torch")

    def relative_error(got, want):
        return float(((got - want).norm() / want.norm()).detach())

    rng = np.random.default_rng(0)
    block, layer = engine.blocks[0], quantized.backbone.transformer_layers[0]
    for name, dense in (("c_attn", layer.attention.c_attn), ("c_fc", layer.c_fc), ("c_proj", layer.c_proj)):
        x = torch.tensor(rng.normal(size=(3, dense.kernel.shape[0])), dtype=torch.float32)
        weight = dense._kernel.value.float() / dense.kernel_scale.value[None, :]  # [in, out]
        assert relative_error(block[name](x), x @ weight + dense.bias.value) < 0.03, name

    embedding = quantized.backbone.token_embedding
    table = embedding._embeddings.value.float() / embedding.embeddings_scale.value[:, None]
    hidden = torch.tensor(rng.normal(size=(3, TINY_CONFIG["hidden_dim"])), dtype=torch.float32)
    assert relative_error(engine.head(hidden), hidden @ table.T) < 0.03
    ids = torch.tensor([[1, 5, VOCAB - 1]])
    np.testing.assert_allclose(to_numpy(engine.token_embedding(ids)), to_numpy(embedding(ids)), rtol=1e-6)


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch engine's int8 support")
@pytest.mark.filterwarnings("ignore:Layer .* does not have a `quantize`")
def test_int8_models_the_torch_engine_cannot_run_use_the_keras_layers():
    """Weight-only int8 (float activations) is not fbgemm's scheme: "auto" picks the Keras
    layers, and asking for the PyTorch engine says why it cannot."""
    from keras_gpt1.generation.keras_engine import KerasEngine
    from keras_gpt1.generation.registry import make_engine
    from keras_gpt1.generation.torch_engine import TorchEngine

    model = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    model.quantize(config=keras.quantizers.Int8QuantizationConfig(activation_quantizer=None))
    assert model.backbone.transformer_layers[0].c_fc.quantization_mode == "int8"
    assert not TorchEngine.supports(model)
    assert isinstance(make_engine(model), KerasEngine)
    with pytest.raises(
        ValueError,
        match="engine='torch' cannot run this model: it runs int8 models in Keras's default int8 scheme only",
    ):
        make_engine(model, "torch")
    out = generate_ids(model, _prompts(), max_new_tokens=2)
    assert (out["lengths"] == np.array(PROMPT_LENGTHS) + 2).all()


def _same_weights_model(model, quantize=False):
    copy = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    copy.set_weights(model.get_weights())
    if quantize:
        copy.quantize("int8")
    return copy


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch engine's private-API fallbacks")
@pytest.mark.parametrize("broken", ["missing", "raising"])
def test_torch_engine_without_onednn_prepacking_gives_the_same_tokens(lm, greedy_run, monkeypatch, broken):
    """oneDNN's prepacking is a private PyTorch op (`torch.ops.mkldnn._reorder_linear_weight`).
    Gone, or failing, the engine multiplies with `torch.nn.functional.linear` instead: no packed
    linear, the same tokens."""
    import types

    import torch

    from keras_gpt1.generation.registry import make_engine

    model = _same_weights_model(lm)
    packed = make_engine(model, "torch")
    if packed.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        pytest.skip("oneDNN prepacking runs on a CPU with oneDNN")
    assert packed.prepacked == 4 * TINY_CONFIG["num_layers"] + 1  # 4 linears a block and the LM head
    if broken == "missing":
        monkeypatch.setattr(torch.ops, "mkldnn", types.SimpleNamespace())
    else:

        def fails(*args):
            raise RuntimeError("oneDNN's packing changed")

        monkeypatch.setattr(
            torch.ops, "mkldnn", types.SimpleNamespace(_reorder_linear_weight=fails, _linear_pointwise=fails)
        )
    model = _same_weights_model(lm)
    engine = make_engine(model, "torch")
    assert engine.name == "torch" and engine.prepacked == 0
    out = generate_ids(model, _prompts(), max_new_tokens=NEW_TOKENS, return_logits=True)
    np.testing.assert_array_equal(out["token_ids"], greedy_run["token_ids"])
    np.testing.assert_allclose(out["logits"], greedy_run["logits"], atol=1e-4, rtol=0)


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch engine's private-API fallbacks")
@pytest.mark.filterwarnings("ignore:Layer .* does not have a `quantize`")
@pytest.mark.parametrize("broken", ["missing", "raising"])
def test_int8_without_fbgemms_private_api_falls_back_to_the_keras_layers(lm, monkeypatch, broken):
    """fbgemm's int8 packing takes a quantized tensor made by a private PyTorch function,
    `torch._make_per_channel_quantized_tensor`. Gone, an int8 model is declined; failing, the
    engine raises while it is built. Either way "auto" generates through the Keras layers (the
    same tokens as `engine="keras"`), and `engine="torch"` says why it cannot."""
    import torch

    from keras_gpt1.generation.keras_engine import KerasEngine
    from keras_gpt1.generation.registry import make_engine

    model = _same_weights_model(lm, quantize=True)
    if make_engine(model).name != "torch":
        pytest.skip("the PyTorch engine runs int8 models on a CPU with fbgemm only")
    expected = generate_ids(model, _prompts(), max_new_tokens=NEW_TOKENS, engine="keras")
    if broken == "missing":
        monkeypatch.delattr(torch, "_make_per_channel_quantized_tensor")
        match = "lacks"
    else:

        def fails(*args):
            raise RuntimeError("quantized tensors are gone")

        monkeypatch.setattr(torch, "_make_per_channel_quantized_tensor", fails)
        match = "fbgemm's int8 weight packing failed"
    model = _same_weights_model(lm, quantize=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert isinstance(make_engine(model), KerasEngine)
    assert (broken == "raising") == any("'torch' engine is unavailable" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match=f"engine='torch' cannot run this model: .*{match}"):
        make_engine(model, "torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = generate_ids(model, _prompts(), max_new_tokens=NEW_TOKENS)
    for key in ("token_ids", "lengths"):
        np.testing.assert_array_equal(out[key], expected[key])


# --- bad input ---


@pytest.mark.parametrize("max_new_tokens", [3, 1000, 2**40])
def test_max_new_tokens_past_the_context_is_capped_with_a_warning(lm, max_new_tokens):
    """Every prompt is kept whole and each row's new tokens stop at the context (the capping rule
    the export shares); the warning names the cap. A row that fits is not capped by another:
    it gets what it would get alone."""
    context = TINY_CONFIG["max_sequence_length"]
    prompts = [[1] * (context - 2), [2, 3]]
    with pytest.warns(UserWarning, match=rf"max_new_tokens={max_new_tokens} does not fit .* at most 2 new tokens"):
        out = lm.generate(prompts, max_new_tokens=max_new_tokens)
    assert list(out[0][: context - 2]) == prompts[0] and len(out[0]) == context
    assert list(out[1][:2]) == prompts[1] and len(out[1]) == min(2 + max_new_tokens, context)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert out[1] == lm.generate(prompts[1], max_new_tokens=min(max_new_tokens, context - 2))


def test_max_length_fills_every_row_of_a_ragged_batch_to_it(lm):
    """`max_length` (KerasHub's meaning) up to the whole context: the short row gets its many new
    tokens, the long row its few, and each is what it would get alone."""
    context = TINY_CONFIG["max_sequence_length"]
    prompts = [[5, 6], list(range(1, context - 3))]
    out = lm.generate(prompts, max_length=context)
    assert [len(row) for row in out] == [context, context]
    assert out[0] == lm.generate(prompts[0], max_new_tokens=context - 2)


def test_new_token_allowance_is_one_rule_for_the_library_and_the_export():
    """Each row: `max_new_tokens`, or what fits after its own prompt; none for an empty prompt or
    one that fills the limit (which `generate` refuses and a served signature answers as is)."""
    from keras_gpt1.generation.prompts import new_token_allowance

    lengths = np.array([3, 30, 31, 32, 40, 0], "int32")
    got = to_numpy(new_token_allowance(lengths, 8, 32)).tolist()
    assert got == [8, 2, 1, 0, 0, 0]


def test_bad_inputs_give_clear_errors(lm):
    ok = [5, 6, 7]
    context = TINY_CONFIG["max_sequence_length"]
    with pytest.raises(ValueError, match="Prompt 1 is empty"):
        lm.generate([[1, 2], []], max_new_tokens=2)
    with pytest.raises(ValueError, match="longer than the model's context"):
        lm.generate([1] * (context + 1), max_new_tokens=1)
    with pytest.raises(ValueError, match="exceeds the model's context"):  # no room at all
        lm.generate([1] * context, max_new_tokens=1)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_new_tokens"):
            lm.generate(ok, max_new_tokens=bad)
    for p in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"`p` must be in \(0, 1\]"):
            lm.generate(ok, sampler="top_p", p=p)
    for k in (0, -2):
        with pytest.raises(ValueError, match="`k` must be an integer >= 1"):
            lm.generate(ok, sampler="top_k", k=k)
    with pytest.raises(ValueError, match="Unknown sampler 'nucleus'"):
        lm.generate(ok, sampler="nucleus")
    with pytest.raises(ValueError, match="does not take"):
        lm.generate(ok, sampler="greedy", k=3)
    with pytest.raises(ValueError, match="temperature"):
        get_sampler("random", temperature=0)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        lm.generate([1, VOCAB], max_new_tokens=1)
    with pytest.raises(ValueError, match="Stop token id"):
        lm.generate(ok, max_new_tokens=2, stop_token_ids=[VOCAB])
    for bad in (True, [2, 3.0], ["2"]):
        with pytest.raises(ValueError, match="Stop token ids must be integers"):
            lm.generate(ok, max_new_tokens=2, stop_token_ids=bad)
    with pytest.raises(ValueError, match="`num_beams` must be an integer >= 1"):
        lm.generate(ok, sampler="beam", num_beams=1.5)
    with pytest.raises(ValueError, match="need a tokenizer"):
        lm.generate("hello", max_new_tokens=1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        lm.generate(ok, max_new_tokens=2.5)
    # The seed enters the decode loop as an int32: beyond it, an error rather than an OverflowError.
    for bad in (2**31, 1.0):
        with pytest.raises(ValueError, match=r"`seed` must be an integer in \[-2147483648, 2147483647\]"):
            lm.generate(ok, max_new_tokens=1, sampler="random", seed=bad)
    with pytest.raises(ValueError, match="at least 2"):
        lm.score([[5]])
    assert isinstance(get_sampler("top-k", k=2), TopK) and isinstance(get_sampler(TopP(0.5)), TopP)
    # Counts and stop ids computed with NumPy are integers too.
    assert get_sampler("top_k", k=np.int64(2)).k == 2 and get_sampler("beam", num_beams=np.int32(2)).num_beams == 2
    assert lm.generate(ok, max_new_tokens=2, stop_token_ids=np.array([2, 3])) == lm.generate(
        ok, max_new_tokens=2, stop_token_ids=[2, 3]
    )


def test_engines_are_chosen_and_registered_by_name(lm):
    """An unknown engine name lists the known ones; a registered engine is tried first by "auto"
    and runs by its name; a class that is not an engine, or a name taken, is refused."""
    from keras_gpt1.generation.keras_engine import KerasEngine
    from keras_gpt1.generation.registry import ENGINES, make_engine, register_engine

    with pytest.raises(ValueError, match="Unknown engine 'fast'; choose one of 'auto', 'torch', 'keras'"):
        generate_ids(lm, _prompts(), max_new_tokens=1, engine="fast")
    with pytest.raises(ValueError, match="`logits_processors` must be LogitsProcessor objects"):
        generate_ids(lm, _prompts(), max_new_tokens=1, logits_processors=[lambda logits, *rest: logits])
    with pytest.raises(ValueError, match="must be a DecodeEngine subclass"):
        register_engine(object)
    with pytest.raises(ValueError, match="'keras' is already registered"):
        register_engine(KerasEngine)

    class Mine(KerasEngine):
        name = "mine"

    saved = dict(ENGINES)
    try:
        assert register_engine(Mine) is Mine and list(ENGINES) == ["mine", *saved]
        assert type(make_engine(lm)) is Mine and type(make_engine(lm, "mine")) is Mine
        out = generate_ids(lm, _prompts(), max_new_tokens=2, engine="mine")
        assert out["lengths"].tolist() == [n + 2 for n in PROMPT_LENGTHS]
    finally:
        ENGINES.clear()
        ENGINES.update(saved)


# --- text in, text out (with a trained GPT1Tokenizer) ---

CORPUS = [
    "the cat sat on the mat .",
    "the dog sat on the log .",
    "a cat and a dog met on the mat .",
    "the bird sang a song on the log .",
] * 20


@pytest.fixture(scope="module")
def text_lm(tmp_path_factory):
    tokenizers = pytest.importorskip("keras_gpt1.tokenizers")
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    tokenizer = tokenizers.train_tokenizer([str(path)], vocabulary_size=120)
    keras.utils.set_random_seed(3)
    config = dict(TINY_CONFIG, vocabulary_size=tokenizer.vocabulary_size(), max_sequence_length=40)
    return GPT1CausalLM(GPT1Backbone(**config), tokenizer=tokenizer)


def test_text_prompts_return_text(text_lm):
    tokenizer = text_lm.tokenizer
    single = text_lm.generate("a dog", max_new_tokens=4)
    assert isinstance(single, str) and single.startswith("a dog")
    assert text_lm.generate(["a dog"], max_new_tokens=4) == [single]
    ids = np.asarray(tokenizer("a dog")).tolist()
    expected = text_lm.generate(ids, max_new_tokens=4)
    assert single == tokenizer.detokenize(np.array(expected)).numpy().decode()
    scored = text_lm.score(["the cat sat on the mat .", "a dog"])
    assert scored[0]["token_ids"] == np.asarray(tokenizer("the cat sat on the mat .")).tolist()
    assert np.isfinite(scored[1]["perplexity"])
    assert isinstance(text_lm.score("the cat sat"), dict)


@pytest.mark.once
def test_cli_streams_the_same_text_it_prints_unstreamed(text_lm, tmp_path):
    # The streamer prints each token's text as it comes; the result must be the text that
    # detokenizing the whole output gives, as `--no-stream` prints it (special tokens included).
    preset = str(tmp_path / "preset")
    text_lm.save_to_preset(preset)
    for prompt in ("a dog", "the cat sat on the mat ."):
        outputs = []
        for flags in ([], ["--no-stream"]):
            code, out, err = _cli(
                [
                    "generate",
                    "--model",
                    preset,
                    "--prompt",
                    prompt,
                    "--max-new-tokens",
                    "12",
                    "--top-k",
                    "20",
                    "--seed",
                    "1",
                    *flags,
                ]
            )
            assert code == 0, err
            outputs.append(out)
        assert outputs[0] == outputs[1] and outputs[0].startswith(prompt.split()[0]), outputs
    from keras_gpt1.cli.generate import _TextStreamer

    out = io.StringIO()
    streamer = _TextStreamer(text_lm.tokenizer, out, "")
    special = text_lm.tokenizer.vocabulary_size() - 1  # `_classify_`, a word of its own
    ids = [special, *np.asarray(text_lm.tokenizer("a dog sat")).tolist(), special]
    for token in ids:
        streamer(np.array([token]))
    assert out.getvalue() == text_lm.tokenizer.detokenize(np.array(ids)).numpy().decode()


@pytest.mark.once
def test_cli_scores_a_whole_file_in_windows(text_lm, tmp_path):
    preset = str(tmp_path / "preset")
    text_lm.save_to_preset(preset)
    path = tmp_path / "essay.txt"
    path.write_text("\n".join(CORPUS[:12]) + "\n", encoding="utf-8")
    document = path.read_text(encoding="utf-8").strip()
    assert len(np.asarray(text_lm.tokenizer(document))) > text_lm.backbone.max_sequence_length
    code, out, _ = _cli(["score", "--model", preset, "--file", str(path), "--whole-file", "--stride", "16", "--json"])
    assert code == 0
    import json

    record = json.loads(out)
    np.testing.assert_allclose(
        record["log_likelihood"], text_lm.score(document, stride=16)["log_likelihood"], rtol=1e-5
    )
    # One record per line without --whole-file; a file too long for the context without --stride.
    code, out, _ = _cli(["score", "--model", preset, "--file", str(path), "--json"])
    assert code == 0 and len(out.splitlines()) == 12
    code, _, err = _cli(["score", "--model", preset, "--file", str(path), "--whole-file"])
    assert code != 0 and "stride" in err


# --- CLI ---


def _cli(argv):
    from keras_gpt1.cli import main

    out = io.StringIO()
    err = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.once
def test_cli_generate_streams_and_score(lm, greedy_run, tmp_path):
    preset = str(tmp_path / "preset")
    lm.save_to_preset(preset)
    prompt = _prompts()[0]
    streamed = []

    class Recorder(io.StringIO):
        def write(self, s):
            streamed.append(s)
            return super().write(s)

    from keras_gpt1.cli import main

    recorder = Recorder()
    with contextlib.redirect_stdout(recorder):
        assert (
            main(["generate", "--model", preset, "--prompt-ids", " ".join(map(str, prompt)), "--max-new-tokens", "6"])
            == 0
        )
    expected = greedy_run["token_ids"][0, : greedy_run["lengths"][0]].tolist()
    assert [int(t) for t in recorder.getvalue().split()] == expected
    # The new tokens were written one by one, as they came.
    assert [s.strip() for s in streamed if s.strip()][-NEW_TOKENS:] == [str(t) for t in expected[-NEW_TOKENS:]]

    code, out, _ = _cli(["score", "--model", preset, "--ids", "5 6 7 8", "--json"])
    assert code == 0
    import json

    record = json.loads(out)
    np.testing.assert_allclose(record["log_likelihood"], lm.score([5, 6, 7, 8])["log_likelihood"], atol=1e-4)

    # --precision int8: the tokens of the quantized model, without Keras's per-layer warnings.
    quantized = GPT1CausalLM.from_preset(preset, dropout=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized.quantize("int8")
    expected = generate_ids(quantized, [prompt], max_new_tokens=NEW_TOKENS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, _ = _cli(
            [
                "generate",
                "--model",
                preset,
                "--prompt-ids",
                " ".join(map(str, prompt)),
                "--max-new-tokens",
                str(NEW_TOKENS),
                "--precision",
                "int8",
                "--no-stream",
            ]
        )
    assert code == 0
    assert [int(t) for t in out.split()] == expected["token_ids"][0, : expected["lengths"][0]].tolist()
    assert not [w for w in caught if "quantize" in str(w.message)]

    code, _, err = _cli(["generate", "--model", preset, "--prompt-ids", "5", "--top-p", "1.5"])
    assert code == 2 and "(0, 1]" in err
    code, _, err = _cli(["generate", "--model", preset, "--prompt-ids", "5", "--sampler", "nope"])
    assert code == 2 and "Unknown sampler" in err
    code, _, err = _cli(["generate", "--model", preset, "--prompt", "hi"])
    assert code == 2 and "tokenizer" in err


# --- benchmark smoke test (once: it starts its own subprocesses) ---


@pytest.mark.skipif(BACKEND != "torch", reason="runs its own per-backend subprocesses; once is enough")
@pytest.mark.integration
def test_bench_generate_quick_runs():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.bench.generate",
            "--quick",
            "--backends",
            "torch",
            "--skip-keras-hub",
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| keras_gpt1 (torch)" in result.stdout and "GB/s" in result.stdout
