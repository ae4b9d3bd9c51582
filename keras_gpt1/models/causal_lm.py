import keras
from keras import ops

from keras_gpt1.models import preset_io
from keras_gpt1.models.backbone import GPT1Backbone
from keras_gpt1.utils.checks import CheckedInputsMixin


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

    def _check_inputs(self, x):
        self.backbone._check_inputs(x)

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """One incremental step: `(logits, hidden_states, new_cache)` for `token_ids` placed at
        positions `cache_update_index ...`. See `GPT1Backbone.call_with_cache`."""
        hidden, cache = self.backbone.call_with_cache(token_ids, cache, cache_update_index)
        logits = self.backbone.token_embedding(hidden, reverse=True)
        return logits, hidden, cache

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
        """A causal LM from a built-in name (`"gpt1"`, `"gpt1_tiny"`) or a preset directory.

        A directory's tokenizer is restored too when it has one. `overrides` replace backbone
        config entries (e.g. `dropout=0.0`).
        """
        backbone = GPT1Backbone.from_preset(preset, load_weights=load_weights, **overrides)
        return cls(backbone, tokenizer=preset_io.load_tokenizer(preset))

    def save_to_preset(self, preset_dir):
        """Writes the backbone (and the tokenizer, if any) as a preset directory."""
        self.backbone.save_to_preset(preset_dir)
        if self.tokenizer is not None:
            self.tokenizer.save_to_preset(preset_dir)
