import contextlib
import os

import keras
import keras_hub
from keras import ops

from keras_gpt1 import presets
from keras_gpt1.layers.embedding import GPT1Embedding, without_random_init
from keras_gpt1.layers.transformer_block import GPT1Block, warn_if_rematerialization_is_undone
from keras_gpt1.models import lora, preset_io
from keras_gpt1.utils.checks import CheckedInputsMixin, check_token_ids
from keras_gpt1.utils.files import estimated_weights_file_bytes, writing_in_place
from keras_gpt1.utils.locks import holding_output


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1Backbone(CheckedInputsMixin, keras_hub.models.Backbone):
    """The GPT-1 decoder: embeddings, then `num_layers` post-LN blocks, no final LayerNorm.

    A KerasHub `Backbone`: `keras_hub.models.Backbone.from_preset(dir)` returns one, and
    `save_to_preset`, `enable_lora`, `quantize` and dtype policies work as for KerasHub's own
    models.

    Inputs are a dict `{"token_ids": int [batch, length], "padding_mask": [batch, length]}`
    (1 for real tokens, 0 for right padding); the output is the last hidden state
    `[batch, length, hidden_dim]`.

    Dropout follows the Hugging Face port: it acts on the summed token + position embeddings (the
    original release dropped out rows of the embedding matrix itself), on the attention
    probabilities, and on each residual branch before its add.

    Args:
        vocabulary_size: rows of the token embedding (GPT-1: 40,478, plus 3 when fine-tuning).
        num_layers: transformer blocks (12).
        num_heads: attention heads (12); must divide `hidden_dim`.
        hidden_dim: model width (768).
        intermediate_dim: MLP width (3072).
        max_sequence_length: learned positions, the context length (512).
        dropout: one rate for embeddings, attention probabilities and residual branches (0.1).
        dtype: a dtype or dtype policy, e.g. `"mixed_bfloat16"`.
        rematerialize: recompute each block's activations in the backward pass instead of
            keeping them (`keras.remat`): with the chunked head it roughly halves a 117M step's
            peak memory at 8 x 512, for a slower step (docs/performance.md). Gradients are
            unchanged; inference is unaffected. Under JAX on a CPU it needs an XLA flag, set by
            `keras_gpt1.layers.keep_rematerialization_on_jax_cpu()` before JAX
            starts (a warning says so when it is missing).
        fused_attention: attention through the backend's fused kernel wherever no attention
            dropout applies (True), or op by op on every call (False). Same outputs either way:
            the option exists to measure the choice (`GPT1Attention` says more).
        fused_qkv_matmul: q, k and v from one matmul by `c_attn`'s kernel (True) or from three
            (False). Same weights and outputs; also for measuring.

    Example:
    ```python
    backbone = GPT1Backbone.from_preset("gpt1_tiny")       # or keras_hub.models.Backbone.from_preset(dir)
    hidden = backbone({"token_ids": np.array([[5, 6, 7]]), "padding_mask": np.ones((1, 3))})
    ```
    """

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        max_sequence_length=512,
        dropout=0.1,
        dtype=None,
        rematerialize=False,
        fused_attention=True,
        fused_qkv_matmul=True,
        **kwargs,
    ):
        if hidden_dim % num_heads != 0:
            raise ValueError(f"`hidden_dim` ({hidden_dim}) must be divisible by `num_heads` ({num_heads}).")
        if rematerialize:
            warn_if_rematerialization_is_undone()
        # === Layers ===
        embeddings = GPT1Embedding(vocabulary_size, hidden_dim, max_sequence_length, dtype=dtype, name="embeddings")
        embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        transformer_layers = [
            GPT1Block(
                num_heads,
                hidden_dim,
                intermediate_dim,
                dropout,
                rematerialize=rematerialize,
                fused_attention=fused_attention,
                fused_qkv_matmul=fused_qkv_matmul,
                dtype=dtype,
                name=f"h_{i}",
            )
            for i in range(num_layers)
        ]

        # === Functional Model ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        x = embeddings_dropout(embeddings(token_ids))
        for block in transformer_layers:
            x = block(x, padding_mask=padding_mask)
        super().__init__(
            inputs={"token_ids": token_ids, "padding_mask": padding_mask},
            outputs=x,
            dtype=dtype,
            **kwargs,
        )
        # Assigned after `super().__init__`: PyTorch modules refuse submodules before it.
        self.embeddings = embeddings
        self.embeddings_dropout = embeddings_dropout
        self.transformer_layers = transformer_layers

        # === Config ===
        self.vocabulary_size = int(vocabulary_size)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.hidden_dim = int(hidden_dim)
        self.intermediate_dim = int(intermediate_dim)
        self.max_sequence_length = int(max_sequence_length)
        self.dropout = float(dropout)
        self.rematerialize = bool(rematerialize)
        self.fused_attention = bool(fused_attention)
        self.fused_qkv_matmul = bool(fused_qkv_matmul)

    def _check_inputs(self, x):
        if not isinstance(x, dict) or "token_ids" not in x:
            raise ValueError(
                f"GPT-1 models take a dict {{'token_ids': ..., 'padding_mask': ...}}; got {type(x).__name__}."
            )
        check_token_ids(x["token_ids"], self.vocabulary_size, self.max_sequence_length)

    @property
    def token_embedding(self):
        """The tied `ReversibleEmbedding` (its `reverse=True` call gives logits)."""
        return self.embeddings.token_embedding

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """Incremental forward pass for decoding.

        Runs `token_ids` (`[batch, n]`, at positions `cache_update_index ...`) through every
        block, reading and updating `cache` (one `(keys, values)` pair per layer, as made by
        `empty_cache`). Returns `(hidden_states, new_cache)`.
        """
        x = self.embeddings(token_ids, start_index=cache_update_index)
        new_cache = []
        for block, layer_cache in zip(self.transformer_layers, cache):
            x, layer_cache = block(x, cache=layer_cache, cache_update_index=cache_update_index)
            new_cache.append(layer_cache)
        return x, tuple(new_cache)

    def empty_cache(self, batch_size, max_length=None, dtype=None):
        """A zero KV cache: per layer a `(keys, values)` pair `[batch, max_length, heads, head_dim]`."""
        max_length = self.max_sequence_length if max_length is None else max_length
        shape = (batch_size, max_length, self.num_heads, self.hidden_dim // self.num_heads)
        dtype = dtype or self.compute_dtype
        return tuple((ops.zeros(shape, dtype), ops.zeros(shape, dtype)) for _ in range(self.num_layers))

    def get_config(self):
        # KerasHub's `Backbone.get_config` adds name, trainable and the dtype policy, a
        # `DTypePolicyMap` once layers are quantized, so a quantized preset rebuilds quantized.
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "max_sequence_length": self.max_sequence_length,
                "dropout": self.dropout,
                "rematerialize": self.rematerialize,
                "fused_attention": self.fused_attention,
                "fused_qkv_matmul": self.fused_qkv_matmul,
            }
        )
        return config

    # === LoRA (KerasHub's, with GPT-1's targets and checks: see keras_gpt1.models.lora) ===
    def default_lora_layer_names(self):
        """`enable_lora` adapts each block's fused q/k/v projection (`c_attn`), GPT-1's form of
        the query and value projections KerasHub adapts in its own models."""
        return list(lora.DEFAULT_TARGETS)

    def enable_lora(self, rank, target_layer_names=None):
        """Freezes the backbone and adds rank-`rank` adapters to `target_layer_names` (default:
        every block's `c_attn`). Once per model; `rank` >= 1.

        Example:
        ```python
        backbone.enable_lora(4)        # only the adapters (and any task head) train
        backbone.save_lora_weights("adapters.lora.h5")
        ```
        """
        if target_layer_names is None:
            target_layer_names = self.default_lora_layer_names()
        rank = lora.check_enable_lora(self, rank, target_layer_names)
        super().enable_lora(rank, target_layer_names)
        lora.freeze_adapted_biases(self)

    def save_lora_weights(self, filepath):
        """Writes the adapters to `filepath` (`*.lora.h5`, KerasHub's layout), atomically."""
        lora.save_lora_weights(super().save_lora_weights, filepath)

    def load_lora_weights(self, filepath):
        """Loads adapters saved by `save_lora_weights`; a file that does not fit names the layer
        and the shapes."""
        lora.load_lora_weights(self, filepath)

    # === Presets ===
    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """Builds a backbone from a built-in name, a `hf://owner/name` handle or a preset directory.

        `"gpt1"` is OpenAI's pretrained GPT-1 (downloaded and converted once, then cached: see
        `keras_gpt1.hub`); with `load_weights=False` it is the 117M architecture with random
        weights, fetched from nowhere. `"gpt1_tiny"` is always a small random model.
        A KerasHub preset (any written by `save_to_preset`) loads through KerasHub's loader, so
        `keras_hub.models.Backbone.from_preset(dir)` gives the same; a preset of another model
        family is refused with both class names, and one in the format keras_gpt1 wrote before
        its presets were KerasHub's with how to convert it. `kwargs` replace config entries (e.g.
        `dropout=0.0`, `dtype="mixed_bfloat16"`); weights are loaded unless `load_weights=False`.

        Example:
        ```python
        backbone = GPT1Backbone.from_preset("my_preset", dropout=0.0)
        ```
        """
        preset = preset_io.resolve_preset(preset_io.as_preset(preset), load_weights)
        loads_weights = load_weights and not preset_io.is_builtin(preset)
        # Weights about to be loaded over every variable: no random draws to throw away.
        with without_random_init() if loads_weights else contextlib.nullcontext():
            return cls._from_resolved_preset(preset, load_weights, **kwargs)

    @classmethod
    def _from_resolved_preset(cls, preset, load_weights, **kwargs):
        checks_weights = load_weights and preset_io.is_preset_dir(preset)
        if preset_io.is_builtin(preset):
            config = {**presets.BUILTIN_PRESETS[preset]["config"], **kwargs}
        else:
            preset_io.check_preset_class(preset, cls)
            preset_io.check_saved_config(preset)
            kwargs = preset_io.with_saved_dtype(preset, kwargs)
            config = preset_io.saved_backbone_config(preset, kwargs)
        if config is not None:
            # Before anything is allocated: the sizes config.json asks for against the weights
            # file's tensor shapes (metadata only), then against the memory there is.
            if checks_weights and preset_io.has_single_weights_file(preset):
                preset_io.check_config_against_weights(preset, config)
            preset_io.check_backbone_memory(config, preset)
        if preset_io.is_builtin(preset):
            backbone = cls.from_config(config)
        elif not preset_io.has_single_weights_file(preset):
            return super().from_preset(preset, load_weights=load_weights, **kwargs)  # remote, sharded
        else:
            backbone = super().from_preset(preset, load_weights=False, **kwargs)
        if checks_weights:
            # Checked: a file that is missing, corrupt or of another architecture is named.
            preset_io.load_backbone_weights(backbone, preset)
        return backbone

    @holding_output("preset_dir", "save_to_preset")  # one writer at a time, as for every output folder
    def save_to_preset(self, preset_dir, max_shard_size=10):
        """Writes the preset with KerasHub's saver (`config.json`, `metadata.json`,
        `model.weights.h5` or its shards), then `manifest.json`: the size and SHA-256 of the
        weights, which every loader checks before reading them.

        Example:
        ```python
        backbone.save_to_preset("my_backbone")     # GPT1Backbone.from_preset("my_backbone")
        ```
        """
        # A full disk is refused before h5py starts (it crashes the process when the disk fills
        # while it writes); a failed save removes what it wrote.
        with writing_in_place(preset_dir, "preset", estimated_weights_file_bytes(self.weights)):
            super().save_to_preset(os.fspath(preset_dir), max_shard_size=max_shard_size)
            preset_io.write_preset_manifest(preset_dir, backbone=True)

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        """Keras's `load_weights`, after checking the file against the `manifest.json` beside it
        when there is one: every loader, KerasHub's auto classes included
        (`keras_hub.models.Backbone.from_preset(dir)`), reaches the weights through here."""
        preset_io.verify_weights_file(filepath)
        return super().load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)
