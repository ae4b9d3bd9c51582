"""The paper's optimizer: which variables decay, and the update against the original `opt.py` formula."""

import keras
import numpy as np
import pytest
from conftest import TINY_CONFIG

from keras_gpt1 import GPT1Backbone, GPT1CausalLM
from keras_gpt1.training import GPT1AdamW, WarmupCosine, create_optimizer, decayed_variables


def test_paper_defaults():
    optimizer = create_optimizer()
    assert isinstance(optimizer, GPT1AdamW)
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.999, 1e-8)
    assert optimizer.weight_decay == 0.01 and optimizer.global_clipnorm == 1.0
    assert optimizer.bias_corrected_decay and optimizer.decay_embeddings
    assert optimizer.gradient_accumulation_steps is None


def test_decay_matrices_only():
    lm = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    variables = lm.trainable_variables
    decayed = {v.path for v in decayed_variables(create_optimizer(), variables)}
    expected = {"embeddings/token_embedding/embeddings", "embeddings/position_embeddings"}
    for i in range(TINY_CONFIG["num_layers"]):
        expected |= {
            f"h_{i}/attn/c_attn/kernel",
            f"h_{i}/attn/c_proj/kernel",
            f"h_{i}/c_fc/kernel",
            f"h_{i}/c_proj/kernel",
        }
    assert decayed == expected
    # Everything else is a bias or a LayerNorm gain/offset, and is left alone.
    rest = {v.path.rsplit("/", 1)[-1] for v in variables if v.path not in decayed}
    assert rest == {"bias", "gamma", "beta"}
    without = {v.path for v in decayed_variables(create_optimizer(decay_embeddings=False), variables)}
    assert without == expected - {"embeddings/token_embedding/embeddings", "embeddings/position_embeddings"}


def _original_adam(params, grads_per_step, lr_per_step, wd, clip, b1=0.9, b2=0.999, e=1e-8):
    """The update of the original `opt.py`, in numpy (decay on rank > 1 only)."""
    params = [p.astype(np.float64) for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, (grads, lr) in enumerate(zip(grads_per_step, lr_per_step)):
        norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads))
        if clip and norm > clip:
            grads = [g * clip / norm for g in grads]
        tt = t + 1
        lrt = lr * np.sqrt(1 - b2**tt) / (1 - b1**tt)
        for i, (p, g) in enumerate(zip(params, grads)):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            step = m[i] / (np.sqrt(v[i]) + e)
            params[i] = p - lrt * (step + wd * p if p.ndim > 1 else step)
    return params


def _linear_problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = (rng.normal(size=(8, 1)) * 5).astype("float32")  # large residuals: clipping is active
    kernel = rng.normal(size=(3, 1)).astype("float32")
    bias = np.array([0.5], "float32")
    return x, y, kernel, bias


def _mse_grads(x, y, kernel, bias):
    residual = x @ kernel + bias - y
    return [2 * x.T @ residual / len(x), 2 * residual.sum(0) / len(x)]


def test_fit_matches_original_update_formula():
    """Three compiled `fit` steps equal the original optimizer: clip, Adam, bias-corrected decay."""
    x, y, kernel, bias = _linear_problem()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.layers[0].set_weights([kernel, bias])
    schedule = WarmupCosine(0.05, warmup_steps=1, total_steps=6)
    model.compile(optimizer=create_optimizer(schedule, weight_decay=0.3), loss="mse")
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)

    params, grads_seen, lrs = [kernel.astype(np.float64), bias.astype(np.float64)], [], []
    for t in range(3):
        grads = _mse_grads(x, y, params[0], params[1])
        assert np.sqrt(sum(np.sum(g**2) for g in grads)) > 1.0  # the clip matters
        grads_seen.append(grads)
        lrs.append(float(keras.ops.convert_to_numpy(schedule(t))))
        params = _original_adam([kernel, bias], grads_seen, lrs, wd=0.3, clip=1.0)
    got = model.layers[0].get_weights()
    np.testing.assert_allclose(got[0], params[0], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], params[1], rtol=2e-5, atol=1e-6)


def test_keras_decay_option_differs_by_the_bias_correction():
    kernel = keras.Variable(np.full((2, 2), 2.0, "float32"))
    for corrected, factor in [(True, np.sqrt(1 - 0.999) / (1 - 0.9)), (False, 1.0)]:
        kernel.assign(np.full((2, 2), 2.0, "float32"))
        optimizer = create_optimizer(0.1, weight_decay=0.5, global_clipnorm=None, bias_corrected_decay=corrected)
        optimizer.apply_gradients([(np.zeros((2, 2), "float32"), kernel)])  # zero gradient: decay only
        expected = 2.0 - 0.1 * factor * 0.5 * 2.0
        np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), expected, rtol=1e-6)


def test_gradient_accumulation_equals_the_big_batch():
    x, y, kernel, bias = _linear_problem(1)

    def train(batch_size, accumulation):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.layers[0].set_weights([kernel, bias])
        optimizer = create_optimizer(WarmupCosine(0.05, 1, 10), gradient_accumulation_steps=accumulation)
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0)
        return model.layers[0].get_weights(), int(keras.ops.convert_to_numpy(optimizer.iterations))

    (big, updates_big), (small, updates_small) = train(8, 1), train(4, 2)
    assert updates_big == updates_small == 2
    for a, b in zip(big, small):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_config_round_trip():
    optimizer = create_optimizer(WarmupCosine(1e-3, 10, 100), decay_embeddings=False, bias_corrected_decay=False)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, GPT1AdamW)
    assert restored.decay_embeddings is False and restored.bias_corrected_decay is False
    assert restored.weight_decay == 0.01 and restored.global_clipnorm == 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        create_optimizer(gradient_accumulation_steps=0)
