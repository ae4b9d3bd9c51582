"""GPT-1's weight layout for model parallelism: the device mesh's axes, the Megatron-style
sharding rules, and the `keras.distribution.ModelParallel` that refuses an unmatched weight.

Needs only Keras (the layouts are JAX's `keras.distribution`).
"""

import re

import keras

MODES = ("none", "data", "model")
DATA_AXIS = "batch"
MODEL_AXIS = "model"

# Variable-path patterns (matched with `re.fullmatch`, after an optional prefix so the rules still
# hold if a model is ever built under an enclosing name scope) → axes of the variable.
#
# Megatron-style pairing: the first matmul of each sublayer (fused q|k|v, FFN-in) is split on its
# OUTPUT axis, the second (attention c_proj, FFN-out) on its INPUT axis, so each device computes a
# slice of the hidden activations locally and one all-reduce per sublayer restores the full
# width. The embeddings are split on the hidden axis: GPT-1's vocabulary (40,478, or 40,481 after
# fine-tuning adds 3 tokens) is divisible by no usual mesh size and JAX cannot place an unevenly
# sharded array, whereas 768 is divisible by 2, 3, 4, 6, 8, 12, 16, ... LayerNorm parameters and
# the biases added after an all-reduce are tiny and stay replicated.
#
# The fused c_attn kernel keeps the checkpoint's q|k|v column order, so its output-axis split is in
# contiguous blocks of 3·hidden/m columns: with m = 4, device 0 holds q's first 3/4, device 1 the
# rest of q and half of k, ... After `split` into q, k and v, GSPMD reshuffles the activations so
# each is sharded by heads: in the compiled forward pass of one block at m = 4 that is 7
# collective-permutes moving ~1.25·B·T·hidden values per device, next to the 2 all-reduces
# (~1.5·B·T·hidden each, ring) and 2 all-gathers the Megatron split needs anyway, i.e. roughly a
# quarter more communication per block. Correct, not optimal: a head-interleaved column order (each
# device's block = q|k|v of its own heads) would avoid it, but would change the weight layout that
# the original checkpoint, Hugging Face files and our presets share, or need three kernels.
LAYOUT_RULES = (
    (r"embeddings/token_embedding/embeddings", (None, MODEL_AXIS)),  # [vocab, hidden]
    (r"embeddings/position_embeddings", (None, MODEL_AXIS)),  # [context, hidden]
    (r"h_\d+/attn/c_attn/kernel", (None, MODEL_AXIS)),  # [hidden, 3·hidden]
    (r"h_\d+/attn/c_attn/bias", (MODEL_AXIS,)),  # [3·hidden]
    (r"h_\d+/attn/c_proj/kernel", (MODEL_AXIS, None)),  # [hidden, hidden]
    (r"h_\d+/c_fc/kernel", (None, MODEL_AXIS)),  # [hidden, intermediate]
    (r"h_\d+/c_fc/bias", (MODEL_AXIS,)),  # [intermediate]
    (r"h_\d+/c_proj/kernel", (MODEL_AXIS, None)),  # [intermediate, hidden]
)
_PREFIX = r"(?:.*/)?"
# Backbone weights of rank ≥ 2 live under these names; every one of them must match a rule, so a
# renamed layer cannot silently fall back to replication.
_BACKBONE_WEIGHT = re.compile(_PREFIX + r"(?:embeddings|h_\d+)/.*")


def parse_mesh(spec):
    """Parses a mesh shape: `"2x4"` → `(2, 4)` (data × model), `"8"` → `(8,)`.

    Example:
    ```python
    assert parse_mesh("2x4") == (2, 4)
    ```
    """
    if isinstance(spec, (tuple, list)):
        dims = tuple(spec)
    else:
        text = str(spec).strip().lower()
        if not re.fullmatch(r"\d+(x\d+)?", text):
            raise ValueError(
                f"Invalid mesh {spec!r}: expected DATAxMODEL such as '2x4', or one number such "
                "as '8' for data parallelism."
            )
        dims = tuple(int(d) for d in text.split("x"))
    if not 1 <= len(dims) <= 2 or any(not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(
            f"Invalid mesh {spec!r}: GPT-1 uses a 1-D (data) or 2-D (data × model) mesh of "
            "positive sizes, e.g. '8' or '2x4'."
        )
    return dims


def gpt1_layout_map(device_mesh, rules=LAYOUT_RULES):
    """A `keras.distribution.LayoutMap` sharding GPT-1's weights over the mesh's `model` axis.

    `rules` are `(path_regex, axes)` pairs (default `LAYOUT_RULES`); a path prefix is allowed.
    Unmatched variables are replicated (LayerNorms, biases after an all-reduce, task heads).

    Example:
    ```python
    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"))
    layout_map = gpt1_layout_map(mesh)
    layout_map["h_0/c_fc/kernel"].axes     # (None, "model")
    ```
    """
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for pattern, axes in rules:
        layout_map[_PREFIX + pattern] = tuple(axes)
    return layout_map


def check_model_config(config, model_axis_size):
    """Raises `ValueError` if GPT-1 dimensions do not divide over `model_axis_size` devices.

    JAX can only place evenly sharded arrays (hidden and intermediate widths); whole heads per
    device keep the attention itself local once q/k/v are resharded.
    """
    if model_axis_size <= 1 or not config:
        return
    problems = [
        f"{name}={config[name]}"
        for name in ("hidden_dim", "num_heads", "intermediate_dim")
        if name in config and int(config[name]) % model_axis_size
    ]
    if problems:
        raise ValueError(
            f"Model parallelism over a model axis of {model_axis_size} devices needs hidden_dim, "
            f"num_heads and intermediate_dim divisible by {model_axis_size}; got "
            f"{', '.join(problems)}. Choose a mesh whose second size divides them (GPT-1's "
            "12 heads: 1, 2, 3, 4, 6 or 12)."
        )


def _largest_model_axis(device_count, config):
    for size in range(device_count, 0, -1):
        if device_count % size:
            continue
        try:
            check_model_config(config, size)
        except ValueError:
            continue
        return size
    return 1


class GPT1ModelParallel(keras.distribution.ModelParallel):
    """`ModelParallel` with two checks as each variable is created: a backbone weight matrix that
    matches no layout rule is an error (Keras would silently replicate it), and so is a sharded
    dimension that does not divide evenly (JAX would fail deep inside `device_put`)."""

    def get_variable_layout(self, variable):
        if (
            getattr(variable, "_layout", None) is None
            and len(variable.shape) >= 2
            and _BACKBONE_WEIGHT.fullmatch(variable.path)
            and self._layout_map[variable.path] is None
        ):
            raise ValueError(
                f"GPT-1 weight {variable.path!r} {tuple(variable.shape)} matches no layout rule, "
                "so it would be silently replicated; add a rule for it (see "
                "keras_gpt1.distribution.LAYOUT_RULES)."
            )
        layout = super().get_variable_layout(variable)
        mesh = self.device_mesh
        for dim, axis in zip(variable.shape, layout.axes):
            if axis is None:
                continue
            size = mesh.shape[mesh.axis_names.index(axis)]
            if dim % size:
                raise ValueError(
                    f"Cannot shard variable {variable.path!r} of shape {tuple(variable.shape)} "
                    f"over mesh axis {axis!r} of {size} devices: {dim} is not divisible by "
                    f"{size}. Pick a mesh whose model size divides the model's dimensions."
                )
        return layout


# === The distribution context ===
