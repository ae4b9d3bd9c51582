"""The original release's checkpoint layout (`openai/finetune-transformer-lm`) ↔ keras_gpt1 presets.

That directory holds `params_shapes.json` (one shape per tensor, 146 for the 117M model) and
`params_0.npy … params_9.npy`: the tensors flattened, concatenated in that order and cut into ten
pieces. Reading concatenates the pieces, splits at the cumulative sizes and reshapes. The order is
positions `[n_ctx, d]`, tokens `[vocab, d]`, then per block 12 tensors (see `mapping.BLOCK_TABLE`);
projection matrices are `[1, in, out]`. The vocabulary files are `encoder_bpe_40000.json`
(token → id) and `vocab_40000.bpe` (merges).

The layout stores no hyper-parameters: sizes come from the shapes, but the number of heads cannot,
so it defaults to `hidden_dim // 64` (GPT-1's head size; 12 for the 117M model).
"""

import functools
import json
import os
import tempfile

import numpy as np

from keras_gpt1.convert import common
from keras_gpt1.convert.lazy import LazyTensor
from keras_gpt1.convert.mapping import (
    POSITIONS,
    TOKENS,
    backbone_to_weights,
    check_weights,
    expected_shapes,
    is_projection,
    weight_table,
)
from keras_gpt1.utils.files import atomic_path, atomic_write_text, read_json, require_file

PARAMS_SHAPES_FILE = "params_shapes.json"
PARAMS_FILE = "params_{}.npy"
NUM_SHARDS = 10
ENCODER_FILE = "encoder_bpe_40000.json"
BPE_FILE = "vocab_40000.bpe"
HEAD_DIM = 64
TENSORS_PER_BLOCK = 12


class _Shaped:
    """A shape standing in for a tensor, to check a layout before reading any data."""

    def __init__(self, shape):
        self.shape = tuple(shape)


def openai_shape(name, shape):
    """A canonical tensor's shape in the original layout (`[1, in, out]` for projections)."""
    return (1, *shape) if is_projection(name) else tuple(shape)


def _read_shapes(path):
    shapes = read_json(path, "original checkpoint shapes")
    if not isinstance(shapes, list) or not all(
        isinstance(s, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in s)
        for s in shapes
    ):
        raise ValueError(f"Corrupt {path!r}: expected a list of shapes (lists of non-negative integers).")
    count = len(shapes)
    if count < 2 + TENSORS_PER_BLOCK or (count - 2) % TENSORS_PER_BLOCK:
        raise ValueError(
            f"{path!r} lists {count} tensors; a GPT-1 checkpoint has 2 + {TENSORS_PER_BLOCK} × "
            f"num_layers (146 for 12 layers): a tensor is missing or extra."
        )
    return [tuple(s) for s in shapes]


def _infer_config(shapes, path, num_heads, dropout):
    num_layers = (len(shapes) - 2) // TENSORS_PER_BLOCK
    positions, tokens, c_fc = shapes[0], shapes[1], shapes[2 + 6]
    if len(positions) != 2 or len(tokens) != 2 or len(c_fc) != 3:
        raise ValueError(
            f"{path!r}: entries 0, 1 and 8 must be the positions [n_ctx, d], the tokens [vocab, d] "
            f"and the first c_fc weight [1, d, d_ff]; got {list(positions)}, {list(tokens)}, {list(c_fc)}."
        )
    hidden_dim = positions[1]
    if num_heads is None:
        if hidden_dim < HEAD_DIM or hidden_dim % HEAD_DIM:
            raise ValueError(
                f"The original layout stores no head count and hidden size {hidden_dim} is not a "
                f"multiple of GPT-1's head size {HEAD_DIM}: pass `num_heads`."
            )
        num_heads = hidden_dim // HEAD_DIM
    if hidden_dim % num_heads:
        raise ValueError(f"num_heads ({num_heads}) must divide the hidden size ({hidden_dim}).")
    return {
        "vocabulary_size": tokens[0],
        "num_layers": num_layers,
        "num_heads": int(num_heads),
        "hidden_dim": hidden_dim,
        "intermediate_dim": c_fc[2],
        "max_sequence_length": positions[0],
        "dropout": float(dropout),
    }


def _shard_sizes(openai_dir, total, shapes_path):
    """`[(path, number of values), ...]` of the ten shards, checked against the shapes' total."""
    shards = []
    for i in range(NUM_SHARDS):
        path = require_file(os.path.join(openai_dir, PARAMS_FILE.format(i)), "original checkpoint shard")
        try:
            # Memory-mapped to read the header only: no data is touched.
            shards.append((path, np.load(path, mmap_mode="r", allow_pickle=False).size))
        except (OSError, ValueError) as e:
            raise ValueError(f"Could not read {path!r}: {e}") from e
    held = sum(size for _, size in shards)
    if held != total:
        raise ValueError(
            f"{shapes_path!r} describes {total:,} values but "
            f"{PARAMS_FILE.format(0)} … {PARAMS_FILE.format(NUM_SHARDS - 1)} hold {held:,}: "
            "the shapes file does not belong to these shards."
        )
    return shards


def _read_values(shards, begin, end, shape, projection):
    """Values `begin:end` of the flattened checkpoint (they may span shards), as float32 `shape`.

    Each shard is mapped only while its piece is copied out, so no more than one tensor's data
    stays in memory."""
    out = np.empty(end - begin, dtype="float32")
    offset = 0
    for path, size in shards:
        low, high = max(begin, offset), min(end, offset + size)
        if low < high:
            piece = np.load(path, mmap_mode="r", allow_pickle=False).reshape(-1)
            out[low - begin : high - begin] = piece[low - offset : high - offset]
            del piece
        offset += size
    out = out.reshape(shape)
    return out[0] if projection else out


def read_openai_checkpoint(openai_dir, num_heads=None, dropout=0.1):
    """`(config, weights)` from an original-layout directory: a `GPT1Backbone` config and canonical
    weights (`mapping.py` names, `[in, out]` matrices) as `LazyTensor`s, each read from the shards
    when converted with `np.asarray`.

    Every shape is checked against the architecture the shapes imply before any data is read;
    errors name the tensor and both shapes.

    Example:
    ```python
    config, weights = read_openai_checkpoint("finetune-transformer-lm/model")
    config["num_layers"]  # 12
    ```
    """
    openai_dir = os.fspath(openai_dir)
    if not os.path.isdir(openai_dir):
        raise FileNotFoundError(f"Original checkpoint directory {openai_dir!r} does not exist.")
    shapes_path = os.path.join(openai_dir, PARAMS_SHAPES_FILE)
    shapes = _read_shapes(shapes_path)
    config = _infer_config(shapes, shapes_path, num_heads, dropout)
    table = weight_table(config["num_layers"])
    names = [name for name, _ in table]
    expected = {name: openai_shape(name, shape) for name, shape in expected_shapes(config).items()}
    found = {name: _Shaped(shape) for name, shape in zip(names, shapes)}
    check_weights(
        found,
        expected,
        source=f"original checkpoint {shapes_path!r}",
        display=lambda name: f"#{names.index(name)} ({name})",
    )
    sizes = [int(np.prod(shape)) for shape in shapes]
    shards = _shard_sizes(openai_dir, sum(sizes), shapes_path)
    weights = {}
    begin = 0
    for index, (name, shape, size) in enumerate(zip(names, shapes, sizes)):
        projection = is_projection(name)
        read = functools.partial(_read_values, shards, begin, begin + size, shape, projection)
        weights[name] = LazyTensor(shape[1:] if projection else shape, read, f"#{index} ({name}) in {openai_dir!r}")
        begin += size
    return config, weights


def load_openai_checkpoint(openai_dir, num_heads=None, dropout=0.1):
    """`(backbone, tokenizer)` from an original-layout directory; `tokenizer` is None without
    `encoder_bpe_40000.json` + `vocab_40000.bpe`.

    Example:
    ```python
    backbone, tokenizer = load_openai_checkpoint("finetune-transformer-lm/model")
    ```
    """
    config, weights = read_openai_checkpoint(openai_dir, num_heads, dropout)
    source = f"original checkpoint {os.fspath(openai_dir)!r}"
    backbone = common.build_backbone(config, weights, source)
    from keras_gpt1.tokenizers.vocab_files import read_original_vocabulary

    files = common.read_vocabulary_files(openai_dir, ENCODER_FILE, BPE_FILE, read_original_vocabulary)
    tokenizer = None
    if files is not None:
        # The original pipeline ran `text_standardize` first: keep its character replacements.
        tokenizer = common.build_tokenizer(
            *files, config["vocabulary_size"], repr(os.fspath(openai_dir)), standardize="original"
        )
    return backbone, tokenizer


@common.holding_output_folder("preset_dir")
def convert_openai_to_preset(openai_dir, preset_dir, num_heads=None, dropout=0.1, overwrite=False):
    """Converts an original-release checkpoint directory into a keras_gpt1 preset.

    Returns `(backbone, tokenizer)` (`tokenizer` None without the vocabulary files). `num_heads`
    defaults to `hidden_dim // 64` (12 for GPT-1). An existing preset in `preset_dir` is
    replaced only with `overwrite=True`.

    Example:
    ```python
    convert_openai_to_preset("finetune-transformer-lm/model", "presets/gpt1")
    lm = GPT1CausalLM.from_preset("presets/gpt1")
    ```
    """
    common.check_output(openai_dir, preset_dir, overwrite)
    backbone, tokenizer = load_openai_checkpoint(openai_dir, num_heads, dropout)
    common.save_preset(backbone, tokenizer, preset_dir)
    return backbone, tokenizer


def write_openai_checkpoint(weights, openai_dir, vocabulary=None, merges=None):
    """Writes a checkpoint in the original release's layout: `params_shapes.json`, ten
    `params_{i}.npy` shards, and `encoder_bpe_40000.json` + `vocab_40000.bpe` when `vocabulary`
    (token → id) and `merges` (`"a b"` strings or `(a, b)` pairs) are given.

    `weights` is a `GPT1Backbone` or canonical weights (see `mapping.py`). Useful to test the
    reader, or to hand a model to code written for the original release.

    Example:
    ```python
    write_openai_checkpoint(GPT1Backbone.from_preset("gpt1_tiny"), "tiny_original/")
    config, weights = read_openai_checkpoint("tiny_original/", num_heads=2)
    ```
    """
    if hasattr(weights, "get_config") and hasattr(weights, "weights"):
        weights = backbone_to_weights(weights)
    for name in (POSITIONS, TOKENS, "h.0.mlp.c_fc.weight"):
        if name not in weights:
            raise ValueError(f"`weights` has no tensor {name}: not GPT-1 canonical weights.")
    num_layers = sum(1 for name in weights if name.endswith(".attn.c_attn.weight"))
    config = {
        "vocabulary_size": weights[TOKENS].shape[0],
        "num_layers": num_layers,
        "hidden_dim": weights[POSITIONS].shape[1],
        "intermediate_dim": weights["h.0.mlp.c_fc.weight"].shape[1],
        "max_sequence_length": weights[POSITIONS].shape[0],
    }
    check_weights(weights, expected_shapes(config), source="`weights`")
    if (vocabulary is None) != (merges is None):
        raise ValueError("Pass both `vocabulary` and `merges`, or neither.")

    names = [name for name, _ in weight_table(num_layers)]
    shapes = [list(openai_shape(name, weights[name].shape)) for name in names]
    flat = np.concatenate([np.asarray(weights[name], dtype="float32").reshape(-1) for name in names])
    os.makedirs(openai_dir, exist_ok=True)
    for i, piece in enumerate(np.array_split(flat, NUM_SHARDS)):
        with atomic_path(os.path.join(openai_dir, PARAMS_FILE.format(i))) as tmp:
            np.save(tmp, piece)
    if vocabulary is not None:
        from keras_gpt1.tokenizers.vocab_files import write_hf_vocabulary

        # The same two files under the original names (`vocab_40000.bpe` is laid out as merges.txt).
        with tempfile.TemporaryDirectory(dir=openai_dir) as tmp:
            for written, name in zip(write_hf_vocabulary(tmp, vocabulary, merges), (ENCODER_FILE, BPE_FILE)):
                os.replace(written, os.path.join(openai_dir, name))
    # Written last: its presence marks the checkpoint complete.
    atomic_write_text(os.path.join(openai_dir, PARAMS_SHAPES_FILE), json.dumps(shapes) + "\n")


__all__ = [
    "read_openai_checkpoint",
    "load_openai_checkpoint",
    "convert_openai_to_preset",
    "write_openai_checkpoint",
]
