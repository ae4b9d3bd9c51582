"""The paper's optimizer: Adam with decoupled weight decay on matrices, global-norm clipping.

The original `opt.py` update for a parameter `p` at update `t` (1-based), gradient `g` after
clipping all gradients to global norm 1.0:

    m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g²
    lr_t = lr * schedule * sqrt(1 - b2^t) / (1 - b1^t)
    p = p - lr_t * (m / (sqrt(v) + eps) + wd * p)      # the `wd * p` term only if rank(p) > 1

`keras.optimizers.AdamW` computes the same Adam step (same epsilon placement) and the same
decoupled decay, except that it scales the decay by the plain `lr` where the original scales it by
`lr_t`, which also carries Adam's bias correction `sqrt(1 - b2^t) / (1 - b1^t)`. That factor is
0.32 at the first update and under 1 until a few thousand updates. `GPT1AdamW` is Keras's AdamW
with that one difference put back (`bias_corrected_decay=True`, the default; set it to False for
Keras's behaviour), and with the original's variable selection built in: decay every variable of
rank >= 2 (kernels, the token and position embeddings), never vectors (biases, LayerNorm gains
and offsets).

Embeddings are decayed because the original decays them (its rule is "rank > 1", and both
embedding matrices are rank 2); `decay_embeddings=False` exempts them.
"""

import numbers

import keras
from keras import ops

from keras_gpt1.training.schedules import PerUpdateSchedule
from keras_gpt1.utils.checks import check_number

# The paper's settings.
PRETRAINING_LEARNING_RATE = 2.5e-4
FINETUNING_LEARNING_RATE = 6.25e-5
BETA_1 = 0.9
BETA_2 = 0.999
EPSILON = 1e-8
WEIGHT_DECAY = 0.01
GLOBAL_CLIPNORM = 1.0


@keras.saving.register_keras_serializable(package="keras_gpt1")
class GPT1AdamW(keras.optimizers.AdamW):
    """Keras's AdamW with the original GPT-1 weight decay: matrices only, bias-corrected step.

    Decays variables of rank >= 2 (unless excluded with `exclude_from_weight_decay`, or embeddings
    with `decay_embeddings=False`), never vectors or scalars. With `bias_corrected_decay=True` the decay term is
    `lr * sqrt(1 - b2^t) / (1 - b1^t) * weight_decay * p`, exactly as the original `opt.py`;
    with False it is Keras's `lr * weight_decay * p`.

    Example:
    ```python
    optimizer = GPT1AdamW(learning_rate=2.5e-4, weight_decay=0.01, global_clipnorm=1.0)
    model.compile(optimizer=optimizer, loss=...)
    ```
    """

    def __init__(self, *args, bias_corrected_decay=True, decay_embeddings=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.bias_corrected_decay = bool(bias_corrected_decay)
        self.decay_embeddings = bool(decay_embeddings)

    def _use_weight_decay(self, variable):
        if len(variable.shape) < 2:
            return False
        # GPT-1's embeddings are `.../token_embedding/embeddings` and `.../position_embeddings`.
        if not self.decay_embeddings and variable.name.endswith("embeddings"):
            return False
        return super()._use_weight_decay(variable)

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None or not self.bias_corrected_decay:
            return super()._apply_weight_decay(variables)
        # `iterations` counts finished updates (Adam's own `local_step` is `iterations + 1`).
        step = ops.cast(self.iterations + 1, "float32")
        correction = ops.sqrt(1.0 - ops.power(self.beta_2, step)) / (1.0 - ops.power(self.beta_1, step))
        # Each backend's decay (TensorFlow: distribution-aware; PyTorch: fused foreach) reads
        # `self.weight_decay`; hand it the corrected coefficient for this one call.
        weight_decay = self.weight_decay
        self.weight_decay = correction * weight_decay
        try:
            super()._apply_weight_decay(variables)
        finally:
            self.weight_decay = weight_decay

    def get_config(self):
        config = super().get_config()
        config["bias_corrected_decay"] = self.bias_corrected_decay
        config["decay_embeddings"] = self.decay_embeddings
        return config


def decayed_variables(optimizer, variables):
    """The subset of `variables` that `optimizer` applies weight decay to (for inspection/tests)."""
    return [v for v in variables if optimizer._use_weight_decay(v)]


def create_optimizer(
    learning_rate=PRETRAINING_LEARNING_RATE,
    weight_decay=WEIGHT_DECAY,
    beta_1=BETA_1,
    beta_2=BETA_2,
    epsilon=EPSILON,
    global_clipnorm=GLOBAL_CLIPNORM,
    gradient_accumulation_steps=None,
    decay_embeddings=True,
    bias_corrected_decay=True,
):
    """The paper's optimizer: `GPT1AdamW(0.9, 0.999, 1e-8)`, decay 0.01 on matrices, clip 1.0.

    Args:
        learning_rate: a float or a `LearningRateSchedule` written in optimizer updates
            (e.g. `WarmupCosine`); with gradient accumulation it is wrapped in
            `PerUpdateSchedule` so that it still counts updates, not micro-batches.
        weight_decay: decoupled decay on matrices (0 or None turns it off).
        global_clipnorm: clip all gradients together to this global norm (None: no clipping).
        gradient_accumulation_steps: average gradients over this many batches per update
            (None or 1: update every batch). The clipping applies to the averaged gradient.
        decay_embeddings: also decay the token and position embeddings (the original does).
        bias_corrected_decay: scale the decay by Adam's bias correction, as the original does.

    Example:
    ```python
    from keras_gpt1.training import WarmupCosine, create_optimizer
    optimizer = create_optimizer(WarmupCosine(2.5e-4, 2000, 100_000), gradient_accumulation_steps=8)
    ```
    """
    # NaN or infinity here would train a NaN model without a word: refused, naming the argument.
    if isinstance(learning_rate, numbers.Real):  # not a schedule, a callable or a variable
        check_number("learning_rate", learning_rate, 0, low_open=True)
    if weight_decay is not None:
        check_number("weight_decay", weight_decay, 0)
    if global_clipnorm is not None:
        check_number("global_clipnorm", global_clipnorm, 0)
    accumulation = 1 if gradient_accumulation_steps is None else int(gradient_accumulation_steps)
    if accumulation < 1:
        raise ValueError(f"`gradient_accumulation_steps` must be >= 1; got {gradient_accumulation_steps!r}.")
    if accumulation > 1 and isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        learning_rate = PerUpdateSchedule(learning_rate, accumulation)
    optimizer = GPT1AdamW(
        learning_rate=learning_rate,
        weight_decay=float(weight_decay or 0.0),
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        global_clipnorm=global_clipnorm or None,
        gradient_accumulation_steps=accumulation if accumulation > 1 else None,
        bias_corrected_decay=bias_corrected_decay,
        decay_embeddings=decay_embeddings,
    )
    return optimizer
