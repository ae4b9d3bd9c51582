"""Training GPT-1: schedules, the paper's optimizer, next-token loss and metrics, callbacks, and
`pretrain` (the engine of `keras-gpt1 pretrain`) with its `PretrainConfig`.

These modules use Keras only (any backend); `pretrain` also needs TensorFlow for its tf.data
pipeline, which it imports when called. `pretrain` is imported on first use: it builds models, so
importing it here would make every model import the whole trainer.
"""

import importlib

from keras_gpt1.training.callbacks import (
    LearningRateLogger,
    StopAtStep,
    StopOnNaN,
    TrainingCheckpoint,
    latest_checkpoint,
    list_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)
from keras_gpt1.models.chunked_head import chunked_head_loss
from keras_gpt1.models.losses import (
    NextTokenAccuracy,
    NextTokenLoss,
    Perplexity,
    next_token_crossentropy,
)
from keras_gpt1.training.optimizers import GPT1AdamW, create_optimizer, decayed_variables
from keras_gpt1.training.pretrain_config import PretrainConfig
from keras_gpt1.training.schedules import (
    OpenAISchedule,
    PerUpdateSchedule,
    WarmupCosine,
    WarmupLinear,
    warmup_constant,
    warmup_cosine,
    warmup_linear,
)


def __getattr__(name):
    # `pretrain` sits above the models (it builds them); importing it lazily keeps
    # `import keras_gpt1.training.optimizers` (which the models use) from importing the models.
    # The module is `pretraining`, not `pretrain`: a submodule of the function's name would be
    # bound over it here as soon as anything imported the submodule.
    if name in ("pretrain", "PretrainResult"):
        module = importlib.import_module("keras_gpt1.training.pretraining")
        globals().update(pretrain=module.pretrain, PretrainResult=module.PretrainResult)
        return globals()[name]
    raise AttributeError(f"module 'keras_gpt1.training' has no attribute {name!r}")
