"""Autoregressive generation for `GPT1CausalLM`: prefill once, then one-token steps over a KV cache.

How a batch of prompts of different lengths is decoded (every row's first token sits at
position 0, as GPT-1's absolute positions require):

1. Prompts are right-padded into a `[batch, max_length]` buffer. `max_length` is rounded up to a
   bucket of 64 (capped at the context), so shapes are static and compiled loops are reused.
2. Prefill runs the first `p = min(prompt lengths)` positions (rounded up to a bucket of 16; the
   extra positions write cache entries that are overwritten before any query can read them).
3. Each step feeds the token at position `i` (writing its keys/values at cache index `i`) and
   picks the token at `i + 1`. A row still inside its prompt keeps its prompt token instead of the
   sampled one, so all rows advance in lockstep with no padding inside the cache.
4. A row stops at a stop token or after `max_new_tokens` new tokens; the loop ends when all rows
   have stopped.

Per backend:
- JAX: prefill and the whole `lax.while_loop` in one `jax.jit` (weights passed as arguments).
- TensorFlow: the same loop as a `tf.while_loop` inside `tf.function(jit_compile=True)` (XLA).
- PyTorch: an eager loop over a functional decode step that reads the model's own weight tensors
  (on a CPU in float32, prepacked into oneDNN's layout and reused until a weight changes) and
  updates a `[batch, heads, length, head_dim]` cache in place, attending only to the filled part
  of the cache (on a CPU, a step's attention runs in a numba kernel, `cpu_attention.py`).
  `torch.compile` over Keras layers graph-breaks and recompiles per layer and was
  slower than eager here; Keras's generic path copies the whole cache every step
  (`slice_update` is functional). On a GPU each step is one CUDA graph replay. Keras int8 models
  run there too, through fbgemm's int8 matmuls on a CPU; other quantized models on PyTorch fall
  back to the Keras layers.

With a `streamer` callback, JAX and TensorFlow run the same compiled loop in chunks of steps
and hand each chunk's tokens to the streamer when it finishes: one compiled call per chunk
(sized to the measured pace, see `STREAM_INTERVAL`) instead of one per token, so streaming costs about what the fully compiled loop
does (`tools/bench_generate.py` measures the ratio). PyTorch runs its step loop eagerly anyway
and streams every step.

Example:
```python
lm = GPT1CausalLM.from_preset("gpt1_tiny", dropout=0.0)
out = generate(lm, [[5, 6, 7], [8, 9]], max_new_tokens=4)   # a list of two id lists
```
"""

import time
import warnings

import keras
import numpy as np
from keras import ops

from keras_gpt1.generation.samplers import MASKED_LOGIT, Beam, get_sampler
from keras_gpt1.utils.checks import as_int32_ids, check_integer, is_integer

# Bucket sizes: total length (cache length) and prefill length are rounded up to these, so the
# number of distinct compiled shapes stays small.
LENGTH_BUCKET = 64
PREFILL_BUCKET = 16
# Written after a row has stopped (the output's padding mask says which positions are real).
PAD_TOKEN_ID = 0
# Streaming on JAX and TensorFlow: each compiled call costs a dispatch and a read-back, so the
# loop runs in chunks of steps. The first chunk has STREAM_CHUNK steps (the first tokens show
# at once); later ones as many as the measured pace fits in STREAM_INTERVAL seconds (at least
# STREAM_CHUNK), so a fast model streams in a few calls and a slow one in bursts a person reads.
STREAM_CHUNK = 8
STREAM_INTERVAL = 0.2


# ---------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------


def _round_up(n, bucket, cap):
    return min(-(-n // bucket) * bucket, cap)


def _as_id_list(row, where):
    values = np.asarray(row) if isinstance(row, (list, tuple, np.ndarray)) else row
    if np.ndim(values) != 1:
        raise ValueError(f"{where} must be a 1-D sequence of token ids; got shape {np.shape(values)}.")
    return as_int32_ids(values, where)  # range-checked before the cast: no int32 wrap-around


def _tokenize(tokenizer, texts):
    if tokenizer is None:
        raise ValueError(
            "Text prompts need a tokenizer: this model has none (`lm.tokenizer` is None). "
            "Load a preset that has one, attach a GPT1Tokenizer, or pass token ids."
        )
    rows = []
    for text in texts:
        ids = tokenizer(text)
        ids = ids.to_list() if hasattr(ids, "to_list") else ops.convert_to_numpy(ids).tolist()
        if getattr(tokenizer, "sequence_length", None):
            # A fixed-length tokenizer pads; keep the real tokens only.
            pad = getattr(tokenizer, "pad_token_id", None)
            while ids and pad is not None and ids[-1] == pad:
                ids.pop()
        rows.append(np.asarray(ids, dtype="int32").reshape(-1))
    return rows


def normalize_prompts(inputs, tokenizer=None):
    """Turns any accepted prompt form into `(list of int32 id arrays, form)`.

    `form` is one of `"text"`, `"texts"`, `"ids"`, `"ids_batch"`, `"arrays"` and decides the
    output format. Accepted: a string, a list of strings, a list of ids, a list of id lists, a 2-D
    array of ids, or a dict `{"token_ids", "padding_mask"}` of right-padded arrays.
    """
    if isinstance(inputs, str):
        return _tokenize(tokenizer, [inputs]), "text"
    if isinstance(inputs, dict):
        if "token_ids" not in inputs:
            raise ValueError("A dict prompt needs 'token_ids' (and optionally 'padding_mask').")
        ids = np.asarray(ops.convert_to_numpy(inputs["token_ids"]))
        if ids.ndim != 2:
            raise ValueError(f"'token_ids' must be [batch, length]; got shape {ids.shape}.")
        mask = inputs.get("padding_mask")
        mask = np.ones_like(ids) if mask is None else np.asarray(ops.convert_to_numpy(mask)).astype(bool)
        lengths = mask.sum(axis=1)
        if not (mask == (np.arange(ids.shape[1])[None] < lengths[:, None])).all():
            raise ValueError("'padding_mask' must mark a prefix of each row (right padding only).")
        return [_as_id_list(row[:n], f"token_ids row {i}") for i, (row, n) in enumerate(zip(ids, lengths))], "arrays"
    if hasattr(inputs, "shape") and not isinstance(inputs, (list, tuple)):
        ids = np.asarray(ops.convert_to_numpy(inputs))
        if ids.ndim == 1:
            return [_as_id_list(ids, "the prompt")], "ids"
        if ids.ndim == 2:
            return [_as_id_list(row, f"prompt {i}") for i, row in enumerate(ids)], "arrays"
        raise ValueError(f"Token id prompts must be 1-D or 2-D; got shape {ids.shape}.")
    if isinstance(inputs, (list, tuple)):
        if len(inputs) == 0:
            raise ValueError("No prompts given (an empty list).")
        if all(isinstance(x, str) for x in inputs):
            return _tokenize(tokenizer, inputs), "texts"
        if all(is_integer(x) for x in inputs):
            return [_as_id_list(inputs, "the prompt")], "ids"
        if all(isinstance(x, (list, tuple, np.ndarray)) for x in inputs):
            return [_as_id_list(x, f"prompt {i}") for i, x in enumerate(inputs)], "ids_batch"
        raise ValueError(
            "A list prompt must hold only strings, only token ids, or only lists of token ids; "
            f"got element types {sorted({type(x).__name__ for x in inputs})}."
        )
    raise ValueError(
        "Prompts must be a string, a list of strings, token ids (list or array), a list of id "
        f"lists, or a {{'token_ids', 'padding_mask'}} dict; got {type(inputs).__name__}."
    )


def _check_prompts(prompts, vocabulary_size, context, max_new_tokens):
    check_integer("max_new_tokens", max_new_tokens, 1)
    for i, ids in enumerate(prompts):
        if ids.size == 0:
            raise ValueError(
                f"Prompt {i} is empty (no tokens). GPT-1 needs at least one token to condition on."
            )
        if ids.size > context:
            raise ValueError(
                f"Prompt {i} has {ids.size} tokens, longer than the model's context of {context}. "
                "Truncate it."
            )
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= vocabulary_size:
            raise ValueError(
                f"Prompt {i} contains token id {low if low < 0 else high}, outside the vocabulary "
                f"[0, {vocabulary_size})."
            )
    longest = max(ids.size for ids in prompts)
    if longest + max_new_tokens > context:
        raise ValueError(
            f"Prompt length {longest} + max_new_tokens {max_new_tokens} = {longest + max_new_tokens} "
            f"exceeds the model's context of {context} positions (GPT-1 has learned absolute "
            f"positions, so it cannot slide past them). Use max_new_tokens <= {context - longest} "
            "or a shorter prompt."
        )


def _check_stop_ids(stop_token_ids, vocabulary_size):
    if stop_token_ids is None:
        return ()
    if isinstance(stop_token_ids, (int, np.integer)):
        stop_token_ids = (stop_token_ids,)
    stop = []
    for t in np.asarray(stop_token_ids, dtype=object).reshape(-1):
        # A bool or a float is a mistake, not a token id (True would silently mean token 1).
        if not is_integer(t):
            raise ValueError(f"Stop token ids must be integers; got {t!r}.")
        if not 0 <= t < vocabulary_size:
            raise ValueError(f"Stop token id {t} is outside the vocabulary [0, {vocabulary_size}).")
        stop.append(int(t))
    return tuple(stop)


# ---------------------------------------------------------------------------------------------
# Engines: the model calls the loop makes
# ---------------------------------------------------------------------------------------------


class KerasEngine:
    """Model calls through the Keras layers (`call_with_cache`): traceable on every backend."""

    name = "keras"

    def __init__(self, lm):
        self.backbone = lm.backbone

    def empty(self, batch, length):
        return self.backbone.empty_cache(batch, length)

    def prefill(self, token_ids, cache):
        return self.backbone.call_with_cache(token_ids, cache, 0)

    def step(self, token_ids, cache, index):
        hidden, cache = self.backbone.call_with_cache(token_ids[:, None], cache, index)
        return self.head(hidden[:, 0]), cache

    def head(self, hidden):
        return ops.cast(self.backbone.token_embedding(hidden, reverse=True), "float32")

    def reorder(self, cache, indices):
        return tuple((ops.take(k, indices, axis=0), ops.take(v, indices, axis=0)) for k, v in cache)


# The row count oneDNN lays float32 weights out for. On this project's 2-core AVX2 machine,
# weights laid out for 8 rows multiplied 1, 32 and 256 rows (a decode step, a beam batch, a
# prefill) within the noise of weights laid out for that exact count, and a whole batch-1
# `generate` was no slower; weights laid out for 1 row multiplied 8 rows 1.2-1.3x slower. So one
# layout serves every batch size, and a new one does not pack the weights again.
_ONEDNN_PACK_ROWS = 8


def _can_prepack_for_onednn(weight):
    """Whether oneDNN can hold `weight` prepacked: a float32 tensor on a CPU."""
    import torch

    mkldnn = getattr(torch.ops, "mkldnn", None)
    return (
        weight.device.type == "cpu"
        and weight.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and hasattr(mkldnn, "_reorder_linear_weight")
        and hasattr(mkldnn, "_linear_pointwise")
    )


def _weights_on_cpu(backbone):
    return backbone.embeddings.position_embeddings.value.device.type == "cpu"


def _torch_engine_dtype(backbone):
    """The dtype `TorchEngine` computes in: the layers' compute dtype, except float32 for 16-bit
    floats on a CPU. (The functional backbone's own policy stays float32 whatever `dtype=` it was
    given; its layers carry the policy.) PyTorch runs bfloat16 matmuls on a CPU without native
    bfloat16 at about 1 GFLOP/s against 180 in float32 here, so a bfloat16 117M model would
    decode 7x slower; the weights keep their 16-bit values either way."""
    dtype = keras.backend.standardize_dtype(backbone.embeddings.compute_dtype)
    return "float32" if _weights_on_cpu(backbone) and dtype in ("bfloat16", "float16") else dtype


def _fbgemm_int8_available():
    import torch

    return (
        "fbgemm" in torch.backends.quantized.supported_engines
        and hasattr(torch, "_make_per_channel_quantized_tensor")
        and all(hasattr(torch.ops.quantized, op) for op in ("linear_prepack", "linear_dynamic"))
    )


def _fbgemm_takes(layer):
    """Whether an int8 layer is in Keras's default scheme, the one fbgemm's dynamic linear runs:
    one weight scale per output channel (a Dense unit, a row of the tied embedding) and quantized
    activations."""
    if hasattr(layer, "kernel_scale"):
        per_channel = tuple(layer.kernel_scale.shape) == (layer.units,)
    else:
        per_channel = tuple(layer.embeddings_scale.shape) == (layer.input_dim,)
    return per_channel and layer.inputs_quantizer is not None


class TorchEngine:
    """PyTorch decode step written with `torch.nn.functional` over the model's own weights.

    Same maths as `GPT1Block` (post-LN, tanh GELU, LayerNorm in float32), but the cache is
    `[batch, heads, length, head_dim]` updated in place and a step attends only to the filled
    positions, so nothing proportional to the cache is copied per token. It computes in the
    layers' compute dtype, except in float32 for 16-bit floats on a CPU (see
    `_torch_engine_dtype`); weights in another dtype are cast once, when the engine is built.

    On a CPU, every matmul with a weight runs on weights laid out once, when the engine is built:
    - float32 weights are reordered into oneDNN's blocked layout (the same prepacking
      `torch.compile` does when it freezes weights). A plain matmul repacks the weight on every
      call, which at a few rows costs as much as the product: prepacked, a batch-8 step here takes
      half the time, and the batch-1 LM head 5 ms instead of 9. One layout serves every batch
      size (see `_ONEDNN_PACK_ROWS`), so changing the batch does not rebuild the engine.
    - int8 weights (after Keras's `quantize("int8")`) are packed for fbgemm's dynamically
      quantized linear, `torch.ops.quantized.linear_dynamic`: the same int8 weights and
      per-output-channel scales Keras holds, with activations quantized on the fly. A decode step
      then reads a quarter of the float32 bytes: 117M generates 2.1x the float32 tokens/s at
      batch 1 on two AVX2 cores. One difference from Keras's own int8 layers: fbgemm quantizes a
      step's activations with one asymmetric 7-bit scale per tensor where Keras uses one
      symmetric 8-bit scale per row, so the int8 logits differ slightly between the two engines
      (both are measured against float32 in the tests).
    The packed copies cost one more weight-sized buffer, kept with the model while `make_engine`
    reuses the engine (until a weight changes).

    A decode step's attention on a CPU (float32 activations, so int8 models too) runs in a
    numba-compiled kernel, `cpu_attention.decode_attention`, when numba is installed: at batch 8
    it reads the cache about twice as fast as `scaled_dot_product_attention`, whose GEMM-based
    kernel is built for many queries. The prefill and every GPU step use
    `scaled_dot_product_attention`.

    On a GPU, each decode step is replayed as one CUDA graph (`_replay_step`).
    """

    name = "torch"

    def __init__(self, lm):
        import torch

        self.torch = torch
        backbone = lm.backbone
        self.dtype = getattr(torch, _torch_engine_dtype(backbone))
        self.num_heads = backbone.num_heads
        self.hidden_dim = backbone.hidden_dim
        self.head_dim = backbone.hidden_dim // backbone.num_heads
        self._graph = None  # (cache key, CUDA graph, its input and output buffers) on a GPU

        embedding = backbone.token_embedding
        if embedding.quantization_mode == "int8":
            # A row of the tied table is a token's embedding and a channel of the LM head.
            table, scale = embedding._embeddings.value.detach(), embedding.embeddings_scale.value.detach()
            self.lm_head = self._int8_linear(table, scale, None)
            self.token_embedding = lambda ids: table[ids].to(self.dtype) / scale[ids][..., None].to(self.dtype)
        else:
            table = self._weight(embedding.embeddings)
            self.lm_head = self._float_linear(table, None)
            self.token_embedding = lambda ids: table[ids]
        self.position_embeddings = self._weight(backbone.embeddings.position_embeddings)
        self.device = self.position_embeddings.device
        # Imported here, not with this module: it imports numba, which takes about 0.4 s.
        from keras_gpt1.generation import cpu_attention

        # A float32 decode step on a CPU runs its attention in numba's kernel (see `_forward`).
        self._decode_attention = cpu_attention.decode_attention
        self._fused_attention = (
            self.device.type == "cpu" and self.dtype == torch.float32 and cpu_attention.available()
        )

        def layer_norm(layer):
            return layer.gamma.value.detach().float(), layer.beta.value.detach().float(), layer.epsilon

        self.blocks = [
            dict(
                c_attn=self._dense(block.attention.c_attn),
                attn_proj=self._dense(block.attention.c_proj),
                ln_1=layer_norm(block.ln_1),
                c_fc=self._dense(block.c_fc),
                c_proj=self._dense(block.c_proj),
                ln_2=layer_norm(block.ln_2),
            )
            for block in backbone.transformer_layers
        ]

    def _weight(self, weight):
        """A weight as a tensor in the engine's dtype: a Keras variable, or a tensor a layer
        computes from its variables (a kernel with LoRA adapters merged in)."""
        value = getattr(weight, "value", weight).detach()
        return value if value.dtype == self.dtype else value.to(self.dtype)

    def _dense(self, dense):
        """`x -> dense(x)` over the layer's weights (a Dense kernel is `[in, out]`).

        With LoRA on, a float layer's `kernel` is Keras's own merge, `kernel + A @ B * scale`,
        packed once like any kernel. An int8 layer keeps its int8 kernel and, as Keras's int8
        Dense does, adds the float adapter path `(x @ A) @ B * scale` beside it.
        """
        bias = self._weight(dense.bias)
        if dense.quantization_mode == "int8":
            linear = self._int8_linear(dense._kernel.value.detach().T, dense.kernel_scale.value.detach(), bias.float())
            if not dense.lora_enabled:
                return linear
            a, b = self._weight(dense.lora_kernel_a), self._weight(dense.lora_kernel_b)
            scale = dense.lora_alpha / dense.lora_rank
            return lambda x: linear(x) + (x @ a) @ b * scale
        return self._float_linear(self._weight(dense.kernel).T, bias)

    def _float_linear(self, weight, bias):
        """`x -> x @ weight.T + bias` for `weight` `[out, in]`, prepacked where oneDNN can take it."""
        torch = self.torch
        if _can_prepack_for_onednn(weight):
            packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), _ONEDNN_PACK_ROWS)
            return lambda x: torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
        return lambda x: torch.nn.functional.linear(x, weight, bias)

    def _int8_linear(self, weight, scale, bias):
        """`x -> x @ (weight / scale[:, None]).T + bias` for an int8 `weight` `[out, in]` with
        Keras's per-output-channel `scale` (`int8 = round(float * scale)`), through fbgemm."""
        torch = self.torch
        channels = weight.shape[0]
        with warnings.catch_warnings():
            # PyTorch 2.13 deprecates its quantized tensor types, and fbgemm's packing still takes
            # one; `TorchEngine.supports` sends the model to the Keras engine once they are gone.
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            quantized = torch._make_per_channel_quantized_tensor(
                weight.contiguous(), (1.0 / scale.double()), torch.zeros(channels, dtype=torch.long), 0
            )
            packed = torch.ops.quantized.linear_prepack(quantized, bias)
        # reduce_range=True: 7-bit activations, so AVX2's u8 x s8 pair sums cannot saturate.
        return lambda x: torch.ops.quantized.linear_dynamic(x.float(), packed, True).to(self.dtype)

    @staticmethod
    def unsupported_reason(lm):
        """None where this engine runs `lm`, else why it cannot: it runs float models on any
        device, and Keras int8 models in Keras's default int8 scheme on a CPU with fbgemm."""
        if keras.config.backend() != "torch":
            return "it needs KERAS_BACKEND=torch"
        # LoRA adapters on Dense layers are merged or run beside the int8 kernel (`_dense`), and a
        # float table's `embeddings` has its adapters merged; an int8 table's are not read.
        unread = [
            layer.name
            for layer in lm._flatten_layers()
            if getattr(layer, "lora_enabled", False)
            and getattr(layer, "quantization_mode", None)
            and not isinstance(layer, keras.layers.Dense)
        ]
        if unread:
            return (
                "it runs LoRA adapters on Dense layers and float embeddings only, and this model "
                f"has them on the int8 layer(s) {unread}"
            )
        quantized = [layer for layer in lm._flatten_layers() if getattr(layer, "quantization_mode", None)]
        if not quantized:
            return None
        if not all(layer.quantization_mode == "int8" and _fbgemm_takes(layer) for layer in quantized):
            return (
                "it runs int8 models in Keras's default int8 scheme only (per-channel weight "
                "scales, quantized activations), and this model is quantized otherwise"
            )
        if not _weights_on_cpu(lm.backbone):
            return "its int8 matmuls (fbgemm's) run on a CPU, and this model's weights are on a GPU"
        if not _fbgemm_int8_available():
            return "its int8 matmuls need fbgemm's quantized ops, which this PyTorch build lacks"
        return None

    @staticmethod
    def supports(lm):
        return TorchEngine.unsupported_reason(lm) is None

    def empty(self, batch, length):
        shape = (batch, self.num_heads, length, self.head_dim)
        device = self.device  # the weights' device (a GPU when there is one)

        def zeros():
            return self.torch.zeros(shape, dtype=self.dtype, device=device)

        return [(zeros(), zeros()) for _ in self.blocks]

    def _layer_norm(self, x, params):
        gamma, beta, epsilon = params
        out = self.torch.nn.functional.layer_norm(x.float(), (x.shape[-1],), gamma, beta, epsilon)
        return out.to(self.dtype)

    def _forward(self, x, cache, start):
        """The blocks over `x` `[batch, length, hidden]` at positions `start, start + 1, ...`.

        `start` is an int for eager calls: keys and values are written by slicing, and
        attention reads only the filled part of the cache. For a CUDA graph it is a 1-element
        device tensor and `x` one token: shapes must not depend on it, so the keys and values go
        in with `index_copy_` and attention reads the whole cache, masked past `start`.
        An eager float32 decode step on a CPU (one token) runs its attention in numba's kernel,
        `cpu_attention.decode_attention`; every other call runs `_attention`.
        """
        F = self.torch.nn.functional
        batch, length = x.shape[0], x.shape[1]
        if isinstance(start, int):
            visible = None
        else:
            # [1 query, cache length]: True where a key may be attended to.
            visible = (self.torch.arange(cache[0][0].shape[2], device=self.device) <= start)[None, :]
        fused = visible is None and length == 1 and self._fused_attention
        for params, (key_cache, value_cache) in zip(self.blocks, cache):
            qkv = params["c_attn"](x)
            if fused:
                attended = self._decode_attention(
                    qkv.view(batch, -1), key_cache, value_cache, start, x.new_empty(batch, self.hidden_dim)
                )
            else:
                attended = self._attention(qkv, key_cache, value_cache, start, visible)
            attended = params["attn_proj"](attended.view(batch, length, self.hidden_dim))
            x = self._layer_norm(x + attended, params["ln_1"])
            m = params["c_proj"](F.gelu(params["c_fc"](x), approximate="tanh"))
            x = self._layer_norm(x + m, params["ln_2"])
        return x

    def _attention(self, qkv, key_cache, value_cache, start, visible):
        """Attention through `scaled_dot_product_attention`, for `_forward`: writes the keys and
        values at `start` and returns the heads concatenated, `[batch, length, hidden]`."""
        batch, length = qkv.shape[0], qkv.shape[1]
        qkv = qkv.view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]
        if visible is None:
            key_cache[:, :, start : start + length] = key
            value_cache[:, :, start : start + length] = value
            keys = key_cache[:, :, : start + length]
            values = value_cache[:, :, : start + length]
        else:
            keys = key_cache.index_copy_(2, start, key)
            values = value_cache.index_copy_(2, start, value)
        # A prefill starts at 0 (square causal mask); a step is one query that sees all keys.
        attended = self.torch.nn.functional.scaled_dot_product_attention(
            query, keys, values, attn_mask=visible, is_causal=length > 1
        )
        return attended.transpose(1, 2).reshape(batch, length, self.hidden_dim)

    def prefill(self, token_ids, cache):
        length = token_ids.shape[1]
        x = self.token_embedding(token_ids.long()) + self.position_embeddings[:length]
        return self._forward(x, cache, 0), cache

    def step(self, token_ids, cache, index):
        index = int(index)
        if self.device.type == "cuda":
            return self._replay_step(token_ids, cache, index), cache
        return self._eager_step(token_ids, cache, index), cache

    def _eager_step(self, token_ids, cache, index):
        x = self.token_embedding(token_ids.long())[:, None] + self.position_embeddings[index]
        return self.head(self._forward(x, cache, index)[:, 0])

    def _position_step(self, token_ids, cache, position):
        """`step` with the position as a 1-element device tensor: the body of the CUDA graph."""
        x = self.token_embedding(token_ids)[:, None] + self.position_embeddings.index_select(0, position)
        return self.head(self._forward(x, cache, position)[:, 0])

    def _replay_step(self, token_ids, cache, index):
        """`step` on a GPU as one CUDA graph replay.

        Eagerly, a step launches a few hundred small kernels one by one from Python, and on a GPU
        that launching, not the maths, sets the pace (3.5 ms a step for 117M on an H100). The
        graph is captured for one cache (the addresses of its tensors) and replayed for every
        step over it; a new cache (the next `generate` call) is captured again, which costs about
        two eager steps.
        """
        torch = self.torch
        key = (tuple(token_ids.shape), tuple(cache[0][0].shape)) + tuple(t.data_ptr() for pair in cache for t in pair)
        if self._graph is None or self._graph[0] != key:
            self._graph = None  # release the old graph's memory first
            tokens = token_ids.long().clone()
            position = torch.full((1,), index, dtype=torch.long, device=self.device)
            # Warm up on a side stream before capturing, as CUDA graph capture requires. The
            # step is idempotent (it writes the same keys and values at the same position), so
            # running it more than once changes nothing.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._position_step(tokens, cache, position)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                logits = self._position_step(tokens, cache, position)
            self._graph = (key, graph, tokens, position, logits)
        _, graph, tokens, position, logits = self._graph
        tokens.copy_(token_ids)
        position.fill_(index)
        graph.replay()
        return logits.clone()  # the graph's output buffer is overwritten by the next replay

    def head(self, hidden):
        return self.lm_head(hidden).float()

    def reorder(self, cache, indices):
        # In place, so the cache keeps its addresses (a CUDA graph holds them).
        indices = indices.long()
        for pair in cache:
            for tensor in pair:
                tensor.copy_(tensor.index_select(0, indices))
        return cache


def _cached_torch_engine(lm):
    """The model's last `TorchEngine` if it was built from the current weights.

    Packing 117M's weights takes about 0.5 s in float32 and 1.1 s in int8 on two CPU cores, as
    long as 40-90 batch-1 steps, so a short generation would pay it again on every call. Any
    change to a weight (training, loading) bumps that tensor's version counter, which is part of
    the key; one engine is kept per model.
    """
    tensors = [variable.value for variable in lm.backbone.weights]
    key = tuple((id(t), t._version) for t in tensors)
    cached = lm.__dict__.get("_keras_gpt1_torch_engine")
    if cached is not None and cached[0] == key:
        return cached[1]
    lm.__dict__["_keras_gpt1_torch_engine"] = None  # release the old packed copy first
    engine = TorchEngine(lm)
    lm.__dict__["_keras_gpt1_torch_engine"] = (key, engine)
    return engine


def make_engine(lm, engine="auto"):
    """`"auto"`: the functional PyTorch step where it supports the model (`TorchEngine.supports`:
    PyTorch with float weights, or Keras int8 ones on a CPU), else the Keras layers."""
    if engine == "auto":
        return _cached_torch_engine(lm) if TorchEngine.supports(lm) else KerasEngine(lm)
    if engine == "torch":
        reason = TorchEngine.unsupported_reason(lm)
        if reason is not None:
            raise ValueError(f"engine='torch' cannot run this model: {reason}. Use engine='keras'.")
        return _cached_torch_engine(lm)
    if engine == "keras":
        return KerasEngine(lm)
    raise ValueError(f"Unknown engine {engine!r}; choose 'auto', 'keras' or 'torch'.")


# ---------------------------------------------------------------------------------------------
# The decode loop, in keras.ops (traced by jax.jit / tf.function, eager on torch)
# ---------------------------------------------------------------------------------------------


def _uniform(seed, step, shape):
    """Uniform noise in [0, 1) from `(seed, step)`, stateless so it can live inside a compiled loop."""
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        key = jax.random.fold_in(jax.random.PRNGKey(seed), step)
        return jax.random.uniform(key, shape, dtype="float32")
    if backend == "tensorflow":
        import tensorflow as tf

        seeds = tf.stack([tf.cast(seed, "int32"), tf.cast(step, "int32")])
        return tf.random.stateless_uniform(shape, seed=seeds, dtype="float32")
    # Eager torch: seed and step are Python ints here.
    return keras.random.uniform(shape, dtype="float32", seed=(int(seed) * 1000003 + int(step)) % (2**31 - 1))


def _column(tokens, j):
    """`tokens[:, j]` for a traced scalar `j`."""
    return ops.slice(tokens, (0, j), (ops.shape(tokens)[0], 1))[:, 0]


def _filled_like(x, value):
    """`x`'s shape and dtype, every element `value` (a Python or traced scalar), made on `x`'s
    device. Not `full_like` or `where(c, value, x)`: on PyTorch those copy the scalar from the
    host, and before such a copy PyTorch waits for every kernel queued on the GPU."""
    return ops.zeros_like(x) + value


def _is_stop(token_ids, stop_ids):
    if stop_ids is None:
        return ops.zeros(ops.shape(token_ids), "bool")
    return ops.any(ops.equal(token_ids[:, None], stop_ids[None, :]), axis=1)


class _Loop:
    """One decode configuration: the static parts (shapes, sampler, engine) closed over."""

    def __init__(self, engine, sampler, batch, max_length, prefill_length, has_stop, collect_logits, vocabulary_size):
        self.engine = engine
        self.sampler = sampler
        self.beam = isinstance(sampler, Beam)
        self.num_beams = sampler.num_beams if self.beam else 1
        self.batch = batch
        self.max_length = max_length
        self.prefill_length = prefill_length
        self.has_stop = has_stop
        self.collect_logits = collect_logits
        self.vocabulary_size = vocabulary_size

    # --- the state is a dict of tensors (plus the cache), the same on every backend ---

    def init(self, tokens, lengths, prefill_len, ends, seed, stop_ids):
        rows = self.batch * self.num_beams
        if self.beam:
            tokens = ops.repeat(tokens, self.num_beams, axis=0)
        cache = self.engine.empty(rows, self.max_length)
        hidden, cache = self.engine.prefill(tokens[:, : self.prefill_length], cache)
        logits = self.engine.head(ops.take(hidden, prefill_len - 1, axis=1))
        state = dict(
            tokens=tokens,
            cache=cache,
            index=prefill_len - 1,
            done=ops.zeros((self.batch,), "bool"),
            out_len=ops.zeros((rows,), "int32") + ops.cast(prefill_len, "int32"),
            lengths=lengths,
            ends=ends,
            seed=seed,
        )
        if self.has_stop:
            state["stop_ids"] = stop_ids
        if self.beam:
            first = ops.one_hot(ops.zeros((self.batch,), "int32"), self.num_beams, dtype="float32")
            state["scores"] = (1.0 - first) * MASKED_LOGIT
            state["finished"] = ops.zeros((rows,), "bool")
        if self.collect_logits:
            state["logits"] = ops.zeros((rows, self.max_length, self.vocabulary_size), "float32")
        return self.advance(state, logits)

    def cond(self, state):
        return ops.logical_and(
            state["index"] < ops.max(state["ends"]) - 1, ops.logical_not(ops.all(state["done"]))
        )

    def body(self, state):
        token = _column(state["tokens"], state["index"])
        logits, cache = self.engine.step(token, state["cache"], state["index"])
        state = dict(state, cache=cache)
        return self.advance(state, logits)

    def advance(self, state, logits):
        """Picks the token at position `index + 1` from `logits` and writes it."""
        if self.beam:
            return self._advance_beam(state, logits)
        j = state["index"] + 1
        tokens, done, lengths = state["tokens"], state["done"], state["lengths"]
        if self.sampler.needs_noise:
            noise = _uniform(state["seed"], j, (self.batch, self.vocabulary_size))
        else:
            noise = None
        sampled = self.sampler.choose(logits, noise)
        in_prompt = j < lengths
        token = ops.where(in_prompt, _column(tokens, j), sampled)
        token = ops.where(done, _filled_like(token, PAD_TOKEN_ID), token)
        new = dict(state)
        new["tokens"] = ops.slice_update(tokens, (0, j), ops.cast(token, tokens.dtype)[:, None])
        new["out_len"] = ops.where(done, state["out_len"], _filled_like(state["out_len"], j + 1))
        stop = ops.logical_or(_is_stop(token, state.get("stop_ids")), j >= state["ends"] - 1)
        new["done"] = ops.logical_or(done, ops.logical_and(ops.logical_not(in_prompt), stop))
        new["index"] = j
        if self.collect_logits:
            new["logits"] = ops.slice_update(state["logits"], (0, j, 0), logits[:, None, :])
        return new

    def _advance_beam(self, state, logits):
        batch, beams, vocab = self.batch, self.num_beams, self.vocabulary_size
        j = state["index"] + 1
        tokens, finished = state["tokens"], state["finished"]
        log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        # A finished hypothesis may only grow by padding, at no cost: its score is frozen.
        pad_only = ops.where(ops.arange(vocab) == PAD_TOKEN_ID, 0.0, MASKED_LOGIT)
        log_probs = ops.where(finished[:, None], pad_only[None, :], log_probs)
        candidates = ops.reshape(state["scores"], (batch * beams, 1)) + log_probs
        top_scores, top_index = ops.top_k(ops.reshape(candidates, (batch, beams * vocab)), beams)
        source_beam = top_index // vocab
        next_token = ops.cast(top_index % vocab, "int32")
        # Rows still inside their prompt keep their beams, scores and the prompt token.
        in_prompt = (j < state["lengths"])[:, None]
        prompt_token = ops.reshape(_column(tokens, j), (batch, beams))
        source_beam = ops.where(in_prompt, ops.arange(beams, dtype="int32")[None, :], ops.cast(source_beam, "int32"))
        next_token = ops.where(in_prompt, prompt_token, next_token)
        scores = ops.where(in_prompt, state["scores"], top_scores)
        source = ops.reshape(ops.arange(batch, dtype="int32")[:, None] * beams + source_beam, (-1,))

        tokens = ops.take(tokens, source, axis=0)
        cache = self.engine.reorder(state["cache"], source)
        finished = ops.take(finished, source, axis=0)
        out_len = ops.take(state["out_len"], source, axis=0)
        next_token = ops.reshape(next_token, (-1,))
        token = ops.where(finished, _filled_like(next_token, PAD_TOKEN_ID), next_token)
        new = dict(state, cache=cache, scores=scores, index=j)
        new["tokens"] = ops.slice_update(tokens, (0, j), ops.cast(token, tokens.dtype)[:, None])
        new["out_len"] = ops.where(finished, out_len, _filled_like(out_len, j + 1))
        lengths = ops.repeat(state["lengths"], beams, axis=0)
        ends = ops.repeat(state["ends"], beams, axis=0)
        stop = ops.logical_or(_is_stop(token, state.get("stop_ids")), j >= ends - 1)
        new["finished"] = ops.logical_or(finished, ops.logical_and(j >= lengths, stop))
        # Hypotheses are sorted by score: a row is done when its best one is.
        new["done"] = ops.reshape(new["finished"], (batch, beams))[:, 0]
        return new

    def outputs(self, state):
        out = {"token_ids": state["tokens"], "lengths": state["out_len"]}
        if self.beam:
            pick = ops.arange(self.batch, dtype="int32") * self.num_beams
            out = {k: ops.take(v, pick, axis=0) for k, v in out.items()}
            out["scores"] = state["scores"][:, 0]
        if self.collect_logits:
            out["logits"] = state["logits"]
        return out

    def run_chunk(self, state, limit):
        """Runs the loop until position `limit` (a scalar tensor) is written, or the loop ends."""
        return _while(lambda s: ops.logical_and(self.cond(s), s["index"] < limit), self.body, state)

    def run(self, *args):
        state = self.init(*args)
        return self.outputs(_while(self.cond, self.body, state))


def _while(cond, body, state):
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        return jax.lax.while_loop(cond, body, state)
    if backend == "tensorflow":
        import tensorflow as tf

        (state,) = tf.while_loop(lambda s: cond(s), lambda s: (body(s),), (state,))
        return state
    while bool(cond(state)):
        state = body(state)
    return state


def _compile(lm, key, build):
    """Caches compiled callables per model and static configuration.

    `build()` returns a dict of plain functions over backend tensors; this wraps each for the
    backend: `jax.jit` (weights passed as arguments inside a `StatelessScope`, so they are not
    baked into the program as constants), `tf.function(jit_compile=True)`, or eager no-grad torch.
    """
    backend = keras.config.backend()
    if backend == "torch":
        # Nothing to compile; rebuilding each call keeps the engine's weight views current.
        import torch

        def eager(fn):
            def call(*args):
                with torch.no_grad():
                    return fn(*args)

            return call

        return {name: eager(fn) for name, fn in build().items()}
    variables = lm.variables
    key = key + (tuple(id(v) for v in variables),)
    # Stored on the model itself (bypassing Keras attribute tracking): the compiled functions
    # close over the model, so a weak-keyed global cache would keep every model alive.
    per_model = lm.__dict__.setdefault("_keras_gpt1_compiled", {})
    if key in per_model:
        return per_model[key]
    functions = build()
    wrapped = {}
    if backend == "jax":
        import jax

        for name, fn in functions.items():

            def pure(values, *args, _fn=fn):
                with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                    return _fn(*args)

            # The step function's state (with the cache) is donated: XLA updates it in place.
            jitted = jax.jit(pure, donate_argnums=(1,) if name in ("step", "chunk") else ())

            def call(*args, _jitted=jitted):
                return _jitted([v.value for v in variables], *args)

            wrapped[name] = call
    elif backend == "tensorflow":
        import tensorflow as tf

        for name, fn in functions.items():
            wrapped[name] = tf.function(fn, jit_compile=True, reduce_retracing=False)
    per_model[key] = wrapped
    return wrapped


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def generate_ids(
    lm,
    prompts,
    max_new_tokens=None,
    sampler="greedy",
    stop_token_ids=None,
    seed=None,
    streamer=None,
    return_logits=False,
    engine="auto",
    max_length=None,
    **sampler_args,
):
    """Generates from a list of 1-D int prompts (of any lengths) and returns numpy arrays.

    Each row gets `max_new_tokens` new tokens, or, with `max_length` (KerasHub's meaning),
    grows to `max_length` tokens in all, prompt included (give one or the other).

    Returns a dict: `"token_ids"` `[batch, total]` (prompt, then new tokens, then padding 0),
    `"padding_mask"` (True on real tokens), `"prompt_lengths"`, `"lengths"`; `"logits"`
    `[batch, total, vocab]` if `return_logits` (row `j` holds the logits that chose token `j`;
    meaningful for `j >= min(prompt_lengths)`), `"scores"` (summed log-probabilities) for beam
    search. A stop token is kept in the output; the row ends after it.

    `streamer(ids)`, if given, is called after every step with an int array `[batch]`: the token
    just produced for each row, or -1 where a row is still in its prompt or already finished.

    Example:
    ```python
    out = generate_ids(lm, [np.array([5, 6, 7]), np.array([8])], max_new_tokens=4)
    out["token_ids"][1, :out["lengths"][1]]      # [8, x, x, x, x]
    ```
    """
    backbone = lm.backbone
    sampler = get_sampler(sampler, **sampler_args)
    context = backbone.max_sequence_length
    prompts = [as_int32_ids(np.reshape(p, -1) if hasattr(p, "shape") else p, f"Prompt {i}").reshape(-1) for i, p in enumerate(prompts)]
    if not prompts:
        raise ValueError("No prompts given.")
    lengths = np.array([p.size for p in prompts], dtype="int32")
    if max_length is not None:
        if max_new_tokens is not None:
            raise ValueError("Give `max_length` (total tokens, prompt included) or `max_new_tokens`, not both.")
        max_length = check_integer("max_length", max_length, 2, context)
        if lengths.max() >= max_length:
            i = int(np.argmax(lengths))
            raise ValueError(
                f"Prompt {i} has {int(lengths[i])} tokens, leaving no room below `max_length` "
                f"({max_length}, the output length, prompt included). Raise `max_length` or shorten it."
            )
        ends = np.full_like(lengths, max_length)
        max_new_tokens = int(max_length - lengths.min())
    else:
        max_new_tokens = 32 if max_new_tokens is None else max_new_tokens
        ends = None
    _check_prompts(prompts, backbone.vocabulary_size, context, max_new_tokens)
    if ends is None:
        ends = lengths + int(max_new_tokens)
    stop = _check_stop_ids(stop_token_ids, backbone.vocabulary_size)
    is_beam = isinstance(sampler, Beam)
    if is_beam and sampler.num_beams > backbone.vocabulary_size:
        raise ValueError(f"num_beams ({sampler.num_beams}) exceeds the vocabulary size.")
    if is_beam and (streamer is not None or return_logits):
        raise ValueError("Beam search does not stream or return logits (its hypotheses reorder).")
    if seed is None:
        seed = int(np.random.randint(0, 2**31 - 1))
    else:
        seed = check_integer("seed", seed, -(2**31), 2**31 - 1)  # it enters the loop as an int32

    batch = len(prompts)
    total = int(ends.max())
    max_length = _round_up(total, LENGTH_BUCKET, context)
    prefill_len = int(lengths.min())
    prefill_bucket = _round_up(prefill_len, PREFILL_BUCKET, max_length)
    tokens = np.zeros((batch, max_length), dtype="int32")
    for i, p in enumerate(prompts):
        tokens[i, : p.size] = p

    eng = make_engine(lm, engine)
    if eng.name == "torch":
        # Eager: prefill exactly the shared prefix; no bucketing needed.
        prefill_bucket = prefill_len
    loop = _Loop(eng, sampler, batch, max_length, prefill_bucket, bool(stop), return_logits, backbone.vocabulary_size)
    stepwise = streamer is not None or keras.config.backend() == "torch"
    key = ("stepwise" if stepwise else "loop", eng.name, batch, max_length, prefill_bucket, len(stop), return_logits, sampler.key())
    fns = _compile(
        lm,
        key,
        lambda: {"init": loop.init, "step": loop.body, "chunk": loop.run_chunk, "run": loop.run, "outputs": loop.outputs},
    )

    if keras.config.backend() == "torch":
        args = (
            ops.convert_to_tensor(tokens),
            ops.convert_to_tensor(lengths),
            prefill_len,
            ops.convert_to_tensor(ends.astype("int32")),
            seed,
            ops.convert_to_tensor(np.array(stop, "int32")) if stop else None,
        )
    else:
        args = (
            ops.convert_to_tensor(tokens),
            ops.convert_to_tensor(lengths),
            ops.convert_to_tensor(np.int32(prefill_len)),
            ops.convert_to_tensor(ends.astype("int32")),
            ops.convert_to_tensor(np.int32(seed)),
            ops.convert_to_tensor(np.array(stop, "int32")) if stop else None,
        )

    if not stepwise:
        out = fns["run"](*args)
    elif streamer is not None and keras.config.backend() != "torch":
        out = loop.outputs(_stream_in_chunks(fns, args, streamer, lengths, int(ends.max()) - 1))
    else:
        state = fns["init"](*args)
        _stream(streamer, state, prefill_len, lengths)
        end = int(ends.max()) - 1
        # Reading `done` back makes the host wait for the device. On a GPU it is read every few
        # steps, so the host queues the next steps while the GPU runs; steps after every row has
        # stopped write only padding, so the output is the same. (Not for beam search: there the
        # extra steps re-rank finished hypotheses, which could swap two of equal score.)
        check_every = 8 if streamer is None and not is_beam and _on_gpu(state["done"]) else 1
        steps = 0
        while int(ops.convert_to_numpy(state["index"])) < end and (
            steps % check_every or not bool(ops.convert_to_numpy(ops.all(state["done"])))
        ):
            state = fns["step"](state)
            steps += 1
            _stream(streamer, state, None, lengths)
        out = loop.outputs(state)

    out = {k: ops.convert_to_numpy(v) for k, v in out.items()}
    final = int(out["lengths"].max())
    result = {
        "token_ids": out["token_ids"][:, :final],
        "padding_mask": np.arange(final)[None, :] < out["lengths"][:, None],
        "prompt_lengths": lengths,
        "lengths": out["lengths"].astype("int32"),
    }
    if "scores" in out:
        result["scores"] = out["scores"]
    if return_logits:
        result["logits"] = out["logits"][:, :final]
    return result


def _on_gpu(tensor):
    device = getattr(tensor, "device", None)  # a torch.device on PyTorch
    return getattr(device, "type", None) == "cuda"


def _stream_in_chunks(fns, args, streamer, lengths, end):
    """Runs the compiled loop a chunk of steps at a time, streaming each chunk's tokens."""
    state = fns["init"](*args)
    _stream(streamer, state, None, lengths)
    shown = int(ops.convert_to_numpy(state["index"]))
    chunk = STREAM_CHUNK
    while shown < end and not bool(ops.convert_to_numpy(ops.all(state["done"]))):
        limit = ops.convert_to_tensor(np.int32(min(shown + chunk, end)))
        start = time.perf_counter()
        state = fns["chunk"](state, limit)
        index = int(ops.convert_to_numpy(state["index"]))
        steps_per_second = (index - shown) / max(time.perf_counter() - start, 1e-9)
        chunk = max(STREAM_CHUNK, int(steps_per_second * STREAM_INTERVAL))
        tokens = ops.convert_to_numpy(state["tokens"])
        out_len = ops.convert_to_numpy(state["out_len"])
        for j in range(shown + 1, index + 1):
            # Written for a row: past its prompt and before the row stopped (`out_len` stops
            # growing then; later positions hold padding).
            fresh = (j >= lengths) & (j < out_len)
            streamer(np.where(fresh, tokens[:, j], -1).astype("int64"))
        shown = index
    return state


def _stream(streamer, state, prefill_len, lengths):
    if streamer is None:
        return
    j = int(ops.convert_to_numpy(state["index"]))
    tokens = ops.convert_to_numpy(_column(state["tokens"], j))
    out_len = ops.convert_to_numpy(state["out_len"])
    # New for a row: past its prompt and actually written (not padding after it stopped).
    fresh = (j >= lengths) & (out_len == j + 1)
    streamer(np.where(fresh, tokens, -1).astype("int64"))


def generate(
    lm,
    inputs,
    max_new_tokens=None,
    sampler="greedy",
    stop_token_ids=None,
    seed=None,
    streamer=None,
    max_length=None,
    strip_prompt=False,
    **sampler_args,
):
    """Generates continuations; the output mirrors the input's form.

    - a string → a string (prompt + continuation, detokenized; stop tokens dropped);
    - a list of strings → a list of strings;
    - a list of ids → a list of ids (prompt + new tokens, a stop token included);
    - a list of id lists → a list of id lists;
    - a 2-D array or `{"token_ids", "padding_mask"}` dict → a dict of right-padded numpy arrays.

    `sampler` is a name (`"greedy"`, `"random"`, `"top_k"`, `"top_p"`, `"beam"`) or a `Sampler`;
    `sampler_args` go to it (`temperature=`, `k=`, `p=`, `num_beams=`). `stop_token_ids` end a
    row independently of the others. `seed` makes sampling reproducible. `max_length` (KerasHub's
    meaning: output length, prompt included) replaces `max_new_tokens`; `strip_prompt=True`
    returns only the generated tokens (text).

    Example:
    ```python
    lm.generate([5, 6, 7], max_new_tokens=8)                   # greedy, token ids
    lm.generate("the cat", max_new_tokens=8, sampler="top_p", p=0.9, seed=0)
    ```
    """
    prompts, form = normalize_prompts(inputs, getattr(lm, "tokenizer", None))
    out = generate_ids(
        lm, prompts, max_new_tokens, sampler, stop_token_ids, seed, streamer, max_length=max_length, **sampler_args
    )
    starts = out["prompt_lengths"] if strip_prompt else np.zeros_like(out["prompt_lengths"])
    rows = [ids[s:n] for ids, s, n in zip(out["token_ids"], starts, out["lengths"])]
    if form in ("text", "texts"):
        stop = set(_check_stop_ids(stop_token_ids, lm.backbone.vocabulary_size))
        texts = [detokenize(lm.tokenizer, [t for t in row.tolist() if t not in stop]) for row in rows]
        return texts[0] if form == "text" else texts
    if form == "ids":
        return rows[0].tolist()
    if form == "ids_batch":
        return [row.tolist() for row in rows]
    if not strip_prompt:
        return {"token_ids": out["token_ids"], "padding_mask": out["padding_mask"]}
    width = max(row.size for row in rows)
    token_ids = np.full((len(rows), width), PAD_TOKEN_ID, dtype=out["token_ids"].dtype)
    for i, row in enumerate(rows):
        token_ids[i, : row.size] = row
    return {"token_ids": token_ids, "padding_mask": np.arange(width)[None, :] < np.array([r.size for r in rows])[:, None]}


def detokenize(tokenizer, ids):
    """Text for a list of ids through `tokenizer.detokenize` (a Python `str`)."""
    text = tokenizer.detokenize(np.asarray(ids, dtype="int32"))
    if hasattr(text, "numpy"):
        text = text.numpy()
    if isinstance(text, np.ndarray):
        text = text.item() if text.ndim == 0 else text.tolist()
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return text
