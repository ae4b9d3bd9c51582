import keras
import keras_hub

from keras_gpt1.models import preset_io
from keras_gpt1.models.backbone import GPT1Backbone

# Imported here, not lazily: KerasHub's loaders find the preprocessor (and, through its
# `backbone_cls`, the tokenizer) among registered classes, so they must be registered as soon as
# keras_gpt1's models are. Both need TensorFlow. Where it is not installed (a JAX or PyTorch
# image, as on many GPU machines; KerasHub's models import without it too), the model still
# builds, trains and generates from token ids, and only text input asks for TensorFlow.
try:
    from keras_gpt1.models.causal_lm_preprocessor import GPT1CausalLMPreprocessor
except ModuleNotFoundError as error:
    if error.name not in ("tensorflow", "tensorflow_text"):
        raise
    GPT1CausalLMPreprocessor = None
from keras_gpt1.utils import compat
from keras_gpt1.utils.checks import CheckedInputsMixin, check_integer
from keras_gpt1.utils.files import estimated_weights_file_bytes, writing_in_place
from keras_gpt1.utils.jit import resolve_jit_compile
from keras_gpt1.utils.locks import holding_output


def holds_text(x):
    """True if `x` (arrays, lists, dicts, a `tf.data.Dataset`) carries strings: input for the
    preprocessor. Token ids and already-packed batches go to the model as they are."""
    spec = getattr(x, "element_spec", None)
    leaves = keras.tree.flatten(spec) if spec is not None else keras.tree.flatten(x)
    for leaf in leaves:
        if isinstance(leaf, (str, bytes)):
            return True
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            continue
        if "string" in str(dtype) or getattr(dtype, "kind", None) in ("U", "S"):
            return True
        if getattr(dtype, "kind", None) == "O" and leaf.size and isinstance(leaf.flat[0], (str, bytes)):
            return True
    return False


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1CausalLM(CheckedInputsMixin, keras_hub.models.CausalLM):
    """GPT-1 language model: the backbone, then logits through the tied token embedding.

    A KerasHub `CausalLM`: `keras_hub.models.CausalLM.from_preset(dir)` returns one; `fit`,
    `evaluate` and `predict` take raw strings (a list or a `tf.data.Dataset`) through the
    preprocessor, or token ids / packed `(x, labels, sample_weight)` batches as before;
    `generate` runs keras_gpt1's own decoding engines with KerasHub's arguments.

    Inputs are the backbone's `{"token_ids", "padding_mask"}`; the output is next-token logits
    `[batch, length, vocabulary_size]` (no output bias, as in the paper).

    Args:
        backbone: a `GPT1Backbone`.
        preprocessor: optional `GPT1CausalLMPreprocessor`, which turns strings into training
            batches and generation prompts (and saves the tokenizer with the preset).
        tokenizer: optional `GPT1Tokenizer`, a shortcut for a preprocessor around it whose
            `sequence_length` is the backbone's context.

    Example:
    ```python
    lm = keras_hub.models.CausalLM.from_preset("my_preset")   # a GPT1CausalLM
    lm.fit(["some text", "more text"], batch_size=2)
    lm.generate("the meaning of life is", max_length=32)
    ```
    """

    backbone_cls = GPT1Backbone
    preprocessor_cls = GPT1CausalLMPreprocessor

    def __init__(self, backbone, preprocessor=None, tokenizer=None, **kwargs):
        if not isinstance(preprocessor, (type(None), keras_hub.models.Preprocessor)):
            hint = " Pass a tokenizer as `tokenizer=`." if hasattr(preprocessor, "detokenize") else ""
            raise TypeError(
                f"`preprocessor` must be a GPT1CausalLMPreprocessor or None; got {type(preprocessor).__name__}.{hint}"
            )
        if tokenizer is not None and preprocessor is not None:
            raise ValueError("Give `preprocessor` or `tokenizer`, not both.")
        if isinstance(tokenizer, dict):  # `get_config` of a model holding a bare tokenizer
            tokenizer = keras.saving.deserialize_keras_object(tokenizer)
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        # Without a preprocessor class to wrap it in, a tokenizer is kept as it is.
        self._bare_tokenizer = None
        if tokenizer is not None:
            self.preprocessor = self._preprocessor_around(tokenizer, backbone)
        # Set by `compile(head_chunk_size=...)`; None trains through the full logits.
        self._head_chunk_size = None
        object.__setattr__(self, "_chunked_metrics", ())

        # === Functional Model ===
        inputs = backbone.input
        hidden = backbone(inputs)
        logits = backbone.token_embedding(hidden, reverse=True)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

    def _preprocessor_around(self, tokenizer, backbone):
        if getattr(tokenizer, "sequence_length", None) is not None:
            # A fixed-length tokenizer pads by itself, which the preprocessor refuses to wrap; it
            # is kept as it is, for text given to `generate` and `score`.
            self._bare_tokenizer = tokenizer
            return None
        if self.preprocessor_cls is None:
            raise ImportError(
                "GPT1CausalLM: a tokenizer (text input) needs TensorFlow, which is not installed; "
                "`pip install tensorflow tensorflow-text`, or give token ids without a tokenizer."
            )
        return self.preprocessor_cls(tokenizer, sequence_length=backbone.max_sequence_length)

    @property
    def tokenizer(self):
        """The preprocessor's tokenizer (None without one): used when text is given to
        `generate`/`score`."""
        if self.preprocessor is not None:
            return self.preprocessor.tokenizer
        return getattr(self, "_bare_tokenizer", None)

    @tokenizer.setter
    def tokenizer(self, tokenizer):
        self._bare_tokenizer = None
        self.preprocessor = None if tokenizer is None else self._preprocessor_around(tokenizer, self.backbone)

    def _check_inputs(self, x):
        self.backbone._check_inputs(x)

    def compile(
        self,
        optimizer="auto",
        loss="auto",
        weighted_metrics="auto",
        sampler="greedy",
        head_chunk_size=None,
        **kwargs,
    ):
        """`keras.Model.compile` with GPT-1 pretraining defaults for every `"auto"` argument.

        - optimizer: `keras_gpt1.training.create_optimizer()`: Adam(0.9, 0.999, 1e-8), decoupled
          weight decay 0.01 on matrices, global-norm clipping 1.0, constant rate 2.5e-4 (pass
          `create_optimizer(WarmupCosine(...))` for the paper's schedule);
        - loss: `NextTokenLoss()`, cross-entropy of the labels (inputs shifted by one) averaged
          over tokens whose sample weight (`padding_mask`) is 1;
        - weighted_metrics: `Perplexity()` and token `accuracy`, weighted by the same mask.

        `sampler` is what `generate` uses when it is not given one: a name (`"greedy"`, the
        default, deterministic; `"top_k"`, `"top_p"`, `"random"`, `"beam"`), a keras_gpt1
        `Sampler`, or a `keras_hub.samplers` instance (`TopKSampler(k=5)`, ...), which is run
        by keras_gpt1's decode loop; one it cannot run is refused here, naming those it can.

        `head_chunk_size` (an int, e.g. 1024) trains without ever materialising the
        `[tokens, vocabulary]` logits: the tied head, the loss and both metrics are computed
        `head_chunk_size` tokens at a time by `keras_gpt1.models.chunked_head.chunked_head_loss`,
        which lowers peak memory at large batches (docs/performance.md). It needs the default
        loss and metrics. While it is on, `lm(x, training=True)` returns `{"hidden_states": ...}`
        (what the loss needs); evaluation and prediction still return logits.

        Example:
        ```python
        lm = GPT1CausalLM.from_preset("gpt1_tiny")
        lm.compile()
        lm.fit(data.train_dataset(), steps_per_epoch=100)   # batches of (x, labels, padding_mask)
        ```
        """
        from keras_gpt1.generation.samplers import get_sampler
        from keras_gpt1.training import losses
        from keras_gpt1.training.optimizers import create_optimizer

        self.sampler = get_sampler(sampler)

        if head_chunk_size is not None:
            head_chunk_size = check_integer("head_chunk_size", head_chunk_size, 1)
            if not (isinstance(loss, str) and loss == "auto"):
                raise ValueError("`head_chunk_size` computes the default next-token loss itself; leave `loss='auto'`.")
            if not (isinstance(weighted_metrics, str) and weighted_metrics == "auto"):
                raise ValueError(
                    "`head_chunk_size` computes the default metrics (perplexity, accuracy) itself; "
                    "leave `weighted_metrics='auto'`."
                )
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = create_optimizer()
        if isinstance(loss, str) and loss == "auto":
            loss = losses.NextTokenLoss()
        if isinstance(weighted_metrics, str) and weighted_metrics == "auto":
            weighted_metrics = [losses.Perplexity(), losses.NextTokenAccuracy()]
        self._head_chunk_size = head_chunk_size
        # The same objects Keras compiles: evaluation updates them from logits, chunked training
        # from the sums `chunked_head_loss` returns. Set without Keras's attribute tracking, which
        # would list them a second time among the model's metrics.
        object.__setattr__(self, "_chunked_metrics", tuple(weighted_metrics) if head_chunk_size else ())
        kwargs["jit_compile"] = resolve_jit_compile(self, kwargs.get("jit_compile", "auto"), kwargs.get("run_eagerly"))
        # `keras.Model.compile` itself: KerasHub's `CausalLM.compile` would replace the sampler
        # with its own object, which our decode loop does not run.
        keras.Model.compile(self, optimizer=optimizer, loss=loss, weighted_metrics=weighted_metrics, **kwargs)

    def call(self, inputs, training=None, mask=None):
        if training and self._head_chunk_size:
            return {"hidden_states": self.backbone(inputs, training=training)}
        return super().call(inputs, training=training, mask=mask)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not (isinstance(y_pred, dict) and "hidden_states" in y_pred):
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        from keras_gpt1.distribution.replicas import scale_loss_for_replicas
        from keras_gpt1.models.chunked_head import chunked_head_loss

        loss, loss_sum, hit_sum, weight_sum = chunked_head_loss(
            y_pred["hidden_states"],
            self.backbone.token_embedding.embeddings,
            y,
            sample_weight,
            chunk_size=self._head_chunk_size,
        )
        perplexity, accuracy = self._chunked_metrics
        perplexity.add_totals(loss_sum, weight_sum)
        accuracy.add_totals(hit_sum, weight_sum)
        loss = scale_loss_for_replicas(loss)
        for extra in self.losses:
            loss = loss + self._aggregate_additional_loss(extra)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, dict) and "hidden_states" in y_pred:
            # The metrics were updated in `compute_loss`, from the same chunks. Keras builds its
            # compiled-metrics container from the first batch's structure (not its values): a
            # single output, like the logits the metrics read in evaluation.
            if self._compile_metrics is not None and not self._compile_metrics.built:
                self._compile_metrics.build(y, y)
            return self.get_metrics_result()
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """One incremental step: `(logits, hidden_states, new_cache)` for `token_ids` placed at
        positions `cache_update_index ...`. See `GPT1Backbone.call_with_cache`."""
        hidden, cache = self.backbone.call_with_cache(token_ids, cache, cache_update_index)
        logits = self.backbone.token_embedding(hidden, reverse=True)
        return logits, hidden, cache

    # === Training and inference on text or token ids ===
    def preprocess_samples(self, x, y=None, sample_weight=None):
        # Strings go through the preprocessor; token ids and packed batches (what
        # `keras_gpt1.data` makes) pass as they are, as they did before the preprocessor.
        if self.preprocessor is None or not holds_text(x):
            return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
        return super().preprocess_samples(x, y, sample_weight)

    def _takes_text(self, x):
        if not holds_text(x):
            return False
        if self.preprocessor is None:
            raise ValueError(
                "This GPT1CausalLM got text but has no preprocessor to tokenize it: load a preset "
                "with a tokenizer, or build it with `tokenizer=` / `preprocessor=`."
            )
        return True

    def _check_optimizer_matches_trainable_weights(self):
        # After `backbone.enable_lora(...)` (or freezing layers) on a model that has trained, the
        # optimizer still tracks the old trainable weights; every backend then fails deep inside
        # the update step. Say what happened and what to do instead.
        optimizer = getattr(self, "optimizer", None)
        if optimizer is None or not optimizer.built:
            return
        tracked, trainable = len(optimizer._trainable_variables), len(self.trainable_variables)
        if tracked != trainable:
            raise ValueError(
                f"The model has {trainable} trainable weights but its optimizer was built for "
                f"{tracked}: the trainable weights changed after training (e.g. "
                "`backbone.enable_lora(...)` after `fit`). Call `compile(...)` again before `fit`."
            )

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check_optimizer_matches_trainable_weights()
        if self._takes_text(x):
            return keras_hub.models.CausalLM.fit(
                self, x, y, *args, **kwargs
            )  # KerasHub's pipeline: preprocessor, then fit
        self._check_array_inputs(x)
        return keras.Model.fit(self, x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        if self._takes_text(x):
            return keras_hub.models.CausalLM.evaluate(self, x, y, *args, **kwargs)
        self._check_array_inputs(x)
        return keras.Model.evaluate(self, x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        if self._takes_text(x):
            return keras_hub.models.CausalLM.predict(self, x, *args, **kwargs)
        self._check_array_inputs(x)
        return keras.Model.predict(self, x, *args, **kwargs)

    # === Generation (implemented in keras_gpt1.generation) ===
    def generate(
        self,
        inputs,
        max_length=None,
        stop_token_ids="auto",
        strip_prompt=False,
        *,
        max_new_tokens=None,
        sampler=None,
        seed=None,
        streamer=None,
        **sampler_args,
    ):
        """Generates continuations with keras_gpt1's KV-cache engines; see
        `keras_gpt1.generation.generate`.

        KerasHub's arguments mean what they mean there:
        - `max_length`: the length of each output sequence, prompt included (default: the
          preprocessor's `sequence_length`); or give `max_new_tokens` instead (new tokens per
          row; `keras_gpt1.utils.generation_defaults.DEFAULT_MAX_NEW_TOKENS` when neither is
          given and there is no preprocessor);
        - `stop_token_ids`: `"auto"` (the tokenizer's end token; GPT-1's has none, so none),
          `None`, or ids that end a row;
        - `strip_prompt=True`: return only the generated part.

        `inputs`: a string or list of strings (returns text), a list of ids or a list of id lists
        of any lengths (returns ids), or a 2-D array / `{"token_ids", "padding_mask"}` dict
        (returns padded arrays). `sampler` overrides the compiled one (`compile(sampler=...)`,
        greedy by default) for this call; `sampler_args` go to it (`k=`, `p=`, `temperature=`,
        `num_beams=`); `seed` makes sampling reproducible.

        Example:
        ```python
        lm = GPT1CausalLM.from_preset("gpt1_tiny", dropout=0.0)
        lm.generate([[5, 6, 7], [8]], max_new_tokens=4, sampler="top_k", k=10, seed=0)
        ```
        """
        from keras_gpt1.generation import generate

        if isinstance(stop_token_ids, str) and stop_token_ids == "auto":
            end = getattr(self.tokenizer, "end_token_id", None)
            stop_token_ids = None if end is None else [end]
        if max_length is None and max_new_tokens is None:
            # KerasHub's default, the preprocessor's length; without one, `generate`'s default count.
            max_length = getattr(self.preprocessor, "sequence_length", None)
        if sampler is None:
            sampler = getattr(self, "sampler", None) or "greedy"
        return generate(
            self,
            inputs,
            max_new_tokens,
            sampler,
            stop_token_ids,
            seed,
            streamer,
            max_length=max_length,
            strip_prompt=strip_prompt,
            **sampler_args,
        )

    def score(self, inputs, batch_size=8, stride=None):
        """Per-token log-likelihoods and perplexity of given text or ids (one forward pass per
        batch); `stride` scores texts longer than the context in overlapping windows. See
        `keras_gpt1.generation.score`.

        Example:
        ```python
        lm.score([5, 6, 7, 8])["perplexity"]
        ```
        """
        from keras_gpt1.generation import score

        return score(self, inputs, batch_size=batch_size, stride=stride)

    def get_config(self):
        config = super().get_config()  # backbone, preprocessor, name
        if self.preprocessor is None and self.tokenizer is not None:
            config["tokenizer"] = keras.saving.serialize_keras_object(self.tokenizer)
        return config

    # === Presets ===
    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """A causal LM from a built-in name, a `hf://owner/name` handle or a preset directory.

        `"gpt1"` is OpenAI's pretrained GPT-1 with its tokenizer (the first call downloads about
        480 MB, see `keras_gpt1.hub`); `load_weights=False` gives the architecture alone, with
        random weights and no tokenizer. `"gpt1_tiny"` is always a small random model.
        A KerasHub preset loads through KerasHub's loader (so `keras_hub.models.CausalLM
        .from_preset(dir)` gives the same model), with its tokenizer in the preprocessor; a
        preset of another model family is refused with both class names (and one in the format
        keras_gpt1 wrote before its presets were KerasHub's with how to convert it). `kwargs`
        replace backbone config entries (e.g. `dropout=0.0`, `dtype=`).

        Example:
        ```python
        lm = GPT1CausalLM.from_preset("my_preset", dropout=0.0)
        ```
        """
        preset = preset_io.resolve_preset(preset_io.as_preset(preset), load_weights)
        task_kwargs = {k: kwargs.pop(k) for k in ("preprocessor", "tokenizer") if k in kwargs}
        own_tokenizer = not task_kwargs
        if own_tokenizer:
            preset_io.check_saved_tokenizer_configs(preset)
        # Config overrides (`dropout=0.0`, `dtype=`) are the backbone's: it is built here, with
        # its class checked and its weights loaded, and handed to KerasHub's task loader.
        backbone = GPT1Backbone.from_preset(preset, load_weights=load_weights, **kwargs)
        if preset_io.is_builtin(preset):
            lm = cls(backbone, **task_kwargs)  # an architecture: no tokenizer
        else:
            if not task_kwargs and not preset_io.has_preprocessor(preset):
                # No preprocessor.json (a converted or backbone-only preset): the tokenizer, if
                # there is one, gets a preprocessor made here; KerasHub's loader would insist on one.
                task_kwargs = {"preprocessor": None, "tokenizer": preset_io.load_tokenizer(preset, load_weights)}
            lm = super().from_preset(preset, load_weights=False, backbone=backbone, **task_kwargs)
        if own_tokenizer and preset_io.is_preset_dir(preset):
            preset_io.check_tokenizer_fits(preset, lm.backbone, lm.tokenizer)
        return lm

    @holding_output("preset_dir", "save_to_preset")
    def save_to_preset(self, preset_dir, max_shard_size=10):
        """Writes the preset with KerasHub's saver: `task.json`, `config.json`, `metadata.json`,
        `model.weights.h5`, and with a preprocessor `preprocessor.json`, `tokenizer.json` and
        `assets/tokenizer/`. Load it with `GPT1CausalLM.from_preset` or
        `keras_hub.models.CausalLM.from_preset`. Another writer into `preset_dir` meanwhile is
        refused (`keras_gpt1.utils.locks`)."""
        # A full disk is refused before anything is written (`writing_in_place`); a failed save
        # removes what it wrote.
        with writing_in_place(preset_dir, "preset", estimated_weights_file_bytes(self.weights)):
            compat.save_task_to_preset(self, preset_dir, max_shard_size=max_shard_size)
            # Last, the size and SHA-256 of the weights and the tokenizer's files, which every loader
            # checks before it reads them.
            preset_io.write_preset_manifest(
                preset_dir, backbone=True, tokenizer=self.preprocessor is not None, task=True
            )
            if self.preprocessor is None and self.tokenizer is not None:
                self.tokenizer.save_to_preset(preset_dir)
