"""Classification (`s text e`) and entailment (`s premise $ hypothesis e`): the paper's first two
families, as KerasHub's `TextClassifier` for GPT-1.

`keras_hub.models.TextClassifier.from_preset(<a GPT-1 preset>, num_classes=k)` returns a
`GPT1TextClassifier`; `fit`, `predict` and `evaluate` take raw strings (one text per example) or
tuples `(premises, hypotheses)` (a pair per example). See `keras_gpt1.tasks.base` for the head,
the auxiliary LM loss and the packing.
"""

import keras
import keras_hub
from keras_hub.src.utils.tensor_utils import preprocessing_function

from keras_gpt1.tasks.base import (
    DEFAULT_CLASSIFIER_DROPOUT,
    DEFAULT_LM_WEIGHT,
    GPT1Task,
    GPT1TaskPreprocessor,
    as_strings,
    check_same_shape,
    tf,
)
from keras_gpt1.utils.checks import check_integer

_SEGMENT_NAMES = {1: "one text per example (classification)", 2: "a pair per example (entailment)"}


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1TextClassifierPreprocessor(GPT1TaskPreprocessor, keras_hub.models.TextClassifierPreprocessor):
    """Strings, or pairs of strings, to GPT-1 classifier inputs: `s text e` or `s a $ b e`.

    Takes a batch of strings (classification) or a tuple `(premises, hypotheses)` of two such
    batches (entailment, or any ordered pair), and returns `{"token_ids", "padding_mask"}` of
    shape `[batch, sequence_length]` (with `y` and `sample_weight` passed through when given).

    Args:
        tokenizer: a `GPT1Tokenizer` with fine-tuning's special tokens (the default).
        sequence_length: the packed length; None (the default) packs to the context of the
            backbone of the task it joins.
        num_segments: 1 (one text per example), 2 (a pair), or None (the default: either,
            decided by each call's input). `finetune` sets it for its family (classification 1,
            entailment 2) and the saved preset keeps it, so the other input is refused rather
            than silently packed.
        truncate: `"round_robin"`, the only rule GPT-1's code used.

    Example:
    ```python
    preprocessor = GPT1TextClassifierPreprocessor(tokenizer, sequence_length=64)
    x = preprocessor(["a fine film", "a dull one"])                 # token_ids: [2, 64]
    x = preprocessor((["a man sleeps"], ["a person rests"]))         # s premise $ hypothesis e
    ```
    """

    def __init__(self, tokenizer, sequence_length=None, num_segments=None, truncate="round_robin", **kwargs):
        if num_segments is not None:
            num_segments = check_integer("num_segments", num_segments, 1, 2)
        if truncate != "round_robin":
            raise ValueError(f"GPT-1 trims segments round robin; `truncate` must be 'round_robin', got {truncate!r}.")
        self.num_segments = num_segments
        self.max_segments = num_segments or 2
        super().__init__(tokenizer=tokenizer, sequence_length=None, truncate=truncate, **kwargs)
        self._setup(sequence_length)

    def build(self, input_shape):
        # KerasHub's base builds a `MultiSegmentPacker`; GPT-1 packs with its own special tokens.
        self.built = True

    def check_structure(self, x):
        count = len(x) if isinstance(x, tuple) else 1
        if count not in (1, 2):
            raise ValueError(
                f"GPT1TextClassifierPreprocessor takes one text or a pair per example; got a tuple of {count} inputs."
            )
        if self.num_segments is not None and count != self.num_segments:
            raise ValueError(
                f"This GPT1TextClassifierPreprocessor takes {_SEGMENT_NAMES[self.num_segments]}; got "
                f"{_SEGMENT_NAMES[count].split(' (')[0]}. Pass "
                + (
                    "a tuple `(premises, hypotheses)`."
                    if self.num_segments == 2
                    else "a batch of strings, not a tuple."
                )
            )

    @preprocessing_function
    def call(self, x, y=None, sample_weight=None):
        self.check_structure(x)
        segments = list(x) if isinstance(x, tuple) else [x]
        names = ("text",) if len(segments) == 1 else ("premise", "hypothesis")
        segments = [as_strings(s, n) for s, n in zip(segments, names)]
        if len(segments) == 2:
            check_same_shape(*segments, names)
        token_ids, padding_mask = self._pack([self._tokenize(s) for s in segments])
        x = self._output(token_ids, padding_mask, tf.shape(segments[0]))
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update(self._config(), num_segments=self.num_segments)
        return config


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1TextClassifier(GPT1Task, keras_hub.models.TextClassifier):
    """GPT-1 fine-tuned for classification or entailment: softmax over `num_classes`.

    Inputs are raw strings or pairs through the preprocessor, or packed `{"token_ids",
    "padding_mask"}` of shape `[batch, length]`; the output is logits `[batch, num_classes]`.
    While training, the auxiliary LM loss is added with weight `lm_weight` (see
    `keras_gpt1.tasks.base`).

    Args:
        backbone: a `GPT1Backbone`. If the preprocessor's tokenizer has fine-tuning's special
            tokens and the backbone no rows for them, a copy with those rows is used.
        num_classes: number of classes (>= 2).
        preprocessor: a `GPT1TextClassifierPreprocessor`, or None for packed inputs only.
        dropout: dropout on the extract-token state before the head (0.1).
        lm_weight: λ in `task_loss + λ·lm_loss` (0.5; 0 turns the LM loss off).

    Example:
    ```python
    classifier = keras_hub.models.TextClassifier.from_preset("my_pretrained_preset", num_classes=2)
    classifier.fit(["a fine film", "a dull one"], [1, 0], batch_size=2)
    classifier.predict(["what a film"])           # logits [1, 2]
    classifier.save_to_preset("my_classifier")     # keras_hub.models.TextClassifier.from_preset(...)
    ```
    """

    preprocessor_cls = GPT1TextClassifierPreprocessor

    def __init__(
        self,
        backbone,
        num_classes=None,
        preprocessor=None,
        dropout=DEFAULT_CLASSIFIER_DROPOUT,
        lm_weight=DEFAULT_LM_WEIGHT,
        **kwargs,
    ):
        if num_classes is None:
            raise ValueError(
                "GPT1TextClassifier needs `num_classes` (>= 2): give it, e.g. "
                "`TextClassifier.from_preset(preset, num_classes=2)`; a GPT1TextClassifier preset has its own."
            )
        self.num_classes = check_integer("num_classes", num_classes, 2)
        super().__init__(backbone, preprocessor=preprocessor, dropout=dropout, lm_weight=lm_weight, **kwargs)

    @property
    def num_outputs(self):
        return self.num_classes

    @classmethod
    def check_saved_head(cls, saved, requested, preset):
        check_same_num_classes(saved, requested, preset, cls.__name__)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def check_same_num_classes(saved, requested, preset, class_name):
    """Refuses `num_classes` that differs from a saved head's, naming both numbers."""
    if "num_classes" in requested and requested["num_classes"] != saved.get("num_classes"):
        raise ValueError(
            f"Preset {preset!r} holds a {class_name} head of {saved.get('num_classes')} classes, but "
            f"`num_classes={requested['num_classes']}` was given. Leave `num_classes` out to load the "
            f"saved head, or build a fresh one on its backbone: {class_name}(backbone=GPT1Backbone"
            f".from_preset(...), num_classes={requested['num_classes']}, preprocessor=...)."
        )
