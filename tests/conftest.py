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


def write_pretraining_data(root, max_bytes, vocabulary_size):
    """`(corpus file, tokenizer directory)` under `root`: `max_bytes` of the built-in corpus
    (Python's docs) and a BPE tokenizer of `vocabulary_size` tokens trained on it, for the tests
    that pretrain (needs TensorFlow, as `pretrain` does)."""
    from keras_gpt1.data.corpus import demo_corpus_lines
    from keras_gpt1.tokenizers import train_tokenizer

    corpus = root / "docs.txt"
    corpus.write_text("\n".join(demo_corpus_lines(max_bytes=max_bytes)) + "\n", encoding="utf-8")
    train_tokenizer([str(corpus)], vocabulary_size=vocabulary_size).save_to_preset(str(root / "tokenizer"))
    return str(corpus), str(root / "tokenizer")


def pretrain_kwargs(data, output, **overrides):
    """`pretrain` keyword arguments for a quick run on `data` (`write_pretraining_data`'s pair)
    into `output`: no TensorBoard, no final sample, silent; `overrides` add to or replace them."""
    corpus, tokenizer = data
    kwargs = dict(corpus=[corpus], tokenizer=tokenizer, output=str(output), preset="gpt1_tiny")
    kwargs.update(tensorboard=False, sample_length=0, verbose=0)
    kwargs.update(overrides)
    return kwargs


def file_tree(directory):
    """Every entry under `directory` (hidden ones included): `{relative path: file bytes, or None
    for a folder}`, to compare a directory before and after a failed write."""
    root = os.fspath(directory)
    found = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(parent, name), root)] = None
        for name in files:
            with open(os.path.join(parent, name), "rb") as f:
                found[os.path.relpath(os.path.join(parent, name), root)] = f.read()
    return found


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def random_inputs(batch, length, vocabulary_size, seed=0, lengths=None):
    """Token ids and a right-padded mask; `lengths` gives each row's number of real tokens."""
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(0, vocabulary_size, size=(batch, length)).astype("int32")
    lengths = [length] * batch if lengths is None else lengths
    padding_mask = (np.arange(length)[None, :] < np.array(lengths)[:, None]).astype("int32")
    return {"token_ids": token_ids * padding_mask, "padding_mask": padding_mask}
