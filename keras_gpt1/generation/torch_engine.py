"""`TorchEngine`: GPT-1's decode step written with `torch.nn.functional` over the model's weights.

The Keras layers are the reference (`keras_engine.KerasEngine`); this engine implements the same
decode-engine protocol (`engine.py`) with what eager PyTorch needs to be fast: a
`[rows, heads, positions, head_dim]` cache updated in place (Keras's `slice_update` is functional
and copies the whole cache every step), weights packed once for the CPU's matmul libraries
(`torch_linears.py`, where the private PyTorch APIs are), a numba attention kernel for a CPU
decode step (`cpu_attention.py`), and one CUDA graph replay per step on a GPU. `torch.compile`
over the Keras layers graph-breaks and recompiles per layer, so it is not used.

Private APIs besides `torch_linears.py`'s, and what happens when one disappears or changes:
- Keras's `Layer._flatten_layers()` (also used by `models/lora.py`), to inspect every layer:
  missing, every model is declined and runs on the Keras layers.
- `torch.Tensor._version` (the counter PyTorch bumps on every in-place write) keys the engine
  kept with the model to the current weights (`build`): missing, the engine is rebuilt on
  every call.

Example:
```python
engine = TorchEngine.build(lm)                    # KERAS_BACKEND=torch
logits, cache = engine.prefill(torch.tensor([[5, 6, 7]]), 3, 16)
logits, cache = engine.step(logits.argmax(-1), cache, 3)
```
"""

import keras

from keras_gpt1.generation.engine import DecodeEngine
from keras_gpt1.generation.torch_linears import float_linear, int8_linear, int8_unsupported_reason


def _weights_on_cpu(backbone):
    return backbone.embeddings.position_embeddings.value.device.type == "cpu"


def _torch_engine_dtype(backbone):
    """The dtype `TorchEngine` computes in: the layers' compute dtype, except float32 for 16-bit
    floats on a CPU. (The functional backbone's own policy stays float32 whatever `dtype=` it was
    given; its layers carry the policy.) On a CPU without native bfloat16, PyTorch's bfloat16
    matmuls are emulated and orders of magnitude slower than float32 ones, so there the
    weights keep their 16-bit values but are computed with in float32."""
    dtype = keras.backend.standardize_dtype(backbone.embeddings.compute_dtype)
    return "float32" if _weights_on_cpu(backbone) and dtype in ("bfloat16", "float16") else dtype


class TorchEngine(DecodeEngine):
    """PyTorch decode step written with `torch.nn.functional` over the model's own weights.

    Same maths as `GPT1Block` (post-LN, tanh GELU, LayerNorm in float32), but the cache is
    `[rows, heads, positions, head_dim]` updated in place and a step attends only to the filled
    positions, so nothing proportional to the cache is copied per token. It computes in the
    layers' compute dtype, except in float32 for 16-bit floats on a CPU (see
    `_torch_engine_dtype`); weights in another dtype are cast once, when the engine is built.

    On a CPU, every matmul with a weight runs on weights packed once, when the engine is built
    (`torch_linears.py`): float32 weights in oneDNN's blocked layout, int8 weights (Keras's
    `quantize("int8")`: the same int8 values and per-output-channel scales) for fbgemm's
    dynamically quantized linear, so an int8 decode step reads a quarter of the float32 bytes.
    fbgemm quantizes a step's activations with one asymmetric 7-bit scale per tensor where
    Keras uses one symmetric 8-bit scale per row, so the int8 logits differ slightly between
    this engine and the Keras layers (both are measured against float32 in the tests). The
    packed copies cost one more weight-sized buffer, kept with the model while `build` reuses
    the engine (until a weight changes).

    A decode step's attention on a CPU (float32 activations, so int8 models too) runs in a
    numba-compiled kernel, `cpu_attention.decode_attention`, when numba is installed: it reads
    one query's cache directly, where `scaled_dot_product_attention`'s GEMM-based kernel is
    built for many queries. The prefill and every GPU step use
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
        self.prepacked = 0  # how many linears run on oneDNN-prepacked weights

        embedding = backbone.token_embedding
        if embedding.quantization_mode == "int8":
            # A row of the tied table is a token's embedding and a channel of the LM head.
            table, scale = embedding._embeddings.value.detach(), embedding.embeddings_scale.value.detach()
            self.lm_head = int8_linear(table, scale, None, self.dtype)
            self.token_embedding = lambda ids: table[ids].to(self.dtype) / scale[ids][..., None].to(self.dtype)
        else:
            table = self._weight(embedding.embeddings)
            self.lm_head = self._float_linear(table, None)
            self.token_embedding = lambda ids: table[ids]
        self.position_embeddings = self._weight(backbone.embeddings.position_embeddings)
        self.device = self.position_embeddings.device
        # Imported here, not with this module: it imports numba, which is slow to import.
        from keras_gpt1.generation import cpu_attention

        # A float32 decode step on a CPU runs its attention in numba's kernel (see `_forward`).
        self._decode_attention = cpu_attention.decode_attention
        self._fused_attention = self.device.type == "cpu" and self.dtype == torch.float32 and cpu_attention.available()

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
            kernel, scale = dense._kernel.value.detach().T, dense.kernel_scale.value.detach()
            linear = int8_linear(kernel, scale, bias.float(), self.dtype)
            if not dense.lora_enabled:
                return linear
            a, b = self._weight(dense.lora_kernel_a), self._weight(dense.lora_kernel_b)
            scale = dense.lora_alpha / dense.lora_rank
            return lambda x: linear(x) + (x @ a) @ b * scale
        return self._float_linear(self._weight(dense.kernel).T, bias)

    def _float_linear(self, weight, bias):
        """`x -> x @ weight.T + bias` for `weight` `[out, in]`, prepacked where oneDNN can take it."""
        linear, prepacked = float_linear(weight, bias)
        self.prepacked += prepacked
        return linear

    @classmethod
    def unsupported_reason(cls, lm):
        """None where this engine runs `lm`, else why it cannot: it runs float models on any
        device, and Keras int8 models in Keras's default int8 scheme on a CPU with fbgemm."""
        if keras.config.backend() != "torch":
            return "it needs KERAS_BACKEND=torch"
        if not hasattr(lm, "_flatten_layers"):
            return "it inspects the model's layers with Keras's `_flatten_layers`, which this Keras lacks"
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
        return int8_unsupported_reason(quantized, _weights_on_cpu(lm.backbone))

    @classmethod
    def build(cls, lm):
        """The model's last `TorchEngine` if it was built from the current weights, else a new one.

        Packing 117M's weights takes as long as tens of batch-1 steps, so a short generation
        would pay it again on every call. Any change to a weight (training, loading) bumps that
        tensor's version counter, which is part of the key; one engine is kept per model.
        """
        tensors = [variable.value for variable in lm.backbone.weights]
        key = tuple((id(t), getattr(t, "_version", None)) for t in tensors)
        cached = lm.__dict__.get("_keras_gpt1_torch_engine")
        if cached is not None and cached[0] == key:
            return cached[1]
        lm.__dict__["_keras_gpt1_torch_engine"] = None  # release the old packed copy first
        engine = cls(lm)
        if all(version is not None for _, version in key):  # else no way to see a weight change
            lm.__dict__["_keras_gpt1_torch_engine"] = (key, engine)
        return engine

    def _empty_cache(self, rows, length):
        shape = (rows, self.num_heads, length, self.head_dim)
        device = self.device  # the weights' device (a GPU when there is one)

        def zeros():
            return self.torch.zeros(shape, dtype=self.dtype, device=device)

        return tuple((zeros(), zeros()) for _ in self.blocks)

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

    def prefill(self, token_ids, length, cache_length):
        rows, n = token_ids.shape
        cache = self._empty_cache(rows, cache_length)
        x = self.token_embedding(token_ids.long()) + self.position_embeddings[:n]
        return self.head(self._forward(x, cache, 0)[:, int(length) - 1]), cache

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
        that launching, not the maths, sets the pace. The
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

    def reorder(self, cache, rows):
        # In place, so the cache keeps its addresses (a CUDA graph holds them).
        rows = rows.long()
        for pair in cache:
            for tensor in pair:
                tensor.copy_(tensor.index_select(0, rows))
        return cache
