"""`GPT1Backbone(rematerialize=True)` trains exactly like the plain backbone, dropout included."""

import keras
import numpy as np
import pytest

from keras_gpt1 import GPT1Backbone, GPT1CausalLM
from conftest import TINY_CONFIG, random_inputs, to_numpy


def _one_sgd_step(rematerialize, dropout, jit_compile, head_chunk_size=None):
    """Loss and every weight after one SGD step (learning rate 1, so the update is the gradient)."""
    keras.utils.set_random_seed(7)  # same weights and the same dropout seeds for both models
    config = dict(TINY_CONFIG, dropout=dropout)
    lm = GPT1CausalLM(GPT1Backbone(**config, rematerialize=rematerialize))
    lm.compile(
        optimizer=keras.optimizers.SGD(1.0),
        jit_compile=jit_compile,
        head_chunk_size=head_chunk_size,
    )
    inputs = random_inputs(4, 12, config["vocabulary_size"], seed=3, lengths=[12, 9, 12, 5])
    labels = np.roll(inputs["token_ids"], -1, axis=1)
    keras.utils.set_random_seed(11)  # PyTorch's dropout draws from the global generator
    logs = lm.train_on_batch(inputs, labels, sample_weight=inputs["padding_mask"], return_dict=True)
    return logs["loss"], [to_numpy(w) for w in lm.weights]


@pytest.mark.parametrize("jit_compile", [False, "auto"])
def test_rematerialized_step_equals_plain_step_with_dropout(jit_compile):
    plain_loss, plain_weights = _one_sgd_step(False, 0.1, jit_compile)
    remat_loss, remat_weights = _one_sgd_step(True, 0.1, jit_compile)
    no_dropout_loss, _ = _one_sgd_step(False, 0.0, jit_compile)
    # Dropout really acted (otherwise equality below would prove nothing about the seeds).
    assert abs(plain_loss - no_dropout_loss) > 1e-3
    np.testing.assert_allclose(remat_loss, plain_loss, rtol=1e-5)
    assert len(remat_weights) == len(plain_weights)
    for remat, plain in zip(remat_weights, plain_weights):
        np.testing.assert_allclose(remat, plain, rtol=1e-4, atol=1e-5)


def test_rematerialize_combines_with_the_chunked_head():
    plain_loss, plain_weights = _one_sgd_step(False, 0.1, "auto")
    remat_loss, remat_weights = _one_sgd_step(True, 0.1, "auto", head_chunk_size=16)
    np.testing.assert_allclose(remat_loss, plain_loss, rtol=1e-5)
    for remat, plain in zip(remat_weights, plain_weights):
        np.testing.assert_allclose(remat, plain, rtol=1e-4, atol=1e-5)


def test_rematerialize_is_saved_in_the_config_and_leaves_inference_alone():
    backbone = GPT1Backbone(**dict(TINY_CONFIG, dropout=0.1), rematerialize=True)
    restored = GPT1Backbone.from_config(backbone.get_config())
    assert restored.rematerialize and all(block.rematerialize for block in restored.transformer_layers)
    restored.set_weights(backbone.get_weights())
    inputs = random_inputs(2, 8, TINY_CONFIG["vocabulary_size"])
    plain = GPT1Backbone(**dict(TINY_CONFIG, dropout=0.1))
    plain.set_weights(backbone.get_weights())
    np.testing.assert_allclose(to_numpy(restored(inputs)), to_numpy(plain(inputs)), rtol=1e-5, atol=1e-6)
