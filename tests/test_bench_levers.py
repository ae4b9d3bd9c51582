"""The benchmark harness's training levers change how a step is computed, not what it computes.

`tools/benchmark.py train --levers ...` swaps one piece of the shipped training step at a time
and the README reports what each is worth; a lever that silently did nothing, or computed
something else, would make that table wrong. Runs on every backend (the levers do too).
"""

import os
import sys

import keras
import numpy as np

from conftest import TINY_CONFIG

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import benchmark  # noqa: E402

from keras_gpt1 import GPT1Backbone, GPT1CausalLM  # noqa: E402
from keras_gpt1.layers import attention  # noqa: E402


def _inputs():
    ids = np.random.default_rng(0).integers(0, TINY_CONFIG["vocabulary_size"], size=(2, 12)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones((2, 12), "int32")}


def _counting(fn, calls, tag):
    def counted(*args, **kwargs):
        calls.append(tag)
        return fn(*args, **kwargs)

    return counted


def test_split_qkv_runs_three_matmuls_with_the_same_outputs():
    lm = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    x = _inputs()
    fused = keras.ops.convert_to_numpy(lm(x))
    benchmark._split_qkv(lm)
    calls = []
    for block in lm.backbone.transformer_layers:
        dense = block.attention.c_attn
        dense.call = _counting(dense.call, calls, "split")
    split = keras.ops.convert_to_numpy(lm(x))
    assert calls == ["split"] * TINY_CONFIG["num_layers"]
    np.testing.assert_allclose(split, fused, atol=1e-5)


def test_einsum_attention_replaces_the_fused_kernel_with_the_same_outputs(monkeypatch):
    monkeypatch.setattr(attention, "ops", attention.ops)  # restored after the test
    lm = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    x = _inputs()
    fused = keras.ops.convert_to_numpy(lm(x))
    benchmark._route_attention_through_einsum()
    assert attention.ops.dot_product_attention is benchmark._einsum_attention
    calls = []
    attention.ops.dot_product_attention = _counting(attention.ops.dot_product_attention, calls, "einsum")
    einsum = keras.ops.convert_to_numpy(lm(x))
    assert calls == ["einsum"] * TINY_CONFIG["num_layers"]
    np.testing.assert_allclose(einsum, fused, atol=1e-5)
