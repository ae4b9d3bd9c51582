"""Multiple choice: the paper's fourth family (RACE, Story Cloze). Each candidate answer becomes
its own sequence `s context $ answer_k e`; the head gives one score per sequence, and a softmax
across the candidates is trained against the right one's index. The head is the Hugging Face
port's `OpenAIGPTDoubleHeadsModel.multiple_choice_head` (a `Linear(hidden, 1)` after dropout).

See `keras_gpt1.tasks.base` for the extract token, the auxiliary LM loss and the packing.
"""

import keras
import keras_hub
import numpy as np
from keras_hub.src.utils.tensor_utils import preprocessing_function

from keras_gpt1.tasks.base import (
    DEFAULT_CLASSIFIER_DROPOUT,
    DEFAULT_LM_WEIGHT,
    GPT1Task,
    GPT1TaskPreprocessor,
    as_strings,
    segments_of,
    tf,
)
from keras_gpt1.tasks.registry import MULTIPLE_CHOICE

INPUT_NAMES = MULTIPLE_CHOICE.roles


def check_equal_choice_counts(choices):
    """Refuses a ragged `choices` batch, naming the first row whose number of candidates differs
    from row 0's: candidates are never padded with empty answers or truncated silently."""
    message = "`choices` must have the same number of candidates in every row"
    if isinstance(choices, (list, tuple)) and all(isinstance(row, (list, tuple)) for row in choices):
        counts = np.array([len(row) for row in choices])
    elif isinstance(choices, tf.RaggedTensor) and tf.executing_eagerly():
        counts = choices.row_lengths().numpy()
    elif isinstance(choices, tf.RaggedTensor):
        raise ValueError(message + ".")
    else:
        return
    differs = (counts != counts[0]).nonzero()[0] if len(counts) else []
    if not len(differs):
        return
    row = int(differs[0])
    message += f": row 0 has {int(counts[0])}, row {row} has {int(counts[row])}"
    raise ValueError(message + ". Give each example the same number of candidates (a dense [batch, k] input).")


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1MultipleChoicePreprocessor(GPT1TaskPreprocessor, keras_hub.models.Preprocessor):
    """A context and its candidates to one sequence per candidate: `[batch, k, sequence_length]`.

    Takes a tuple `(context, choices)` with `context` of shape `[batch]` and `choices`
    `[batch, k]` (or a single example: a string and `k` strings). Every example must have the
    same number of candidates `k` within a batch; it may differ between batches.

    Args:
        tokenizer: a `GPT1Tokenizer` with fine-tuning's special tokens (the default).
        sequence_length: the packed length; None packs to the task's backbone context.

    Example:
    ```python
    preprocessor = GPT1MultipleChoicePreprocessor(tokenizer, sequence_length=128)
    x = preprocessor((["she opened the door"], [["and walked in", "the moon is cheese"]]))
    x["token_ids"].shape   # (1, 2, 128)
    ```
    """

    def __init__(self, tokenizer, sequence_length=None, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self._setup(sequence_length)

    def check_structure(self, x):
        check_equal_choice_counts(segments_of(x, INPUT_NAMES, "GPT1MultipleChoice")[1])

    @preprocessing_function
    def call(self, x, y=None, sample_weight=None):
        context, choices = segments_of(x, INPUT_NAMES, "GPT1MultipleChoice")
        check_equal_choice_counts(choices)
        context, choices = (as_strings(context, "context"), as_strings(choices, "choices"))
        if (
            context.shape.rank is not None
            and choices.shape.rank is not None
            and choices.shape.rank != context.shape.rank + 1
        ):
            raise ValueError(
                f"`choices` must have one more axis than `context` (the candidates); got shapes "
                f"{context.shape} and {choices.shape}."
            )
        shape = tf.shape(choices)
        contexts = tf.repeat(tf.reshape(context, [-1]), shape[-1])
        token_ids, mask = self._pack([self._tokenize(contexts), self._tokenize(choices)])
        x = self._output(token_ids, mask, shape)
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    def get_config(self):
        return {**super().get_config(), **self._config()}


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1MultipleChoice(GPT1Task, keras_hub.models.Task):
    """GPT-1 fine-tuned for multiple choice: one score per candidate, softmax across them.

    Inputs are `(context, choices)` strings through the preprocessor, or packed
    `{"token_ids", "padding_mask"}` of shape `[batch, k, length]` (k may differ between
    batches); the output is logits `[batch, k]`, trained against the right candidate's index.

    Args:
        backbone: a `GPT1Backbone` (special-token rows are added as `GPT1TextClassifier` does).
        preprocessor: a `GPT1MultipleChoicePreprocessor`, or None for packed inputs only.
        dropout, lm_weight: as `GPT1TextClassifier`.

    Example:
    ```python
    model = GPT1MultipleChoice.from_preset("my_pretrained_preset")
    model.fit((["she opened the door"], [["and walked in", "the moon is cheese"]]), [0])
    ```
    """

    preprocessor_cls = GPT1MultipleChoicePreprocessor
    input_shape_per_example = (None, None)
    input_layout = "[batch, num_choices, length]"
    num_outputs = 1

    def __init__(
        self, backbone, preprocessor=None, dropout=DEFAULT_CLASSIFIER_DROPOUT, lm_weight=DEFAULT_LM_WEIGHT, **kwargs
    ):
        super().__init__(backbone, preprocessor=preprocessor, dropout=dropout, lm_weight=lm_weight, **kwargs)

    def _finish(self, scores, inputs):
        return self.scores_per_sequence(scores, inputs["token_ids"])
