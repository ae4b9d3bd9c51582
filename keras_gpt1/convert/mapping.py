"""The one table between GPT-1 checkpoint tensors and `GPT1Backbone` variables.

Every converter speaks in *weights*: a dict from a canonical tensor name to a NumPy array. The
canonical names are those of the Hugging Face base model (`OpenAIGPTModel`, no `transformer.`
prefix) and the arrays have its shapes, which are also Keras' shapes: `Conv1D` stores `[in, out]`
like a `Dense` kernel, so no tensor is ever transposed. The original release differs only by a
leading axis of 1 on the three kinds of projection matrices (`[1, in, out]`, a width-1 conv); its
converter adds or drops that axis.

`WEIGHT_TABLE` is listed in the original release's order (positions, tokens, then 12 tensors per
block), which is also the order of `params_shapes.json`.
"""

import keras
import numpy as np

# Per block: (canonical suffix, Keras variable suffix), in the original release's order.
BLOCK_TABLE = (
    ("attn.c_attn.weight", "attn/c_attn/kernel"),
    ("attn.c_attn.bias", "attn/c_attn/bias"),
    ("attn.c_proj.weight", "attn/c_proj/kernel"),
    ("attn.c_proj.bias", "attn/c_proj/bias"),
    ("ln_1.weight", "ln_1/gamma"),
    ("ln_1.bias", "ln_1/beta"),
    ("mlp.c_fc.weight", "c_fc/kernel"),
    ("mlp.c_fc.bias", "c_fc/bias"),
    ("mlp.c_proj.weight", "c_proj/kernel"),
    ("mlp.c_proj.bias", "c_proj/bias"),
    ("ln_2.weight", "ln_2/gamma"),
    ("ln_2.bias", "ln_2/beta"),
)
POSITIONS = "positions_embed.weight"
TOKENS = "tokens_embed.weight"
# The projection matrices: `[in, out]` here, `[1, in, out]` in the original release.
PROJECTION_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def weight_table(num_layers):
    """`[(canonical name, Keras variable path), ...]` in the original release's order.

    Example:
    ```python
    weight_table(12)[:3]
    # [('positions_embed.weight', 'embeddings/position_embeddings'),
    #  ('tokens_embed.weight', 'embeddings/token_embedding/embeddings'),
    #  ('h.0.attn.c_attn.weight', 'h_0/attn/c_attn/kernel')]
    ```
    """
    table = [
        (POSITIONS, "embeddings/position_embeddings"),
        (TOKENS, "embeddings/token_embedding/embeddings"),
    ]
    for i in range(num_layers):
        table += [(f"h.{i}.{name}", f"h_{i}/{path}") for name, path in BLOCK_TABLE]
    return table


def expected_shapes(config):
    """Canonical name → shape for a backbone config (a `GPT1Backbone.get_config()`-like dict)."""
    d, f = config["hidden_dim"], config["intermediate_dim"]
    block = {
        "attn.c_attn.weight": (d, 3 * d),
        "attn.c_attn.bias": (3 * d,),
        "attn.c_proj.weight": (d, d),
        "attn.c_proj.bias": (d,),
        "ln_1.weight": (d,),
        "ln_1.bias": (d,),
        "mlp.c_fc.weight": (d, f),
        "mlp.c_fc.bias": (f,),
        "mlp.c_proj.weight": (f, d),
        "mlp.c_proj.bias": (d,),
        "ln_2.weight": (d,),
        "ln_2.bias": (d,),
    }
    shapes = {
        POSITIONS: (config["max_sequence_length"], d),
        TOKENS: (config["vocabulary_size"], d),
    }
    for i in range(config["num_layers"]):
        shapes.update({f"h.{i}.{name}": shape for name, shape in block.items()})
    return shapes


def is_projection(name):
    """True for the matrices stored `[1, in, out]` in the original release."""
    return name.endswith(PROJECTION_SUFFIXES)


def _shape(shape):
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def check_weights(weights, expected, source="checkpoint", display=None):
    """Raises one `ValueError` listing every missing, unexpected or mis-shaped tensor.

    `weights` maps names to arrays (or anything with `.shape`), `expected` names to shapes;
    `display(name)` gives the name as the user's file spells it. Each mis-shaped tensor is reported
    with both shapes, e.g. `h.0.mlp.c_fc.weight: checkpoint has [32, 100], model expects [32, 128]`.
    """
    display = display or (lambda name: name)
    problems = []
    for name, shape in expected.items():
        if name not in weights:
            problems.append(f"missing tensor {display(name)} (expected shape {_shape(shape)})")
        elif tuple(weights[name].shape) != tuple(shape):
            problems.append(
                f"tensor {display(name)}: {source} has shape {_shape(weights[name].shape)}, "
                f"the model expects {_shape(shape)}"
            )
    for name in weights:
        if name not in expected:
            problems.append(
                f"unexpected tensor {display(name)} (shape {_shape(weights[name].shape)}): "
                "not part of a GPT-1 language model"
            )
    if problems:
        shown = problems[:20]
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"The {source} does not match the GPT-1 architecture:\n  " + "\n  ".join(shown) + more)


def backbone_to_weights(backbone):
    """A `GPT1Backbone`'s variables as canonical weights (float32 NumPy arrays, HF shapes).

    Example:
    ```python
    weights = backbone_to_weights(GPT1Backbone.from_preset("gpt1_tiny"))
    weights["h.0.attn.c_attn.weight"].shape   # (64, 192)
    ```
    """
    return {
        name: keras.ops.convert_to_numpy(variable).astype("float32")
        for name, variable in backbone_variables(backbone).items()
    }


def backbone_variables(backbone):
    """`{canonical name: variable}` for a `GPT1Backbone`, in the table's order."""
    variables = {v.path: v for v in backbone.weights}
    return {name: variables[path] for name, path in weight_table(backbone.num_layers)}


def weights_to_backbone(weights, backbone, source="checkpoint", display=None):
    """Assigns canonical weights to a `GPT1Backbone`, after checking every name and shape.

    Raises `ValueError` naming each missing, unexpected or mis-shaped tensor (both shapes) before
    anything is assigned, so a failed check leaves the backbone untouched. The arrays may be
    `LazyTensor`s (see `lazy.py`): each is read, assigned and dropped in turn, so no more than one
    tensor is held beside the model.

    Example:
    ```python
    weights_to_backbone(backbone_to_weights(trained), fresh_backbone)
    ```
    """
    config = backbone.get_config()
    check_weights(weights, expected_shapes(config), source, display)
    variables = {v.path: v for v in backbone.weights}
    for name, path in weight_table(backbone.num_layers):
        # `assign` casts to the variable's dtype (e.g. bfloat16) itself.
        variables[path].assign(np.asarray(weights[name], dtype="float32"))
    return backbone
