import math

import keras
from keras import ops

from keras_gpt1.layers.embedding import gpt1_initializer
from keras_gpt1.layers.lean import attention_dropout, dropout


def causal_attention_mask(padding_mask, query_length, key_length, query_start=0):
    """Boolean mask `[batch, query, key]`: True where a query may attend to a key.

    Query `i` (at absolute position `query_start + i`) sees keys at positions `<= query_start + i`
    that are not padding. It always sees itself, so a fully padded row never produces an
    all-masked softmax (NaN on some backends); outputs at padded positions are meaningless anyway.
    """
    query_positions = ops.arange(query_length, dtype="int32")[:, None] + ops.cast(query_start, "int32")
    key_positions = ops.arange(key_length, dtype="int32")[None, :]
    causal = key_positions <= query_positions
    if padding_mask is None:
        return causal[None]
    keys_valid = ops.cast(padding_mask, "bool")[:, None, :]
    is_self = (key_positions == query_positions)[None]
    return ops.logical_and(causal[None], ops.logical_or(keys_valid, is_self))


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1Attention(keras.layers.Layer):
    """Causal multi-head self-attention with GPT-1's single fused q/k/v projection.

    `c_attn` maps `hidden_dim → 3·hidden_dim` (q, k, v in that order, heads contiguous, as in the
    original checkpoint); scores are scaled by `1/sqrt(head_dim)`; dropout acts on the attention
    probabilities and on the `c_proj` output.

    With `cache`, a `(keys, values)` pair each `[batch, max_length, num_heads, head_dim]`, the layer
    writes this call's keys and values at `cache_update_index` and attends over the whole cache; it
    then returns `(output, (keys, values))`. Separate tensors (not one stacked array) let XLA
    update them in place inside a decode loop.

    `dropout_seeds`, a pair of seed tensors (attention probabilities, output) from
    `lean.draw_dropout_seed`, replaces the dropout layers' own generators for one call.

    Two options change how the layer computes, never what (same weights, same outputs up to
    rounding), so that what each choice is worth can be measured (`python -m tools.bench.benchmark
    train --levers einsum_attention split_qkv`):

    - `fused_attention=True` hands attention to the backend's fused kernel
      (`ops.dot_product_attention`) whenever no attention-probability dropout applies; `False`
      computes scores, softmax and weighted sum as separate ops on every call, the path a
      training step with dropout takes.
    - `fused_qkv_matmul=True` computes q, k and v with one matmul by `c_attn`'s kernel; `False`
      with three, one per third of the kernel (float weights only: not after `quantize`).

    Example:
    ```python
    layer = GPT1Attention(num_heads=2, hidden_dim=16)
    y = layer(np.random.rand(1, 5, 16).astype("float32"),
              attention_mask=causal_attention_mask(None, 5, 5))
    ```
    """

    def __init__(self, num_heads, hidden_dim, dropout=0.1, fused_attention=True, fused_qkv_matmul=True, **kwargs):
        super().__init__(**kwargs)
        if hidden_dim % num_heads != 0:
            raise ValueError(f"`hidden_dim` ({hidden_dim}) must be divisible by `num_heads` ({num_heads}).")
        self.num_heads = int(num_heads)
        self.hidden_dim = int(hidden_dim)
        self.head_dim = self.hidden_dim // self.num_heads
        self.dropout = float(dropout)
        self.fused_attention = bool(fused_attention)
        self.fused_qkv_matmul = bool(fused_qkv_matmul)
        dense = dict(kernel_initializer=gpt1_initializer(), bias_initializer="zeros", dtype=self.dtype_policy)
        self.c_attn = keras.layers.Dense(3 * self.hidden_dim, name="c_attn", **dense)
        self.c_proj = keras.layers.Dense(self.hidden_dim, name="c_proj", **dense)
        self.attention_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.output_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.c_attn.build(input_shape)
        self.c_proj.build(tuple(input_shape[:-1]) + (self.hidden_dim,))
        self.built = True

    def _split_heads(self, x):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        return ops.reshape(x, (batch, length, self.num_heads, self.head_dim))

    def call(self, x, attention_mask, cache=None, cache_update_index=0, training=None, dropout_seeds=None):
        probabilities_seed, output_seed = dropout_seeds or (None, None)
        query, key, value = ops.split(self.c_attn(x), 3, axis=-1) if self.fused_qkv_matmul else self._qkv_apart(x)
        query, key, value = self._split_heads(query), self._split_heads(key), self._split_heads(value)
        if cache is not None:
            key_cache, value_cache = cache
            start = (0, cache_update_index, 0, 0)
            key = ops.slice_update(key_cache, start, ops.cast(key, key_cache.dtype))
            value = ops.slice_update(value_cache, start, ops.cast(value, value_cache.dtype))
            cache = (key, value)
            key, value = ops.cast(key, query.dtype), ops.cast(value, query.dtype)

        mask = attention_mask[:, None, :, :]  # broadcast over heads
        if (training and self.dropout > 0) or not self.fused_attention:
            attended = self._attend_op_by_op(query, key, value, mask, training, probabilities_seed)
        else:
            # The fused kernel (SDPA on PyTorch, XLA's on JAX) when no probability dropout is needed.
            attended = ops.dot_product_attention(query, key, value, mask=mask)
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        attended = ops.reshape(attended, (batch, length, self.hidden_dim))
        output = dropout(self.c_proj(attended), self.output_dropout, training, output_seed)
        if cache is not None:
            return output, cache
        return output

    def _qkv_apart(self, x):
        if self.c_attn.quantization_mode is not None:
            raise ValueError(
                f"`fused_qkv_matmul=False` needs float weights; {self.name}'s `c_attn` is quantized "
                f"({self.c_attn.quantization_mode}). Build the model with `fused_qkv_matmul=True` to quantize it."
            )
        kernel, bias = self.c_attn.kernel, self.c_attn.bias
        width = self.hidden_dim
        return [
            ops.matmul(x, kernel[:, i * width : (i + 1) * width]) + bias[i * width : (i + 1) * width] for i in range(3)
        ]

    def _attend_op_by_op(self, query, key, value, mask, training, seed):
        scores = ops.einsum("bqhd,bkhd->bhqk", query, key) * (1.0 / math.sqrt(self.head_dim))
        # Softmax in float32: bfloat16 scores lose too much precision over 512 keys.
        scores = ops.where(mask, ops.cast(scores, "float32"), -1e9)
        probabilities = ops.cast(ops.softmax(scores, axis=-1), query.dtype)
        probabilities = attention_dropout(probabilities, self.attention_dropout, training, seed)
        return ops.einsum("bhqk,bkhd->bqhd", probabilities, value)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            hidden_dim=self.hidden_dim,
            dropout=self.dropout,
            fused_attention=self.fused_attention,
            fused_qkv_matmul=self.fused_qkv_matmul,
        )
        return config
