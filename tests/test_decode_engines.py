"""The decode-engine protocol's conformance test: every engine this backend runs, the same checks.

The engines (`keras_gpt1/generation/engine.py` has the protocol): `"keras"`, the Keras layers,
on every backend; `"torch"`, the PyTorch fast path, on PyTorch; `"serving"`, the export's
TensorFlow decode step (`export/decode_step.py`), on TensorFlow. Each runs under the library's
own decode loop (`generate_ids`), and each must give:

- greedy parity on a ragged batch: the tokens of greedy decoding by full recomputation, prompt by
  prompt, with Hugging Face's `OpenAIGPTLMHeadModel` on the same weights (the external oracle),
  and the logits of its full forward pass at every new token;
- stop ids: each row ends at its own first stop token, kept;
- beam search (the protocol's `reorder`): the hypothesis textbook beam search finds over the
  oracle's log-probabilities, and its score;
- seeds: the same seed gives the same samples, on every engine of a backend (the noise is the
  loop's), and another seed other samples;
- a logits processor (the loop's per-step hook) acts on every engine alike: a banned id never
  comes out, and the tokens are the oracle's greedy ones with that id masked;
- int8 (`quantize("int8")`) and bfloat16 weights: greedy agreement with float32 and a small
  logit error against the oracle.
"""

import contextlib

import numpy as np
import pytest

from conftest import BACKEND

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from keras_gpt1 import GPT1CausalLM  # noqa: E402
from keras_gpt1.generation import LogitsProcessor, generate_ids  # noqa: E402
from keras_gpt1.generation.samplers import MASKED_LOGIT  # noqa: E402

HF_CONFIG = dict(vocab_size=60, n_embd=32, n_layer=2, n_head=2, n_positions=24)
PROMPT_LENGTHS = (4, 2, 7)  # the shortest sets the prefill; the longest is in its prompt for 5 steps
NEW_TOKENS = 6
ENGINES = ["keras"] + {"torch": ["torch"], "tensorflow": ["serving"]}.get(BACKEND, [])


def _prompts(lengths=PROMPT_LENGTHS, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, HF_CONFIG["vocab_size"], n).astype("int32") for n in lengths]


@pytest.fixture(scope="module")
def hf_model():
    """A random `OpenAIGPTLMHeadModel` with every parameter re-drawn large enough that the
    next-token distributions are peaked (no near-ties for greedy decoding to fall between)."""
    torch.manual_seed(0)
    model = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(**HF_CONFIG)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            gain = name.endswith(("ln_1.weight", "ln_2.weight"))
            parameter.copy_((1.0 if gain else 0.0) + (0.2 if gain else 0.3) * torch.randn_like(parameter))
    return model


@pytest.fixture(scope="module")
def preset(hf_model, tmp_path_factory):
    from keras_gpt1.convert import convert_hf_to_preset

    hf_dir = tmp_path_factory.mktemp("hf")
    hf_model.save_pretrained(hf_dir)
    preset_dir = tmp_path_factory.mktemp("preset") / "preset"
    convert_hf_to_preset(hf_dir, preset_dir)
    return str(preset_dir)


@pytest.fixture(scope="module")
def lm(preset):
    return GPT1CausalLM.from_preset(preset, dropout=0.0)


def _oracle_logits(hf_model, ids):
    with torch.no_grad():
        return hf_model(torch.tensor([list(ids)], dtype=torch.long)).logits[0].double().numpy()


def _oracle_greedy(hf_model, prompt, new_tokens, stop=(), banned=()):
    ids = [int(t) for t in prompt]
    for _ in range(new_tokens):
        logits = _oracle_logits(hf_model, ids)[-1]
        logits[list(banned)] = -np.inf
        ids.append(int(logits.argmax()))
        if ids[-1] in stop:
            break
    return ids


@contextlib.contextmanager
def _engine(name, lm):
    """What `generate_ids(engine=...)` takes for the engine called `name`. The export's engine is
    not registered (it needs the export's transposed token table, read while it is traced)."""
    if name != "serving":
        yield name
        return
    from keras_gpt1.export.decode_step import ServingEngine, make_serving_engine
    from keras_gpt1.export.token_table import TransposedTokenTable

    table = TransposedTokenTable(lm)
    engine = make_serving_engine(lm, table)
    assert isinstance(engine, ServingEngine)
    with table.tracing():
        yield engine


def _generate(name, lm, prompts, **kwargs):
    with _engine(name, lm) as engine:
        out = generate_ids(lm, prompts, engine=engine, **kwargs)
    return out, [row[:n].tolist() for row, n in zip(out["token_ids"], out["lengths"])]


def test_every_registered_engine_that_runs_here_is_tested(lm):
    """A new engine (one module and one line in `registry._BUILT_IN`) fails this until it is in
    `ENGINES` above, and so goes through every check below."""
    from keras_gpt1.generation.registry import ENGINES as REGISTERED
    from keras_gpt1.generation.registry import make_engine

    runnable = {name for name, engine in REGISTERED.items() if engine.supports(lm)}
    assert runnable <= set(ENGINES)
    assert make_engine(lm).name == ("torch" if BACKEND == "torch" else "keras")


@pytest.mark.parametrize("engine", ENGINES)
def test_greedy_on_a_ragged_batch_equals_the_oracle(engine, lm, hf_model):
    out, rows = _generate(engine, lm, _prompts(), max_new_tokens=NEW_TOKENS, return_logits=True)
    assert rows == [_oracle_greedy(hf_model, p, NEW_TOKENS) for p in _prompts()]
    assert out["lengths"].tolist() == [n + NEW_TOKENS for n in PROMPT_LENGTHS]
    for i, (row, p) in enumerate(zip(rows, PROMPT_LENGTHS)):
        expected = _oracle_logits(hf_model, row)[p - 1 : -1]
        np.testing.assert_allclose(out["logits"][i, p : len(row)], expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("engine", ENGINES)
def test_each_row_ends_at_its_own_stop_id(engine, lm, hf_model):
    prompts = _prompts()
    greedy = [_oracle_greedy(hf_model, p, NEW_TOKENS) for p in prompts]
    stop = greedy[0][PROMPT_LENGTHS[0]]  # row 0's first new token
    _, rows = _generate(engine, lm, prompts, max_new_tokens=NEW_TOKENS, stop_token_ids=[stop])
    assert rows == [_oracle_greedy(hf_model, p, NEW_TOKENS, stop=(stop,)) for p in prompts]
    assert rows[0] == [*prompts[0].tolist(), stop]


def _oracle_beam(hf_model, prompt, num_beams, new_tokens):
    """Textbook beam search (summed log-probabilities, no length penalty): `(score, ids)`."""
    hypotheses = [(0.0, [int(t) for t in prompt])]
    for _ in range(new_tokens):
        candidates = []
        for score, ids in hypotheses:
            logits = _oracle_logits(hf_model, ids)[-1]
            log_probs = logits - np.logaddexp.reduce(logits)
            candidates += [(score + log_probs[t], [*ids, t]) for t in range(len(logits))]
        hypotheses = sorted(candidates, key=lambda c: -c[0])[:num_beams]
    return hypotheses[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_beam_search_reorders_the_cache_rows(engine, lm, hf_model):
    """Beam search over several steps, on prompts where the best hypothesis is not the greedy
    one: hypotheses continue other beams' cache rows, so a cache reordered wrongly (`reorder`)
    would continue the wrong histories."""
    prompts = [_prompts((5,), seed=seed)[0] for seed in (0, 1, 5)]
    expected = [_oracle_beam(hf_model, p, num_beams=3, new_tokens=5) for p in prompts]
    assert any(ids != _oracle_greedy(hf_model, p, 5) for (_, ids), p in zip(expected, prompts))
    out, rows = _generate(engine, lm, prompts, max_new_tokens=5, sampler="beam", num_beams=3)
    assert rows == [ids for _, ids in expected]
    np.testing.assert_allclose(out["scores"], [score for score, _ in expected], atol=1e-4)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_seed_gives_the_same_samples_on_every_engine(engine, lm):
    """The noise is the loop's, from `(seed, position)`: engines that give the same logits give
    the same samples. (TensorFlow's stateless generator draws other numbers inside XLA than
    outside, so the export's engine, traced without XLA, is compared with itself only.)"""
    kwargs = dict(max_new_tokens=NEW_TOKENS, sampler="random", temperature=2.0)
    _, first = _generate(engine, lm, _prompts(), seed=5, **kwargs)
    _, again = _generate(engine, lm, _prompts(), seed=5, **kwargs)
    _, other = _generate(engine, lm, _prompts(), seed=6, **kwargs)
    assert first == again and first != other
    if engine != "serving":
        assert first == _generate("keras", lm, _prompts(), seed=5, **kwargs)[1]


class BanIds(LogitsProcessor):
    def __init__(self, ids):
        self.ids = tuple(ids)

    def __call__(self, logits, tokens, position, prompt_lengths):
        from keras import ops

        banned = ops.sum(ops.one_hot(ops.array(self.ids), logits.shape[-1]), axis=0) > 0
        return ops.where(banned[None, :], MASKED_LOGIT, logits)

    def key(self):
        return ("BanIds", self.ids)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_logits_processor_acts_on_every_engine(engine, lm, hf_model):
    prompts = _prompts()
    greedy = [_oracle_greedy(hf_model, p, NEW_TOKENS) for p in prompts]
    banned = sorted({greedy[0][PROMPT_LENGTHS[0]], greedy[1][PROMPT_LENGTHS[1]]})  # first choices
    _, rows = _generate(engine, lm, prompts, max_new_tokens=NEW_TOKENS, logits_processors=[BanIds(banned)])
    for row, p, n in zip(rows, prompts, PROMPT_LENGTHS):
        assert not set(row[n:]) & set(banned)
        assert row == _oracle_greedy(hf_model, p, NEW_TOKENS, banned=banned)


@pytest.mark.filterwarnings("ignore:Layer .* does not have a `quantize`")
@pytest.mark.parametrize("weights", ["int8", "bfloat16"])
@pytest.mark.parametrize("engine", ENGINES)
def test_int8_and_bfloat16_weights_stay_close_to_the_oracle(engine, weights, lm, preset, hf_model):
    """Greedy agreement with float32 over the new tokens, and the largest logit error of each step
    against the oracle's full forward pass, relative to the spread of its logits."""
    prompts = _prompts((4, 6, 3, 8, 5, 7), seed=1)
    if weights == "int8":
        model = GPT1CausalLM.from_preset(preset, dropout=0.0)
        model.quantize("int8")
    else:
        model = GPT1CausalLM.from_preset(preset, dropout=0.0, dtype="bfloat16")
    _, reference = _generate("keras", lm, prompts, max_new_tokens=NEW_TOKENS)
    out, rows = _generate(engine, model, prompts, max_new_tokens=NEW_TOKENS, return_logits=True)
    agree, error, spread = [], [], []
    for i, (row, want, p) in enumerate(zip(rows, reference, out["prompt_lengths"])):
        agree.append(np.mean(np.array(row[p:]) == np.array(want[p:])))
        full = _oracle_logits(hf_model, row)[p - 1 : -1]
        error.append(np.abs(out["logits"][i, p : len(row)] - full).max())
        spread.append(full.std())
    relative = max(error) / np.mean(spread)
    assert np.mean(agree) >= 0.75
    assert 0 < relative < 0.25, relative
