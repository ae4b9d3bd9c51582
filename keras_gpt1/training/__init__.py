"""What training GPT-1 is made of, below the models that compile with it: the learning-rate
schedules, the paper's optimizer, the next-token loss and metrics, and the checkpoint callbacks.

Keras only (any backend). The jobs that use them, `pretrain` and `finetune`, are in
`keras_gpt1.workflows`.
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
