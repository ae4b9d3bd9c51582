"""Next-token cross-entropy through the tied LM head, a chunk of tokens at a time (keras.ops only).

The plain training step computes the logits `[tokens, vocabulary]` in float32 (663 MB for
GPT-1's 40,478 tokens at batch 8 x 512), and autodiff keeps them and several intermediates of
the same size for the backward pass. `chunked_head_loss` fuses the head and the loss into one op
with a hand-written gradient: it walks over chunks of `chunk_size` tokens and, for each, computes
the logits, the cross-entropy and, at once, the gradients with respect to the hidden states and
the embedding matrix. Only one chunk's logits exist at a time, and the backward pass only scales
the saved gradients by the upstream one. The FLOPs are those of the plain path (one matmul
forward, two for the gradients): nothing is recomputed.

`GPT1CausalLM.compile(head_chunk_size=...)` switches training to it.
"""

import functools

import keras
from keras import ops

from keras_gpt1.layers.lean import upstream_gradient
from keras_gpt1.utils.checks import check_integer


def _totals(hidden, embeddings, labels, weights, chunk_size):
    """Loss statistics and their gradients for `hidden` [n, d] (n a multiple of `chunk_size`)."""
    compute_dtype = hidden.dtype
    table = ops.cast(embeddings, compute_dtype)
    vocabulary = ops.shape(embeddings)[0]
    num_chunks = ops.shape(hidden)[0] // chunk_size
    weight_sum = ops.sum(weights)
    # d(weighted mean)/d(token loss): zero-weight tokens (padding) get no gradient at all.
    token_scale = ops.divide_no_nan(weights, weight_sum)

    def body(i, carry):
        grad_hidden, grad_table, loss_sum, hit_sum = carry
        start = i * chunk_size
        h = ops.slice(hidden, (start, 0), (chunk_size, ops.shape(hidden)[1]))
        label = ops.slice(labels, (start,), (chunk_size,))
        weight = ops.slice(weights, (start,), (chunk_size,))
        scale = ops.slice(token_scale, (start,), (chunk_size,))
        logits = ops.cast(ops.matmul(h, ops.transpose(table)), "float32")
        peak = ops.max(logits, axis=-1, keepdims=True)
        exp = ops.exp(logits - peak)
        total = ops.sum(exp, axis=-1, keepdims=True)
        target = ops.take_along_axis(logits, label[:, None], axis=-1)
        losses = (peak + ops.log(total) - target)[:, 0]
        hits = ops.cast(target[:, 0] >= peak[:, 0], "float32")
        # d loss / d logits = softmax - one_hot(label), per token scaled by its share of the mean.
        grad_logits = (exp / total - ops.one_hot(label, vocabulary, dtype="float32")) * scale[:, None]
        grad_logits = ops.cast(grad_logits, compute_dtype)
        grad_h = ops.cast(ops.matmul(grad_logits, table), "float32")
        grad_hidden = ops.slice_update(grad_hidden, (start, 0), grad_h)
        grad_table = grad_table + ops.cast(ops.matmul(ops.transpose(grad_logits), h), "float32")
        return (
            grad_hidden,
            grad_table,
            loss_sum + ops.sum(losses * weight),
            hit_sum + ops.sum(hits * weight),
        )

    init = (
        ops.zeros(ops.shape(hidden), "float32"),
        ops.zeros(ops.shape(embeddings), "float32"),
        ops.zeros((), "float32"),
        ops.zeros((), "float32"),
    )
    grad_hidden, grad_table, loss_sum, hit_sum = ops.fori_loop(0, num_chunks, body, init)
    stats = ops.stack([ops.divide_no_nan(loss_sum, weight_sum), loss_sum, hit_sum, weight_sum])
    return stats, grad_hidden, grad_table


@functools.lru_cache(maxsize=None)
def _fused_op(chunk_size):
    """The fused op for one chunk size (a Python int, so it stays static under tracing)."""

    @ops.custom_gradient
    def fused(hidden, embeddings, labels, weights):
        # Labels travel as float32 (exact below 2**24) because every input of a custom-gradient
        # op gets a gradient of its own dtype, and integer gradients are not allowed everywhere.
        stats, grad_hidden, grad_table = _totals(hidden, embeddings, ops.cast(labels, "int32"), weights, chunk_size)

        def grad(*args, upstream=None):
            # Only the mean loss (element 0) carries a gradient; the sums are for metrics.
            g = upstream_gradient(args, upstream)[0]
            return (
                ops.cast(grad_hidden * g, hidden.dtype),
                ops.cast(grad_table * g, embeddings.dtype),
                ops.zeros_like(labels),
                ops.zeros_like(weights),
            )

        return stats, grad

    return fused


def chunked_head_loss(hidden, embeddings, labels, sample_weight=None, chunk_size=1024):
    """Weighted mean next-token cross-entropy of `hidden @ embeddings.T`, without the logits.

    Args:
        hidden: final hidden states `[batch, length, hidden_dim]` (any float dtype).
        embeddings: the tied token embedding matrix `[vocabulary, hidden_dim]`.
        labels: next-token ids `[batch, length]`.
        sample_weight: `[batch, length]` token weights (the `padding_mask`), or None for all ones.
        chunk_size: tokens per chunk; memory for the logits is `chunk_size x vocabulary` floats.

    Returns:
        `(loss, loss_sum, hit_sum, weight_sum)`: the weighted mean cross-entropy (differentiable
        with respect to `hidden` and `embeddings`), the weighted sums of token losses and of
        tokens whose label has the highest logit (ties count), and the total weight. The sums
        carry no gradient; they feed `Perplexity` and `NextTokenAccuracy`.

    Example:
    ```python
    hidden = keras.random.normal((2, 8, 16))
    table = keras.random.normal((50, 16))
    labels = keras.random.randint((2, 8), 0, 50)
    loss, *_ = chunked_head_loss(hidden, table, labels, chunk_size=4)
    ```
    """
    chunk_size = check_integer("chunk_size", chunk_size, 1)
    width = ops.shape(hidden)[-1]
    hidden = ops.reshape(hidden, (-1, width))
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    if sample_weight is None:
        weights = ops.ones(ops.shape(labels), "float32")
    else:
        weights = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
    # Pad to whole chunks with zero-weight tokens (label 0), which add nothing to any sum.
    count = ops.shape(labels)[0]
    padding = (-count) % chunk_size
    if not isinstance(padding, int) or padding:
        hidden = ops.concatenate([hidden, ops.zeros((padding, width), hidden.dtype)], axis=0)
        labels = ops.concatenate([labels, ops.zeros((padding,), "int32")], axis=0)
        weights = ops.concatenate([weights, ops.zeros((padding,), "float32")], axis=0)
    if isinstance(embeddings, keras.Variable):
        embeddings = embeddings.value
    stats = _fused_op(chunk_size)(hidden, embeddings, ops.cast(labels, "float32"), weights)
    return stats[0], stats[1], stats[2], stats[3]
