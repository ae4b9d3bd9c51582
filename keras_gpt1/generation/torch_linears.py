"""The model's weights as PyTorch linears, packed once for the CPU's matmul libraries (used by
the PyTorch engine only). Every private API the PyTorch engine relies on for speed is here.

A plain `torch.nn.functional.linear` repacks its weight on every call, which at a decode step's
few rows costs as much as the product itself, so `float_linear` and `int8_linear` pack each
weight once, when the engine is built:

- float32 weights into oneDNN's blocked layout, through `torch.ops.mkldnn._reorder_linear_weight`
  and `torch.ops.mkldnn._linear_pointwise` (the ops `torch.compile`'s weight freezing uses):
  looked up with `getattr` and probed once per weight against `torch.nn.functional.linear`.
  Missing, raising or disagreeing, that weight runs `torch.nn.functional.linear` on the plain
  weight: the same results, slower at a few rows.
- int8 weights (Keras's `quantize("int8")`) for fbgemm's dynamically quantized linear, through
  `torch._make_per_channel_quantized_tensor`, `torch.ops.quantized.linear_prepack` and
  `torch.ops.quantized.linear_dynamic`, checked by `fbgemm_int8_available`: missing, an int8
  model is declined (`int8_unsupported_reason`); if packing raises, `EngineUnavailable`. Either
  way `make_engine("auto")` runs the model on the Keras layers. The int8 tensors are read
  through Keras's private `Dense._kernel` and `Embedding._embeddings` (the public `kernel` /
  `embeddings` merge LoRA adapters in); missing, int8 models are declined too.

Example:
```python
linear, packed = float_linear(weight, bias)      # weight [out, in]; packed: prepacked by oneDNN
y = linear(x)                                    # x @ weight.T + bias
```
"""

import warnings

from keras_gpt1.generation.engine import EngineUnavailable

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


def float_linear(weight, bias):
    """`(x -> x @ weight.T + bias, prepacked)` for `weight` `[out, in]`: prepacked by oneDNN
    where it can take the weight, else `torch.nn.functional.linear`."""
    import torch

    packed = _onednn_linear(weight, bias)
    if packed is not None:
        return packed, True
    return (lambda x: torch.nn.functional.linear(x, weight, bias)), False


def int8_linear(weight, scale, bias, dtype):
    """`x -> x @ (weight / scale[:, None]).T + bias`, in `dtype`, for an int8 `weight`
    `[out, in]` with Keras's per-output-channel `scale` (`int8 = round(float * scale)`), through
    fbgemm's dynamically quantized linear."""
    import torch

    channels = weight.shape[0]
    try:
        with warnings.catch_warnings():
            # PyTorch deprecates its quantized tensor types, and fbgemm's packing still takes
            # one; `int8_unsupported_reason` declines int8 models once they are gone.
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            quantized = torch._make_per_channel_quantized_tensor(
                weight.contiguous(), (1.0 / scale.double()), torch.zeros(channels, dtype=torch.long), 0
            )
            packed = torch.ops.quantized.linear_prepack(quantized, bias)
    except (AttributeError, RuntimeError, TypeError) as error:
        raise EngineUnavailable(f"fbgemm's int8 weight packing failed ({error})") from error
    # reduce_range=True: 7-bit activations, so AVX2's u8 x s8 pair sums cannot saturate.
    return lambda x: torch.ops.quantized.linear_dynamic(x.float(), packed, True).to(dtype)


def fbgemm_int8_available():
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


def int8_unsupported_reason(quantized, on_cpu):
    """None where `int8_linear` runs every layer of `quantized` (a model's quantized layers, with
    weights `on_cpu` or not), else why not."""
    if not all(layer.quantization_mode == "int8" and _fbgemm_takes(layer) for layer in quantized):
        return (
            "it runs int8 models in Keras's default int8 scheme only (per-channel weight "
            "scales, quantized activations), and this model is quantized otherwise"
        )
    if not all(hasattr(layer, "_kernel" if hasattr(layer, "kernel_scale") else "_embeddings") for layer in quantized):
        return "it reads int8 weights through Keras's private `_kernel` / `_embeddings`, which this Keras lacks"
    if not on_cpu:
        return "its int8 matmuls (fbgemm's) run on a CPU, and this model's weights are on a GPU"
    if not fbgemm_int8_available():
        return "its int8 matmuls need fbgemm's quantized ops, which this PyTorch build lacks"
    return None
