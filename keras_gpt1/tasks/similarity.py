"""Similarity: the paper's third family. A pair has no natural order, so both orders `s a $ b e`
and `s b $ a e` go through the backbone, their extract-token states are added element-wise, and
the linear head reads the sum: logits over classes (MRPC, QQP) or one score (STS-B regression).

See `keras_gpt1.tasks.base` for the head, the auxiliary LM loss and the packing.
"""

import keras
import keras_hub
from keras import ops
from keras_hub.src.utils.tensor_utils import preprocessing_function

from keras_gpt1.tasks.base import (
    DEFAULT_CLASSIFIER_DROPOUT,
    DEFAULT_LM_WEIGHT,
    GPT1Task,
    GPT1TaskPreprocessor,
    as_strings,
    check_same_shape,
    segments_of,
    tf,
)
from keras_gpt1.tasks.registry import SIMILARITY
from keras_gpt1.tasks.text_classifier import check_same_num_classes
from keras_gpt1.utils.checks import check_integer

INPUT_NAMES = SIMILARITY.roles


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1SimilarityPreprocessor(GPT1TaskPreprocessor, keras_hub.models.Preprocessor):
    """Pairs of strings to both orders, `s a $ b e` and `s b $ a e`: `[batch, 2, sequence_length]`.

    Takes a tuple `(first, second)` of two batches of strings (or a dict with those keys).

    Args:
        tokenizer: a `GPT1Tokenizer` with fine-tuning's special tokens (the default).
        sequence_length: the packed length; None packs to the task's backbone context.

    Example:
    ```python
    preprocessor = GPT1SimilarityPreprocessor(tokenizer, sequence_length=128)
    x = preprocessor((["a cat sat"], ["the cat was sitting"]))   # token_ids: [1, 2, 128]
    ```
    """

    def __init__(self, tokenizer, sequence_length=None, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self._setup(sequence_length)

    def check_structure(self, x):
        segments_of(x, INPUT_NAMES, "GPT1Similarity")

    @preprocessing_function
    def call(self, x, y=None, sample_weight=None):
        first, second = (as_strings(t, n) for t, n in zip(segments_of(x, INPUT_NAMES, "GPT1Similarity"), INPUT_NAMES))
        check_same_shape(first, second, INPUT_NAMES)
        a, b = self._tokenize(first), self._tokenize(second)
        rows = tf.cast(a.nrows(), tf.int32)
        token_ids, mask = self._pack([tf.concat([a, b], axis=0), tf.concat([b, a], axis=0)])

        # Rows are [all a-b orders; all b-a orders]: interleave them as [pair, order].
        def by_pair(t):
            return tf.transpose(tf.reshape(t, [2, rows, self.sequence_length]), [1, 0, 2])

        shape = tf.concat([tf.shape(first), [2]], axis=0)
        x = self._output(by_pair(token_ids), by_pair(mask), shape)
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    def get_config(self):
        return {**super().get_config(), **self._config()}


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1Similarity(GPT1Task, keras_hub.models.Task):
    """GPT-1 fine-tuned for similarity: both orders of a pair, summed, then the head.

    Inputs are pairs `(first, second)` of strings through the preprocessor, or packed
    `{"token_ids", "padding_mask"}` of shape `[batch, 2, length]`. The output is logits
    `[batch, num_classes]`, or with `num_classes=None` one regression score per pair, `[batch]`
    (trained with mean squared error).

    Args:
        backbone: a `GPT1Backbone` (special-token rows are added as `GPT1TextClassifier` does).
        num_classes: classes (>= 2), or None for regression (STS-B style scores).
        preprocessor: a `GPT1SimilarityPreprocessor`, or None for packed inputs only.
        dropout, lm_weight: as `GPT1TextClassifier`.

    Example:
    ```python
    model = GPT1Similarity.from_preset("my_pretrained_preset", num_classes=None)
    model.fit((["a cat sat"], ["the cat was sitting"]), [4.2], batch_size=1)
    model.predict((["a cat sat"], ["dogs bark"]))   # one score per pair
    ```
    """

    preprocessor_cls = GPT1SimilarityPreprocessor
    input_shape_per_example = (2, None)
    input_layout = "[batch, 2 orders, length]"

    def __init__(
        self,
        backbone,
        num_classes=None,
        preprocessor=None,
        dropout=DEFAULT_CLASSIFIER_DROPOUT,
        lm_weight=DEFAULT_LM_WEIGHT,
        **kwargs,
    ):
        self.num_classes = None if num_classes is None else check_integer("num_classes", num_classes, 2)
        super().__init__(backbone, preprocessor=preprocessor, dropout=dropout, lm_weight=lm_weight, **kwargs)

    @property
    def is_regression(self):
        return self.num_classes is None

    @property
    def num_outputs(self):
        return 1 if self.is_regression else self.num_classes

    def _combine(self, features, inputs):
        return ops.sum(ops.reshape(features, (-1, 2, self.backbone.hidden_dim)), axis=1)

    def _finish(self, scores, inputs):
        return scores[:, 0] if self.is_regression else scores

    def _default_loss(self):
        if self.is_regression:
            return keras.losses.MeanSquaredError(reduction="mean_with_sample_weight")
        return super()._default_loss()

    def _default_metrics(self):
        return [] if self.is_regression else super()._default_metrics()

    @classmethod
    def check_saved_head(cls, saved, requested, preset):
        check_same_num_classes(saved, requested, preset, cls.__name__)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
