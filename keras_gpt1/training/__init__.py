"""Training GPT-1: schedules, the paper's optimizer, next-token loss and metrics, callbacks, and
`pretrain` (the engine of `keras-gpt1 pretrain`).

These modules use Keras only (any backend); `pretrain` also needs TensorFlow for its tf.data
pipeline, which it imports when called.
"""

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
from keras_gpt1.training.chunked_loss import chunked_head_loss
from keras_gpt1.training.losses import (
    NextTokenAccuracy,
    NextTokenLoss,
    Perplexity,
    next_token_crossentropy,
)
from keras_gpt1.training.optimizers import GPT1AdamW, create_optimizer, decayed_variables
from keras_gpt1.training.schedules import (
    OpenAISchedule,
    PerUpdateSchedule,
    WarmupCosine,
    WarmupLinear,
    warmup_constant,
    warmup_cosine,
    warmup_linear,
)

from keras_gpt1.training.pretrain import PretrainResult, pretrain
