"""Small TensorFlow helpers shared by the export's modules. TensorFlow only."""

import tensorflow as tf


def backend_value(variable):
    """The backend value under a Keras variable (its `tf.Variable`), or the argument itself."""
    return getattr(variable, "value", variable)


def as_rows(x):
    """`x` as a matrix of rows, and a function putting a `[rows, n]` result back in `x`'s shape."""
    if x.shape.rank == 2:
        return x, lambda y: y
    rows = tf.reshape(x, [-1, tf.shape(x)[-1]])

    def restore(y):
        out = tf.reshape(y, tf.concat([tf.shape(x)[:-1], tf.shape(y)[1:]], 0))
        out.set_shape(x.shape[:-1].concatenate(y.shape[1:]))
        return out

    return rows, restore
