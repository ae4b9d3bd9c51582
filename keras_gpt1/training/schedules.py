"""Learning-rate schedules of GPT-1, as serializable `keras.optimizers.schedules.LearningRateSchedule`s.

Every schedule is a function of `step`, the number of optimizer updates already applied (Keras's
`optimizer.iterations`: 0 during the first update). That is also what the original code feeds its
schedules (`schedule(t / t_total)` with `t` counting from 0), so the first update of a warmup runs
at learning rate 0, and a run of `total_steps` updates ends with the rate reaching 0.

- `WarmupCosine`: the paper's pretraining schedule, linear warmup over `warmup_steps` updates to
  the peak, then a half cosine from the peak down to 0 at `total_steps`.
- `WarmupLinear`: the fine-tuning schedule, linear warmup over a fraction of the run, then linear
  down to 0 at `total_steps`.
- `OpenAISchedule`: the original code's fraction-based `warmup_cosine`, `warmup_constant`,
  `warmup_linear` (below, exactly as in `opt.py`): note that its cosine starts at `x = 0`, not at
  the end of warmup, and its linear decay multiplies the warmup ramp.
- `PerUpdateSchedule`: with gradient accumulation Keras's optimizer feeds schedules the
  micro-batch count; this wrapper converts it to the update count (`create_optimizer` applies it).
"""

import math

import keras
from keras import ops

from keras_gpt1.utils.checks import check_number


def _as_float(x):
    return ops.cast(x, "float32")


# === The original code's schedules (fractions of the run) ===


def warmup_cosine(x, warmup=0.002):
    """The original `warmup_cosine`: `x/warmup` while `x <= warmup`, then `0.5 * (1 + cos(pi*x))`.

    `x` is the fraction of the run done (`step / total_steps`); returns the multiplier of the peak
    learning rate.

    Example:
    ```python
    float(warmup_cosine(0.5))   # 0.5
    ```
    """
    x = _as_float(x)
    s = _as_float(ops.less_equal(x, warmup))
    return s * (x / warmup) + (1.0 - s) * (0.5 * (1.0 + ops.cos(math.pi * x)))


def warmup_constant(x, warmup=0.002):
    """The original `warmup_constant`: `x/warmup` while `x <= warmup`, then 1.

    Example:
    ```python
    float(warmup_constant(0.001))   # 0.5
    ```
    """
    x = _as_float(x)
    s = _as_float(ops.less_equal(x, warmup))
    return s * (x / warmup) + (1.0 - s)


def warmup_linear(x, warmup=0.002):
    """The original `warmup_linear` (fine-tuning default): `(x/warmup if x <= warmup else 1) * (1 - x)`.

    Example:
    ```python
    float(warmup_linear(0.5))   # 0.5
    ```
    """
    x = _as_float(x)
    s = _as_float(ops.less_equal(x, warmup))
    return (s * (x / warmup) + (1.0 - s)) * (1.0 - x)


OPENAI_SCHEDULES = {
    "warmup_cosine": warmup_cosine,
    "warmup_constant": warmup_constant,
    "warmup_linear": warmup_linear,
}


def _check_positive(name, value):
    # Finite too: an infinite peak rate would pass `> 0` and train a NaN model.
    check_number(name, value, 0, low_open=True)


# === LearningRateSchedules ===


@keras.saving.register_keras_serializable(package="keras_gpt1")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """The paper's pretraining schedule: linear warmup, then cosine annealing to 0.

    `lr(step) = peak * step / warmup_steps` for `step < warmup_steps`, then
    `peak * 0.5 * (1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps)))`, and 0 from
    `total_steps` on. GPT-1: peak 2.5e-4, 2,000 warmup updates.

    Args:
        peak_learning_rate: the rate reached at the end of warmup.
        warmup_steps: updates of linear warmup (0 for none).
        total_steps: updates in the whole run; the rate is 0 there.

    Example:
    ```python
    schedule = WarmupCosine(2.5e-4, warmup_steps=2000, total_steps=100_000)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule)
    float(schedule(1000))   # 1.25e-4
    ```
    """

    def __init__(self, peak_learning_rate, warmup_steps, total_steps):
        _check_positive("peak_learning_rate", peak_learning_rate)
        _check_positive("total_steps", total_steps)
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(f"`warmup_steps` must be in [0, total_steps={total_steps}); got {warmup_steps!r}.")
        self.peak_learning_rate = float(peak_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = _as_float(step)
        warmup = float(max(self.warmup_steps, 1))
        ramp = step / warmup
        progress = ops.clip((step - self.warmup_steps) / float(self.total_steps - self.warmup_steps), 0.0, 1.0)
        cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
        return self.peak_learning_rate * ops.where(step < self.warmup_steps, ramp, cosine)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


@keras.saving.register_keras_serializable(package="keras_gpt1")
class WarmupLinear(keras.optimizers.schedules.LearningRateSchedule):
    """The fine-tuning schedule: linear warmup over a fraction of the run, then linear decay to 0.

    With `w = warmup_fraction * total_steps`: `lr(step) = peak * step / w` for `step < w`, then
    `peak * (total_steps - step) / (total_steps - w)`, and 0 from `total_steps` on. GPT-1
    fine-tuning: peak 6.25e-5, warmup 0.2 % of the run.

    Args:
        peak_learning_rate: the rate reached at the end of warmup.
        total_steps: updates in the whole run.
        warmup_fraction: fraction of `total_steps` spent warming up (0.002).

    Example:
    ```python
    schedule = WarmupLinear(6.25e-5, total_steps=1000, warmup_fraction=0.1)
    float(schedule(100)), float(schedule(550))   # (6.25e-05, 3.125e-05)
    ```
    """

    def __init__(self, peak_learning_rate, total_steps, warmup_fraction=0.002):
        _check_positive("peak_learning_rate", peak_learning_rate)
        _check_positive("total_steps", total_steps)
        if not 0 <= warmup_fraction < 1:
            raise ValueError(f"`warmup_fraction` must be in [0, 1); got {warmup_fraction!r}.")
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_fraction = float(warmup_fraction)

    def __call__(self, step):
        step = _as_float(step)
        warmup = self.warmup_fraction * self.total_steps
        ramp = step / max(warmup, 1e-12)
        decay = ops.clip((self.total_steps - step) / (self.total_steps - warmup), 0.0, 1.0)
        return self.peak_learning_rate * ops.where(step < warmup, ramp, decay)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_fraction": self.warmup_fraction,
        }


@keras.saving.register_keras_serializable(package="keras_gpt1")
class OpenAISchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The original code's schedules: `peak * schedule(step / total_steps, warmup)`.

    `schedule` is one of `"warmup_cosine"`, `"warmup_constant"`, `"warmup_linear"` and `warmup`
    a *fraction* of the run (0.002 in the original), exactly as `opt.py` computes them. Past
    `total_steps` the value is whatever the formula gives (the original never went there).

    Example:
    ```python
    schedule = OpenAISchedule(6.25e-5, total_steps=1000, schedule="warmup_linear")
    float(schedule(500))   # 3.125e-05
    ```
    """

    def __init__(self, peak_learning_rate, total_steps, schedule="warmup_cosine", warmup=0.002):
        _check_positive("peak_learning_rate", peak_learning_rate)
        _check_positive("total_steps", total_steps)
        _check_positive("warmup", warmup)
        if schedule not in OPENAI_SCHEDULES:
            raise ValueError(f"Unknown schedule {schedule!r}; expected one of {sorted(OPENAI_SCHEDULES)}.")
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.schedule = schedule
        self.warmup = float(warmup)

    def __call__(self, step):
        x = _as_float(step) / float(self.total_steps)
        return self.peak_learning_rate * OPENAI_SCHEDULES[self.schedule](x, self.warmup)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "schedule": self.schedule,
            "warmup": self.warmup,
        }


@keras.saving.register_keras_serializable(package="keras_gpt1")
class PerUpdateSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Evaluates `schedule` at the optimizer-update count when gradients are accumulated.

    With `gradient_accumulation_steps=k`, Keras calls a schedule with the number of micro-batches
    seen; an update happens on micro-batch `u*k + k - 1`, which this maps to update `u`, so a
    schedule written in updates (warmup over 2,000 updates) keeps its meaning.

    Example:
    ```python
    schedule = PerUpdateSchedule(WarmupCosine(1e-3, 10, 100), gradient_accumulation_steps=4)
    float(schedule(7)) == float(WarmupCosine(1e-3, 10, 100)(1))   # True
    ```
    """

    def __init__(self, schedule, gradient_accumulation_steps):
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        if int(gradient_accumulation_steps) < 1:
            raise ValueError(f"`gradient_accumulation_steps` must be >= 1; got {gradient_accumulation_steps!r}.")
        self.schedule = schedule
        self.gradient_accumulation_steps = int(gradient_accumulation_steps)

    def __call__(self, step):
        return self.schedule(ops.floor_divide(ops.cast(step, "int32"), self.gradient_accumulation_steps))

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }
