"""The next-token loss and metrics, re-exported: they live in `keras_gpt1.models.losses`, beside
the models that compile with them, so that `models/` never imports from `training/`."""

from keras_gpt1.models.losses import (  # noqa: F401
    NextTokenAccuracy,
    NextTokenLoss,
    Perplexity,
    next_token_crossentropy,
)
