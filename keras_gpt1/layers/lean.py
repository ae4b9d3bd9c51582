"""Memory-lean GELU and attention dropout for training (keras.ops only, every backend).

Autodiff of a composite op keeps every intermediate its gradient formula touches until the
backward pass reaches it. For GPT-1 at batch 8 x 512 tokens those intermediates dominate the
peak memory of a training step:

- GELU (tanh approximation) is eight elementwise ops; TensorFlow's autodiff keeps four
  `[tokens, 3072]` intermediates per layer (200 MB each layer at 8 x 512) besides its input.
  `gelu_approximate` has a hand-written derivative that keeps only the input and recomputes the
  rest in the backward pass (a few elementwise ops, cheaper than reading the saved tensors).
  PyTorch's native kernel already keeps only its input, so there it is `ops.gelu` itself.
- Keras's TensorFlow dropout multiplies by a float32 keep-mask, which the backward pass keeps:
  `[batch, heads, query, key]` float32 per layer (100 MB each layer at 8 x 512) for the attention
  probabilities. `attention_dropout` selects with a boolean mask instead (a quarter of the
  bytes), drawing from the same `Dropout` layer's seed generator. Other backends already keep a
  boolean mask (JAX) or use a fused kernel (PyTorch), so there it calls the layer.

Both compute exactly what they replace (same formula, same keep probability and scaling).

`dropout` and `attention_dropout` also take a pre-drawn `seed` tensor. A rematerialized block
(`GPT1Block(rematerialize=True)`) draws its seeds before the recomputed function, so the backward
pass's second forward drops exactly the entries the first one did.
"""

import keras
from keras import ops

_SQRT_2_OVER_PI = 0.7978845608028654
_CUBIC = 0.044715


def upstream_gradient(args, upstream):
    """The upstream gradient inside an `ops.custom_gradient` grad function `grad(*args, upstream=None)`:
    TensorFlow and JAX pass it positionally, PyTorch as `upstream=`."""
    if upstream is None:
        (upstream,) = args
    return upstream


@ops.custom_gradient
def _gelu_keep_input(x):
    def grad(*args, upstream=None):
        upstream = upstream_gradient(args, upstream)
        x2 = ops.square(x)
        t = ops.tanh(_SQRT_2_OVER_PI * (x + _CUBIC * x * x2))
        inner = _SQRT_2_OVER_PI * (1.0 + 3.0 * _CUBIC * x2)
        derivative = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - ops.square(t)) * inner
        return upstream * derivative

    return ops.gelu(x, approximate=True), grad


def gelu_approximate(x):
    """`ops.gelu(x, approximate=True)` whose gradient keeps only `x` for the backward pass.

    Example:
    ```python
    y = gelu_approximate(keras.ops.convert_to_tensor([[-1.0, 0.0, 2.0]]))  # [[-0.159, 0, 1.955]]
    ```
    """
    if keras.config.backend() == "torch":
        return ops.gelu(x, approximate=True)
    return _gelu_keep_input(x)


class _FixedSeed(keras.random.SeedGenerator):
    """A seed generator that hands out one given seed tensor and never advances.

    Keras's random ops accept seed generators (and on some backends only those), so this is how a
    seed drawn earlier reaches them. It has no state variable, so it cannot be tracked or saved.
    """

    def __init__(self, seed):  # deliberately skips the parent's state variable
        self.name = "fixed_seed"
        self.backend = keras.backend
        self._initial_seed = seed
        self._seed = seed

    def next(self, ordered=True):
        return self._seed


def draw_dropout_seed(dropout_layer):
    """The seed tensor `dropout_layer`'s next call would use (advances its generator)."""
    return dropout_layer.seed_generator.next()


def dropout(inputs, dropout_layer, training=None, seed=None):
    """`dropout_layer(inputs, training)`, or with `seed` the same dropout drawn from that seed.

    Example:
    ```python
    layer = keras.layers.Dropout(0.1)
    seed = draw_dropout_seed(layer)
    a = dropout(keras.ops.ones((4, 4)), layer, training=True, seed=seed)
    b = dropout(keras.ops.ones((4, 4)), layer, training=True, seed=seed)  # same entries dropped
    ```
    """
    if seed is None or not training or dropout_layer.rate <= 0:
        return dropout_layer(inputs, training=training)
    return keras.random.dropout(inputs, dropout_layer.rate, seed=_FixedSeed(seed))


def attention_dropout(probabilities, dropout_layer, training=None, seed=None):
    """`dropout_layer(probabilities, training)` computed as a boolean select on TensorFlow.

    Keeps each entry with probability `1 - rate` and scales kept entries by `1 / (1 - rate)`,
    exactly as `keras.layers.Dropout`, with random numbers from the layer's own seed generator
    (or from `seed`, a tensor from `draw_dropout_seed`).

    Example:
    ```python
    layer = keras.layers.Dropout(0.1)
    dropped = attention_dropout(keras.ops.ones((1, 2, 4, 4)), layer, training=True)
    ```
    """
    rate = dropout_layer.rate
    if not training or rate <= 0 or keras.config.backend() != "tensorflow":
        return dropout(probabilities, dropout_layer, training, seed)
    generator = dropout_layer.seed_generator if seed is None else _FixedSeed(seed)
    noise = keras.random.uniform(ops.shape(probabilities), seed=generator, dtype="float32")
    keep = ops.greater_equal(noise, rate)
    scaled = probabilities * ops.cast(1.0 / (1.0 - rate), probabilities.dtype)
    return ops.where(keep, scaled, 0.0)
