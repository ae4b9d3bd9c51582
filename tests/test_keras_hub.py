"""GPT-1 as a native KerasHub model: KerasHub's own contract tests on our classes, the auto-class
loads, presets (today's and the pre-KerasHub format), quantized presets, and the bad inputs."""

import os

import keras
import keras_hub
import numpy as np
import pytest
from keras_hub.src.tests.test_case import TestCase

from keras_gpt1.models import GPT1Backbone, GPT1CausalLM

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
LEGACY_PRESET = os.path.join(FIXTURES, "gpt1_legacy_preset")

BACKBONE_KWARGS = dict(
    vocabulary_size=97,
    num_layers=2,
    num_heads=2,
    hidden_dim=32,
    intermediate_dim=64,
    max_sequence_length=24,
    dropout=0.0,
)


def _inputs(batch=2, length=5):
    rng = np.random.default_rng(0)
    token_ids = rng.integers(1, BACKBONE_KWARGS["vocabulary_size"], size=(batch, length)).astype("int32")
    padding_mask = np.ones((batch, length), "int32")
    padding_mask[1, 3:] = 0
    return {"token_ids": token_ids, "padding_mask": padding_mask}


class GPT1BackboneContractTest(TestCase):
    def test_backbone_contract(self):
        self.run_backbone_test(
            cls=GPT1Backbone,
            init_kwargs=dict(BACKBONE_KWARGS),
            input_data=_inputs(),
            expected_output_shape=(2, 5, 32),
        )

    def test_model_saving(self):
        self.run_model_saving_test(cls=GPT1Backbone, init_kwargs=dict(BACKBONE_KWARGS), input_data=_inputs())
