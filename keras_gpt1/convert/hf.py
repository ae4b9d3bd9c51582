"""Hugging Face `transformers` checkpoints (`OpenAIGPTLMHeadModel`) ↔ keras_gpt1 presets.

A Hugging Face directory holds `config.json`, the weights (`model.safetensors`, sharded
`model.safetensors.index.json`, or the older `pytorch_model.bin`), and optionally the tokenizer
files `vocab.json` + `merges.txt`. Safetensors are read with NumPy alone; only
`pytorch_model.bin` needs PyTorch, imported when such a file is met.

The tensor names and shapes map one-to-one onto `GPT1Backbone` (see `mapping.py`): the port's
`Conv1D` stores `[in, out]` like a Keras `Dense` kernel, and `lm_head.weight` is the tied token
embedding, so it is checked and dropped on the way in and left out on the way out.
"""

import functools
import json
import math
import os
import re
import struct
import warnings

import keras
import numpy as np

from keras_gpt1 import presets
from keras_gpt1.convert import common
from keras_gpt1.convert.lazy import LazyTensor
from keras_gpt1.convert.mapping import TOKENS, backbone_variables
from keras_gpt1.utils import artifacts
from keras_gpt1.utils.files import atomic_write_json, disk_full_reported, read_json, replace_in_dir, require_file
from keras_gpt1.utils.locks import output_lock

HF_CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
PYTORCH_FILE = "pytorch_model.bin"
PYTORCH_INDEX_FILE = "pytorch_model.bin.index.json"
TOKENIZER_JSON_FILE = "tokenizer.json"
# What `transformers` may read from a model directory (glob patterns): an export replaces all
# of them, and leaves any other file (a README, .gitattributes) in place.
HF_ENTRIES = (
    HF_CONFIG_FILE,
    SAFETENSORS_FILE,
    SAFETENSORS_INDEX_FILE,
    "model-*.safetensors",
    PYTORCH_FILE,
    PYTORCH_INDEX_FILE,
    "pytorch_model-*.bin",
    "generation_config.json",
    presets.VOCAB_FILE,
    presets.MERGES_FILE,
    TOKENIZER_JSON_FILE,
    "tokenizer_config.json",
    "special_tokens_map.json",
)
PREFIX = "transformer."
LM_HEAD = "lm_head.weight"
# Non-trainable buffers some checkpoints carry: the causal mask and position ids.
_BUFFERS = re.compile(r"^(h\.\d+\.attn\.(bias|masked_bias)|position_ids)$")
# GPT-1's activation: GELU, tanh approximation. The port calls it "gelu" (mapped to `gelu_new`).
_GELU_NAMES = ("gelu", "gelu_new")
# `OpenAIGPTConfig` defaults, applied like `transformers` does to keys a config.json leaves out.
_HF_DEFAULTS = {
    "vocab_size": 40478,
    "n_positions": 512,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "afn": "gelu",
    "resid_pdrop": 0.1,
    "embd_pdrop": 0.1,
    "attn_pdrop": 0.1,
    "layer_norm_epsilon": 1e-5,
}


# === Configs ===


def backbone_config_from_hf_config(hf_config, path=HF_CONFIG_FILE):
    """The `GPT1Backbone` config for a Hugging Face `OpenAIGPTConfig` dict.

    Rejects what GPT1Backbone cannot represent (another activation, another LayerNorm epsilon);
    differing dropout rates collapse to `resid_pdrop`, with a warning.

    Example:
    ```python
    backbone_config_from_hf_config({"n_embd": 768, "n_layer": 12, "n_head": 12})["hidden_dim"]  # 768
    ```
    """
    if not isinstance(hf_config, dict):
        raise ValueError(f"Corrupt Hugging Face config {path!r}: expected a JSON object.")
    model_type = hf_config.get("model_type", "openai-gpt")
    if model_type != "openai-gpt":
        raise ValueError(
            f"{path!r} describes a {model_type!r} model, not GPT-1 ('openai-gpt'); "
            "only OpenAIGPTLMHeadModel / OpenAIGPTModel checkpoints can be converted."
        )
    config = {**_HF_DEFAULTS, **{k: v for k, v in hf_config.items() if v is not None}}
    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{path!r}: {key} must be a positive integer, got {value!r}.")
    if config["afn"] not in _GELU_NAMES:
        raise ValueError(
            f"{path!r}: afn {config['afn']!r} is not supported: GPT-1 uses GELU with the tanh "
            "approximation ('gelu' in the Hugging Face port)."
        )
    epsilon = config["layer_norm_epsilon"]
    if not isinstance(epsilon, (int, float)) or not math.isclose(epsilon, 1e-5, rel_tol=1e-6):
        raise ValueError(
            f"{path!r}: layer_norm_epsilon {epsilon!r} is not supported: GPT1Backbone's LayerNorm uses GPT-1's 1e-5."
        )
    if config["n_embd"] % config["n_head"]:
        raise ValueError(f"{path!r}: n_embd ({config['n_embd']}) must be divisible by n_head ({config['n_head']}).")
    rates = {key: config[key] for key in ("embd_pdrop", "attn_pdrop", "resid_pdrop")}
    if len(set(rates.values())) > 1:
        warnings.warn(
            f"{path!r} has different dropout rates {rates}; GPT1Backbone has one rate: "
            f"using resid_pdrop = {rates['resid_pdrop']}.",
            stacklevel=2,
        )
    # Configs from before transformers 2 count fine-tuning tokens apart, in `n_special`.
    n_special = config.get("n_special") or 0
    if isinstance(n_special, bool) or not isinstance(n_special, int) or n_special < 0:
        raise ValueError(f"{path!r}: n_special must be a non-negative integer, got {n_special!r}.")
    return {
        "vocabulary_size": config["vocab_size"] + n_special,
        "num_layers": config["n_layer"],
        "num_heads": config["n_head"],
        "hidden_dim": config["n_embd"],
        # The port hard-codes the MLP width to 4 × n_embd.
        "intermediate_dim": 4 * config["n_embd"],
        "max_sequence_length": config["n_positions"],
        "dropout": float(rates["resid_pdrop"]),
    }


def hf_config_from_backbone_config(config):
    """The `config.json` of an `OpenAIGPTLMHeadModel` equivalent to a `GPT1Backbone` config."""
    if config["intermediate_dim"] != 4 * config["hidden_dim"]:
        raise ValueError(
            f"The Hugging Face port fixes the MLP width to 4 × hidden_dim ({4 * config['hidden_dim']}); "
            f"this model has intermediate_dim {config['intermediate_dim']} and cannot be exported."
        )
    dropout = float(config.get("dropout", 0.1))
    return {
        "architectures": ["OpenAIGPTLMHeadModel"],
        "model_type": "openai-gpt",
        "vocab_size": config["vocabulary_size"],
        "n_positions": config["max_sequence_length"],
        "n_embd": config["hidden_dim"],
        "n_layer": config["num_layers"],
        "n_head": config["num_heads"],
        "afn": "gelu",
        "resid_pdrop": dropout,
        "embd_pdrop": dropout,
        "attn_pdrop": dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "tie_word_embeddings": True,
        "dtype": "float32",
    }


# === Reading weights ===


# safetensors dtype names → NumPy dtypes (little-endian, as the format stores them); bfloat16,
# which NumPy lacks, is read as 16-bit words and widened to float32.
_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                       "I8": "i1", "U8": "u1", "BOOL": "?", "BF16": "<u2"}  # fmt: skip


def _read_tensor_bytes(path, key, begin, end, dtype, shape):
    # A plain read into a fresh array, not a memory map: the pages read stay in the page cache
    # and do not pile up in the process as a second copy of the checkpoint.
    count = (end - begin) // np.dtype(dtype).itemsize
    try:
        with open(path, "rb") as f:
            f.seek(begin)
            array = np.fromfile(f, dtype=dtype, count=count)
    except OSError as e:
        raise ValueError(f"Could not read tensor {key} from safetensors file {path!r}: {e}") from e
    if array.size != count:
        raise ValueError(f"Safetensors file {path!r} is truncated: it ends inside tensor {key}.")
    if dtype == "<u2":  # bfloat16: the upper half of a float32
        widened = array.astype(np.uint32)
        array = np.left_shift(widened, 16, out=widened).view(np.float32)
    return array.reshape(shape)


def read_safetensors(path):
    """The tensors of a `.safetensors` file as `LazyTensor`s, each read (as a NumPy array,
    bfloat16 widened to float32) only when converted with `np.asarray`."""
    from safetensors import SafetensorError, safe_open

    require_file(path, "safetensors weights")
    try:
        # safetensors validates the header (offsets within the file, shapes, dtypes); the data
        # offsets come from the same header.
        with safe_open(path, framework="np") as f:
            dtypes = {key: f.get_slice(key).get_dtype() for key in f.keys()}
        with open(path, "rb") as f:
            (header_size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_size))
        tensors = {}
        for key, dtype in dtypes.items():
            if dtype not in _SAFETENSORS_DTYPES:
                raise ValueError(f"tensor {key} has dtype {dtype}, which this reader does not handle")
            shape, (begin, end) = header[key]["shape"], header[key]["data_offsets"]
            start = 8 + header_size
            read = functools.partial(
                _read_tensor_bytes, path, key, start + begin, start + end, _SAFETENSORS_DTYPES[dtype], shape
            )
            tensors[key] = LazyTensor(shape, read, f"tensor {key} in {path!r}")
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        raise ValueError(f"Could not read safetensors file {path!r}: {e}") from e
    return tensors


def _torch_to_numpy(tensor):
    import torch

    # A copy of its own (float32 for floating point): the tensor lives in the mapped file.
    dtype = torch.float32 if tensor.is_floating_point() else tensor.dtype
    return tensor.detach().to(dtype=dtype, copy=True).numpy()


def read_pytorch_bin(path):
    """The tensors of a `pytorch_model.bin` (needs PyTorch) as `LazyTensor`s, read (as float32
    or integer NumPy arrays) only when converted with `np.asarray`."""
    require_file(path, "PyTorch weights")
    try:
        import torch
    except ImportError:
        raise ValueError(
            f"{path!r} is a PyTorch pickle: reading it needs PyTorch (`pip install torch`). "
            "Alternatively save the model with safetensors (`save_pretrained` does by default)."
        ) from None
    try:
        try:
            # Memory-mapped: only the tensor being converted is read.
            state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            # The legacy (pre-zip) format cannot be mapped: read it whole.
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or unsafe pickles.
        raise ValueError(f"Could not read PyTorch weights {path!r}: {e}") from e
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path!r} does not hold a state dict (a mapping of names to tensors).")
    return {
        key: LazyTensor(value.shape, functools.partial(_torch_to_numpy, value), f"tensor {key} in {path!r}")
        for key, value in state_dict.items()
    }


def _read_sharded(index_path, read):
    index = read_json(index_path, "weights index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise ValueError(f"Corrupt weights index {index_path!r}: no 'weight_map' object.")
    directory = os.path.dirname(index_path)
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        tensors.update(read(os.path.join(directory, shard)))
    return tensors


def read_hf_state_dict(hf_dir):
    """`(state_dict, weights_path)`: the raw tensors of a Hugging Face directory.

    Looks for, in order, `model.safetensors`, `model.safetensors.index.json`, `pytorch_model.bin`
    and `pytorch_model.bin.index.json` (the order `transformers` prefers).
    """
    candidates = (
        (SAFETENSORS_FILE, read_safetensors),
        (SAFETENSORS_INDEX_FILE, lambda p: _read_sharded(p, read_safetensors)),
        (PYTORCH_FILE, read_pytorch_bin),
        (PYTORCH_INDEX_FILE, lambda p: _read_sharded(p, read_pytorch_bin)),
    )
    for name, read in candidates:
        path = os.path.join(hf_dir, name)
        if os.path.isfile(path):
            return read(path), path
    raise FileNotFoundError(
        f"No weights in {os.fspath(hf_dir)!r}: expected one of " + ", ".join(name for name, _ in candidates) + "."
    )


def hf_state_dict_to_weights(state_dict, source="checkpoint"):
    """`(weights, display)`: canonical weights from a Hugging Face state dict.

    Strips the `transformer.` prefix (present in `OpenAIGPTLMHeadModel` files, absent in
    `OpenAIGPTModel` ones), drops the causal-mask buffers, and checks that `lm_head.weight`, if
    saved, equals the token embedding it is tied to. `display(name)` spells a canonical name as
    the file does, for error messages.

    Example:
    ```python
    from safetensors.numpy import load_file
    weights, _ = hf_state_dict_to_weights(load_file("hf_dir/model.safetensors"))
    ```
    """
    weights, spelled = {}, {}
    prefixed = any(key.startswith(PREFIX) for key in state_dict)
    for key, value in state_dict.items():
        name = key[len(PREFIX) :] if key.startswith(PREFIX) else key
        if _BUFFERS.match(name):
            continue
        if name in weights:
            raise ValueError(f"The {source} holds tensor {name} twice: as {spelled[name]} and as {key}.")
        weights[name], spelled[name] = value, key

    def display(name):
        return spelled.get(name, (PREFIX if prefixed and name != LM_HEAD else "") + name)

    lm_head = weights.pop(LM_HEAD, None)
    if lm_head is not None:
        if TOKENS not in weights:
            weights[TOKENS] = lm_head  # the tie, read the other way
        elif lm_head.shape != weights[TOKENS].shape or not np.array_equal(lm_head, weights[TOKENS]):
            raise ValueError(
                f"In the {source}, {LM_HEAD} (shape {list(lm_head.shape)}) differs from "
                f"{display(TOKENS)} (shape {list(weights[TOKENS].shape)}): GPT-1 ties its output "
                "layer to the token embedding, so an untied checkpoint cannot be converted."
            )
    return weights, display


def weights_to_hf_state_dict(weights):
    """Canonical weights → the state dict of an `OpenAIGPTLMHeadModel` (tied `lm_head` left out)."""
    return {PREFIX + name: np.ascontiguousarray(value, dtype="float32") for name, value in weights.items()}


def _read_hf_vocabulary(hf_dir):
    from keras_gpt1.tokenizers.vocab_files import check_merges, check_vocabulary, read_hf_vocabulary

    files = common.read_vocabulary_files(hf_dir, presets.VOCAB_FILE, presets.MERGES_FILE, read_hf_vocabulary)
    tokenizer_json = os.path.join(hf_dir, TOKENIZER_JSON_FILE)
    if files is not None or not os.path.isfile(tokenizer_json):
        return files
    # Only the fast tokenizer's single file: its BPE model holds the same vocabulary and merges.
    data = read_json(tokenizer_json, "tokenizer file")
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE":
        raise ValueError(f"{tokenizer_json!r} does not describe a BPE tokenizer.")
    vocabulary = model.get("vocab")
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
    check_vocabulary(vocabulary, tokenizer_json)
    check_merges(vocabulary, merges, tokenizer_json, tokenizer_json)
    return vocabulary, merges


# === Directions ===


def load_hf_checkpoint(hf_dir):
    """`(backbone, tokenizer)` from a Hugging Face directory; `tokenizer` is None without
    vocabulary files.

    Example:
    ```python
    backbone, tokenizer = load_hf_checkpoint("openai-gpt/")
    ```
    """
    hf_dir = os.fspath(hf_dir)
    if not os.path.isdir(hf_dir):
        raise FileNotFoundError(f"Hugging Face checkpoint directory {hf_dir!r} does not exist.")
    config_path = os.path.join(hf_dir, HF_CONFIG_FILE)
    config = backbone_config_from_hf_config(read_json(config_path, "Hugging Face config"), config_path)
    state_dict, weights_path = read_hf_state_dict(hf_dir)
    source = f"checkpoint {weights_path!r}"
    weights, display = hf_state_dict_to_weights(state_dict, source)
    backbone = common.build_backbone(config, weights, source, display)
    vocabulary_files = _read_hf_vocabulary(hf_dir)
    tokenizer = None
    if vocabulary_files is not None:
        tokenizer = common.build_tokenizer(*vocabulary_files, config["vocabulary_size"], repr(hf_dir))
    return backbone, tokenizer


@common.holding_output_folder("preset_dir")
def convert_hf_to_preset(hf_dir, preset_dir, overwrite=False):
    """Converts an `OpenAIGPTLMHeadModel` directory into a keras_gpt1 preset; returns the backbone.

    The tokenizer is converted too when `vocab.json` + `merges.txt` (or `tokenizer.json`) are
    there. Returns `(backbone, tokenizer)` (`tokenizer` None without vocabulary files). An existing
    preset in `preset_dir` is replaced only with `overwrite=True`.

    Example:
    ```python
    convert_hf_to_preset("openai-gpt/", "presets/gpt1")
    lm = GPT1CausalLM.from_preset("presets/gpt1")
    ```
    """
    common.check_output(hf_dir, preset_dir, overwrite)
    backbone, tokenizer = load_hf_checkpoint(hf_dir)
    common.save_preset(backbone, tokenizer, preset_dir)
    return backbone, tokenizer


def _write_safetensors(path, tensors, metadata):
    """Writes a float32 `.safetensors` file from `[(name, shape, blocks), ...]`, one tensor at a
    time: `blocks()` yields the tensor's rows (first axis) as arrays, in order. The header goes
    first, then each tensor's bytes in turn.

    `safetensors.numpy.save_file` takes every tensor at once, which would hold a second copy of
    the model while exporting; the format is simple enough to stream (an 8-byte little-endian
    header length, the JSON header padded to 8 bytes, the data), and `_check_safetensors` reads
    the result back with the safetensors library itself.
    """
    header, offset = {"__metadata__": metadata}, 0
    for name, shape, _ in tensors:
        size = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": [int(s) for s in shape], "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for name, shape, blocks in tensors:
            rows = 0
            for block in blocks():
                block = np.ascontiguousarray(block, dtype="<f4")
                if block.shape[1:] != tuple(shape[1:]):
                    raise ValueError(f"Tensor {name} has rows of {list(block.shape[1:])}, expected {list(shape)}.")
                block.tofile(f)
                rows += block.shape[0]
            if rows != shape[0]:
                raise ValueError(f"Tensor {name} has {rows} rows, expected {list(shape)}.")


def _variable_blocks(variable, block_bytes=16 * 2**20):
    """A variable's rows (first axis) as NumPy arrays of about `block_bytes` each.

    Converting a whole variable to NumPy copies it: on TensorFlow that transient copy of the
    token embedding (a quarter of GPT-1's weights) came on top of what loading the preset had
    left in TensorFlow's allocator pool. Blocks keep the transient small on every backend.
    """
    rows, row_bytes = variable.shape[0], 4 * int(np.prod(variable.shape[1:]))
    step = max(1, block_bytes // row_bytes)
    if step >= rows:  # most tensors: one block, no slicing (on JAX each slice shape compiles)
        yield keras.ops.convert_to_numpy(variable)
        return
    for start in range(0, rows, step):
        yield keras.ops.convert_to_numpy(variable[start : start + step])


def _check_safetensors(path, expected_shapes):
    """Reads a written safetensors file's header back with the safetensors library (which also
    checks that the data fills the file exactly) and compares names and shapes."""
    from safetensors import safe_open

    with safe_open(path, framework="np") as f:
        found = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    if found != expected_shapes:
        raise ValueError(f"The safetensors file written to {path!r} does not read back as written.")


def save_hf_checkpoint(backbone, hf_dir, vocabulary_files=None):
    """Writes `config.json` + `model.safetensors` (float32) that `OpenAIGPTLMHeadModel.from_pretrained`
    loads, plus `vocab.json` + `merges.txt` when `vocabulary_files = (vocabulary, merges)` is given.

    The weights are written one tensor at a time. A model already in `hf_dir` is replaced only
    once the new files are written and read back: if anything fails, the old files stay as
    they were (see `replace_in_dir`); files `transformers` does not read stay in any case.
    """
    config = hf_config_from_backbone_config(backbone.get_config())
    tensors = [
        (PREFIX + name, tuple(int(s) for s in variable.shape), functools.partial(_variable_blocks, variable))
        for name, variable in backbone_variables(backbone).items()
    ]
    needed = sum(4 * int(np.prod(shape)) for _, shape, _ in tensors)
    # Every file of the model there goes, whatever its kind (`artifacts.MODEL_ENTRIES`): none is
    # left beside the new one to mix with it.
    with (
        output_lock(hf_dir, "save_hf_checkpoint"),
        replace_in_dir(hf_dir, HF_ENTRIES + artifacts.MODEL_ENTRIES, "Hugging Face model", needed) as staging,
    ):
        weights_path = os.path.join(staging, SAFETENSORS_FILE)
        with disk_full_reported("weights", os.path.join(hf_dir, SAFETENSORS_FILE), needed):
            # `transformers` refuses safetensors files without the "format" metadata.
            _write_safetensors(weights_path, tensors, {"format": "pt"})
        if vocabulary_files is not None:
            from keras_gpt1.tokenizers.vocab_files import write_hf_vocabulary

            write_hf_vocabulary(staging, *vocabulary_files)
        atomic_write_json(os.path.join(staging, HF_CONFIG_FILE), config)
        _check_safetensors(weights_path, {name: shape for name, shape, _ in tensors})


@common.holding_output_folder("hf_dir")
def convert_preset_to_hf(preset_dir, hf_dir, overwrite=False):
    """Converts a keras_gpt1 preset into a Hugging Face `OpenAIGPTLMHeadModel` directory.

    Task heads are not exported (the port has no equivalent); the tokenizer is, as `vocab.json`
    + `merges.txt`, when the preset has one. Returns the backbone. An existing model in `hf_dir`
    is replaced only with `overwrite=True`.

    Example:
    ```python
    convert_preset_to_hf("presets/gpt1", "hf_gpt1/")
    model = transformers.OpenAIGPTLMHeadModel.from_pretrained("hf_gpt1/")
    ```
    """
    from keras_gpt1.models import GPT1Backbone, preset_io

    preset_dir = os.fspath(preset_dir)
    if not os.path.isdir(preset_dir):
        raise FileNotFoundError(f"Preset directory {preset_dir!r} does not exist.")
    # An architecture the port cannot hold fails before anything is built or written.
    hf_config_from_backbone_config(preset_io.load_backbone_config(preset_dir))
    common.check_output(preset_dir, hf_dir, overwrite)
    backbone = GPT1Backbone.from_preset(preset_dir)
    paths = common.preset_vocabulary_files(preset_dir)
    vocabulary_files = None
    if paths is not None:
        from keras_gpt1.tokenizers.vocab_files import read_hf_vocabulary

        vocabulary_files = read_hf_vocabulary(*paths)
    save_hf_checkpoint(backbone, hf_dir, vocabulary_files)
    return backbone


__all__ = [
    "backbone_config_from_hf_config",
    "hf_config_from_backbone_config",
    "read_hf_state_dict",
    "hf_state_dict_to_weights",
    "weights_to_hf_state_dict",
    "load_hf_checkpoint",
    "convert_hf_to_preset",
    "save_hf_checkpoint",
    "convert_preset_to_hf",
]
