"""The GPT-1 pipeline in Hugging Face `tokenizers` (Rust): the eager fast path, training, the cache.

It is the same pipeline as `transformers.OpenAIGPTTokenizer` (BertNormalizer(lowercase=True) +
BertPreTokenizer + BPE with a `</w>` end-of-word suffix), plus, for `standardize="original"`, the
character replacements of the original `text_standardize`. No TensorFlow here.
"""

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE

from keras_gpt1.tokenizers.vocab_files import END_OF_WORD, UNK_TOKEN
from keras_gpt1.utils.checks import as_json_keys, check_boolean, check_choice, check_integer

STANDARDIZE_MODES = ("bert", "original")

# The one-character rules of the original `text_standardize` (finetune-transformer-lm). Its other
# rules pad punctuation runs with spaces and squeeze whitespace, which BERT-style splitting already
# does (every punctuation character is a word of its own), so they change nothing here.
ORIGINAL_REPLACEMENTS = (
    ("\u2014", "-"),  # em dash
    ("\u2013", "-"),  # en dash
    ("\u2015", "-"),  # horizontal bar
    ("\u2026", "..."),  # ellipsis
    ("\u00b4", "'"),  # acute accent
)


def check_standardize(standardize):
    if standardize not in STANDARDIZE_MODES:
        raise ValueError(f"`standardize` must be one of {STANDARDIZE_MODES}; got {standardize!r}.")
    return standardize


def check_tokenizer_config(config, path):
    """Raises a ValueError naming the file `path`, the key and the allowed values if a saved
    tokenizer config (`tokenizer.json`, or the one inside `preprocessor.json`) holds a value the
    tokenizer would misread: `"standardize": "klingon"`, `"add_special_tokens": "no"` (truthy, so
    silently True), `"dtype": "float32"`, `"sequence_length": 0`.

    Example:
    ```python
    check_tokenizer_config({"standardize": "klingon"}, "tokenizer.json")   # ValueError
    ```
    """
    try:
        if "standardize" in config:
            check_choice("standardize", config["standardize"], STANDARDIZE_MODES)
        if "add_special_tokens" in config:
            check_boolean("add_special_tokens", config["add_special_tokens"])
        if config.get("dtype") is not None:
            check_choice("dtype", config["dtype"], ("int32", "int64"))
        if config.get("sequence_length") is not None:
            check_integer("sequence_length", config["sequence_length"], 1)
    except ValueError as e:
        raise ValueError(f"Corrupt tokenizer config {path!r}: {as_json_keys(e)}") from None
    return config


def normalizer(standardize="bert"):
    bert = normalizers.BertNormalizer(lowercase=True)  # clean text, CJK, strip accents, lowercase
    if check_standardize(standardize) == "bert":
        return bert
    return normalizers.Sequence([normalizers.Replace(a, b) for a, b in ORIGINAL_REPLACEMENTS] + [bert])


def bpe_model(vocabulary=None, merges=None):
    kwargs = dict(
        unk_token=UNK_TOKEN,
        end_of_word_suffix=END_OF_WORD,
        continuing_subword_prefix="",
        fuse_unk=False,
        dropout=None,
    )
    if vocabulary is None:
        return BPE(**kwargs)
    return BPE(vocab=dict(vocabulary), merges=[tuple(m) for m in merges], **kwargs)


def build_tokenizer(vocabulary=None, merges=None, standardize="bert"):
    """A `tokenizers.Tokenizer` with GPT-1's pipeline (untrained if `vocabulary` is None)."""
    tokenizer = Tokenizer(bpe_model(vocabulary, merges))
    tokenizer.normalizer = normalizer(standardize)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.BPEDecoder(suffix=END_OF_WORD)
    return tokenizer
