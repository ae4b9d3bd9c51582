"""The chunked LM-head loss equals the plain logits path: value, gradients, metrics and training."""

import keras
import numpy as np
import pytest
from keras import ops

from conftest import BACKEND, to_numpy
from keras_gpt1 import GPT1Backbone, GPT1CausalLM
from keras_gpt1.models.chunked_head import chunked_head_loss
from keras_gpt1.training import NextTokenAccuracy, Perplexity, next_token_crossentropy


def _loss_and_grads(loss_fn, hidden, table):
    """`loss_fn(hidden, table)` and its gradients with respect to both, on this backend."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        hidden, table = tf.Variable(hidden), tf.Variable(table)
        with tf.GradientTape() as tape:
            loss = loss_fn(hidden, table)
        grads = tape.gradient(loss, [hidden, table])
        return float(loss), [g.numpy() for g in grads]
    if BACKEND == "jax":
        import jax

        loss, grads = jax.value_and_grad(loss_fn, argnums=(0, 1))(hidden, table)
        return float(loss), [np.asarray(g) for g in grads]
    # On Keras's device (a GPU when there is one), as the layers' own tensors are.
    hidden, table = (ops.convert_to_tensor(a).detach().requires_grad_(True) for a in (hidden, table))
    loss = loss_fn(hidden, table)
    loss.backward()
    return float(loss.detach()), [to_numpy(hidden.grad), to_numpy(table.grad)]


@pytest.mark.parametrize("chunk_size", [4, 5, 64])  # divides 3 x 12 tokens; leaves padding; one chunk
def test_matches_full_logits_in_value_gradients_and_metric_sums(chunk_size):
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 12, 16)).astype("float32")
    table = rng.normal(size=(41, 16)).astype("float32")
    labels = rng.integers(0, 41, size=(3, 12))
    weights = (rng.random((3, 12)) > 0.25).astype("float32")
    weights[2] = 0.0  # a fully padded row

    def plain(h, t):
        losses = next_token_crossentropy(labels, ops.matmul(h, ops.transpose(t)))
        w = ops.convert_to_tensor(weights)
        return ops.sum(losses * w) / ops.sum(w)

    def chunked(h, t):
        return chunked_head_loss(h, t, labels, weights, chunk_size=chunk_size)[0]

    plain_loss, plain_grads = _loss_and_grads(plain, hidden, table)
    loss, grads = _loss_and_grads(chunked, hidden, table)
    np.testing.assert_allclose(loss, plain_loss, rtol=1e-5)
    for got, want in zip(grads, plain_grads):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert np.abs(plain_grads[0]).max() > 1e-3
    assert not grads[0][2].any()  # padding gets no gradient

    # The sums give the same perplexity and accuracy as the metrics computed from logits.
    _, loss_sum, hit_sum, weight_sum = chunked_head_loss(hidden, table, labels, weights, chunk_size=chunk_size)
    logits = hidden @ table.T
    for metric, numerator in ((Perplexity(), loss_sum), (NextTokenAccuracy(), hit_sum)):
        reference = type(metric)()
        reference.update_state(labels, logits, sample_weight=weights)
        metric.add_totals(numerator, weight_sum)
        np.testing.assert_allclose(float(metric.result()), float(reference.result()), rtol=1e-5)
    assert float(weight_sum) == weights.sum()


def test_bad_chunk_size_is_refused():
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_head_loss(np.zeros((1, 2, 4), "float32"), np.zeros((5, 4), "float32"), np.zeros((1, 2)), chunk_size=0)


def _fit(tiny_config, head_chunk_size):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, tiny_config["vocabulary_size"], size=(6, 17)).astype("int32")
    mask = np.ones((6, 16), "int32")
    mask[1, 10:] = 0
    x, y = {"token_ids": ids[:, :-1], "padding_mask": mask}, ids[:, 1:]
    keras.utils.set_random_seed(0)
    lm = GPT1CausalLM(GPT1Backbone(**dict(tiny_config, max_sequence_length=16, dropout=0.0)))
    lm.compile(optimizer=keras.optimizers.SGD(0.5), head_chunk_size=head_chunk_size)
    history = lm.fit(x, y, sample_weight=mask.astype("float32"), batch_size=4, epochs=2, verbose=0, shuffle=False)
    evaluation = lm.evaluate(x, y, sample_weight=mask.astype("float32"), batch_size=4, verbose=0, return_dict=True)
    return lm, x, history.history, evaluation


def test_training_with_chunks_equals_training_through_logits(tiny_config):
    plain_lm, x, plain_history, plain_eval = _fit(tiny_config, None)
    lm, _, history, evaluation = _fit(tiny_config, 5)  # 4 x 16 tokens: 13 chunks, the last padded
    assert set(history) == set(plain_history) == {"loss", "perplexity", "accuracy"}
    for name in plain_history:
        np.testing.assert_allclose(history[name], plain_history[name], rtol=1e-4, err_msg=name)
    for name in plain_eval:
        np.testing.assert_allclose(evaluation[name], plain_eval[name], rtol=1e-4, err_msg=name)
    for got, want in zip(lm.get_weights(), plain_lm.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # Training mode yields what the loss needs; inference still yields logits.
    assert set(lm(x, training=True)) == {"hidden_states"}
    assert to_numpy(lm(x, training=False)).shape == (6, 16, tiny_config["vocabulary_size"])


def test_chunked_training_needs_the_default_loss_and_metrics(tiny_config):
    lm = GPT1CausalLM(GPT1Backbone(**tiny_config))
    with pytest.raises(ValueError, match="head_chunk_size"):
        lm.compile(head_chunk_size=0)
    with pytest.raises(ValueError, match="loss='auto'"):
        lm.compile(loss="sparse_categorical_crossentropy", head_chunk_size=8)
    with pytest.raises(ValueError, match="weighted_metrics='auto'"):
        lm.compile(weighted_metrics=["accuracy"], head_chunk_size=8)
