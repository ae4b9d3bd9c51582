"""Shared test set-up. The backend comes from KERAS_BACKEND (the Makefile runs all three)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.config.backend()

TINY_CONFIG = dict(
    vocabulary_size=97,
    num_layers=2,
    num_heads=2,
    hidden_dim=32,
    intermediate_dim=64,
    max_sequence_length=24,
    dropout=0.0,
)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def tiny_config():
    return dict(TINY_CONFIG)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def random_inputs(batch, length, vocabulary_size, seed=0, lengths=None):
    """Token ids and a right-padded mask; `lengths` gives each row's number of real tokens."""
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(0, vocabulary_size, size=(batch, length)).astype("int32")
    lengths = [length] * batch if lengths is None else lengths
    padding_mask = (np.arange(length)[None, :] < np.array(lengths)[:, None]).astype("int32")
    return {"token_ids": token_ids * padding_mask, "padding_mask": padding_mask}
