"""`compile()`'s jit default: XLA on TensorFlow even without an accelerator (Keras's own "auto"
turns it off there; GPT-1 trains 1.13x faster with it), Keras's choice everywhere else."""

import warnings

import numpy as np
import pytest

from conftest import BACKEND, TINY_CONFIG
from keras_gpt1 import GPT1Backbone, GPT1CausalLM
from keras_gpt1.tasks import GPT1TextClassifier

pytestmark = pytest.mark.xla  # the default under test (tests/conftest.py turns XLA off elsewhere)

# What "auto" gives on each backend: XLA on TensorFlow (ours) and JAX (Keras's), eager PyTorch.
AUTO = {"tensorflow": True, "jax": True, "torch": False}[BACKEND]


def test_causal_lm_default_and_saved_config():
    lm = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    lm.compile()
    assert lm.jit_compile is AUTO
    assert lm.get_compile_config()["jit_compile"] is AUTO  # saved as Keras saves its own choice
    ids = np.random.default_rng(0).integers(0, TINY_CONFIG["vocabulary_size"], size=(2, 9)).astype("int32")
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((2, 8), "int32")}
    logs = lm.train_on_batch(x, ids[:, 1:], return_dict=True)
    assert np.isfinite(logs["loss"])


def test_task_model_default():
    model = GPT1TextClassifier(GPT1Backbone(**TINY_CONFIG), num_classes=2)
    assert model.jit_compile is AUTO  # compiled in `__init__`, as KerasHub tasks are
    model.compile()
    assert model.jit_compile is AUTO


def test_explicit_choices_and_run_eagerly_are_kept():
    lm = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    lm.compile(jit_compile=False)
    assert lm.jit_compile is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras warns if jit_compile=True meets run_eagerly=True
        lm.compile(run_eagerly=True)
    assert lm.jit_compile is False


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute is TensorFlow's")
def test_tf_distribute_keeps_keras_choice():
    import tensorflow as tf

    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        lm = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
        lm.compile()
    assert lm.jit_compile is False


def test_a_model_keras_cannot_compile_stays_uncompiled_without_a_warning():
    lm = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    lm.backbone.supports_jit = False  # as a layer without an XLA kernel declares itself
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras warns when jit_compile=True meets such a model
        lm.compile()
    assert lm.jit_compile is False
