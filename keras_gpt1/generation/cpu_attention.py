"""One decode step's attention on a CPU, compiled by numba (used by the PyTorch engine only).

A decode step's attention is one query per row over that row's KV cache. At batch 8 on a CPU
it is bound by reading the cache from memory, and `torch.nn.functional.scaled_dot_product_attention`
reads it at about half the rate the cores can: it runs a step through its blocked GEMM-based
kernel, built for many queries. `decode_attention` is the plain loop instead, parallel over
(row, head), that streams each head's keys and values once. It also writes the step's keys and
values into the cache and returns the heads already concatenated, which saves the
`[batch, heads, 1, head_dim]` views and copies around `scaled_dot_product_attention`.

numba is an optional dependency (the `torch` extra installs it): without it, or off a CPU, the
engine uses `scaled_dot_product_attention`. The kernel is compiled on first use (about 2 s) and
cached on disk by numba, so later processes load it in a fraction of that.
"""

import math

import numpy as np

try:
    import numba
except ImportError:  # numba is optional: the engine falls back to scaled_dot_product_attention
    numba = None


def available():
    """Whether the compiled kernel can be used (numba is installed)."""
    return numba is not None


def _kernel(qkv, key_cache, value_cache, position, out):
    """Attention of one query per row over positions `0..position` of the cache.

    qkv: float32 `[batch, 3 * hidden]`, the step's `c_attn` output (queries, keys, values, each
    `[heads, head_dim]`); key_cache, value_cache: float32 `[batch, heads, length, head_dim]`,
    written at `position` here; out: float32 `[batch, hidden]`, the heads concatenated.
    Scores and the softmax are float32 with the maximum subtracted, as in the reference.
    """
    batch, heads, _, head_dim = key_cache.shape
    hidden = heads * head_dim
    scale = np.float32(1.0 / math.sqrt(head_dim))
    length = position + 1
    for task in numba.prange(batch * heads):
        b = task // heads
        h = task % heads
        start = h * head_dim
        keys = key_cache[b, h]
        values = value_cache[b, h]
        # Element loops over plain indices (not slices of qkv) let LLVM see unit strides and
        # vectorize them; the query is copied out pre-scaled.
        query = np.empty(head_dim, np.float32)
        for d in range(head_dim):
            query[d] = qkv[b, start + d] * scale
            keys[position, d] = qkv[b, hidden + start + d]
            values[position, d] = qkv[b, 2 * hidden + start + d]
        scores = np.empty(length, np.float32)
        for i in range(length):
            dot = np.float32(0.0)
            for d in range(head_dim):
                dot += query[d] * keys[i, d]
            scores[i] = dot
        largest = scores.max()
        total = np.float32(0.0)
        for i in range(length):
            weight = np.exp(scores[i] - largest)
            scores[i] = weight
            total += weight
        mixed = np.zeros(head_dim, np.float32)
        for i in range(length):
            weight = scores[i]
            for d in range(head_dim):
                mixed[d] += weight * values[i, d]
        inverse = np.float32(1.0) / total
        for d in range(head_dim):
            out[b, start + d] = mixed[d] * inverse


if numba is not None:
    # fastmath lets LLVM reorder the float32 sums so the loops over head_dim vectorize.
    _kernel = numba.njit(parallel=True, fastmath=True, cache=True, boundscheck=False)(_kernel)


def decode_attention(qkv, key_cache, value_cache, position, out):
    """Runs the kernel over torch CPU tensors (shared with numpy, nothing is copied).

    qkv `[batch, 3 * hidden]` contiguous float32; the caches as `TorchEngine.prefill` makes them;
    `out` `[batch, hidden]`, written and returned.
    """
    # The kernel runs without bounds checks: a position outside the cache would write elsewhere.
    if not 0 <= position < key_cache.shape[2]:
        raise ValueError(f"position {position} is outside the KV cache's {key_cache.shape[2]} positions.")
    _kernel(qkv.numpy(), key_cache.numpy(), value_cache.numpy(), position, out.numpy())
    return out
