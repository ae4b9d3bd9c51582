"""Keras's int8 products, bit for bit, through float32 matmuls. TensorFlow only (used while
tracing the SavedModel).

Keras's int8 layers (`quantize("int8")`, its default scheme) quantize each input row to int8,
multiply by the int8 weights into int32, and scale back. Traced as it is, that product is
TensorFlow's int8 `BatchMatMulV3`, whose CPU kernel grows with the rows far faster than the
float32 `MatMul`: above one row it is the slower of the two, and at a prefill's hundreds of
rows several times slower. Both operands are integers of at most 128 in magnitude, so a float32
product over at most `EXACT_INPUTS` (1024) inputs only ever sums integers of at most 2**24,
which float32 holds exactly. `int8_matmul` cuts the inputs into such chunks and adds the chunks'
results in int32: Keras's int32 result, bit for bit, on any width. The weights are cast to
float32 inside the product, so the export still stores them in int8.

`exact_int8_layers` swaps that product into a model's int8 `Dense` layers while the serving
signatures are traced (the prefill, `score`, the `token_ids` logits); the decode
step (`decode_step.py`) keeps TensorFlow's int8 product at one row, where it is the faster, and
the token table's head always uses the float32 chunks (`token_table.py`). Layers quantized
otherwise (weight-only, another activation quantizer, LoRA adapters, a subclass) keep Keras's
call. The caller's model is left as it was.
"""

import contextlib

import keras
import tensorflow as tf

from keras_gpt1.export.tensors import as_rows, backend_value

# Inputs per float32 product: a sum of this many products of two int8 values (each at most
# 128 * 128 in magnitude) stays within 2**24, where float32 still holds every integer.
EXACT_INPUTS = 2**24 // (128 * 128)


def quantizes_inputs_to_int8(layer):
    """Whether an int8 layer quantizes its inputs as Keras's default int8 does: to int8 with one
    scale per row (not weight-only, not a custom activation quantizer)."""
    quantizer = getattr(layer, "inputs_quantizer", None)
    return (
        layer.quantization_mode == "int8"
        and type(quantizer) is keras.quantizers.AbsMaxQuantizer
        and quantizer.output_dtype == "int8"
    )


def plain_int8_dense(layer):
    """Whether `layer` is a Keras `Dense` whose int8 call `int8_dense` reproduces: int8 weights,
    Keras's default int8 inputs, no LoRA adapters, `Dense`'s own call."""
    return (
        type(layer) is keras.layers.Dense
        and quantizes_inputs_to_int8(layer)
        and keras.backend.standardize_dtype(layer._kernel.dtype) == "int8"
        and not layer.lora_enabled
    )


def int8_matmul(rows, kernel):
    """`rows @ kernel` for int8 `[r, in]` rows and an int8 `[in, out]` kernel, as int32: equal
    to TensorFlow's int32 product, computed by float32 products over at most `EXACT_INPUTS`
    inputs each.

    Example:
    ```python
    int8_matmul(tf.constant([[1, -128]], tf.int8), tf.constant([[3], [2]], tf.int8))  # [[-253]]
    ```
    """
    inputs = kernel.shape[0]
    if inputs <= EXACT_INPUTS:  # one chunk: no slices in the graph (this runs once per layer per token)
        return tf.cast(tf.matmul(tf.cast(rows, tf.float32), tf.cast(kernel, tf.float32)), tf.int32)
    products = None
    for start in range(0, inputs, EXACT_INPUTS):
        part = tf.matmul(
            tf.cast(rows[:, start : start + EXACT_INPUTS], tf.float32),
            tf.cast(kernel[start : start + EXACT_INPUTS], tf.float32),
        )
        part = tf.cast(part, tf.int32)
        products = part if products is None else products + part
    return products


def int8_dense(layer, x, float32_products=True):
    """`Dense._int8_call` of a `plain_int8_dense` layer on `x` (`[..., in]`, in the layer's
    compute dtype), in its order of ops; the int32 product is `int8_matmul`'s, or TensorFlow's
    int8 product with `float32_products=False`. The two are equal bit for bit."""
    rows, restore = as_rows(x)
    quantized, rows_scale = layer.inputs_quantizer(rows, axis=-1)
    kernel = backend_value(layer._kernel)
    if float32_products:
        products = int8_matmul(quantized, kernel)
    else:
        products = tf.linalg.matmul(quantized, kernel, output_type=tf.int32)
    y = tf.cast(products, x.dtype) / (tf.convert_to_tensor(backend_value(layer.kernel_scale)) * rows_scale)
    if layer.bias is not None:
        y = y + tf.cast(backend_value(layer.bias), x.dtype)
    if layer.activation is not None:
        y = layer.activation(y)
    return restore(y)


@contextlib.contextmanager
def exact_int8_layers(model):
    """Within the block, every `plain_int8_dense` layer of `model` (a layer itself included)
    computes its int8 call with `int8_dense` (float32 products); the layers are restored on
    leaving. No change for a model without such layers. Nested blocks restore what they found.

    Example:
    ```python
    lm.quantize("int8")
    with exact_int8_layers(lm):
        logits = tf.function(lambda ids, mask: lm({"token_ids": ids, "padding_mask": mask}))(ids, mask)
    ```
    """
    layers = [layer for layer in model._flatten_layers() if plain_int8_dense(layer)]
    previous = [layer.__dict__.get("_int8_call") for layer in layers]
    for layer in layers:
        layer._int8_call = lambda inputs, training=None, layer=layer: int8_dense(layer, inputs)
    try:
        yield
    finally:
        for layer, call in zip(layers, previous):
            if call is None:
                del layer._int8_call
            else:
                layer._int8_call = call
