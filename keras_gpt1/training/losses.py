"""Next-token loss and metrics for causal language modelling.

Labels are the input ids shifted left by one (the pipelines in `keras_gpt1.data` build them), so
the loss is a plain per-token cross-entropy between `logits[b, t]` and `labels[b, t]`, averaged
over the tokens whose sample weight (the `padding_mask`) is 1.

The cross-entropy is computed as `logsumexp(logits) - logits[label]` in float32 (on TensorFlow
by its fused sparse softmax cross-entropy kernel, which is the same sum in float32): with
`mixed_bfloat16` the logits arrive in bfloat16 and are upcast once, inside the reduction, instead
of first materialising a float32 log-softmax of the whole `[batch, length, vocabulary]` tensor.
The loss, `Perplexity` and `NextTokenAccuracy` use the same reductions on the same tensors, so
XLA (TensorFlow, JAX) computes them once, where Keras's `SparseCategoricalAccuracy` would add an
argmax over the whole vocabulary to every step. PyTorch runs eagerly and computes them again.

The models compile with these by default, so they live beside the models (below `training/`,
which re-exports them).
"""

import keras
from keras import ops


def next_token_crossentropy(labels, logits):
    """Per-token cross-entropy `[batch, length]` (float32) of integer `labels` under `logits`.

    Example:
    ```python
    loss = next_token_crossentropy(np.array([[1, 2]]), np.zeros((1, 2, 5)))   # log(5) each
    ```
    """
    logits = ops.cast(logits, "float32")
    labels = ops.cast(labels, "int32")
    if keras.config.backend() == "tensorflow":
        # TensorFlow's fused sparse softmax cross-entropy kernel (which keras.ops calls there)
        # computes the loss and its gradient in one pass, with no scatter of the gathered target
        # logit's gradient: faster than the expression below where XLA is off (as under
        # tf.distribute), the same speed with it (docs/performance.md).
        return ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    target = ops.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    return ops.logsumexp(logits, axis=-1) - target


@keras.saving.register_keras_serializable(package="keras_gpt1")
class NextTokenLoss(keras.losses.Loss):
    """Token-level cross-entropy from logits, averaged over real tokens.

    Pass the `padding_mask` as `sample_weight` (the LM pipelines yield `(x, labels, mask)`): the
    mean is over tokens with weight 1, so padding neither counts nor dilutes the average.

    Example:
    ```python
    model.compile(optimizer="adam", loss=NextTokenLoss(), metrics=[Perplexity()])
    ```
    """

    def __init__(self, name="next_token_loss"):
        super().__init__(name=name, reduction="mean_with_sample_weight", dtype="float32")

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Keras's `Loss.__call__` would first cast all the logits to float32; the cross-entropy
        # upcasts inside its reductions instead. Skipping it also skips its division by the
        # replica count under tf.distribute, so do that here.
        from keras_gpt1.distribution.replicas import scale_loss_for_replicas

        loss = _weighted_mean(next_token_crossentropy(y_true, y_pred), sample_weight)
        return scale_loss_for_replicas(loss)

    def call(self, y_true, y_pred):
        return next_token_crossentropy(y_true, y_pred)

    def get_config(self):
        return {"name": self.name}


def _weighted_mean(losses, sample_weight):
    if sample_weight is None:
        return ops.mean(losses)
    weight = ops.cast(ops.reshape(sample_weight, ops.shape(losses)), "float32")
    return ops.divide_no_nan(ops.sum(losses * weight), ops.sum(weight))


@keras.saving.register_keras_serializable(package="keras_gpt1")
class Perplexity(keras.metrics.Metric):
    """Token-level perplexity: `exp(total cross-entropy / number of tokens)` over all batches seen.

    Tokens are weighted by `sample_weight` (the `padding_mask`), so the value is the corpus
    perplexity, not the mean of per-batch perplexities.

    Example:
    ```python
    metric = Perplexity()
    metric.update_state(np.array([[1, 2]]), np.zeros((1, 2, 5)))
    float(metric.result())   # 5.0
    ```
    """

    def __init__(self, name="perplexity", dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        losses = next_token_crossentropy(y_true, y_pred)
        if sample_weight is None:
            weight = ops.ones_like(losses)
        else:
            weight = ops.cast(ops.reshape(sample_weight, ops.shape(losses)), "float32")
        self.add_totals(ops.sum(losses * weight), ops.sum(weight))

    def add_totals(self, loss_sum, weight_sum):
        """Adds precomputed sums (`chunked_head_loss` gives them): weighted losses, weights."""
        self.total.assign_add(ops.cast(loss_sum, "float32"))
        self.count.assign_add(ops.cast(weight_sum, "float32"))

    def result(self):
        return ops.exp(ops.divide_no_nan(self.total, self.count))

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_gpt1")
class NextTokenAccuracy(keras.metrics.Metric):
    """Share of tokens whose label has the highest logit, weighted by `sample_weight`.

    Compares the label's logit with the row maximum rather than taking an `argmax`: the same
    reductions the cross-entropy already does, so XLA shares them (an `argmax` over the
    vocabulary cost more than the loss itself on CPU). A tie for the maximum counts as correct.

    Example:
    ```python
    metric = NextTokenAccuracy()
    metric.update_state(np.array([[1]]), np.array([[[0.0, 2.0, 1.0]]]))
    float(metric.result())   # 1.0
    ```
    """

    def __init__(self, name="accuracy", dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.correct = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="correct")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        logits = ops.cast(y_pred, "float32")
        labels = ops.cast(y_true, "int32")
        target = ops.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
        hits = ops.cast(target >= ops.max(logits, axis=-1), "float32")
        if sample_weight is None:
            weight = ops.ones_like(hits)
        else:
            weight = ops.cast(ops.reshape(sample_weight, ops.shape(hits)), "float32")
        self.add_totals(ops.sum(hits * weight), ops.sum(weight))

    def add_totals(self, hit_sum, weight_sum):
        """Adds precomputed sums (`chunked_head_loss` gives them): weighted hits, weights."""
        self.correct.assign_add(ops.cast(hit_sum, "float32"))
        self.count.assign_add(ops.cast(weight_sum, "float32"))

    def result(self):
        return ops.divide_no_nan(self.correct, self.count)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}
