"""The memory-lean GELU and attention dropout compute exactly what they replace."""

import keras
import numpy as np
from keras import ops

from keras_gpt1.layers.lean import attention_dropout, gelu_approximate
from conftest import to_numpy


def _value_and_grad(function, x):
    """Value and d(sum(function(x) * weights))/dx on the current backend."""
    weights = np.linspace(-1.5, 2.0, x.size, dtype="float32").reshape(x.shape)
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = function(x)
            total = tf.reduce_sum(y * weights)
        return y.numpy(), tape.gradient(total, x).numpy()
    if backend == "jax":
        import jax

        y, vjp = jax.vjp(function, x)
        return np.asarray(y), np.asarray(vjp(weights)[0])
    # On Keras's device (a GPU when there is one), as the layers' own tensors are.
    x = ops.convert_to_tensor(x).detach().requires_grad_(True)
    y = function(x)
    (y * ops.convert_to_tensor(weights)).sum().backward()
    return to_numpy(y.detach()), to_numpy(x.grad)


def test_gelu_approximate_matches_ops_gelu_in_value_and_gradient():
    x = np.linspace(-6.0, 6.0, 243, dtype="float32").reshape(3, 81)
    lean_value, lean_grad = _value_and_grad(gelu_approximate, x)
    value, grad = _value_and_grad(lambda v: ops.gelu(v, approximate=True), x)
    np.testing.assert_allclose(lean_value, value, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(lean_grad, grad, rtol=1e-5, atol=5e-6)  # float32 rounding in the tails


def test_attention_dropout_keeps_one_minus_rate_and_rescales():
    layer = keras.layers.Dropout(0.25, seed=3)
    probabilities = np.full((4, 3, 64, 64), 0.5, "float32")
    dropped = to_numpy(attention_dropout(ops.convert_to_tensor(probabilities), layer, training=True))
    kept = dropped != 0
    assert abs(kept.mean() - 0.75) < 0.01, kept.mean()
    np.testing.assert_allclose(dropped[kept], 0.5 / 0.75, rtol=1e-6)
    # Not training: the identity, as keras.layers.Dropout.
    same = to_numpy(attention_dropout(ops.convert_to_tensor(probabilities), layer, training=False))
    np.testing.assert_array_equal(same, probabilities)
