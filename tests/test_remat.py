"""`GPT1Backbone(rematerialize=True)` trains exactly like the plain backbone, dropout included."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_gpt1 import GPT1Backbone, GPT1CausalLM
from conftest import BACKEND, TINY_CONFIG, random_inputs, to_numpy

# This process starts JAX without the XLA flag; the warning about that has its own test below.
pytestmark = pytest.mark.filterwarnings("ignore:rematerialize=True saves no memory:UserWarning")


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


_XLA_TEMPORARIES = """
import json, sys
from keras_gpt1.layers import keep_rematerialization_on_jax_cpu
if sys.argv[1] == "keep":
    keep_rematerialization_on_jax_cpu()  # before JAX starts
import jax, keras, numpy as np
from keras_gpt1 import GPT1Backbone, GPT1CausalLM
sizes = {}
for rematerialize in (False, True):
    keras.utils.set_random_seed(0)
    config = dict(vocabulary_size=97, num_layers=4, num_heads=2, hidden_dim=64, intermediate_dim=256,
                  max_sequence_length=128, dropout=0.1)
    lm = GPT1CausalLM(GPT1Backbone(**config, rematerialize=rematerialize))
    lm.compile(optimizer="sgd")
    ids = np.ones((8, 128), "int32")
    lm.optimizer.build(lm.trainable_variables)
    state = jax.tree.map(lambda v: v.value, (lm.trainable_variables, lm.non_trainable_variables,
                         lm.optimizer.variables, lm.metrics_variables),
                         is_leaf=lambda v: isinstance(v, keras.Variable))
    data = ({"token_ids": ids, "padding_mask": ids}, ids, ids)
    compiled = jax.jit(lm.train_step).lower(state, data).compile()
    sizes[str(rematerialize)] = compiled.memory_analysis().temp_size_in_bytes
print(json.dumps(sizes))
"""


def _xla_temporaries(mode):
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    out = subprocess.run(
        [sys.executable, "-c", _XLA_TEMPORARIES, mode], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    sizes = json.loads(out.stdout.strip().splitlines()[-1])
    return sizes["False"], sizes["True"]


@pytest.mark.skipif(BACKEND != "jax", reason="XLA's CPU pipeline is JAX's concern here")
@pytest.mark.integration
def test_jax_cpu_needs_the_flag_for_rematerialization_to_save_memory():
    plain, rematerialized = _xla_temporaries("keep")
    assert rematerialized < 0.6 * plain, (plain, rematerialized)
    # Without the flag XLA merges the recomputation back: (almost) nothing is saved. This pins
    # down why the flag exists; if XLA changes, the warning and the flag can go.
    plain, rematerialized = _xla_temporaries("default")
    assert rematerialized > 0.8 * plain, (plain, rematerialized)


@pytest.mark.skipif(BACKEND != "jax", reason="only JAX on a CPU undoes rematerialization")
def test_rematerialize_without_the_flag_warns_on_jax_cpu(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    with pytest.warns(UserWarning, match="xla_disable_hlo_passes=cse_barrier_expander"):
        GPT1Backbone(**TINY_CONFIG, rematerialize=True)
