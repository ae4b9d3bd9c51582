"""GPT-1 fine-tuning models: one backbone, a linear head at the extract token, an auxiliary LM loss.

The paper's four task families map onto three models:

- `GPT1Classifier`: `s text e` (classification) and `s premise $ hypothesis e` (entailment) →
  softmax over classes.
- `GPT1Similarity`: both orders `s A $ B e` and `s B $ A e`; the two final states at `e` are
  added element-wise, then the linear head (classes, or one regression score).
- `GPT1MultipleChoice`: `s context $ answer_k e` for each candidate `k`; one score each, softmax
  across candidates.

Each reads the backbone's final hidden state at the extract token, which the packers
(`keras_gpt1.tasks.packers`) always place last: the model takes the last real token of each
sequence (the last position where `padding_mask` is 1), so it needs no knowledge of token ids.
Classifier dropout (0.1) acts on that state before the head.

**Auxiliary LM loss.** While training (`model.fit`), the same forward pass also yields the
next-token cross-entropy of the packed tokens through the tied embedding (every real token after
the first is a target; each sequence's mean, then the mean over sequences, as the original
`train.py`), and the loss minimised is

    loss = task_loss + lm_weight * lm_loss          (lm_weight = 0.5 by default; 0 turns it off)

`fit` logs `loss`, `task_loss` and `lm_loss`. The LM term is a training regulariser: `evaluate`
and `predict` run the task head only, so a validation `loss` is the task loss alone. With
`lm_weight=0` the vocabulary projection is skipped entirely and only `loss` is logged.

Mechanism (identical on TensorFlow, JAX and PyTorch, no custom `train_step`): called with
`training=True` and `lm_weight > 0`, the model returns `{"task": logits, "lm_loss": scalar}`;
otherwise the task output alone. `compute_loss` and `compute_metrics`, Keras's backend-neutral
hooks, take the task output from that dict and add the weighted LM term. Under TensorFlow data
parallelism (`MirroredStrategy`) the LM term is divided by the replica count as Keras divides the
task loss (`keras_gpt1.distribution.scale_loss_for_replicas`), so the summed gradients are those
of the global mean; the logged losses are global means.
"""

import os

import keras
import numpy as np
from keras import ops

from keras_gpt1 import presets
from keras_gpt1.layers.embedding import gpt1_initializer
from keras_gpt1.models import preset_io
from keras_gpt1.models.backbone import GPT1Backbone
from keras_gpt1.models.losses import next_token_crossentropy
from keras_gpt1.utils.checks import CheckedInputsMixin, check_integer, check_token_ids, is_concrete
from keras_gpt1.utils.files import atomic_path, atomic_write_json, read_json, require_file
from keras_gpt1.utils.jit import resolve_jit_compile

DEFAULT_LM_WEIGHT = 0.5
DEFAULT_CLASSIFIER_DROPOUT = 0.1
# Keys of the training-time output, and of the two logged losses.
TASK_OUTPUT = "task"
LM_LOSS_OUTPUT = "lm_loss"
TASK_LOSS_METRIC = "task_loss"
LM_LOSS_METRIC = "lm_loss"


# === Functions shared by the task models ===


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
    single real token) are left out of the mean rather than counted as zero. This follows the
    original `train.py` (`lm_losses` are per-sequence means; the objective takes their mean).

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
    backbone is left untouched.

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
            rows = keras.random.normal(
                (num_tokens, backbone.hidden_dim), stddev=0.02, dtype="float32", seed=rng
            )
            value = np.concatenate([value.astype("float32"), ops.convert_to_numpy(rows)], axis=0)
        variable.assign(value)
    return new_backbone


def _flatten_leading(x, length):
    return ops.reshape(x, (-1, length))


# === Base class ===


class GPT1TaskModel(CheckedInputsMixin, keras.Model):
    """Shared machinery of the GPT-1 task models (not used directly).

    Subclasses define `_num_outputs()` (units of the linear head), `_task_output(features,
    batch_shape, training)` (from the extract-token states `[n, dim]` to the task output) and
    `_input_rank` (2 for `[batch, length]`, 3 for `[batch, sequences, length]`).
    """

    _input_rank = 2

    def __init__(
        self,
        backbone,
        dropout=DEFAULT_CLASSIFIER_DROPOUT,
        lm_weight=DEFAULT_LM_WEIGHT,
        tokenizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(backbone, GPT1Backbone):
            raise ValueError(f"`backbone` must be a GPT1Backbone; got {type(backbone).__name__}.")
        if not 0 <= float(dropout) < 1:
            raise ValueError(f"`dropout` must be in [0, 1); got {dropout!r}.")
        if float(lm_weight) < 0:
            raise ValueError(f"`lm_weight` must be >= 0 (0 turns the LM loss off); got {lm_weight!r}.")
        if tokenizer is not None and tokenizer.vocabulary_size() > backbone.vocabulary_size:
            raise ValueError(
                f"The tokenizer has {tokenizer.vocabulary_size()} ids but the backbone only "
                f"{backbone.vocabulary_size} embedding rows: extend it first with "
                f"`add_special_token_rows(backbone, {tokenizer.vocabulary_size() - backbone.vocabulary_size})`."
            )
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.dropout = float(dropout)
        self.lm_weight = float(lm_weight)
        # The head follows the backbone's dtype policy; its output is cast to float32 below.
        self.classifier_dropout = keras.layers.Dropout(
            self.dropout, dtype=backbone.dtype_policy, name="classifier_dropout"
        )
        self.head = keras.layers.Dense(
            self._num_outputs(),
            kernel_initializer=gpt1_initializer(),
            bias_initializer="zeros",
            dtype=backbone.dtype_policy,
            name="head",
        )
        self.head.build((None, backbone.hidden_dim))
        self.task_loss_tracker = keras.metrics.Mean(name=TASK_LOSS_METRIC)
        self.lm_loss_tracker = keras.metrics.Mean(name=LM_LOSS_METRIC)
        self.built = True

    # --- Subclass interface ---
    def _num_outputs(self):
        raise NotImplementedError

    def _task_output(self, features, batch_shape, training):
        raise NotImplementedError

    # --- Forward pass ---
    def _run_backbone(self, inputs, training):
        token_ids = ops.convert_to_tensor(inputs["token_ids"], "int32")
        padding_mask = ops.cast(ops.convert_to_tensor(inputs["padding_mask"]), "int32")
        length = ops.shape(token_ids)[-1]
        flat_ids = _flatten_leading(token_ids, length)
        flat_mask = _flatten_leading(padding_mask, length)
        hidden = self.backbone({"token_ids": flat_ids, "padding_mask": flat_mask}, training=training)
        return ops.shape(token_ids), flat_ids, flat_mask, hidden

    def call(self, inputs, training=False):
        batch_shape, flat_ids, flat_mask, hidden = self._run_backbone(inputs, training)
        features = extract_token_states(hidden, flat_mask)
        output = ops.cast(self._task_output(features, batch_shape, training), "float32")
        if training and self.lm_weight > 0:
            lm_logits = self.backbone.token_embedding(hidden, reverse=True)
            return {TASK_OUTPUT: output, LM_LOSS_OUTPUT: sequence_lm_loss(lm_logits, flat_ids, flat_mask)}
        return output

    def lm_logits(self, inputs):
        """Next-token logits of the packed inputs, `[..., length, vocabulary_size]` (inference mode).

        The LM head is the tied token embedding, as in pretraining.
        """
        batch_shape, _, _, hidden = self._run_backbone(inputs, training=False)
        logits = self.backbone.token_embedding(hidden, reverse=True)
        return ops.reshape(logits, tuple(batch_shape) + (self.backbone.vocabulary_size,))

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

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """`keras.Model.compile` with the fine-tuning defaults.

        `"auto"` gives the paper's optimizer (Adam, decoupled weight decay 0.01 on matrices,
        global-norm clipping 1.0) at a constant 6.25e-5 (`keras_gpt1.tasks.finetune` adds the
        warmup-linear schedule), cross-entropy from logits (mean squared error for a regression
        `GPT1Similarity`) and accuracy (none for regression). The default accuracy is compiled as
        a weighted metric, so rows of sample weight 0 (the padding `make_dataset` adds to a
        partial batch under a `keras.distribution`) do not count; without weights it is the same.
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
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        # Keras skips this for models that override `compile`; ours takes the same arguments.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # --- Input checks ---
    def _check_inputs(self, x):
        if not isinstance(x, dict) or "token_ids" not in x or "padding_mask" not in x:
            raise ValueError(
                f"{type(self).__name__} takes a dict {{'token_ids': ..., 'padding_mask': ...}} "
                f"as packed by keras_gpt1.tasks.packers; got {type(x).__name__}"
                + (f" with keys {sorted(x)}" if isinstance(x, dict) else "")
                + "."
            )
        token_ids, padding_mask = x["token_ids"], x["padding_mask"]
        shape = tuple(getattr(token_ids, "shape", ()))
        if len(shape) != self._input_rank:
            raise ValueError(
                f"{type(self).__name__} expects `token_ids` of rank {self._input_rank} "
                f"({self._input_layout}); got shape {shape}."
            )
        if tuple(getattr(padding_mask, "shape", ())) != shape:
            raise ValueError(
                f"`padding_mask` has shape {tuple(getattr(padding_mask, 'shape', ()))}, "
                f"`token_ids` has shape {shape}: they must match."
            )
        self._check_sequence_axis(shape)
        if not (is_concrete(token_ids) and is_concrete(padding_mask)):
            return
        ids = ops.convert_to_numpy(token_ids)
        mask = ops.convert_to_numpy(padding_mask)
        flat_ids = ids.reshape(-1, shape[-1]) if ids.size else ids.reshape(0, shape[-1])
        check_token_ids(flat_ids, self.backbone.vocabulary_size, self.backbone.max_sequence_length)
        empty = (mask.reshape(-1, shape[-1]).sum(axis=1) == 0).nonzero()[0]
        if len(empty):
            raise ValueError(
                f"Sequence {int(empty[0])} (flattened over {self._input_layout}) has no real token "
                "(its `padding_mask` is all zeros); every sequence must end with the extract token."
            )

    _input_layout = "[batch, length]"

    def _check_sequence_axis(self, shape):
        pass

    # --- Serialization ---
    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "dropout": self.dropout,
            "lm_weight": self.lm_weight,
            "tokenizer": (
                keras.saving.serialize_keras_object(self.tokenizer) if self.tokenizer is not None else None
            ),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("backbone"), dict):
            config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if isinstance(config.get("tokenizer"), dict):
            config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)

    def _head_config(self):
        """The constructor arguments other than the backbone and tokenizer (for task.json)."""
        config = self.get_config()
        for key in ("backbone", "tokenizer", "trainable"):
            config.pop(key, None)
        return config

    # === Presets ===
    def save_to_preset(self, preset_dir):
        """Writes a preset directory: the backbone preset (`config.json`, `model.weights.h5`), the
        tokenizer if any, `task.json` (this class and its head config) and `task.weights.h5`
        (the head's weights only: the backbone's are in `model.weights.h5`).

        Example:
        ```python
        classifier.save_to_preset("sst2_model")
        restored = GPT1Classifier.from_preset("sst2_model")
        ```
        """
        os.makedirs(preset_dir, exist_ok=True)
        self.backbone.save_to_preset(preset_dir)
        if self.tokenizer is not None:
            self.tokenizer.save_to_preset(preset_dir)
        _save_head_weights(self, os.path.join(preset_dir, presets.TASK_WEIGHTS_FILE))
        atomic_write_json(
            os.path.join(preset_dir, presets.TASK_CONFIG_FILE),
            {
                "module": "keras_gpt1",
                "class_name": type(self).__name__,
                # KerasHub's loader reads this before it looks further: with it, a task preset
                # given to `keras_hub.models.CausalLM.from_preset` is recognised as not a causal
                # LM, and the causal LM is built on its (fine-tuned) backbone.
                "registered_name": keras.saving.get_registered_name(type(self)),
                "config": self._head_config(),
            },
        )

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """A task model from a preset directory, a built-in name or a `hf://owner/name` handle.

        - A directory saved by `save_to_preset` (it has `task.json`) restores the whole task model,
          head weights included; `GPT1TaskModel.from_preset` returns whichever class it holds.
          `kwargs` override its head config (e.g. `lm_weight=0.0`).
        - A backbone-only preset (a pretrained or converted model) or a built-in name gets a fresh
          head built from `kwargs` (e.g. `num_classes=3`). If the preset's tokenizer has more ids
          than the embedding has rows (the start, delimiter and extract tokens of fine-tuning),
          the missing rows are added, drawn N(0, 0.02).
        - `dtype` (e.g. `"mixed_bfloat16"`) sets the backbone's dtype policy; the head follows it.

        Example:
        ```python
        classifier = GPT1Classifier.from_preset("my_pretrained_preset", num_classes=2)
        ```
        """
        preset = preset_io.resolve_preset(preset_io.as_preset(preset), load_weights)
        # A causal LM preset's task.json (KerasHub's saver writes one) holds no head: fresh one.
        task_path = (
            os.path.join(preset, presets.TASK_CONFIG_FILE) if preset_io.holds_task_model(preset) else None
        )
        # A dtype policy (e.g. "mixed_bfloat16") is the backbone's; the head follows it.
        dtype = {"dtype": kwargs.pop("dtype")} if kwargs.get("dtype") is not None else {}
        backbone = GPT1Backbone.from_preset(preset, load_weights=load_weights, **dtype)
        tokenizer = kwargs.pop("tokenizer", None) or preset_io.load_tokenizer(preset, load_weights)
        if task_path is not None and os.path.isfile(task_path):
            data = read_json(task_path, "task config")
            class_name = data.get("class_name") if isinstance(data, dict) else None
            task_class = TASK_CLASSES.get(class_name)
            if task_class is None or not isinstance(data.get("config"), dict):
                raise ValueError(
                    f"Corrupt task config {task_path!r}: expected a class_name among "
                    f"{sorted(TASK_CLASSES)} and a config object; got {class_name!r}."
                )
            if cls is not GPT1TaskModel and task_class is not cls:
                raise ValueError(
                    f"{task_path!r} holds a {class_name}, not a {cls.__name__}; load it with "
                    f"{class_name}.from_preset or GPT1TaskModel.from_preset."
                )
            config = dict(data["config"])
            config.pop("name", None)
            config.update(kwargs)
            model = task_class(backbone, tokenizer=tokenizer, **config)
            if load_weights:
                _load_head_weights(model, os.path.join(preset, presets.TASK_WEIGHTS_FILE))
            return model
        if cls is GPT1TaskModel:
            raise ValueError(
                f"{preset!r} holds no task model ({presets.TASK_CONFIG_FILE} is missing): build a "
                "fresh head with GPT1Classifier / GPT1Similarity / GPT1MultipleChoice.from_preset."
            )
        if tokenizer is not None and tokenizer.vocabulary_size() > backbone.vocabulary_size:
            backbone = add_special_token_rows(
                backbone, tokenizer.vocabulary_size() - backbone.vocabulary_size
            )
        return cls(backbone, tokenizer=tokenizer, **kwargs)


def _head_variables(model):
    return [(f"{layer.name}/{v.name}", v) for layer in (model.head,) for v in layer.weights]


def _save_head_weights(model, path):
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for name, variable in _head_variables(model):
                f.create_dataset(name, data=ops.convert_to_numpy(ops.cast(variable, "float32")))


def _load_head_weights(model, path):
    import h5py

    require_file(path, "task weights")
    expected = _head_variables(model)
    try:
        with h5py.File(path, "r") as f:
            found = []
            f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
            names = [name for name, _ in expected]
            if sorted(found) != sorted(names):
                raise ValueError(f"it holds tensors {sorted(found)}, the model expects {sorted(names)}")
            for name, variable in expected:
                value = f[name][()]
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(
                        f"tensor {name} has shape {list(value.shape)}, the model expects "
                        f"{list(variable.shape)} (a different number of classes?)"
                    )
                variable.assign(value)
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"Could not load task weights {path!r}: {e}") from e


# === Task models ===


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1Classifier(GPT1TaskModel):
    """Classification (`s text e`) and entailment (`s premise $ hypothesis e`): softmax over classes.

    Inputs `{"token_ids", "padding_mask"}` of shape `[batch, length]`, packed by
    `ClassificationPacker` or `PairPacker`; output logits `[batch, num_classes]`. See the module
    docstring for the auxiliary LM loss.

    Args:
        backbone: a `GPT1Backbone` (with the special tokens' rows).
        num_classes: number of classes (>= 2).
        dropout: dropout on the extract-token state before the head (0.1).
        lm_weight: λ in `task_loss + λ·lm_loss` (0.5; 0 turns the LM loss off).
        tokenizer: optional `GPT1Tokenizer`, saved with the preset.

    Example:
    ```python
    classifier = GPT1Classifier(GPT1Backbone.from_preset("gpt1_tiny"), num_classes=2)
    classifier.compile()
    classifier.fit({"token_ids": ids, "padding_mask": mask}, labels, batch_size=32, epochs=3)
    ```
    """

    def __init__(self, backbone, num_classes, dropout=DEFAULT_CLASSIFIER_DROPOUT, lm_weight=DEFAULT_LM_WEIGHT, tokenizer=None, **kwargs):
        self.num_classes = check_integer("num_classes", num_classes, 2)
        super().__init__(backbone, dropout=dropout, lm_weight=lm_weight, tokenizer=tokenizer, **kwargs)

    def _num_outputs(self):
        return self.num_classes

    def _task_output(self, features, batch_shape, training):
        return self.head(self.classifier_dropout(features, training=training))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1Similarity(GPT1TaskModel):
    """Similarity: both orders of the pair, final states added element-wise, then the head.

    Inputs `{"token_ids", "padding_mask"}` of shape `[batch, 2, length]` (`s A $ B e` and
    `s B $ A e`, packed by `SimilarityPacker`). Output: logits `[batch, num_classes]`, or with
    `num_classes=None` one regression score per pair, `[batch]` (trained with mean squared error).

    Args:
        backbone: a `GPT1Backbone`.
        num_classes: classes (>= 2), or None for regression (STS-B style scores).
        dropout, lm_weight, tokenizer: as `GPT1Classifier`.

    Example:
    ```python
    model = GPT1Similarity(GPT1Backbone.from_preset("gpt1_tiny"), num_classes=None)
    scores = model.predict({"token_ids": ids, "padding_mask": mask})   # ids: [batch, 2, length]
    ```
    """

    _input_rank = 3
    _input_layout = "[batch, 2 orders, length]"

    def __init__(self, backbone, num_classes=None, dropout=DEFAULT_CLASSIFIER_DROPOUT, lm_weight=DEFAULT_LM_WEIGHT, tokenizer=None, **kwargs):
        if num_classes is not None:  # None: regression
            num_classes = check_integer("num_classes", num_classes, 2)
        self.num_classes = num_classes
        super().__init__(backbone, dropout=dropout, lm_weight=lm_weight, tokenizer=tokenizer, **kwargs)

    @property
    def is_regression(self):
        return self.num_classes is None

    def _num_outputs(self):
        return 1 if self.is_regression else self.num_classes

    def _check_sequence_axis(self, shape):
        if shape[1] is not None and shape[1] != 2:
            raise ValueError(
                f"GPT1Similarity expects both orders of each pair, `token_ids` of shape "
                f"[batch, 2, length]; got {shape}."
            )

    def _task_output(self, features, batch_shape, training):
        pairs = ops.reshape(features, (-1, 2, self.backbone.hidden_dim))
        combined = ops.sum(pairs, axis=1)
        output = self.head(self.classifier_dropout(combined, training=training))
        return output[:, 0] if self.is_regression else output

    def _default_loss(self):
        if self.is_regression:
            return keras.losses.MeanSquaredError(reduction="mean_with_sample_weight")
        return super()._default_loss()

    def _default_metrics(self):
        return [] if self.is_regression else super()._default_metrics()

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1MultipleChoice(GPT1TaskModel):
    """Multiple choice: `s context $ answer_k e` per candidate, one score each, softmax across.

    Inputs `{"token_ids", "padding_mask"}` of shape `[batch, num_choices, length]` (packed by
    `MultipleChoicePacker`; the number of candidates may differ between batches); output logits
    `[batch, num_choices]`, trained against the index of the right candidate. The head is the
    Hugging Face port's `OpenAIGPTDoubleHeadsModel.multiple_choice_head` (a `Linear(hidden, 1)`
    after dropout), and `lm_logits` its `logits`.

    Args:
        backbone, dropout, lm_weight, tokenizer: as `GPT1Classifier`.

    Example:
    ```python
    model = GPT1MultipleChoice(GPT1Backbone.from_preset("gpt1_tiny"))
    model.compile()
    model.fit({"token_ids": ids, "padding_mask": mask}, answer_index, epochs=3)  # ids: [b, k, len]
    ```
    """

    _input_rank = 3
    _input_layout = "[batch, num_choices, length]"

    def _num_outputs(self):
        return 1

    def _task_output(self, features, batch_shape, training):
        scores = self.head(self.classifier_dropout(features, training=training))
        return ops.reshape(scores, (batch_shape[0], batch_shape[1]))


TASK_CLASSES = {
    "GPT1Classifier": GPT1Classifier,
    "GPT1Similarity": GPT1Similarity,
    "GPT1MultipleChoice": GPT1MultipleChoice,
}
