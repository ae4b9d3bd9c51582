"""What the GPT-1 fine-tuning tasks share: the extract-token head, the auxiliary LM loss, and
the packing of the paper's input transformations.

Every family (`text_classifier.py`, `similarity.py`, `multiple_choice.py`) is a KerasHub `Task`
built on `GPT1Task`, with a preprocessor built on `GPT1TaskPreprocessor`:

- **The head** reads the backbone's final hidden state at the extract token `e`, which the
  preprocessors always place last: the model takes each sequence's last real token (the last
  position where `padding_mask` is 1), so it needs no knowledge of token ids. Classifier dropout
  (0.1) acts on that state before a linear head.
- **Auxiliary LM loss.** While training (`fit`), the same forward pass also yields the next-token
  cross-entropy of the packed tokens through the tied embedding (every real token after the first
  is a target; each sequence's mean, then the mean over sequences, as the original `train.py`).
  The loss minimised is `task_loss + lm_weight * lm_loss` (λ = 0.5 by default; 0 turns it off).
  `fit` logs `loss`, `task_loss` and `lm_loss`; `evaluate` and `predict` run the task head only.
  Mechanism (the same on TensorFlow, JAX and PyTorch, no custom `train_step`): called with
  `training=True` and `lm_weight > 0`, the model returns `{"task": logits, "lm_loss": scalar}`;
  `compute_loss` and `compute_metrics` take the task output from it and add the weighted term.
  Under TensorFlow data parallelism the LM term is divided by the replica count as Keras divides
  the task loss (`keras_gpt1.distribution.scale_loss_for_replicas`).
- **Packing.** `s`, `$` and `e` are the tokenizer's `_start_`, `_delimiter_` and `_classify_`
  ids; sequences are padded at the end with its pad id. When the segments do not fit in
  `sequence_length` minus the special tokens they are trimmed from their ends *round robin*
  (`tensorflow_text.RoundRobinTrimmer`): the budget is dealt one token per segment in turn, so a
  short segment is kept whole, the longer one gets the rest, and none is ever dropped. With two
  long segments this is the original code's rule (each cut to `n_ctx // 2 - 2`, up to a token).

The models use `keras.ops` only and build without TensorFlow; the preprocessors need TensorFlow
and `tensorflow-text` (string ops), and say so when they are missing.
"""

import os

import keras
import keras_hub
import numpy as np
from keras import ops

from keras_gpt1 import presets

from keras_gpt1.layers.embedding import gpt1_initializer
from keras_gpt1.models import preset_io
from keras_gpt1.models.backbone import GPT1Backbone
from keras_gpt1.models.causal_lm import holds_text
from keras_gpt1.training.losses import next_token_crossentropy
from keras_gpt1.utils import compat
from keras_gpt1.utils.checks import CheckedInputsMixin, check_integer, check_number, check_token_ids, is_concrete
from keras_gpt1.utils.files import estimated_weights_file_bytes, require_file, writing_in_place
from keras_gpt1.utils.jit import resolve_jit_compile
from keras_gpt1.utils.locks import holding_output

try:  # The preprocessors' string ops and tokenizer; the models do not need them.
    import tensorflow as tf

    from keras_gpt1.tokenizers.gpt1_tokenizer import GPT1Tokenizer
except ModuleNotFoundError as error:
    if error.name not in ("tensorflow", "tensorflow_text"):
        raise
    tf = GPT1Tokenizer = None

DEFAULT_LM_WEIGHT = 0.5
DEFAULT_CLASSIFIER_DROPOUT = 0.1
# Keys of the training-time output, and of the two logged losses.
TASK_OUTPUT = "task"
LM_LOSS_OUTPUT = "lm_loss"
TASK_LOSS_METRIC = "task_loss"
LM_LOSS_METRIC = "lm_loss"
SPECIAL_TOKEN_NAMES = ("start_token_id", "delimiter_token_id", "classify_token_id")


# === Functions ===


def extract_token_states(hidden_states, padding_mask):
    """The hidden state at each sequence's last real token (the extract token `e`).

    `hidden_states` is `[n, length, dim]`, `padding_mask` `[n, length]`; returns `[n, dim]`.
    A row with no real token yields position 0 (the input checks reject such rows).

    Example:
    ```python
    h = np.arange(12, dtype="float32").reshape(1, 3, 4)
    extract_token_states(h, np.array([[1, 1, 0]]))   # h[0, 1]
    ```
    """
    length = ops.shape(hidden_states)[1]
    positions = ops.arange(length, dtype="int32")[None, :]
    real = ops.cast(padding_mask, "bool")
    # The max over real positions, not `sum(mask) - 1`: also right for a mask with holes.
    last = ops.maximum(ops.max(ops.where(real, positions, -1), axis=1), 0)
    index = ops.cast(last, "int32")[:, None, None]
    return ops.take_along_axis(hidden_states, index, axis=1)[:, 0, :]


def sequence_lm_loss(logits, token_ids, padding_mask):
    """The auxiliary LM loss: next-token cross-entropy, mean per sequence, then over sequences.

    Position `t` predicts token `t + 1` wherever that token is real. Sequences with no target (a
    single real token) are left out of the mean rather than counted as zero, as in the original
    `train.py` (`lm_losses` are per-sequence means; the objective takes their mean).

    Example:
    ```python
    ids = np.array([[1, 2, 3, 0]]); mask = np.array([[1, 1, 1, 0]])
    float(sequence_lm_loss(np.zeros((1, 4, 5)), ids, mask))   # log(5) ≈ 1.609
    ```
    """
    losses = next_token_crossentropy(token_ids[:, 1:], logits[:, :-1])
    weights = ops.cast(padding_mask[:, 1:], "float32")
    counts = ops.sum(weights, axis=1)
    per_sequence = ops.divide_no_nan(ops.sum(losses * weights, axis=1), counts)
    has_targets = ops.cast(counts > 0, "float32")
    return ops.divide_no_nan(ops.sum(per_sequence), ops.sum(has_targets))


def add_special_token_rows(backbone, num_tokens, seed=None):
    """A copy of `backbone` whose token embedding has `num_tokens` extra rows, drawn N(0, 0.02).

    Fine-tuning adds GPT-1's start, delimiter and extract tokens after the base vocabulary (ids
    40478-40480 for the released model); every other weight is copied unchanged. The original
    backbone is left untouched. The task classes call this themselves when their tokenizer has
    the special tokens and the backbone has no rows for them.

    Example:
    ```python
    backbone = GPT1Backbone.from_preset("gpt1_tiny")        # 1024 tokens
    backbone = add_special_token_rows(backbone, 3)           # 1027 tokens
    ```
    """
    num_tokens = int(num_tokens)
    if num_tokens < 0:
        raise ValueError(f"`num_tokens` must be >= 0; got {num_tokens}.")
    config = backbone.get_config()
    config.pop("name", None)
    config["vocabulary_size"] = backbone.vocabulary_size + num_tokens
    new_backbone = GPT1Backbone.from_config(config)
    old = {v.path: v for v in backbone.weights}
    rng = keras.random.SeedGenerator(seed) if seed is not None else None
    for variable in new_backbone.weights:
        if variable.path not in old:
            raise ValueError(f"Cannot copy backbone weights: no variable {variable.path!r} in the source.")
        # A NumPy copy: sharing buffers would let JAX's `fit` (which donates its state) delete
        # the source backbone's arrays.
        value = ops.convert_to_numpy(old[variable.path])
        if variable.path == backbone.token_embedding.embeddings.path:
            rows = keras.random.normal((num_tokens, backbone.hidden_dim), stddev=0.02, dtype="float32", seed=rng)
            value = np.concatenate([value.astype("float32"), ops.convert_to_numpy(rows)], axis=0)
        variable.assign(value)
    return new_backbone


def _known_vocabulary_size(tokenizer):
    """The tokenizer's vocabulary size, or None while its vocabulary is not loaded yet (KerasHub's
    loader builds a task from its config first and loads the tokenizer's files afterwards)."""
    if tokenizer is None:
        return None
    try:
        return int(tokenizer.vocabulary_size())
    except (ValueError, AttributeError, TypeError):
        return None


# === Layers of the head (`keras.ops` only) ===


class _WeightlessLayer(keras.layers.Layer):
    """A layer without weights: built from the start (`quantize` and saving visit every layer)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.built = True


class FlattenSequences(_WeightlessLayer):
    """`[batch, sequences, length]` → `[batch * sequences, length]`: one backbone pass for all."""

    def call(self, x):
        return ops.reshape(x, (-1, ops.shape(x)[-1]))


class ExtractTokenStates(_WeightlessLayer):
    """`(hidden_states [n, length, dim], padding_mask [n, length])` → `[n, dim]` at `e`."""

    def call(self, hidden_states, padding_mask):
        return extract_token_states(hidden_states, padding_mask)


class ScoresPerSequence(_WeightlessLayer):
    """`(scores [batch * sequences, 1], token_ids [batch, sequences, length])` → `[batch, sequences]`."""

    def call(self, scores, token_ids):
        shape = ops.shape(token_ids)
        return ops.reshape(scores, (shape[0], shape[1]))

    def compute_output_shape(self, scores_shape, token_ids_shape):
        # Stated, not traced: PyTorch traces unknown sizes as one number, and `[n, 1]` scores
        # would not reshape to a square `[n, n]`.
        return (token_ids_shape[0], token_ids_shape[1])


# === The task base class ===


class GPT1Task(CheckedInputsMixin):
    """Shared machinery of the GPT-1 tasks, mixed in before their KerasHub base class
    (`TextClassifier`, or `Task`): the functional model, the auxiliary LM loss, the recipe's
    `compile` defaults, input checks and presets. (A mixin, not a `Task` subclass: Keras rewrites
    a functional model's base classes, which a diamond of `Task`s would break.)

    A family defines `num_outputs` (units of the linear head), `input_shape_per_example`
    (`(None,)` for `[batch, length]` inputs, `(2, None)` or `(None, None)` for one sequence more
    per example), `_combine(features, inputs)` (from the extract-token states `[n, dim]` to what
    the head reads) and `_finish(scores, inputs)` (from the head's output to the task output).
    """

    backbone_cls = GPT1Backbone
    preprocessor_cls = None
    input_shape_per_example = (None,)
    input_layout = "[batch, length]"

    def __init__(
        self,
        backbone,
        preprocessor=None,
        dropout=DEFAULT_CLASSIFIER_DROPOUT,
        lm_weight=DEFAULT_LM_WEIGHT,
        head_dtype=None,
        **kwargs,
    ):
        if not isinstance(backbone, GPT1Backbone):
            raise ValueError(f"`backbone` must be a GPT1Backbone; got {type(backbone).__name__}.")
        dropout = check_number("dropout", dropout, 0, 1, high_open=True)
        lm_weight = check_number("lm_weight", lm_weight, 0)  # 0 turns the LM loss off
        backbone = self._with_special_token_rows(backbone, preprocessor)
        if preprocessor is not None:
            preprocessor.attach_to(backbone, type(self).__name__)
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.dropout = float(dropout)
        self.lm_weight = float(lm_weight)
        policy = backbone.dtype_policy
        self.flatten_sequences = FlattenSequences(dtype=policy, name="flatten_sequences")
        self.extract_token_states = ExtractTokenStates(dtype=policy, name="extract_token_states")
        self.classifier_dropout = keras.layers.Dropout(self.dropout, dtype=policy, name="classifier_dropout")
        self.head = keras.layers.Dense(
            self.num_outputs,
            kernel_initializer=gpt1_initializer(),
            bias_initializer="zeros",
            # A quantized head (after `quantize("int8")`) is rebuilt quantized from its config.
            dtype=policy if head_dtype is None else keras.dtype_policies.get(head_dtype),
            name="head",
        )
        self.scores_per_sequence = ScoresPerSequence(dtype=policy, name="scores_per_sequence")

        # === Functional Model ===
        inputs = {
            "token_ids": keras.Input(shape=self.input_shape_per_example, dtype="int32", name="token_ids"),
            "padding_mask": keras.Input(shape=self.input_shape_per_example, dtype="int32", name="padding_mask"),
        }
        outputs = self._forward(inputs, training=None)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # The loss trackers are made once the model is initialised: before, KerasHub's `Task`
        # sets attributes past Keras's tracking on PyTorch, and `fit` would not log them.
        self.task_loss_tracker = keras.metrics.Mean(name=TASK_LOSS_METRIC)
        self.lm_loss_tracker = keras.metrics.Mean(name=LM_LOSS_METRIC)

    # --- Subclass interface ---
    num_outputs = 1

    def _combine(self, features, inputs):
        return features

    def _finish(self, scores, inputs):
        return scores

    # --- Forward pass ---
    def _flat_inputs(self, inputs):
        token_ids, padding_mask = inputs["token_ids"], inputs["padding_mask"]
        if len(self.input_shape_per_example) == 2:
            token_ids, padding_mask = (self.flatten_sequences(token_ids), self.flatten_sequences(padding_mask))
        return token_ids, padding_mask

    def _forward(self, inputs, training, with_lm_loss=False):
        token_ids, padding_mask = self._flat_inputs(inputs)
        hidden = self.backbone({"token_ids": token_ids, "padding_mask": padding_mask}, training=training)
        features = self._combine(self.extract_token_states(hidden, padding_mask), inputs)
        scores = self.head(self.classifier_dropout(features, training=training))
        output = ops.cast(self._finish(scores, inputs), "float32")
        if not with_lm_loss:
            return output
        lm_logits = self.backbone.token_embedding(hidden, reverse=True)
        return {TASK_OUTPUT: output, LM_LOSS_OUTPUT: sequence_lm_loss(lm_logits, token_ids, padding_mask)}

    def call(self, inputs, training=None, mask=None):
        if training and self.lm_weight > 0:
            return self._forward(inputs, training=True, with_lm_loss=True)
        return super().call(inputs, training=training, mask=mask)

    def lm_logits(self, inputs):
        """Next-token logits of packed inputs, `[..., length, vocabulary_size]` (inference mode).

        The LM head is the tied token embedding, as in pretraining.
        """
        token_ids, padding_mask = self._flat_inputs(inputs)
        hidden = self.backbone({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)
        logits = self.backbone.token_embedding(hidden, reverse=True)
        shape = tuple(ops.shape(inputs["token_ids"]))
        return ops.reshape(logits, shape + (self.backbone.vocabulary_size,))

    # --- Losses and metrics (backend-neutral Keras hooks) ---
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, dict):
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        from keras_gpt1.distribution.replicas import scale_loss_for_replicas, unscale_loss_for_replicas

        # Under tf.distribute (MirroredStrategy) Keras's task loss comes back divided by the
        # replica count (the replicas' gradients are summed); the LM loss, computed by hand, is
        # divided here the same way, and both are logged as global means. Identity elsewhere.
        task_loss = super().compute_loss(x, y, y_pred[TASK_OUTPUT], sample_weight, training=training)
        lm_loss = ops.cast(y_pred[LM_LOSS_OUTPUT], task_loss.dtype)
        batch_size = ops.shape(y_pred[TASK_OUTPUT])[0]
        self.task_loss_tracker.update_state(unscale_loss_for_replicas(task_loss), sample_weight=batch_size)
        self.lm_loss_tracker.update_state(lm_loss, sample_weight=batch_size)
        return task_loss + self.lm_weight * scale_loss_for_replicas(lm_loss)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, dict):
            return super().compute_metrics(x, y, y_pred[TASK_OUTPUT], sample_weight)
        logs = super().compute_metrics(x, y, y_pred, sample_weight)
        # Without the LM term (evaluation, or lm_weight=0) the loss is the task loss alone.
        return {k: v for k, v in logs.items() if k not in (TASK_LOSS_METRIC, LM_LOSS_METRIC)}

    def _default_loss(self):
        # Averaged over the sample weights, not the batch size: the zero-weight rows that pad a
        # partial last batch under a keras.distribution then change nothing. Equal otherwise.
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")

    def _default_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def compile(self, optimizer="auto", loss="auto", *, metrics="auto", **kwargs):
        """`keras.Model.compile` with the fine-tuning defaults.

        `"auto"` gives the paper's optimizer (Adam, decoupled weight decay 0.01 on matrices,
        global-norm clipping 1.0) at a constant 6.25e-5 (`finetune` adds the warmup-linear
        schedule), cross-entropy from logits (mean squared error for a regression similarity) and
        accuracy (none for regression). The default accuracy is compiled as a weighted metric, so
        rows of sample weight 0 (the padding `make_dataset` adds to a partial batch under a
        `keras.distribution`) do not count; without weights it is the same.
        """
        if isinstance(optimizer, str) and optimizer == "auto":
            from keras_gpt1.training.optimizers import FINETUNING_LEARNING_RATE, create_optimizer

            optimizer = create_optimizer(learning_rate=FINETUNING_LEARNING_RATE)
        if isinstance(loss, str) and loss == "auto":
            loss = self._default_loss()
        if isinstance(metrics, str) and metrics == "auto":
            metrics = None
            kwargs.setdefault("weighted_metrics", self._default_metrics())
        kwargs["jit_compile"] = resolve_jit_compile(self, kwargs.get("jit_compile", "auto"), kwargs.get("run_eagerly"))
        keras.Model.compile(self, optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        # Keras skips this for models that override `compile`; ours takes the same arguments.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # --- Special tokens ---
    @staticmethod
    def _with_special_token_rows(backbone, preprocessor):
        tokenizer = getattr(preprocessor, "tokenizer", None)
        size = _known_vocabulary_size(tokenizer)
        if size is None or size <= backbone.vocabulary_size:
            return backbone
        base = getattr(tokenizer, "base_vocabulary_size", None)
        if base is not None and int(base) == backbone.vocabulary_size:
            # A pretrained backbone and a tokenizer with fine-tuning's start, delimiter and
            # extract tokens: the tokens get their rows here, as the paper's code adds them.
            return add_special_token_rows(backbone, size - backbone.vocabulary_size)
        raise ValueError(
            f"The tokenizer has {size} ids but the backbone only {backbone.vocabulary_size} "
            "embedding rows: they do not belong together."
        )

    # --- Input checks ---
    def _check_inputs(self, x):
        if not isinstance(x, dict) or "token_ids" not in x or "padding_mask" not in x:
            raise ValueError(
                f"{type(self).__name__} takes raw text (through its preprocessor) or a dict "
                f"{{'token_ids': ..., 'padding_mask': ...}} of shape {self.input_layout}; got "
                f"{type(x).__name__}" + (f" with keys {sorted(x)}" if isinstance(x, dict) else "") + "."
            )
        token_ids, padding_mask = x["token_ids"], x["padding_mask"]
        shape = tuple(getattr(token_ids, "shape", ()))
        rank = len(self.input_shape_per_example) + 1
        if len(shape) != rank:
            raise ValueError(
                f"{type(self).__name__} expects `token_ids` of rank {rank} ({self.input_layout}); got shape {shape}."
            )
        if tuple(getattr(padding_mask, "shape", ())) != shape:
            raise ValueError(
                f"`padding_mask` has shape {tuple(getattr(padding_mask, 'shape', ()))}, "
                f"`token_ids` has shape {shape}: they must match."
            )
        fixed = self.input_shape_per_example[0] if rank == 3 else None
        if fixed is not None and shape[1] != fixed:
            raise ValueError(f"{type(self).__name__} expects `token_ids` of shape {self.input_layout}; got {shape}.")
        if not (is_concrete(token_ids) and is_concrete(padding_mask)):
            return
        ids = ops.convert_to_numpy(token_ids)
        mask = ops.convert_to_numpy(padding_mask)
        flat_ids = ids.reshape(-1, shape[-1]) if ids.size else ids.reshape(0, shape[-1])
        check_token_ids(flat_ids, self.backbone.vocabulary_size, self.backbone.max_sequence_length)
        empty = (mask.reshape(-1, shape[-1]).sum(axis=1) == 0).nonzero()[0]
        if len(empty):
            raise ValueError(
                f"Sequence {int(empty[0])} (flattened over {self.input_layout}) has no real token "
                "(its `padding_mask` is all zeros); every sequence must end with the extract token."
            )

    def _takes_text(self, x):
        if not holds_text(x):
            return False
        if self.preprocessor is None:
            raise ValueError(
                f"This {type(self).__name__} got text but has no preprocessor to pack it: load a "
                f"preset with a tokenizer, or build it with `preprocessor={type(self).__name__}Preprocessor(...)`."
            )
        # Checked here, before Keras turns the inputs into a dataset: inside its pipeline the
        # same error would come wrapped in a traceback of the dataset's map function.
        # A dataset's elements (`(x, y)` batches) are checked by the preprocessor in its map.
        check = getattr(self.preprocessor, "check_structure", None)
        if check is not None and getattr(x, "element_spec", None) is None:
            check(x)
        return True

    def fit(self, x=None, y=None, *args, **kwargs):
        if not self._takes_text(x):
            self._check_array_inputs(x)
        return keras_hub.models.Task.fit(self, x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        if not self._takes_text(x):
            self._check_array_inputs(x)
        return keras_hub.models.Task.evaluate(self, x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        if not self._takes_text(x):
            self._check_array_inputs(x)
        return keras_hub.models.Task.predict(self, x, *args, **kwargs)

    def preprocess_samples(self, x, y=None, sample_weight=None):
        # Packed batches (`make_dataset`, or ids packed by hand) pass as they are.
        if self.preprocessor is None or not holds_text(x):
            return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
        return super().preprocess_samples(x, y, sample_weight)

    # --- Serialization ---
    def get_config(self):
        config = super().get_config()  # backbone, preprocessor, name
        config.update(dropout=self.dropout, lm_weight=self.lm_weight)
        if self.head.quantization_mode is not None:
            config["head_dtype"] = keras.dtype_policies.serialize(self.head.dtype_policy)
        return config

    # --- Presets ---
    def _not_task_weights(self):
        # The backbone is saved on its own; the optimizer's state (Adam's moments of every
        # backbone weight) is not the task's: KerasHub's own methods skip only the backbone.
        skip = list(self.backbone._flatten_layers())
        if getattr(self, "optimizer", None) is not None:
            skip.append(self.optimizer)
        return skip

    def save_task_weights(self, filepath):
        """Saves the head's weights (not the backbone's, not the optimizer's) to a `.weights.h5`."""
        if not str(filepath).endswith(".weights.h5"):
            raise ValueError(f"The filename must end in `.weights.h5`; got {filepath!r}.")
        keras.saving.save_weights(self, filepath, objects_to_skip=self._not_task_weights())

    def load_task_weights(self, filepath):
        """Loads weights written by `save_task_weights` into the head, after checking the file
        against the preset's `manifest.json` when it has one (KerasHub's auto classes load a
        task preset's head through here too)."""
        if not str(filepath).endswith(".weights.h5"):
            raise ValueError(f"The filename must end in `.weights.h5`; got {filepath!r}.")
        preset_io.verify_weights_file(filepath)
        keras.saving.load_weights(self, filepath, objects_to_skip=self._not_task_weights())

    @holding_output("preset_dir", "save_to_preset")
    def save_to_preset(self, preset_dir, max_shard_size=10):
        """Writes a KerasHub task preset: `task.json` (this class and its head config),
        `task.weights.h5` (the head), the backbone's `config.json` and `model.weights.h5`, and
        with a preprocessor `preprocessor.json`, `tokenizer.json` and the vocabulary files.

        Example:
        ```python
        classifier.save_to_preset("sst2_model")
        keras_hub.models.TextClassifier.from_preset("sst2_model")   # the same classifier
        ```

        Last comes `manifest.json`, the size and SHA-256 of the weights and vocabulary files,
        which every loader checks before reading them.
        """
        # A full disk is refused before anything is written (`writing_in_place`); a failed save
        # removes what it wrote.
        with writing_in_place(preset_dir, "preset", estimated_weights_file_bytes(self.weights)):
            compat.save_task_to_preset(self, preset_dir, max_shard_size=max_shard_size)
            preset_io.write_preset_manifest(
                preset_dir, backbone=True, tokenizer=self.preprocessor is not None, task=True
            )

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """A task from a task preset, a pretrained preset, a built-in name or a `hf://` handle.

        - A task preset of this class (written by `save_to_preset` or `finetune`) comes back
          whole, head included. `kwargs` replace its head config (e.g. `lm_weight=0.0`);
          `num_classes` must equal the saved head's (a ValueError names both numbers).
        - Any other GPT-1 preset (pretrained, converted, `"gpt1"`, a causal LM's) gives a fresh
          head built from `kwargs` (e.g. `num_classes=3`) on its backbone. When the tokenizer has
          fine-tuning's special tokens and the backbone no rows for them, the rows are added,
          drawn N(0, 0.02).
        - `dtype` (e.g. `"mixed_bfloat16"`) is the backbone's dtype policy; the head follows it.
        - `preprocessor=` replaces the preset's; without one, a preprocessor is made around the
          preset's tokenizer (None if it has none), packing to the backbone's context.

        Example:
        ```python
        classifier = GPT1TextClassifier.from_preset("my_pretrained_preset", num_classes=2)
        ```
        """
        preset = preset_io.resolve_preset(preset_io.as_preset(preset), load_weights)
        saved_class, saved_config = _saved_task(preset, cls)
        if saved_class is not None and not issubclass(saved_class, cls):
            raise ValueError(
                f"Preset {preset!r} holds a {saved_class.__name__}, not a {cls.__name__}: load it "
                f"with {saved_class.__name__}.from_preset (or KerasHub's auto class)."
            )
        task_class = saved_class or cls
        if task_class.preprocessor_cls is None:
            raise ValueError(
                f"Preset {preset!r} holds no fine-tuned task: build a fresh head with one of the task "
                "classes (GPT1TextClassifier, GPT1Similarity, GPT1MultipleChoice).from_preset."
            )
        dtype = kwargs.pop("dtype", None)
        backbone = GPT1Backbone.from_preset(preset, load_weights=load_weights, **({"dtype": dtype} if dtype else {}))
        if "preprocessor" not in kwargs:
            preset_io.check_saved_tokenizer_configs(preset)
            kwargs["preprocessor"] = task_class._preset_preprocessor(preset, load_weights)
            if preset_io.is_preset_dir(preset):
                preset_io.check_tokenizer_fits(preset, backbone, getattr(kwargs["preprocessor"], "tokenizer", None))
        if saved_class is None:
            return task_class(backbone=backbone, **kwargs)
        config = {k: v for k, v in saved_config.items() if k not in ("backbone", "preprocessor", "name")}
        task_class.check_saved_head(config, kwargs, preset)
        task = task_class(backbone=backbone, **{**config, **kwargs})
        if load_weights:
            _load_task_weights(task, preset)
        return task

    @classmethod
    def check_saved_head(cls, saved, requested, preset):
        """Refuses head arguments that do not fit the saved head (the families define it)."""

    @classmethod
    def _preset_preprocessor(cls, preset, load_weights):
        preprocessor_cls = cls.preprocessor_cls
        if preset_io.has_preprocessor(preset):
            data = preset_io.read_preset_json(preset, "preprocessor.json")
            found = (
                keras.saving.get_registered_object(data.get("registered_name", "")) if isinstance(data, dict) else None
            )
            if isinstance(found, type) and issubclass(found, preprocessor_cls):
                return preprocessor_cls.from_preset(preset)
        tokenizer = preset_io.load_tokenizer(preset, load_weights)
        return None if tokenizer is None else preprocessor_cls(tokenizer)


def _saved_task(preset, cls):
    """`(class, config)` of a preset's `task.json` when it holds a fine-tuning task, else
    `(None, None)` (no task.json, or the causal LM's that KerasHub's saver writes)."""
    if not preset_io.holds_task_model(preset):
        return None, None
    path = os.path.join(preset, presets.TASK_CONFIG_FILE)
    data = preset_io.read_preset_json(preset, presets.TASK_CONFIG_FILE)
    name = data.get("registered_name") if isinstance(data, dict) else None
    found = keras.saving.get_registered_object(name) if name else None
    if not (isinstance(found, type) and issubclass(found, keras_hub.models.Task)) or not isinstance(
        data.get("config"), dict
    ):
        raise ValueError(
            f"Corrupt task config {path!r}: expected a KerasHub task (`registered_name` and `config`); "
            f"got registered name {name!r}."
        )
    if not issubclass(found, GPT1Task):
        raise ValueError(
            f"Preset {preset!r} holds a {found.__name__}, not a {cls.__name__} (a task of another model family)."
        )
    return found, data["config"]


def _load_task_weights(task, preset):

    path = require_file(os.path.join(preset, presets.TASK_WEIGHTS_FILE), "task weights")
    preset_io.verify_preset_files(preset, [presets.TASK_WEIGHTS_FILE])
    try:
        task.load_task_weights(path)
    except Exception as e:  # h5py and Keras raise many types; the user needs the file name.
        raise ValueError(f"Could not load task weights {path!r}: {e}") from e


# === The preprocessor base class ===


class GPT1TaskPreprocessor:
    """The packing shared by the task preprocessors (a mixin before a KerasHub `Preprocessor`).

    A family defines `max_segments` (text segments per sequence) and `call`, which turns its
    inputs into segments and calls `_pack`. `sequence_length=None` packs to the context of the
    backbone the preprocessor is given to (512 for GPT-1) when it joins a task.
    """

    backbone_cls = GPT1Backbone
    tokenizer_cls = GPT1Tokenizer
    max_segments = 2

    def _setup(self, sequence_length):
        if tf is None:
            raise ImportError(
                f"{type(self).__name__} tokenizes text with TensorFlow, which is not installed: "
                "`pip install tensorflow tensorflow-text`, or give the task packed token ids."
            )
        self._convert_input_args = False  # keep string tensors as they are
        self._allow_non_tensor_positional_args = True  # accept Python strings
        if sequence_length is not None:
            sequence_length = check_integer("sequence_length", sequence_length)
            # s + one delimiter between segments + e, and at least one token per segment.
            minimum = 2 * self.max_segments + 1
            if sequence_length < minimum:
                raise ValueError(
                    f"`sequence_length` {sequence_length} is too short for {type(self).__name__}: it "
                    f"needs {self.max_segments + 1} special tokens and one token per segment (at least {minimum})."
                )
        self._sequence_length = sequence_length
        tokenizer = self.tokenizer
        if tokenizer is not None and getattr(tokenizer, "sequence_length", None) is not None:
            raise ValueError(
                f"Give {type(self).__name__} a tokenizer without `sequence_length` (it must see whole "
                "segments to trim them evenly); set the length on the preprocessor instead."
            )

    def check_structure(self, x):
        """Refuses raw inputs of the wrong structure (a family's preprocessor defines it)."""

    def __call__(self, *args, **kwargs):
        # A tuple is one input's segments (a pair, a context and its candidates), never KerasHub's
        # `(x, y)` shorthand, which these preprocessors do not take: labels go as `y=`.
        if len(args) == 1 and type(args[0]) is tuple and "y" not in kwargs:
            kwargs["y"] = None
        return super().__call__(*args, **kwargs)

    @property
    def sequence_length(self):
        """The packed length (None until the preprocessor joins a task, if not given)."""
        return self._sequence_length

    @sequence_length.setter
    def sequence_length(self, value):
        self._sequence_length = (
            None if value is None else check_integer("sequence_length", value, 2 * self.max_segments + 1)
        )

    def attach_to(self, backbone, task_name):
        """Fits the packed length to `backbone`: its context when unset, else checked against it."""
        context = backbone.max_sequence_length
        if self._sequence_length is None:
            self._sequence_length = context
        elif self._sequence_length > context:
            raise ValueError(
                f"The preprocessor packs {self._sequence_length} tokens but the {task_name}'s backbone "
                f"has a context of {context}: give the preprocessor `sequence_length` <= {context}."
            )

    def _special_ids(self):
        tokenizer = self.tokenizer
        missing = [name for name in SPECIAL_TOKEN_NAMES if getattr(tokenizer, name, None) is None]
        if missing:
            raise ValueError(
                f"The tokenizer has no {', '.join(missing)}: fine-tuning needs the start, "
                "delimiter and extract tokens (GPT1Tokenizer(add_special_tokens=True))."
            )
        return [int(getattr(tokenizer, name)) for name in SPECIAL_TOKEN_NAMES]

    def _tokenize(self, texts):
        return tf.cast(self.tokenizer(tf.reshape(texts, [-1])), tf.int32)

    def _trim(self, segments, budget):
        """Round-robin trimming of ragged segments to `budget` tokens in all."""
        import tensorflow_text  # only needed for the trimmer

        return tensorflow_text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)

    def _pack(self, segments):
        """Ragged `[n, (tokens)]` segments → `(token_ids, padding_mask)`, each `[n, L]`."""
        if self.sequence_length is None:
            raise ValueError(
                f"{type(self).__name__} has no `sequence_length` yet: give one, or use it inside a "
                "task, which sets the backbone's context."
            )
        start, delimiter, classify = self._special_ids()
        # What the special tokens leave: s, a delimiter between segments, e.
        trimmed = self._trim(segments, self.sequence_length - len(segments) - 1)
        rows = segments[0].nrows(out_type=tf.int64)

        def column(token_id):
            return tf.RaggedTensor.from_tensor(tf.fill(tf.stack([rows, 1]), tf.constant(token_id, tf.int32)))

        pieces = [column(start)]
        for i, segment in enumerate(trimmed):
            if i:
                pieces.append(column(delimiter))
            pieces.append(tf.cast(segment, tf.int32))
        pieces.append(column(classify))
        ids = tf.concat(pieces, axis=1)
        shape = [None, self.sequence_length]
        token_ids = ids.to_tensor(default_value=int(self.tokenizer.pad_token_id), shape=shape)
        padding_mask = tf.ones_like(ids).to_tensor(default_value=0, shape=shape)
        return token_ids, padding_mask

    def _output(self, token_ids, padding_mask, shape):
        """Reshapes flat `[n, L]` results to `shape + [L]`."""
        full = tf.concat([tf.cast(shape, tf.int32), [self.sequence_length]], axis=0)
        return {"token_ids": tf.reshape(token_ids, full), "padding_mask": tf.reshape(padding_mask, full)}

    def _config(self):
        return {"sequence_length": self._sequence_length}


def as_strings(value, name):
    """`value` as a `tf.string` tensor, or a TypeError naming the input."""
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


def check_same_shape(first, second, names):
    if first.shape.rank is not None and second.shape.rank is not None:
        if first.shape.rank != second.shape.rank or not first.shape.is_compatible_with(second.shape):
            raise ValueError(
                f"`{names[0]}` and `{names[1]}` must have the same shape; got {first.shape} and {second.shape}."
            )


def segments_of(x, names, task_name):
    """The segments of one input: a tuple (or dict keyed by `names`) of `len(names)` text inputs."""
    if len(names) == 1:
        if isinstance(x, dict) or (isinstance(x, tuple) and len(x) != 1):
            raise ValueError(
                f"{task_name} takes one text per example ({names[0]!r}); got "
                + (f"a dict with keys {sorted(x)}" if isinstance(x, dict) else f"a tuple of {len(x)} inputs")
                + "."
            )
        return [x[0] if isinstance(x, tuple) else x]
    if isinstance(x, dict):
        missing = [n for n in names if n not in x]
        if missing:
            raise ValueError(f"{task_name} is missing inputs {missing}; it takes {list(names)}.")
        return [x[n] for n in names]
    if not isinstance(x, tuple) or len(x) != len(names):
        shown = f"a tuple of {len(x)} inputs" if isinstance(x, tuple) else "a single input"
        raise ValueError(
            f"{task_name} takes {len(names)} inputs per example, a tuple ({', '.join(names)}); got {shown}."
        )
    return list(x)
