import keras
from keras import ops

from keras_gpt1.models import preset_io
from keras_gpt1.models.backbone import GPT1Backbone
from keras_gpt1.utils.checks import CheckedInputsMixin, check_integer
from keras_gpt1.utils.jit import resolve_jit_compile


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1CausalLM(CheckedInputsMixin, keras.Model):
    """GPT-1 language model: the backbone, then logits through the tied token embedding.

    Inputs are the backbone's `{"token_ids", "padding_mask"}`; the output is next-token logits
    `[batch, length, vocabulary_size]` (no output bias, as in the paper).

    Args:
        backbone: a `GPT1Backbone`.
        tokenizer: optional `GPT1Tokenizer`, used when text is given to `generate`/`score` and
            saved with the preset.

    Example:
    ```python
    lm = GPT1CausalLM.from_preset("gpt1_tiny")
    logits = lm.predict({"token_ids": np.array([[5, 6, 7]]), "padding_mask": np.ones((1, 3))})
    ```
    """

    def __init__(self, backbone, tokenizer=None, **kwargs):
        # === Functional Model ===
        inputs = backbone.input
        hidden = backbone(inputs)
        logits = backbone.token_embedding(hidden, reverse=True)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        # === Config ===
        self.backbone = backbone
        self.tokenizer = tokenizer
        # Set by `compile(head_chunk_size=...)`; None trains through the full logits.
        self._head_chunk_size = None
        object.__setattr__(self, "_chunked_metrics", ())

    def _check_inputs(self, x):
        self.backbone._check_inputs(x)

    def compile(self, optimizer="auto", loss="auto", weighted_metrics="auto", head_chunk_size=None, **kwargs):
        """`keras.Model.compile` with GPT-1 pretraining defaults for every `"auto"` argument.

        - optimizer: `keras_gpt1.training.create_optimizer()`: Adam(0.9, 0.999, 1e-8), decoupled
          weight decay 0.01 on matrices, global-norm clipping 1.0, constant rate 2.5e-4 (pass
          `create_optimizer(WarmupCosine(...))` for the paper's schedule);
        - loss: `NextTokenLoss()`, cross-entropy of the labels (inputs shifted by one) averaged
          over tokens whose sample weight (`padding_mask`) is 1;
        - weighted_metrics: `Perplexity()` and token `accuracy`, weighted by the same mask.

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
        from keras_gpt1.models import losses
        from keras_gpt1.training.optimizers import create_optimizer

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
        super().compile(optimizer=optimizer, loss=loss, weighted_metrics=weighted_metrics, **kwargs)

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

    # === Generation (implemented in keras_gpt1.generation) ===
    def generate(
        self,
        inputs,
        max_new_tokens=32,
        sampler="greedy",
        stop_token_ids=None,
        seed=None,
        streamer=None,
        **sampler_args,
    ):
        """Generates continuations with a KV cache; see `keras_gpt1.generation.generate`.

        `inputs`: a string or list of strings (needs `self.tokenizer`; returns text), a list of
        ids or a list of id lists of any lengths (returns ids, prompt included), or a 2-D array /
        `{"token_ids", "padding_mask"}` dict (returns padded arrays). `sampler`: `"greedy"`,
        `"random"` (`temperature=`), `"top_k"` (`k=`), `"top_p"` (`p=`), `"beam"`
        (`num_beams=`) or a `Sampler`. Prompt length + `max_new_tokens` must fit the context.

        Example:
        ```python
        lm = GPT1CausalLM.from_preset("gpt1_tiny", dropout=0.0)
        lm.generate([[5, 6, 7], [8]], max_new_tokens=4, sampler="top_k", k=10, seed=0)
        ```
        """
        from keras_gpt1.generation import generate

        return generate(
            self, inputs, max_new_tokens, sampler, stop_token_ids, seed, streamer, **sampler_args
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
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "tokenizer": (
                keras.saving.serialize_keras_object(self.tokenizer) if self.tokenizer else None
            ),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("tokenizer") is not None:
            config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)

    # === Presets ===
    @classmethod
    def from_preset(cls, preset, load_weights=True, **overrides):
        """A causal LM from a built-in name, a `hf://owner/name` handle or a preset directory.

        `"gpt1"` is OpenAI's pretrained GPT-1 with its tokenizer (the first call downloads about
        480 MB, see `keras_gpt1.hub`); `load_weights=False` gives the architecture alone, with
        random weights. A directory's tokenizer is restored too when it has one. `overrides`
        replace backbone config entries (e.g. `dropout=0.0`).
        """
        preset = preset_io.resolve_preset(preset, load_weights)
        backbone = GPT1Backbone.from_preset(preset, load_weights=load_weights, **overrides)
        return cls(backbone, tokenizer=preset_io.load_tokenizer(preset))

    def save_to_preset(self, preset_dir):
        """Writes the backbone (and the tokenizer, if any) as a preset directory."""
        self.backbone.save_to_preset(preset_dir)
        if self.tokenizer is not None:
            self.tokenizer.save_to_preset(preset_dir)
