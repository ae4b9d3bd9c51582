"""Learning-rate schedules: values at known steps, the original fraction formulas, serialization."""

import math

import keras
import numpy as np
import pytest

from keras_gpt1.training import (
    OpenAISchedule,
    PerUpdateSchedule,
    WarmupCosine,
    WarmupLinear,
    create_optimizer,
    warmup_constant,
    warmup_cosine,
    warmup_linear,
)


def value(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_warmup_cosine_known_values():
    s = WarmupCosine(2.5e-4, warmup_steps=2000, total_steps=10_000)
    assert value(s, 0) == 0.0
    assert value(s, 500) == pytest.approx(0.25 * 2.5e-4)
    assert value(s, 1999) == pytest.approx(1999 / 2000 * 2.5e-4)
    assert value(s, 2000) == pytest.approx(2.5e-4)
    assert value(s, 6000) == pytest.approx(0.5 * 2.5e-4)  # half way through the cosine
    assert value(s, 8000) == pytest.approx(2.5e-4 * 0.5 * (1 + math.cos(math.pi * 0.75)))
    assert value(s, 10_000) == pytest.approx(0.0, abs=1e-12)
    assert value(s, 12_000) == pytest.approx(0.0, abs=1e-12)  # stays at 0 past the end


def test_warmup_cosine_without_warmup_starts_at_peak():
    s = WarmupCosine(1e-3, warmup_steps=0, total_steps=100)
    assert value(s, 0) == pytest.approx(1e-3)
    assert value(s, 50) == pytest.approx(5e-4)


def test_warmup_linear_known_values():
    s = WarmupLinear(6.25e-5, total_steps=1000, warmup_fraction=0.1)
    assert value(s, 0) == 0.0
    assert value(s, 50) == pytest.approx(3.125e-5)
    assert value(s, 100) == pytest.approx(6.25e-5)
    assert value(s, 550) == pytest.approx(3.125e-5)
    assert value(s, 1000) == pytest.approx(0.0, abs=1e-12)
    assert value(s, 1500) == pytest.approx(0.0, abs=1e-12)


def _reference(name, x, warmup):
    """The formulas of the reference sheet, in plain Python."""
    s = 1.0 if x <= warmup else 0.0
    if name == "warmup_cosine":
        return s * (x / warmup) + (1 - s) * 0.5 * (1 + math.cos(math.pi * x))
    if name == "warmup_constant":
        return s * (x / warmup) + (1 - s)
    return (s * (x / warmup) + (1 - s)) * (1 - x)


@pytest.mark.parametrize(
    "name, fn",
    [("warmup_cosine", warmup_cosine), ("warmup_constant", warmup_constant), ("warmup_linear", warmup_linear)],
)
def test_original_fraction_schedules(name, fn):
    for warmup in (0.002, 0.2):
        for x in (0.0, 0.001, 0.002, 0.0021, 0.1, 0.2, 0.2001, 0.5, 0.75, 1.0):
            got = float(keras.ops.convert_to_numpy(fn(x, warmup)))
            assert got == pytest.approx(_reference(name, x, warmup), rel=1e-5, abs=1e-7), (x, warmup)
    schedule = OpenAISchedule(2.0, total_steps=1000, schedule=name, warmup=0.2)
    assert value(schedule, 300) == pytest.approx(2.0 * _reference(name, 0.3, 0.2), rel=1e-5)
    # The original quirk: its cosine is over the whole run, not from the end of warmup.
    if name == "warmup_cosine":
        assert value(schedule, 201) == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 0.201)), rel=1e-5)


def test_per_update_schedule_counts_updates():
    inner = WarmupCosine(1e-3, warmup_steps=10, total_steps=100)
    wrapped = PerUpdateSchedule(inner, gradient_accumulation_steps=4)
    for micro_step, update in [(0, 0), (3, 0), (4, 1), (7, 1), (43, 10), (399, 99)]:
        assert value(wrapped, micro_step) == pytest.approx(value(inner, update))
    optimizer = create_optimizer(inner, gradient_accumulation_steps=4)
    assert isinstance(optimizer._learning_rate, PerUpdateSchedule)
    assert create_optimizer(inner)._learning_rate is inner


@pytest.mark.parametrize(
    "schedule",
    [
        WarmupCosine(2.5e-4, 2000, 100_000),
        WarmupLinear(6.25e-5, 3000, 0.002),
        OpenAISchedule(6.25e-5, 3000, "warmup_linear", 0.002),
        PerUpdateSchedule(WarmupCosine(1e-3, 5, 50), 2),
    ],
)
def test_serialization_round_trip(schedule):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(restored) is type(schedule)
    for step in (0, 3, 17, 40):
        assert value(restored, step) == pytest.approx(value(schedule, step))
    # Through an optimizer's config, as a saved model carries it.
    optimizer = create_optimizer(schedule)
    clone = optimizer.__class__.from_config(optimizer.get_config())
    assert value(clone._learning_rate, 7) == pytest.approx(value(schedule, 7))


def test_schedule_bad_arguments():
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosine(1e-3, warmup_steps=100, total_steps=100)
    with pytest.raises(ValueError, match="total_steps"):
        WarmupCosine(1e-3, warmup_steps=0, total_steps=0)
    with pytest.raises(ValueError, match="warmup_fraction"):
        WarmupLinear(1e-3, 100, warmup_fraction=1.0)
    with pytest.raises(ValueError, match="Unknown schedule"):
        OpenAISchedule(1e-3, 100, schedule="cosine")


def test_inside_compiled_training_step():
    """The schedule drives a real optimizer inside `fit` (graph/jit on every backend)."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    schedule = WarmupCosine(0.1, warmup_steps=2, total_steps=8)
    model.compile(optimizer=create_optimizer(schedule, weight_decay=0.0), loss="mse")
    model.fit(np.ones((8, 3)), np.ones((8, 1)), batch_size=2, epochs=1, verbose=0)
    optimizer = model.optimizer
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 4
    np.testing.assert_allclose(keras.ops.convert_to_numpy(optimizer.learning_rate), value(schedule, 4), rtol=1e-6)
