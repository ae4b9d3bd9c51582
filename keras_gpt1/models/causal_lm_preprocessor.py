"""GPT-1's causal LM preprocessor: strings in, `(x, y, sample_weight)` for `fit` out. Needs TensorFlow.

GPT-1 has no start-of-text or end-of-text token. The original model was pretrained on contiguous
512-token windows cut out of BooksCorpus, with no marker at the start or end of a document; its
vocabulary (40,478 tokens) has none, and the three extra tokens of the fine-tuning code
(`_start_`, `_delimiter_`, `_classify_`) are markers for the task heads, added as new embedding
rows that the language model never saw. So this preprocessor packs no start or end token: the first
real token sits at position 0 (GPT-1's positions start there, as in pretraining), and
`add_start_token` / `add_end_token` are refused rather than silently mapped to a fine-tuning
marker. Padding uses `<unk>`'s id (the tokenizer's `pad_token_id`) and is told apart by
`padding_mask`.
"""

import keras
import tensorflow as tf
from keras_hub.layers import StartEndPacker
from keras_hub.models import CausalLMPreprocessor

# KerasHub's own helpers (its CausalLMPreprocessor uses the same ones): convert inputs to TF and
# outputs to backend tensors (NumPy inside Grain), and strip padding before detokenizing.
from keras_hub.src.utils.tensor_utils import preprocessing_function, strip_to_ragged

from keras_gpt1.models.backbone import GPT1Backbone
from keras_gpt1.tokenizers.gpt1_tokenizer import GPT1Tokenizer
from keras_gpt1.utils import compat
from keras_gpt1.utils.checks import check_integer

# `keras_hub.tokenizers.Tokenizer.from_preset` picks the tokenizer class whose `backbone_cls` is the
# preset's backbone; the tokenizer cannot import the models package, so its link is made here.
GPT1Tokenizer.backbone_cls = GPT1Backbone


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1CausalLMPreprocessor(CausalLMPreprocessor):
    """Turns strings into GPT-1 language-model batches: `({"token_ids", "padding_mask"}, y, w)`.

    Each string is tokenized by `GPT1Tokenizer`, truncated at the end to `sequence_length + 1`
    tokens and padded at the end; `x` holds the first `sequence_length` of them, `y` the same
    tokens shifted left by one (the next token at every position), and `sample_weight` is 1 where
    `y` is a real token. No start or end token is added: GPT-1 has none (see the module
    docstring), so the first real token is at position 0.

    `generate_preprocess` packs prompts the same way without the shift; `generate_postprocess`
    strips padding and the fine-tuning special tokens and detokenizes (GPT-1's tokenizer lowercases
    and splits punctuation, so the text comes back in that normalised form).

    Outputs are backend tensors (NumPy arrays inside a Grain pipeline); the layer also maps over a
    `tf.data.Dataset` of strings.

    Args:
        tokenizer: a `GPT1Tokenizer` without `sequence_length` (this layer does the padding).
        sequence_length: length of the packed `token_ids`.
        add_start_token, add_end_token: must stay False (GPT-1 has neither token); accepted so
            that KerasHub's preprocessor arguments are recognised.

    Example:
    ```python
    tokenizer = GPT1Tokenizer.from_preset("my_preset")
    preprocessor = GPT1CausalLMPreprocessor(tokenizer, sequence_length=64)
    x, y, sample_weight = preprocessor(["The quick brown fox.", "Call me Ishmael."])
    x["token_ids"].shape                 # (2, 64)
    ds = tf.data.Dataset.from_tensor_slices(["a", "b"]).batch(2).map(preprocessor)
    prompts = preprocessor.generate_preprocess(["the quick"], sequence_length=16)
    preprocessor.generate_postprocess(prompts)   # ["the quick"]
    ```
    """

    backbone_cls = GPT1Backbone
    tokenizer_cls = GPT1Tokenizer

    def __init__(self, tokenizer, sequence_length=512, add_start_token=False, add_end_token=False, **kwargs):
        for name, value in (("add_start_token", add_start_token), ("add_end_token", add_end_token)):
            if value:
                raise ValueError(
                    f"GPT1CausalLMPreprocessor got `{name}=True`, but GPT-1 has no start or end-of-text "
                    "token: it was pretrained on windows of running text with no document markers, and "
                    "its `_start_`/`_classify_` tokens are fine-tuning markers the language model never "
                    f"saw. Leave `{name}` False."
                )
        if tokenizer is not None and getattr(tokenizer, "sequence_length", None) is not None:
            raise ValueError(
                f"GPT1CausalLMPreprocessor pads and truncates itself; give it a tokenizer without "
                f"`sequence_length` (got sequence_length={tokenizer.sequence_length})."
            )
        super().__init__(
            tokenizer=tokenizer,
            sequence_length=check_integer("sequence_length", sequence_length, 1),
            add_start_token=False,
            add_end_token=False,
            **kwargs,
        )

    def build(self, input_shape):
        # Made here, not in __init__, so that a tokenizer restored from a preset has its
        # vocabulary (and so its pad id) by then. Always the TensorFlow path: GPT1Tokenizer returns
        # TensorFlow tensors on every backend.
        self.packer = StartEndPacker(
            start_value=None,
            end_value=None,
            pad_value=self.tokenizer.pad_token_id,
            sequence_length=self.sequence_length,
            return_padding_mask=True,
            **compat.TF_WORKFLOW,
        )
        self.built = True

    def _pack(self, x, sequence_length):
        if not self.built:
            self.build(None)
        return self.packer(self.tokenizer(x), sequence_length=sequence_length)

    @preprocessing_function
    def call(self, x, y=None, sample_weight=None, sequence_length=None):
        sequence_length = sequence_length or self.sequence_length
        # One extra token: the last position has no next token, so it only serves as a label.
        token_ids, padding_mask = self._pack(x, sequence_length + 1)
        x = {"token_ids": token_ids[..., :-1], "padding_mask": padding_mask[..., :-1]}
        y, sample_weight = token_ids[..., 1:], padding_mask[..., 1:]
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    @preprocessing_function
    def generate_preprocess(self, x, sequence_length=None):
        """Prompts to `{"token_ids", "padding_mask"}` of `sequence_length` (default: the layer's)."""
        token_ids, padding_mask = self._pack(x, sequence_length or self.sequence_length)
        return {"token_ids": token_ids, "padding_mask": padding_mask}

    @preprocessing_function
    def generate_postprocess(self, x):
        """Generated `{"token_ids", "padding_mask"}` to strings, padding and special tokens removed."""
        if not self.built:
            self.build(None)
        token_ids = tf.constant(keras.ops.convert_to_numpy(x["token_ids"]))
        padding_mask = tf.constant(keras.ops.convert_to_numpy(x["padding_mask"]))
        token_ids = strip_to_ragged(token_ids, padding_mask, self.tokenizer.special_token_ids)
        return self.tokenizer.detokenize(token_ids)
