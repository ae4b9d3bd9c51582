"""`TorchEngine`: GPT-1's decode step written with `torch.nn.functional` over the model's weights.

The Keras layers are the reference (`decode_loop.KerasEngine`); this engine computes the same
maths for PyTorch with what eager PyTorch needs to be fast: a `[batch, heads, length, head_dim]`
cache updated in place (Keras's `slice_update` is functional and copies the whole cache every
step), weights packed once for the CPU's matmul libraries, a numba attention kernel for a CPU
decode step (`cpu_attention.py`), and one CUDA graph replay per step on a GPU. `torch.compile`
over the Keras layers graph-breaks and recompiles per layer, so it is not used.

Private APIs it relies on, and what happens when one disappears or changes:
- `torch.ops.mkldnn._reorder_linear_weight` and `torch.ops.mkldnn._linear_pointwise` (oneDNN's
  weight prepacking, the ops `torch.compile`'s weight freezing uses): looked up with `getattr`
  and probed once per weight against `torch.nn.functional.linear` when the engine is built.
  Missing, raising or disagreeing, that weight's linear runs `torch.nn.functional.linear` on
  the plain weight: the same results, slower at a few rows.
- `torch._make_per_channel_quantized_tensor`, `torch.ops.quantized.linear_prepack` and
  `torch.ops.quantized.linear_dynamic` (fbgemm's int8 linears, for Keras int8 models): checked
  by `_fbgemm_int8_available`; missing, an int8 model is declined (`unsupported_reason`), and if
  packing raises, the engine raises `EngineUnavailable`. Either way `make_engine("auto")` runs
  the model on the Keras layers.
- Keras's private `Dense._kernel` and `Embedding._embeddings` (the raw int8 tensors; the public
  `kernel` / `embeddings` merge LoRA adapters in): missing, int8 models are declined as above.
- Keras's `Layer._flatten_layers()` (also used by `models/lora.py`), to inspect every layer:
  missing, every model is declined and runs on the Keras layers.
- `torch.Tensor._version` (the counter PyTorch bumps on every in-place write) keys the cached
  engine to the current weights: missing, the engine is rebuilt on every call.
"""

import warnings

import keras


class EngineUnavailable(RuntimeError):
    """A private PyTorch API the engine needs failed while building it; `make_engine("auto")`
    falls back to the Keras layers."""


# The row count oneDNN lays float32 weights out for. Weights laid out for 8 rows multiply 1, 32
# and 256 rows (a decode step, a beam batch, a prefill) as fast as weights laid out for that
# exact count, while weights laid out for 1 row multiply 8 rows clearly slower, so one layout
# serves every batch size and a new batch size does not pack the weights again.
_ONEDNN_PACK_ROWS = 8


def _onednn_linear(weight, bias):
    """`x -> x @ weight.T + bias` on `weight` prepacked for oneDNN, or None where that cannot be
    trusted: not a float32 CPU tensor, oneDNN's private ops missing, or packing or a probe
    product against `torch.nn.functional.linear` failing or disagreeing."""
    import torch

    if weight.device.type != "cpu" or weight.dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return None
    mkldnn = getattr(torch.ops, "mkldnn", None)
    reorder = getattr(mkldnn, "_reorder_linear_weight", None)
    pointwise = getattr(mkldnn, "_linear_pointwise", None)
    if reorder is None or pointwise is None:
        return None
    try:
        packed = reorder(weight.contiguous(), _ONEDNN_PACK_ROWS)

        def linear(x):
            return pointwise(x, packed, bias, "none", [], "")

        probe = torch.linspace(-1.0, 1.0, 2 * weight.shape[1]).reshape(2, -1)
        got, want = linear(probe), torch.nn.functional.linear(probe, weight, bias)
    except (RuntimeError, TypeError, ValueError):
        return None
    # Both sum the same products in different orders: they agree to float32 rounding.
    tolerance = 1e-4 * (float(weight.abs().sum(dim=1).max()) + 1.0)
    if got.shape != want.shape or not bool(((got - want).abs() <= tolerance).all()):
        return None
    return linear


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
      call, which at a few rows costs as much as the product itself. One layout serves every
      batch size (see `_ONEDNN_PACK_ROWS`), so changing the batch does not rebuild the engine.
    - int8 weights (after Keras's `quantize("int8")`) are packed for fbgemm's dynamically
      quantized linear, `torch.ops.quantized.linear_dynamic`: the same int8 weights and
      per-output-channel scales Keras holds, with activations quantized on the fly. A decode step
      then reads a quarter of the float32 bytes, and batch-1 decoding is bound by reading the
      weights (docs/performance.md has the speeds). One difference from Keras's own int8
      layers: fbgemm quantizes a step's activations with one asymmetric 7-bit scale per tensor
      where Keras uses one symmetric 8-bit scale per row, so the int8 logits differ slightly
      between the two engines (both are measured against float32 in the tests).
    The packed copies cost one more weight-sized buffer, kept with the model while `make_engine`
    reuses the engine (until a weight changes).

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
            self.lm_head = self._int8_linear(table, scale, None)
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
            linear = self._int8_linear(dense._kernel.value.detach().T, dense.kernel_scale.value.detach(), bias.float())
            if not dense.lora_enabled:
                return linear
            a, b = self._weight(dense.lora_kernel_a), self._weight(dense.lora_kernel_b)
            scale = dense.lora_alpha / dense.lora_rank
            return lambda x: linear(x) + (x @ a) @ b * scale
        return self._float_linear(self._weight(dense.kernel).T, bias)

    def _float_linear(self, weight, bias):
        """`x -> x @ weight.T + bias` for `weight` `[out, in]`, prepacked where oneDNN can take it."""
        packed = _onednn_linear(weight, bias)
        if packed is not None:
            self.prepacked += 1
            return packed
        return lambda x: self.torch.nn.functional.linear(x, weight, bias)

    def _int8_linear(self, weight, scale, bias):
        """`x -> x @ (weight / scale[:, None]).T + bias` for an int8 `weight` `[out, in]` with
        Keras's per-output-channel `scale` (`int8 = round(float * scale)`), through fbgemm."""
        torch = self.torch
        channels = weight.shape[0]
        try:
            with warnings.catch_warnings():
                # PyTorch deprecates its quantized tensor types, and fbgemm's packing still takes
                # one; `unsupported_reason` declines int8 models once they are gone.
                warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
                quantized = torch._make_per_channel_quantized_tensor(
                    weight.contiguous(), (1.0 / scale.double()), torch.zeros(channels, dtype=torch.long), 0
                )
                packed = torch.ops.quantized.linear_prepack(quantized, bias)
        except (AttributeError, RuntimeError, TypeError) as error:
            raise EngineUnavailable(f"fbgemm's int8 weight packing failed ({error})") from error
        # reduce_range=True: 7-bit activations, so AVX2's u8 x s8 pair sums cannot saturate.
        return lambda x: torch.ops.quantized.linear_dynamic(x.float(), packed, True).to(self.dtype)

    @staticmethod
    def unsupported_reason(lm):
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
        if not all(layer.quantization_mode == "int8" and _fbgemm_takes(layer) for layer in quantized):
            return (
                "it runs int8 models in Keras's default int8 scheme only (per-channel weight "
                "scales, quantized activations), and this model is quantized otherwise"
            )
        if not all(
            hasattr(layer, "_kernel" if hasattr(layer, "kernel_scale") else "_embeddings") for layer in quantized
        ):
            return "it reads int8 weights through Keras's private `_kernel` / `_embeddings`, which this Keras lacks"
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

    def reorder(self, cache, indices):
        # In place, so the cache keeps its addresses (a CUDA graph holds them).
        indices = indices.long()
        for pair in cache:
            for tensor in pair:
                tensor.copy_(tensor.index_select(0, indices))
        return cache


def cached_torch_engine(lm):
    """The model's last `TorchEngine` if it was built from the current weights.

    Packing 117M's weights takes as long as tens of batch-1 steps, so a short generation would
    pay it again on every call. Any
    change to a weight (training, loading) bumps that tensor's version counter, which is part of
    the key; one engine is kept per model.
    """
    tensors = [variable.value for variable in lm.backbone.weights]
    key = tuple((id(t), getattr(t, "_version", None)) for t in tensors)
    cached = lm.__dict__.get("_keras_gpt1_torch_engine")
    if cached is not None and cached[0] == key:
        return cached[1]
    lm.__dict__["_keras_gpt1_torch_engine"] = None  # release the old packed copy first
    engine = TorchEngine(lm)
    if all(version is not None for _, version in key):  # else no way to see a weight change
        lm.__dict__["_keras_gpt1_torch_engine"] = (key, engine)
    return engine
