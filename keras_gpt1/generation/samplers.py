"""Token samplers for `GPT1CausalLM.generate`.

A sampler turns next-token logits `[batch, vocab]` (float32) into token ids `[batch]`. Samplers
are small immutable objects written in `keras.ops`, so the same code runs inside `jax.jit`,
`tf.function(jit_compile=True)` and eager PyTorch. Randomness is not drawn by the sampler: the
decode loop hands it uniform noise `[batch, vocab]` made from the user's seed and the position,
so a fixed seed gives the same samples on every call (per backend; the generators differ).

Sampling uses the Gumbel-max trick: `argmax(logits / T + g)` with `g = -log(-log(u))` draws
exactly from `softmax(logits / T)`; masking logits to `-inf` restricts it to a subset (top-k,
nucleus).

`Beam` is a different search, not a per-token rule; the decode loop runs it separately.

Example:
```python
sampler = get_sampler("top_k", k=5, temperature=0.8)
lm.generate([5, 6, 7], max_new_tokens=10, sampler=sampler, seed=1)
```
"""

import math

from keras import ops

from keras_gpt1.utils.checks import check_integer
from keras_gpt1.utils.generation_defaults import SAMPLER_NAMES

# Logit given to excluded tokens. Finite, so that softmax/log-softmax never see inf - inf.
MASKED_LOGIT = -1e9


def _gumbel(uniform):
    # Clip away 0 and 1: log(0) would give inf and a NaN argmax.
    u = ops.clip(uniform, 1e-10, 1.0 - 1e-7)
    return -ops.log(-ops.log(u))


def _check_temperature(temperature):
    try:
        temperature = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"`temperature` must be a positive number; got {temperature!r}.") from None
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"`temperature` must be a positive number; got {temperature!r}.")
    return temperature


class Sampler:
    """Base class. Subclasses implement `choose(logits, uniform)`.

    `needs_noise` says whether the decode loop must draw uniform noise for it; `key()` is a
    hashable summary used to cache compiled decode loops.
    """

    needs_noise = True
    name = None

    def choose(self, logits, uniform):
        raise NotImplementedError

    def get_config(self):
        return {}

    def key(self):
        return (type(self).__name__,) + tuple(sorted(self.get_config().items()))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash(self.key())


class Greedy(Sampler):
    """Always the most likely token (deterministic; `seed` is ignored)."""

    needs_noise = False
    name = "greedy"

    def choose(self, logits, uniform=None):
        return ops.cast(ops.argmax(logits, axis=-1), "int32")


class Random(Sampler):
    """Samples from the full distribution `softmax(logits / temperature)`.

    `temperature < 1` sharpens the distribution, `> 1` flattens it.
    """

    name = "random"

    def __init__(self, temperature=1.0):
        self.temperature = _check_temperature(temperature)

    def choose(self, logits, uniform):
        return ops.cast(ops.argmax(logits / self.temperature + _gumbel(uniform), axis=-1), "int32")

    def get_config(self):
        return {"temperature": self.temperature}


class TopK(Sampler):
    """Samples among the `k` most likely tokens, with `softmax(logits / temperature)` over them."""

    name = "top_k"

    def __init__(self, k=5, temperature=1.0):
        self.k = check_integer("k", k, 1)
        self.temperature = _check_temperature(temperature)

    def choose(self, logits, uniform):
        k = min(self.k, logits.shape[-1])
        values, indices = ops.top_k(logits, k, sorted=True)
        noise = _gumbel(uniform[:, :k])
        picked = ops.argmax(values / self.temperature + noise, axis=-1)
        return ops.cast(ops.take_along_axis(indices, picked[:, None], axis=-1)[:, 0], "int32")

    def get_config(self):
        return {"k": self.k, "temperature": self.temperature}


class TopP(Sampler):
    """Nucleus sampling: samples among the smallest set of most likely tokens whose probability
    (after `temperature`) reaches `p`. The most likely token is always kept.
    """

    name = "top_p"

    def __init__(self, p=0.9, temperature=1.0):
        try:
            p = float(p)
        except (TypeError, ValueError):
            raise ValueError(f"`p` must be a number in (0, 1]; got {p!r}.") from None
        if not (0.0 < p <= 1.0):
            raise ValueError(f"`p` must be in (0, 1]; got {p!r}.")
        self.p = p
        self.temperature = _check_temperature(temperature)

    def choose(self, logits, uniform):
        vocab = logits.shape[-1]
        values, indices = ops.top_k(logits / self.temperature, vocab, sorted=True)
        probabilities = ops.softmax(values, axis=-1)
        # Mass strictly before each token: a token is kept while the nucleus is not yet full.
        before = ops.cumsum(probabilities, axis=-1) - probabilities
        keep = before < self.p
        noise = _gumbel(uniform)
        picked = ops.argmax(ops.where(keep, values, MASKED_LOGIT) + noise, axis=-1)
        return ops.cast(ops.take_along_axis(indices, picked[:, None], axis=-1)[:, 0], "int32")

    def get_config(self):
        return {"p": self.p, "temperature": self.temperature}


class Beam(Sampler):
    """Beam search with `num_beams` hypotheses per prompt; returns the most likely one.

    Scores are summed log-probabilities (no length penalty). A hypothesis that emits a stop token
    is frozen (its score no longer changes), so a prompt is finished as soon as its best
    hypothesis is: the others can only lose probability. Deterministic; `seed` is ignored.
    """

    needs_noise = False
    name = "beam"

    def __init__(self, num_beams=4):
        self.num_beams = check_integer("num_beams", num_beams, 1)

    def choose(self, logits, uniform=None):
        raise TypeError("Beam search is run by the decode loop, not token by token.")

    def get_config(self):
        return {"num_beams": self.num_beams}


# Each of `SAMPLER_NAMES` (defined once, with the other generation defaults) with its class, in
# that order; "temperature" is another name for "random".
SAMPLERS = {**dict(zip(SAMPLER_NAMES, (Greedy, Random, TopK, TopP, Beam))), "temperature": Random}

# Which keyword arguments each sampler accepts (so CLI/API callers can pass a superset).
_ARGS = {
    Greedy: (),
    Random: ("temperature",),
    TopK: ("k", "temperature"),
    TopP: ("p", "temperature"),
    Beam: ("num_beams",),
}


KERAS_HUB_SAMPLERS = (
    "GreedySampler, TopKSampler, TopPSampler (without `k`), RandomSampler, BeamSampler (without `return_all_beams`)"
)


def from_keras_hub_sampler(sampler):
    """The keras_gpt1 `Sampler` that draws from the same distribution as a
    `keras_hub.samplers.Sampler`, so `lm.compile(sampler=keras_hub.samplers.TopKSampler(k=5))`
    runs in the fast decode loop. A sampler it cannot run (a subclass with its own
    `get_next_token`, `ContrastiveSampler`, top-p with `k`, all beams returned) is refused with
    the list of those it can. A KerasHub sampler's `seed` is not carried over: pass
    `generate(seed=...)`.

    Example:
    ```python
    from_keras_hub_sampler(keras_hub.samplers.TopKSampler(k=5))     # TopK(k=5, temperature=1.0)
    ```
    """
    from keras_hub import samplers as hub

    kind = type(sampler)
    temperature = getattr(sampler, "temperature", 1.0)
    if kind is hub.GreedySampler:
        return Greedy()
    if kind is hub.TopKSampler:
        return TopK(sampler.k, temperature)
    if kind is hub.TopPSampler and sampler.k is None:
        return TopP(sampler.p, temperature)
    if kind is hub.RandomSampler:
        return Random(temperature)
    if kind is hub.BeamSampler and not sampler.return_all_beams:
        return Beam(sampler.num_beams)
    raise ValueError(
        f"keras_gpt1's decode loop cannot run the KerasHub sampler {sampler!r} "
        f"({kind.__name__}{' with `k`' if kind is hub.TopPSampler else ''}"
        f"{' with `return_all_beams=True`' if kind is hub.BeamSampler else ''}). It runs: "
        f"{KERAS_HUB_SAMPLERS}, or keras_gpt1's own samplers ({', '.join(sorted(SAMPLERS))})."
    )


def _is_keras_hub_sampler(sampler):
    from keras_hub.samplers import Sampler as KerasHubSampler

    return isinstance(sampler, KerasHubSampler)


def get_sampler(sampler="greedy", **kwargs):
    """A `Sampler` from a name (`"greedy"`, `"random"`/`"temperature"`, `"top_k"`, `"top_p"`,
    `"beam"`; dashes allowed) and its arguments, a `Sampler` instance returned unchanged, or a
    `keras_hub.samplers.Sampler` mapped by `from_keras_hub_sampler`.

    Keyword arguments that are `None` are ignored; one the sampler does not take is an error.

    Example:
    ```python
    get_sampler("top_p", p=0.9)              # TopP(p=0.9, temperature=1.0)
    get_sampler("beam", num_beams=3)         # Beam(num_beams=3)
    ```
    """
    if isinstance(sampler, Sampler):
        extra = {k: v for k, v in kwargs.items() if v is not None}
        if extra:
            raise ValueError(f"Sampler arguments {sorted(extra)} given with a sampler object {sampler!r}.")
        return sampler
    if _is_keras_hub_sampler(sampler):
        extra = {k: v for k, v in kwargs.items() if v is not None}
        if extra:
            raise ValueError(f"Sampler arguments {sorted(extra)} given with a sampler object {sampler!r}.")
        return from_keras_hub_sampler(sampler)
    if not isinstance(sampler, str):
        raise ValueError(
            f"`sampler` must be a name ({', '.join(sorted(SAMPLERS))}), a Sampler or a KerasHub "
            f"sampler ({KERAS_HUB_SAMPLERS}); got {sampler!r}."
        )
    name = sampler.strip().lower().replace("-", "_")
    if name not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; choose one of {', '.join(sorted(SAMPLERS))}.")
    cls = SAMPLERS[name]
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    unknown = sorted(set(kwargs) - set(_ARGS[cls]))
    if unknown:
        accepted = ", ".join(_ARGS[cls]) or "no arguments"
        raise ValueError(f"Sampler {name!r} does not take {unknown}; it accepts: {accepted}.")
    return cls(**kwargs)
