"""LoRA on a GPT-1 backbone: KerasHub's `enable_lora` / `save_lora_weights` / `load_lora_weights`,
with GPT-1's default targets and checks that name what is wrong.

KerasHub's `Backbone` does the work: `enable_lora(rank)` freezes every layer, then calls Keras's
`Dense.enable_lora(rank)` on the layers named by `default_lora_layer_names()`, which adds a frozen
kernel's low-rank update `A @ B * (alpha / rank)` (B starts at zero, so the model starts
unchanged). Only `A` and `B` train: the adapted layers' biases are frozen too, because the
adapter file does not hold them. A LoRA weights file (`*.lora.h5`) holds the rank and each adapted layer's `A` and `B`,
keyed by the layer's index among the backbone's layers with weights, as KerasHub writes it.

GPT-1's default target is each block's fused query/key/value projection, `c_attn`: the LoRA paper
and KerasHub adapt the attention's query and value projections, and GPT-1 (like GPT-2, for which
Hugging Face PEFT's default target is also `c_attn`) computes q, k and v with one Dense, so
adapting it is the way to reach them. One adapter per block then covers q, k and v with
`hidden_dim * rank + rank * 3 * hidden_dim` weights. Pass `target_layer_names` (e.g.
`["c_attn", "c_proj", "c_fc"]`) to adapt more.
"""

import os

import keras

from keras_gpt1.utils.checks import check_integer
from keras_gpt1.utils.files import atomic_path, require_file

DEFAULT_TARGETS = ("c_attn",)


def _layers_with_weights(backbone):
    # KerasHub numbers adapted layers by their index in this list (names are not unique).
    return [layer for layer in backbone._flatten_layers(include_self=False) if layer.weights]


def _kernel_matrix_shape(layer):
    """`(rows, columns)` of the matrix a LoRA update `A @ B` adds to: Keras's `Dense` and
    `EinsumDense` make `A` of the kernel's leading dimensions by `rank`, `B` of `rank` by its last."""
    shape = [int(d) for d in layer.kernel.shape]
    rows = 1
    for d in shape[:-1]:
        rows *= d
    return rows, shape[-1]


def check_lora_rank(rank, kernel_shapes, name="rank", limit_name=None):
    """`rank` as an int in `[1, limit]`, `limit` the smallest side of the adapted kernels
    (`kernel_shapes`, `(rows, columns)` each), else a ValueError naming `name` and the limit.

    The update `A @ B` of a `rows x columns` kernel has rank at most `min(rows, columns)`, so a
    larger `rank` adds parameters (and memory, and time) that can learn nothing more.

    Example:
    ```python
    check_lora_rank(8, [(768, 2304)])           # 8
    check_lora_rank(100000, [(32, 96)])         # ValueError: `rank` (100000) must be at most 32 ...
    ```
    """
    rank = check_integer(name, rank, 1)
    rows, columns = min(kernel_shapes, key=min)
    limit = min(rows, columns)
    if rank > limit:
        what = f"{limit}, {limit_name}" if limit_name else str(limit)
        raise ValueError(
            f"`{name}` ({rank}) must be at most {what}: an adapted kernel is {rows} x {columns}, so its "
            f"update A @ B has rank at most {limit}, and a larger rank only adds parameters that learn "
            "nothing more (ranks of 4 to 16 are usual)."
        )
    return rank


def check_enable_lora(backbone, rank, target_layer_names):
    """Refuses a rank below 1 or above the adapted kernels' smaller side, a second
    `enable_lora`, and target names that match no layer."""
    rank = check_integer("rank", rank, 1)
    already = [layer.path for layer in _layers_with_weights(backbone) if getattr(layer, "lora_enabled", False)]
    if already:
        raise ValueError(
            f"LoRA is already enabled on {len(already)} layer(s) of this backbone ({already[0]}, ...). "
            "`enable_lora` can be called once; to change the rank or the targets, rebuild the "
            "model (e.g. `from_preset` again) and enable it there."
        )
    if isinstance(target_layer_names, str) or not all(isinstance(n, str) for n in target_layer_names):
        raise ValueError(f"`target_layer_names` must be a list of layer names; got {target_layer_names!r}.")
    names = {layer.name for layer in _layers_with_weights(backbone) if hasattr(layer, "enable_lora")}
    if not names.intersection(target_layer_names):
        raise ValueError(
            f"No layer of this backbone is named {list(target_layer_names)}; layers LoRA can adapt: {sorted(names)}."
        )
    targets = [
        layer
        for layer in _layers_with_weights(backbone)
        if layer.name in target_layer_names and hasattr(layer, "enable_lora") and hasattr(layer, "kernel")
    ]
    if targets:
        rank = check_lora_rank(rank, [_kernel_matrix_shape(layer) for layer in targets])
    return rank


def freeze_adapted_biases(backbone):
    """Freezes the biases of the adapted layers, which KerasHub's `enable_lora` leaves trainable.

    A LoRA weights file holds only `A` and `B`: a bias trained beside them would be lost on
    `save_lora_weights` / `load_lora_weights`, and the reloaded model would not be the trained one.
    """
    for layer in _layers_with_weights(backbone):
        if getattr(layer, "lora_enabled", False) and getattr(layer, "bias", None) is not None:
            layer.bias.trainable = False


def save_lora_weights(save, filepath):
    """Runs KerasHub's `save(path)` into a temporary file renamed onto `filepath` when done."""
    filepath = os.fspath(filepath)
    if not filepath.endswith(".lora.h5"):
        raise ValueError(f"A LoRA weights file name must end in `.lora.h5`; got {filepath!r}.")
    with atomic_path(filepath) as tmp:
        save(tmp)


def load_lora_weights(backbone, filepath):
    """Loads a `*.lora.h5` file into `backbone` after checking it fits, layer by layer.

    Enables LoRA (default targets, the file's rank) if it is not on yet, as KerasHub does.
    """
    filepath = require_file(filepath, "LoRA weights file")
    try:
        store = keras.src.saving.saving_lib.H5IOStore(filepath, mode="r")
    except OSError as e:
        raise ValueError(f"{filepath!r} is not a LoRA weights file (HDF5): {e}.") from None
    try:
        if "lora" not in store.h5_file:
            raise ValueError(f"{filepath!r} is not a LoRA weights file: it has no 'lora' group.")
        rank = int(store.get("lora")["rank"][()])
        in_file = sorted(int(k) for k in store.h5_file["lora"].keys() if k.isdigit())
        if not getattr(backbone, "_lora_enabled_layers", []):
            backbone.enable_lora(rank)
        elif backbone._lora_rank != rank:
            raise ValueError(
                f"{filepath!r} holds rank-{rank} LoRA weights, but LoRA on this backbone has rank "
                f"{backbone._lora_rank}. Both ranks must match."
            )
        layers = _layers_with_weights(backbone)
        enabled = list(backbone._lora_enabled_layers)
        if in_file != sorted(enabled):
            described = [layers[i].path if i < len(layers) else f"#{i} (not in this model)" for i in in_file]
            raise ValueError(
                f"{filepath!r} does not match this model: it holds adapters for {described}, but "
                f"LoRA is on {[layers[i].path for i in enabled]}."
            )
        values = {}
        for index in enabled:
            layer, entry = layers[index], store.get(f"lora/{index}")
            for name in ("lora_kernel_a", "lora_kernel_b"):
                value, variable = entry[name], getattr(layer, name)
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(
                        f"{filepath!r} does not match this model: layer {layer.path!r} has {name} of "
                        f"shape {tuple(variable.shape)}, the file {tuple(value.shape)}."
                    )
                values[(index, name)] = value
    finally:
        store.close()
    # Assigned only once everything fits, so a mismatch leaves the adapters as they were.
    for (index, name), value in values.items():
        getattr(layers[index], name).assign(value)
