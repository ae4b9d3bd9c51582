"""Pretraining data: the tf.data LM pipeline (TensorFlow-only) and the built-in demo corpus.

`LMDataset` and friends need TensorFlow (tf.data, in-graph tokenization) and load it on first
use; the batches they yield feed `model.fit` on any Keras backend. `build_demo_corpus` is pure
Python.
"""

from keras_gpt1.data.corpus import build_demo_corpus

_LM_DATASET_NAMES = ("LMDataset", "check_corpus_file", "resolve_corpus_files")


def __getattr__(name):
    if name in _LM_DATASET_NAMES:
        from keras_gpt1.data import lm_dataset

        return getattr(lm_dataset, name)
    raise AttributeError(f"module 'keras_gpt1.data' has no attribute {name!r}")


__all__ = ["build_demo_corpus", *_LM_DATASET_NAMES]
