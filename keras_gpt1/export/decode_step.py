"""`ServingEngine`: the exported generation loop's decode engine, its step written in TensorFlow
ops over the export's weights. TensorFlow only (traced into the SavedModel).

It implements the library's decode-engine protocol (`keras_gpt1.generation.engine`), so the
export runs the library's own decode loop over it, and `tests/test_decode_engines.py` holds it
to the same conformance test as the other engines.

A SavedModel runs without XLA (see `saved_model.py`), so every node of the decode loop's body is
dispatched by TensorFlow's executor, once per generated token. Traced through the Keras layers, a
GPT-1 step is about 2,000 nodes, many of them shape arithmetic around each layer (dynamic batch
and length reshapes, casts, the mask built per layer); at one row that overhead costs as much as
a large share of the weight products. The step here is the same maths in about 60 % of the
nodes: one token per row, so the hidden state stays `[batch, hidden]`, and the cache position and
the mask are computed once per step. The LM head reads `TransposedTokenTable`'s table. The
prefill (many tokens, run once) still goes through the Keras layers, as do the other signatures.

It computes what `GPT1Block` computes, op for op where rounding could differ: the same Dense
products on the same weights (Keras's int8 maths for an int8 layer: rows quantized, an int32
product, scaled back; the product in float32 from two rows up, bit for bit the same, see
`int8_products.py`), the attention of `one_query_attention` (which the Keras layers'
trace uses too), LayerNorm as `keras.ops.layer_normalization` computes it, the tanh GELU of
`keras.ops.gelu`. `tests/test_export.py` checks greedy tokens against `lm.generate` and logits
against the Keras layers. Models it does not cover (float16, another quantization mode, LoRA on an
int8 layer, a layer configured otherwise) decode through the Keras layers: see
`make_serving_engine`.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_gpt1.export.int8_products import int8_dense, plain_int8_dense
from keras_gpt1.export.tensors import backend_value
from keras_gpt1.generation.keras_engine import KerasEngine


def one_query_attention(query, key, value, mask, scale):
    """`saved_model.batch_matmul_attention` for one query per row (a decode step), reading the
    `[batch, keys, heads, head_dim]` cache where it lies.

    Moving the heads to the front copies the whole cache, twice per layer and token, and
    oneDNN's transpose of even a short cache took longer than the rest of the layer's attention
    (a broadcasting multiply over the cache was no cheaper). Instead, each row's cache is seen as
    `[keys, heads * head_dim]` (a reshape, no copy) and multiplied by a block-diagonal matrix that
    holds head `h`'s query in block `h`: one `BatchMatMul` gives every head's logits. The output
    is the probabilities times the values seen the same way, of which each head keeps its own
    block. The extra products (a factor of `heads`) are on a single query, so cost less than one
    copy of the cache. Matmuls run in the inputs' dtype, logits and softmax in float32, as in
    `saved_model.batch_matmul_attention`.
    """
    from keras.src.backend.tensorflow import nn

    batch, keys = tf.shape(key)[0], tf.shape(key)[1]
    heads, head_dim = query.shape[2], query.shape[3]
    eye = tf.constant(np.eye(heads), dtype=query.dtype)  # a constant: `tf.eye` is a MatrixDiag op
    query_blocks = tf.reshape(query[:, 0, :, :, None] * eye[None, :, None, :], [batch, heads * head_dim, heads])
    logits = tf.matmul(tf.reshape(key, [batch, keys, heads * head_dim]), query_blocks)  # [batch, keys, heads]
    logits = tf.cast(logits, tf.float32) * tf.cast(scale, tf.float32)
    if mask is not None:
        # [batch, 1, 1, keys] -> [batch, keys, 1], against the logits' [batch, keys, heads].
        logits = tf.where(tf.cast(mask[:, 0, 0, :, None], tf.bool), logits, nn._get_large_negative(tf.float32))
    probabilities = tf.cast(tf.nn.softmax(logits, axis=1), value.dtype)
    values = tf.reshape(value, [batch, keys, heads * head_dim])
    mixed = tf.matmul(probabilities, values, transpose_a=True)  # [batch, heads, heads * head_dim]
    own_block = tf.range(heads) * (heads + 1)  # head h's block of row h
    attended = tf.gather(tf.reshape(mixed, [batch, heads * heads, head_dim]), own_block, axis=1)
    return attended[:, None]


def _layer_norm(layer, x):
    """`keras.layers.LayerNormalization` as `keras.ops.layer_normalization` computes it: in
    float32 whatever `x`'s dtype, in its operation order, the result cast back to `x`'s dtype."""
    x32 = tf.cast(x, tf.float32)
    mean = tf.reduce_mean(x32, axis=-1, keepdims=True)
    variance = tf.reduce_mean(tf.math.squared_difference(x32, mean), axis=-1, keepdims=True)
    inv = tf.math.rsqrt(variance + layer.epsilon) * tf.cast(backend_value(layer.gamma), tf.float32)
    return tf.cast(x32 * inv + (-mean * inv + tf.cast(backend_value(layer.beta), tf.float32)), x.dtype)


def _dense(layer, x, float32_products):
    """`keras.layers.Dense` (linear; float, or int8 as `Dense._int8_call` computes it) on a
    `[rows, in]` input, in `x`'s dtype (the layer's compute dtype), as Keras casts its weights.
    An int8 layer's int32 product is TensorFlow's int8 one, or with `float32_products` the
    bit-identical float32 one (`int8_products.py`)."""
    if layer.quantization_mode == "int8":
        return int8_dense(layer, x, float32_products)
    y = tf.matmul(x, tf.cast(backend_value(layer.kernel), x.dtype))
    return y if layer.bias is None else y + tf.cast(backend_value(layer.bias), x.dtype)


class ServingEngine(KerasEngine):
    """`KerasEngine` with its decode step written in TensorFlow ops (see the module docstring).

    Build it with `make_serving_engine`, and trace it inside `token_table.tracing()`: the prefill
    runs the Keras layers, which must read the same token table as the step. It keeps the Keras
    layers' cache (`[rows, positions, heads, head_dim]` per layer), which the prefill writes.
    """

    name = "serving"
    # Its cache writes are `TensorStridedSliceUpdate`s at a traced position, which TF Serving
    # runs and XLA cannot compile: a loop over it is traced without XLA, as the export traces it.
    xla = False

    def __init__(self, lm, token_table):
        super().__init__(lm)
        backbone = lm.backbone
        self.num_heads = backbone.num_heads
        self.head_dim = backbone.hidden_dim // backbone.num_heads
        self.token_table = token_table
        self.positions = backend_value(backbone.embeddings.position_embeddings)
        self.blocks = [
            dict(
                c_attn=block.attention.c_attn,
                attn_proj=block.attention.c_proj,
                ln_1=block.ln_1,
                c_fc=block.c_fc,
                c_proj=block.c_proj,
                ln_2=block.ln_2,
            )
            for block in backbone.transformer_layers
        ]
        self.int8 = any(layer.quantization_mode == "int8" for block in self.blocks for layer in block.values())

    def step(self, token_ids, cache, index):
        if not self.int8:
            return self._step(token_ids, cache, index, float32_products=False)
        # int8 layers: TensorFlow's int8 product is the faster at one row, float32 products
        # (the same int32 result) above (`int8_products.py`). One branch per step, not per layer.
        return tf.cond(
            tf.shape(token_ids)[0] > 1,
            lambda: self._step(token_ids, cache, index, float32_products=True),
            lambda: self._step(token_ids, cache, index, float32_products=False),
        )

    def _step(self, token_ids, cache, index, float32_products):
        batch, heads, head_dim = tf.shape(token_ids)[0], self.num_heads, self.head_dim
        tokens = self.token_table.embed(token_ids)
        x = tokens + tf.cast(self.positions[index], tokens.dtype)
        # Shared by every layer: where this step's keys and values go, and which keys it sees.
        begin = tf.stack([0, index, 0, 0])
        end = tf.stack([batch, index + 1, heads, head_dim])
        visible = (tf.range(tf.shape(cache[0][0])[1]) <= index)[None, None, None, :]
        scale = 1.0 / tf.sqrt(tf.cast(head_dim, tf.float32))  # as the Keras layers' trace computes it
        new_cache = []
        for layers, (keys, values) in zip(self.blocks, cache):
            query, key, value = tf.split(_dense(layers["c_attn"], x, float32_products), 3, axis=-1)
            keys, values = (
                tf.raw_ops.TensorStridedSliceUpdate(
                    input=cached,
                    begin=begin,
                    end=end,
                    strides=[1, 1, 1, 1],
                    value=tf.reshape(new, [-1, 1, heads, head_dim]),
                )
                for cached, new in ((keys, key), (values, value))
            )
            new_cache.append((keys, values))
            attended = one_query_attention(tf.reshape(query, [-1, 1, heads, head_dim]), keys, values, visible, scale)
            attended = tf.reshape(attended, tf.shape(x))
            n = _layer_norm(layers["ln_1"], x + _dense(layers["attn_proj"], attended, float32_products))
            hidden = tf.nn.gelu(_dense(layers["c_fc"], n, float32_products), approximate=True)
            m = _dense(layers["c_proj"], hidden, float32_products)
            x = _layer_norm(layers["ln_2"], n + m)
        return tf.cast(self.token_table.logits(x), tf.float32), tuple(new_cache)


def _plain_dense(layer):
    if type(layer) is not keras.layers.Dense or layer.activation not in (None, keras.activations.linear):
        return False
    return layer.quantization_mode is None or plain_int8_dense(layer)


def _plain_layer_norm(layer):
    return (
        type(layer) is keras.layers.LayerNormalization
        and layer.axis in (-1, [-1])
        and layer.center
        and layer.scale
        and not layer.rms_scaling
    )


def make_serving_engine(lm, token_table):
    """`ServingEngine` for a float32, bfloat16 or int8 causal LM with a transposed token table and
    GPT-1's own layers, else the Keras layers' `KerasEngine` (the same results, more graph nodes
    per step)."""
    from keras_gpt1.layers.attention import GPT1Attention
    from keras_gpt1.layers.transformer_block import GPT1Block

    backbone = lm.backbone
    blocks = backbone.transformer_layers
    covered = (
        keras.backend.standardize_dtype(backbone.embeddings.compute_dtype) in ("float32", "bfloat16")
        and token_table.table is not None
        and all(type(block) is GPT1Block and type(block.attention) is GPT1Attention for block in blocks)
        and all(
            _plain_dense(layer)
            for block in blocks
            for layer in (block.attention.c_attn, block.attention.c_proj, block.c_fc, block.c_proj)
        )
        and all(_plain_layer_norm(norm) for block in blocks for norm in (block.ln_1, block.ln_2))
    )
    return ServingEngine(lm, token_table) if covered else KerasEngine(lm)
