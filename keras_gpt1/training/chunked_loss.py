"""The chunked LM head and loss, re-exported: it lives in `keras_gpt1.models.chunked_head`, beside
the model that trains with it, so that `models/` never imports from `training/`."""

from keras_gpt1.models.chunked_head import chunked_head_loss  # noqa: F401
