"""Task input packers: the paper's input transformations, as in-graph preprocessing layers.
Needs TensorFlow (and `tensorflow-text` for the trimmer); usable from any Keras backend.

| packer | input | sequences | output shape |
|---|---|---|---|
| `ClassificationPacker` | `text` | `s text e` | `[batch, L]` |
| `PairPacker` (entailment) | `(premise, hypothesis)` | `s premise $ hypothesis e` | `[batch, L]` |
| `SimilarityPacker` | `(a, b)` | `s a $ b e`, `s b $ a e` | `[batch, 2, L]` |
| `MultipleChoicePacker` | `(context, choices [batch, K])` | `s context $ choice_k e` | `[batch, K, L]` |

`s`, `$`, `e` are the tokenizer's `_start_`, `_delimiter_` and `_classify_` ids. Each packer
returns `{"token_ids", "padding_mask"}` padded at the end to `sequence_length` (L) with the
tokenizer's pad id; the extract token is always the last real token, which is where the task
models read it.

**Truncation.** When the segments do not fit in `L` minus the special tokens, they are trimmed
from their ends *round robin* (`tensorflow_text.RoundRobinTrimmer`): the budget is dealt one
token per segment in turn, so a short segment is kept whole and the longer one gets the rest,
and no segment is ever dropped (each keeps at least `budget // num_segments` tokens, or all of
its own if fewer). With two long segments this is the original code's rule (each segment cut to
`n_ctx // 2 - 2`, up to one token); with a short one, it wastes none of the context. The packer's
`sequence_length` must leave at least one token per segment.

Packers take a single example (scalar strings) or a batch, as Python strings, NumPy arrays or
`tf.string` tensors; they run eagerly, inside `tf.data.Dataset.map` and inside `tf.function`.
Outputs are TensorFlow tensors on every backend (Keras converts them when they are fed to
`fit`/`predict`).
"""

import keras
import tensorflow as tf

from keras_gpt1.utils.checks import check_integer

SPECIAL_TOKEN_NAMES = ("start_token_id", "delimiter_token_id", "classify_token_id")


def _as_strings(value, name):
    if isinstance(value, (tf.Tensor, tf.RaggedTensor)):
        tensor = value
    else:
        try:
            tensor = tf.convert_to_tensor(value, dtype=tf.string)
        except (TypeError, ValueError) as e:
            raise TypeError(f"`{name}` must be text; could not convert it ({e}).") from None
    if tensor.dtype != tf.string:
        raise TypeError(f"`{name}` must be text; got a tensor of dtype {tensor.dtype.name}.")
    return tensor


class _TaskPacker(keras.layers.Layer):
    """Shared tokenizing and packing; subclasses define `call`."""

    num_segments = 1

    def __init__(self, tokenizer, sequence_length, **kwargs):
        super().__init__(**kwargs)
        self._convert_input_args = False  # keep string tensors as they are
        self._allow_non_tensor_positional_args = True  # accept Python strings
        self.built = True
        missing = [name for name in SPECIAL_TOKEN_NAMES if getattr(tokenizer, name, None) is None]
        if missing:
            raise ValueError(
                f"The tokenizer has no {', '.join(missing)}: fine-tuning needs the start, "
                "delimiter and extract tokens (GPT1Tokenizer(add_special_tokens=True))."
            )
        if getattr(tokenizer, "sequence_length", None) is not None:
            raise ValueError(
                "Give the packer a tokenizer without `sequence_length` (it must see whole "
                "segments to trim them evenly); set the length on the packer instead."
            )
        sequence_length = check_integer("sequence_length", sequence_length)
        # s + one delimiter between segments + e, and at least one token per segment.
        minimum = 2 * self.num_segments + 1
        if sequence_length < minimum:
            raise ValueError(
                f"`sequence_length` {sequence_length} is too short for {type(self).__name__}: it "
                f"needs {self.num_segments + 1} special tokens and one token per segment "
                f"(at least {minimum})."
            )
        self.tokenizer = tokenizer
        self.sequence_length = sequence_length
        self.start_token_id = int(tokenizer.start_token_id)
        self.delimiter_token_id = int(tokenizer.delimiter_token_id)
        self.classify_token_id = int(tokenizer.classify_token_id)
        self.pad_token_id = int(tokenizer.pad_token_id)

    @property
    def segment_budget(self):
        """Tokens left for the text segments of one sequence."""
        return self.sequence_length - self.num_segments - 1

    def _tokenize(self, texts):
        ids = self.tokenizer(tf.reshape(texts, [-1]))
        return tf.cast(ids, tf.int32)

    def _pack(self, segments):
        """Ragged `[n, (tokens)]` segments → `(token_ids, padding_mask)`, each `[n, L]`."""
        import tensorflow_text  # only needed for the trimmer

        trimmed = tensorflow_text.RoundRobinTrimmer(max_seq_length=self.segment_budget).trim(segments)
        rows = segments[0].nrows(out_type=tf.int64)

        def column(token_id):
            return tf.RaggedTensor.from_tensor(tf.fill(tf.stack([rows, 1]), tf.constant(token_id, tf.int32)))

        pieces = [column(self.start_token_id)]
        for i, segment in enumerate(trimmed):
            if i:
                pieces.append(column(self.delimiter_token_id))
            pieces.append(segment)
        pieces.append(column(self.classify_token_id))
        ids = tf.concat(pieces, axis=1)
        shape = [None, self.sequence_length]
        token_ids = ids.to_tensor(default_value=self.pad_token_id, shape=shape)
        padding_mask = tf.ones_like(ids).to_tensor(default_value=0, shape=shape)
        return token_ids, padding_mask

    def _output(self, token_ids, padding_mask, shape):
        """Reshapes flat `[n, L]` results to `shape + [L]`."""
        full = tf.concat([shape, [self.sequence_length]], axis=0)
        return {"token_ids": tf.reshape(token_ids, full), "padding_mask": tf.reshape(padding_mask, full)}

    def compute_output_shape(self, input_shape):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            tokenizer=keras.saving.serialize_keras_object(self.tokenizer),
            sequence_length=self.sequence_length,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("tokenizer"), dict):
            config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


def _unpack_pair(inputs, names):
    if isinstance(inputs, dict):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ValueError(f"Missing inputs {missing}; expected keys {list(names)}.")
        return [inputs[n] for n in names]
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
        raise ValueError(f"Expected a pair ({', '.join(names)}); got {type(inputs).__name__}.")
    return list(inputs)


def _check_same_shape(first, second, names):
    if first.shape.rank is not None and second.shape.rank is not None:
        if first.shape.rank != second.shape.rank or not first.shape.is_compatible_with(second.shape):
            raise ValueError(
                f"`{names[0]}` and `{names[1]}` must have the same shape; got {first.shape} and {second.shape}."
            )


@keras.saving.register_keras_serializable(package="keras_gpt1")
class ClassificationPacker(_TaskPacker):
    """`s text e` for single-text classification.

    Example:
    ```python
    packer = ClassificationPacker(tokenizer, sequence_length=64)
    x = packer(["a fine film", "a dull one"])   # token_ids, padding_mask: [2, 64]
    ```
    """

    def call(self, texts):
        texts = _as_strings(texts, "text")
        shape = tf.shape(texts)
        token_ids, mask = self._pack([self._tokenize(texts)])
        return self._output(token_ids, mask, shape)


@keras.saving.register_keras_serializable(package="keras_gpt1")
class PairPacker(_TaskPacker):
    """`s premise $ hypothesis e` for entailment (and any ordered text pair).

    Example:
    ```python
    packer = PairPacker(tokenizer, sequence_length=128)
    x = packer((["a man sleeps"], ["a person rests"]))   # [1, 128]
    ```
    """

    num_segments = 2
    input_names = ("premise", "hypothesis")

    def call(self, inputs):
        first, second = (_as_strings(t, n) for t, n in zip(_unpack_pair(inputs, self.input_names), self.input_names))
        _check_same_shape(first, second, self.input_names)
        token_ids, mask = self._pack([self._tokenize(first), self._tokenize(second)])
        return self._output(token_ids, mask, tf.shape(first))


@keras.saving.register_keras_serializable(package="keras_gpt1")
class SimilarityPacker(_TaskPacker):
    """Both orders `s a $ b e` and `s b $ a e`, stacked on axis 1: `[batch, 2, L]`.

    Example:
    ```python
    packer = SimilarityPacker(tokenizer, sequence_length=128)
    x = packer((["a cat sat"], ["the cat was sitting"]))   # [1, 2, 128]
    ```
    """

    num_segments = 2
    input_names = ("first", "second")

    def call(self, inputs):
        first, second = (_as_strings(t, n) for t, n in zip(_unpack_pair(inputs, self.input_names), self.input_names))
        _check_same_shape(first, second, self.input_names)
        a, b = self._tokenize(first), self._tokenize(second)
        rows = tf.cast(a.nrows(), tf.int32)
        token_ids, mask = self._pack([tf.concat([a, b], axis=0), tf.concat([b, a], axis=0)])
        # Rows are [all a-b orders; all b-a orders]: interleave them as [pair, order].
        def by_pair(x):
            return tf.transpose(tf.reshape(x, [2, rows, self.sequence_length]), [1, 0, 2])

        shape = tf.concat([tf.shape(first), [2]], axis=0)
        return self._output(by_pair(token_ids), by_pair(mask), shape)


@keras.saving.register_keras_serializable(package="keras_gpt1")
class MultipleChoicePacker(_TaskPacker):
    """`s context $ choice_k e` for each candidate: `[batch, num_choices, L]`.

    Takes `(context, choices)` with `context` of shape `[batch]` and `choices` `[batch, K]` (or a
    single example: a string and `[K]` strings).

    Example:
    ```python
    packer = MultipleChoicePacker(tokenizer, sequence_length=128)
    x = packer((["she opened the door"], [["and walked in", "the moon is cheese"]]))  # [1, 2, 128]
    ```
    """

    num_segments = 2
    input_names = ("context", "choices")

    def call(self, inputs):
        context, choices = (_as_strings(t, n) for t, n in zip(_unpack_pair(inputs, self.input_names), self.input_names))
        if isinstance(choices, tf.RaggedTensor):
            raise ValueError("`choices` must have the same number of candidates in every row (a dense [batch, K] tensor).")
        if context.shape.rank is not None and choices.shape.rank is not None and choices.shape.rank != context.shape.rank + 1:
            raise ValueError(
                f"`choices` must have one more axis than `context` (the candidates); got shapes "
                f"{context.shape} and {choices.shape}."
            )
        shape = tf.shape(choices)
        num_choices = shape[-1]
        contexts = tf.repeat(tf.reshape(context, [-1]), num_choices)
        token_ids, mask = self._pack([self._tokenize(contexts), self._tokenize(choices)])
        return self._output(token_ids, mask, shape)


PACKERS = {
    "classification": ClassificationPacker,
    "entailment": PairPacker,
    "similarity": SimilarityPacker,
    "multiple-choice": MultipleChoicePacker,
}


def packer_for_task(task, tokenizer, sequence_length):
    """The packer of a task name (`"classification"`, `"entailment"`, `"similarity"`,
    `"multiple-choice"`).

    Example:
    ```python
    packer = packer_for_task("entailment", tokenizer, 128)   # a PairPacker
    ```
    """
    if task not in PACKERS:
        raise ValueError(f"Unknown task {task!r}; expected one of {', '.join(PACKERS)}.")
    return PACKERS[task](tokenizer, sequence_length)


def packed_length(task, tokenizer, texts):
    """The longest packed sequence `texts` would give untruncated (role → list of strings, as
    `TaskData.texts`): the original code's choice of context length. Eager (fast Rust path).
    """
    def lengths(strings):
        if not strings:
            return tf.zeros([0], tf.int64)
        return tokenizer(list(strings)).row_lengths()

    if task == "classification":
        return int(tf.reduce_max(lengths(texts["text"]))) + 2
    if task == "multiple-choice":
        context = lengths(texts["context"])
        choices = [max(row) for row in _choice_lengths(tokenizer, texts["choices"])]
        return int(tf.reduce_max(context + tf.constant(choices, tf.int64))) + 3
    first, second = (texts[role] for role in (("premise", "hypothesis") if task == "entailment" else ("first", "second")))
    return int(tf.reduce_max(lengths(first) + lengths(second))) + 3


def _choice_lengths(tokenizer, choices):
    flat = [c for row in choices for c in row]
    lengths = tokenizer(flat).row_lengths().numpy().tolist()
    k = len(choices[0])
    return [lengths[i * k : (i + 1) * k] for i in range(len(choices))]
