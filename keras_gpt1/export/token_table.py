"""The exported causal LM's token table, stored `[hidden, vocabulary]`: the layout the LM head
reads fastest. TensorFlow only (used while tracing the SavedModel).

A decode step multiplies the last hidden state by the whole token table (GPT-1 ties its output
layer to the `[vocabulary, hidden]` token embedding), so every served token reads the table once.
Keras computes that product as a `MatMul` with `transpose_b`. Under XLA (the library's own
generation) the table is laid out for the product once, at compile time; a SavedModel for TF
Serving runs TensorFlow's oneDNN kernels on the table as stored, and with `transpose_b` that
product is several times slower than on the table stored `[hidden, vocabulary]`, in float32 and
bfloat16, from one row to a prefill's. So the export stores the table that way only, and token
lookups gather its columns.

An int8 table (Keras's `quantize("int8")`: int8 values, one scale per token) is stored
transposed too, in int8 with the model's scales. Keras transposes the whole int8 table on every
call to the head, then multiplies in TensorFlow's int8 `BatchMatMulV3`, slower than the float32
product even at one row; the export multiplies the quantized hidden state by the table through
`int8_products.int8_matmul`, float32 products that give Keras's int32 result bit for bit.

Dense kernels stay `[in, out]`: stored `[out, in]` they stream faster at one row but slower at
a prefill's or the `score` signature's row counts, so no one layout wins there.

The swapped layer computes exactly its Keras maths (LoRA adapters merged in, dtype kept); only
the stored layout and the kernel that reads it change. A table configured otherwise (untied,
soft-capped, a `reverse_dtype`, LoRA on a quantized table, another quantization mode, a
subclass's own `call`) is left to Keras. The layer is swapped only while `tracing()` is active;
the caller's model is left as it was.
"""

import contextlib

import keras
import tensorflow as tf

from keras_gpt1.export.int8_products import int8_matmul, quantizes_inputs_to_int8
from keras_gpt1.export.tensors import as_rows, backend_value


def _tied(layer):
    return layer.tie_weights and layer.logit_soft_cap is None and layer.reverse_dtype is None


def _transposable(layer):
    return (
        type(layer).call is keras.layers.ReversibleEmbedding.call and layer.quantization_mode is None and _tied(layer)
    )


def _transposable_int8(layer):
    return (
        type(layer)._int8_call is keras.layers.ReversibleEmbedding._int8_call
        and type(layer).quantized_call is keras.layers.Layer.quantized_call
        and quantizes_inputs_to_int8(layer)
        and keras.backend.standardize_dtype(layer._embeddings.dtype) == "int8"
        and not layer.lora_enabled
        and _tied(layer)
    )


class TransposedTokenTable:
    """A causal LM's token table as a `[hidden, vocabulary]` `tf.Variable` (in the layer's compute
    dtype, or int8 for an int8 layer), and the swap of the layer's call that reads it.

    Attributes:
        table: the new variable (int8 for an int8 layer, which keeps its own scales), or None
            where the layer is left to Keras (track it in the exported module).
        replaced: `id`s of the model's variables no graph traced under `tracing()` reads (leave
            them out of the export, or the table is stored twice).

    Example:
    ```python
    token_table = TransposedTokenTable(lm)
    with token_table.tracing():  # the layer itself reads the table
        logits = tf.function(lambda h: lm.backbone.token_embedding(h, reverse=True))(hidden)
    logits = token_table.logits(hidden)  # the same, called directly
    ```
    """

    def __init__(self, lm):
        self.layer = lm.backbone.token_embedding
        self.table, self.replaced, self.method = None, set(), "call"
        if _transposable(self.layer):
            value = tf.convert_to_tensor(keras.ops.convert_to_tensor(self.layer.embeddings))
            transposed = tf.transpose(tf.cast(value, self.layer.compute_dtype))
            self.table = tf.Variable(transposed, trainable=False, name="token_embedding_transposed")
            self.replaced = {id(v) for v in self.layer.variables}
        elif _transposable_int8(self.layer):
            transposed = tf.transpose(tf.convert_to_tensor(backend_value(self.layer._embeddings)))
            self.table = tf.Variable(transposed, trainable=False, name="token_embedding_transposed")
            self.replaced = {id(self.layer._embeddings)}
            self.method = "quantized_call"  # what `Layer.__call__` calls on a quantized layer

    def _lookup(self, ids):
        columns = tf.gather(self.table, ids, axis=1)  # [hidden, *ids.shape]
        return tf.transpose(columns, [*range(1, ids.shape.rank + 1), 0])

    def embed(self, ids):
        """The layer's lookup of `ids` (any shape), read from `table`."""
        ids = tf.cast(ids, tf.int32)
        if self.method == "call":
            return self._lookup(ids)
        # `Embedding._int8_call`: the int8 rows, then each divided by its token's scale. The
        # scales are read as a tensor, so the lookup is Keras's `GatherV2`, not a `ResourceGather`.
        scale = tf.convert_to_tensor(backend_value(self.layer.embeddings_scale))
        return tf.cast(self._lookup(ids), self.layer.compute_dtype) / tf.gather(scale, ids)[..., None]

    def logits(self, hidden):
        """The layer's `reverse=True` product of `hidden` (`[..., hidden]`), read from `table`."""
        rows, restore = as_rows(tf.convert_to_tensor(hidden))
        if self.method == "call":
            return restore(tf.matmul(tf.cast(rows, self.table.dtype), self.table))
        # `ReversibleEmbedding._int8_call` (tied), in its order of ops.
        layer = self.layer
        rows, rows_scale = layer.inputs_quantizer(rows)
        products = int8_matmul(rows, self.table)
        scale = tf.convert_to_tensor(backend_value(layer.embeddings_scale))
        return restore(tf.cast(products, layer.compute_dtype) / (rows_scale * scale))

    def _call(self, inputs, reverse=False):
        return self.logits(inputs) if reverse else self.embed(inputs)

    @contextlib.contextmanager
    def tracing(self):
        """Within the block, the token embedding computes from `table` (no change when it is
        None). Nested blocks (one signature tracing another) restore what they found."""
        if self.table is None:
            yield
            return
        previous = self.layer.__dict__.get(self.method)
        setattr(self.layer, self.method, self._call)
        try:
            yield
        finally:
            if previous is None:
                delattr(self.layer, self.method)
            else:
                setattr(self.layer, self.method, previous)
