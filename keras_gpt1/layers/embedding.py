import contextlib
import contextvars

import keras
from keras import ops

from keras_gpt1.utils.checks import check_token_ids

_ZEROS_INSTEAD_OF_RANDOM = contextvars.ContextVar("gpt1_zeros_instead_of_random", default=False)


def gpt1_initializer(stddev=0.02):
    """The paper's initialisation for every weight matrix: N(0, 0.02) (zeros inside
    `without_random_init`)."""
    if _ZEROS_INSTEAD_OF_RANDOM.get():
        return keras.initializers.Zeros()
    return keras.initializers.RandomNormal(mean=0.0, stddev=stddev)


@contextlib.contextmanager
def without_random_init():
    """Within the block, GPT-1's layers create their weight matrices as zeros, not N(0, 0.02).

    For code that overwrites every weight right after building (loading a preset's weights):
    drawing 117M random numbers takes seconds and, on JAX, temporaries of several times a
    tensor's size, all for values thrown away at once.

    Example:
    ```python
    with without_random_init():
        backbone = GPT1Backbone(**config)    # every matrix zero, ready to be assigned
    ```
    """
    token = _ZEROS_INSTEAD_OF_RANDOM.set(True)
    try:
        yield
    finally:
        _ZEROS_INSTEAD_OF_RANDOM.reset(token)


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1Embedding(keras.layers.Layer):
    """Token embeddings plus learned absolute positions, with a tied reverse projection.

    The forward call maps token ids `[batch, length]` to `token_emb[ids] + pos_emb[start:start+length]`.
    `reverse(hidden)` computes logits `hidden @ token_embᵀ` (GPT-1 ties its output layer to the
    token embedding and has no output bias).

    Out-of-range ids are rejected with a `ValueError` whenever the ids are concrete values (eager
    calls, `predict` on arrays): every backend would otherwise clamp the lookup silently.

    Args:
        vocabulary_size: rows of the token embedding (base vocabulary + special tokens).
        hidden_dim: embedding width.
        max_sequence_length: number of learned positions (GPT-1: 512).

    Example:
    ```python
    layer = GPT1Embedding(vocabulary_size=100, hidden_dim=16, max_sequence_length=32)
    hidden = layer(np.array([[1, 2, 3]]))        # (1, 3, 16)
    logits = layer.reverse(hidden)               # (1, 3, 100)
    ```
    """

    def __init__(self, vocabulary_size, hidden_dim, max_sequence_length, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = int(vocabulary_size)
        self.hidden_dim = int(hidden_dim)
        self.max_sequence_length = int(max_sequence_length)
        self.token_embedding = keras.layers.ReversibleEmbedding(
            self.vocabulary_size,
            self.hidden_dim,
            tie_weights=True,
            embeddings_initializer=gpt1_initializer(),
            dtype=self.dtype_policy,
            name="token_embedding",
        )

    def build(self, input_shape=None):
        self.token_embedding.build(input_shape)
        self.position_embeddings = self.add_weight(
            name="position_embeddings",
            shape=(self.max_sequence_length, self.hidden_dim),
            initializer=gpt1_initializer(),
        )
        self.built = True

    def call(self, token_ids, start_index=0):
        check_token_ids(token_ids, self.vocabulary_size, self.max_sequence_length, start_index)
        length = ops.shape(token_ids)[1]
        positions = ops.slice(
            ops.convert_to_tensor(self.position_embeddings), (start_index, 0), (length, self.hidden_dim)
        )
        tokens = self.token_embedding(token_ids)
        return tokens + ops.cast(positions, tokens.dtype)[None]

    def reverse(self, hidden_states):
        """Logits over the vocabulary through the tied token embedding."""
        return self.token_embedding(hidden_states, reverse=True)

    def compute_output_spec(self, token_ids, start_index=0):
        # From the ids' shape alone (they may be symbolic or plain arrays): tracing `call`
        # would slice the positions with a symbolic length, which JAX cannot.
        shape = tuple(token_ids.shape) + (self.hidden_dim,)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size,
            hidden_dim=self.hidden_dim,
            max_sequence_length=self.max_sequence_length,
        )
        return config
