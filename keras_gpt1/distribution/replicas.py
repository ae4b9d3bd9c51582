"""Loss scaling under TensorFlow's `tf.distribute`: a hand-computed mean loss divided by the
replicas in sync, so the summed gradients are the global mean's.

Needs only Keras; the models import it (it sits below them in the library's layers).
"""

import keras


def _tf_replicas_in_sync():
    if keras.config.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_loss_for_replicas(loss):
    """Divides a per-replica mean loss by the replicas in sync (TensorFlow `tf.distribute` only).

    Under `MirroredStrategy` each replica computes the loss of its slice of the batch and the
    gradients are summed across replicas, so a mean loss must be divided by the replica count to
    give the gradient of the global mean. Keras's built-in losses do this inside
    `Loss.__call__`; a loss computed by hand (a custom `__call__`, an extra term added in
    `compute_loss`) must do it itself. Identity on JAX (global-view SPMD: the loss is already
    the global mean), on PyTorch, and outside a strategy.

    Example:
    ```python
    def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred["task"], sample_weight, training=training)
        return loss + scale_loss_for_replicas(y_pred["extra_mean_loss"])
    ```
    """
    replicas = _tf_replicas_in_sync()
    if replicas > 1:
        loss = keras.ops.multiply(loss, keras.ops.cast(1.0 / replicas, loss.dtype))
    return loss


def unscale_loss_for_replicas(loss):
    """The inverse of `scale_loss_for_replicas`, for logging a scaled loss as the global mean."""
    replicas = _tf_replicas_in_sync()
    if replicas > 1:
        loss = keras.ops.multiply(loss, keras.ops.cast(replicas, loss.dtype))
    return loss
