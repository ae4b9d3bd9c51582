import os
import warnings

import keras
from keras import ops

from keras_gpt1.layers.attention import GPT1Attention, causal_attention_mask
from keras_gpt1.layers.embedding import gpt1_initializer
from keras_gpt1.layers.lean import draw_dropout_seed, dropout, gelu_approximate

# GPT-1's LayerNorm: biased variance, epsilon inside the square root.
LAYER_NORM_EPSILON = 1e-5

# `jax.checkpoint` fences the recomputed forward pass with optimization barriers. XLA's CPU
# pipeline expands (removes) them in its `cse_barrier_expander` pass, after which CSE merges the
# recomputation back into the original forward pass and rematerialization saves nothing. Disabling
# that one pass keeps the barriers; XLA reads the flag when JAX creates its CPU client.
XLA_FLAG_KEEP_REMAT_BARRIERS = "--xla_disable_hlo_passes=cse_barrier_expander"


def keep_rematerialization_on_jax_cpu():
    """Adds `XLA_FLAG_KEEP_REMAT_BARRIERS` to `XLA_FLAGS`, so rematerialization saves memory
    under JAX on a CPU. Call it before JAX starts (before anything runs on it); later it has no
    effect. Other backends and GPUs/TPUs do not need it.

    Example:
    ```python
    from keras_gpt1.layers import keep_rematerialization_on_jax_cpu
    keep_rematerialization_on_jax_cpu()   # first thing in the script
    ```
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if XLA_FLAG_KEEP_REMAT_BARRIERS not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {XLA_FLAG_KEEP_REMAT_BARRIERS}".strip()


def warn_if_rematerialization_is_undone():
    """Warns when XLA on a CPU will undo rematerialization (JAX without the flag above)."""
    if keras.config.backend() != "jax" or XLA_FLAG_KEEP_REMAT_BARRIERS in os.environ.get("XLA_FLAGS", ""):
        return
    import jax

    if jax.default_backend() == "cpu":
        warnings.warn(
            "rematerialize=True saves no memory under JAX on a CPU unless XLA keeps the "
            f"recomputation apart: set XLA_FLAGS={XLA_FLAG_KEEP_REMAT_BARRIERS} before JAX starts "
            "(or call keras_gpt1.layers.keep_rematerialization_on_jax_cpu() first thing). "
            "`keras-gpt1 pretrain --rematerialize` does this itself.",
            stacklevel=3,
        )


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1Block(keras.layers.Layer):
    """One post-LN transformer block, exactly as the original:

        a = attn(x);  n = LN_1(x + a);  m = mlp(n);  h = LN_2(n + m)

    The MLP is `c_fc` (hidden → intermediate), GELU (tanh approximation), `c_proj` back, then
    dropout. Unlike GPT-2 there is no LayerNorm before the sublayers and none at the end.

    Call with `padding_mask` (`[batch, length]`, 1 = real token) for a full forward pass, or with
    `cache` and `cache_update_index` for incremental decoding (returns `(hidden, cache)`).

    With `rematerialize=True` a training call keeps only the block's input for the backward pass
    and recomputes everything else there (`keras.remat`), for one extra forward pass of compute.
    The dropout seeds are drawn before the recomputed function, so both forward passes drop the
    same entries and the gradients are those of the plain block. Inference is unaffected. Under
    JAX on a CPU it needs `XLA_FLAG_KEEP_REMAT_BARRIERS` (see `keep_rematerialization_on_jax_cpu`).
    `fused_attention` and `fused_qkv_matmul` go to its `GPT1Attention`.

    Example:
    ```python
    block = GPT1Block(num_heads=2, hidden_dim=16, intermediate_dim=64)
    h = block(np.random.rand(2, 5, 16).astype("float32"), padding_mask=np.ones((2, 5)))
    ```
    """

    def __init__(
        self,
        num_heads,
        hidden_dim,
        intermediate_dim,
        dropout=0.1,
        rematerialize=False,
        fused_attention=True,
        fused_qkv_matmul=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rematerialize = bool(rematerialize)
        self.num_heads = int(num_heads)
        self.hidden_dim = int(hidden_dim)
        self.intermediate_dim = int(intermediate_dim)
        self.dropout = float(dropout)
        dense = dict(kernel_initializer=gpt1_initializer(), bias_initializer="zeros", dtype=self.dtype_policy)
        norm = dict(epsilon=LAYER_NORM_EPSILON, dtype=self.dtype_policy)
        self.attention = GPT1Attention(
            self.num_heads,
            self.hidden_dim,
            self.dropout,
            fused_attention=fused_attention,
            fused_qkv_matmul=fused_qkv_matmul,
            dtype=self.dtype_policy,
            name="attn",
        )
        self.ln_1 = keras.layers.LayerNormalization(name="ln_1", **norm)
        self.c_fc = keras.layers.Dense(self.intermediate_dim, name="c_fc", **dense)
        self.c_proj = keras.layers.Dense(self.hidden_dim, name="c_proj", **dense)
        self.mlp_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.ln_2 = keras.layers.LayerNormalization(name="ln_2", **norm)

    def build(self, input_shape):
        self.attention.build(input_shape)
        self.ln_1.build(input_shape)
        self.c_fc.build(input_shape)
        self.c_proj.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))
        self.ln_2.build(input_shape)
        self.built = True

    def call(self, x, padding_mask=None, cache=None, cache_update_index=0, training=None):
        query_length = ops.shape(x)[1]
        key_length = query_length if cache is None else ops.shape(cache[0])[1]
        mask = causal_attention_mask(padding_mask, query_length, key_length, cache_update_index)
        if training and self.rematerialize and cache is None:
            return self._rematerialized_forward(x, mask)
        return self._forward(x, mask, cache, cache_update_index, training)

    def _forward(self, x, mask, cache=None, cache_update_index=0, training=None, dropout_seeds=None):
        attention_seeds, mlp_seed = (dropout_seeds[:2], dropout_seeds[2]) if dropout_seeds else (None, None)
        attended = self.attention(
            x,
            mask,
            cache=cache,
            cache_update_index=cache_update_index,
            training=training,
            dropout_seeds=attention_seeds,
        )
        if cache is not None:
            attended, cache = attended
        n = self.ln_1(x + attended)
        # The lean GELU only pays off when a backward pass follows; inference (and so exported
        # serving graphs) keeps the plain op.
        gelu = gelu_approximate if training else lambda v: ops.gelu(v, approximate=True)
        m = self.c_proj(gelu(self.c_fc(n)))
        h = self.ln_2(n + dropout(m, self.mlp_dropout, training, mlp_seed))
        if cache is not None:
            return h, cache
        return h

    def _rematerialized_forward(self, x, mask):
        if keras.config.backend() == "torch":
            # torch.utils.checkpoint restores the global RNG state before recomputing, and Keras's
            # unseeded dropout on PyTorch draws from that state: the same entries drop both times.
            return keras.remat(lambda x: self._forward(x, mask, training=True))(x)
        # Elsewhere dropout advances a seed-generator variable, so draw its seeds out here and
        # pass them in: the recomputation then replays them instead of drawing new ones.
        dropouts = (self.attention.attention_dropout, self.attention.output_dropout, self.mlp_dropout)
        seeds = [draw_dropout_seed(layer) for layer in dropouts] if self.dropout > 0 else []

        # The boolean mask is closed over: TensorFlow's recompute_grad cannot take bool arguments.
        def forward(x, *seeds):
            return self._forward(x, mask, training=True, dropout_seeds=seeds or None)

        return keras.remat(forward)(x, *seeds)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            hidden_dim=self.hidden_dim,
            intermediate_dim=self.intermediate_dim,
            dropout=self.dropout,
            rematerialize=self.rematerialize,
            fused_attention=self.attention.fused_attention,
            fused_qkv_matmul=self.attention.fused_qkv_matmul,
        )
        return config
