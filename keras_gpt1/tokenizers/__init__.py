"""GPT-1's BPE tokenizer: the Keras layer, vocabulary files, and training.

`GPT1Tokenizer` needs TensorFlow; it is imported lazily so that the vocabulary helpers and
training (which need only `tokenizers`) stay light.
"""

from keras_gpt1.tokenizers._rust import check_tokenizer_config
from keras_gpt1.tokenizers.train import train_bpe, train_tokenizer
from keras_gpt1.tokenizers.vocab_files import (
    VocabularyError,
    read_hf_vocabulary,
    read_merges_txt,
    read_original_vocabulary,
    read_vocabulary_json,
    write_hf_vocabulary,
)

__all__ = [
    "GPT1Tokenizer",
    "SPECIAL_TOKENS",
    "VocabularyError",
    "check_tokenizer_config",
    "read_hf_vocabulary",
    "read_merges_txt",
    "read_original_vocabulary",
    "read_vocabulary_json",
    "train_bpe",
    "train_tokenizer",
    "write_hf_vocabulary",
]


def __getattr__(name):
    if name in ("GPT1Tokenizer", "SPECIAL_TOKENS"):
        from keras_gpt1.tokenizers import gpt1_tokenizer

        return getattr(gpt1_tokenizer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
