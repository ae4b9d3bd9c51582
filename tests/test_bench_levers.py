"""The benchmark harness's training levers change how a step is computed, not what it computes.

`python -m tools.bench.benchmark train --levers ...` changes one piece of the shipped training
step at a time through the library's public options (`GPT1Backbone(fused_attention=False)`,
`fused_qkv_matmul=False`, `dropout=0`) and the performance page reports what each is worth; a
lever that silently did nothing, or computed something else, would make that table wrong. Runs
on every backend (the levers do too).
"""

import json

import keras
import numpy as np
import pytest

from conftest import TINY_CONFIG
from keras_gpt1 import GPT1Backbone, GPT1CausalLM
from keras_gpt1.layers import attention
from keras_gpt1.presets import BUILTIN_PRESETS
from tools.bench import configs, train


def _inputs():
    ids = np.random.default_rng(0).integers(0, TINY_CONFIG["vocabulary_size"], size=(2, 12)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.array([[1] * 12, [1] * 7 + [0] * 5], "int32")}


def _pair(dtype=None, **options):
    """The shipped model and one built with `options`, holding the same weights."""
    shipped = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG, dtype=dtype))
    lever = GPT1CausalLM(GPT1Backbone(**dict(TINY_CONFIG, **options), dtype=dtype))
    lever.set_weights(shipped.get_weights())
    return shipped, lever


def _logits(lm, training=False):
    return keras.ops.convert_to_numpy(keras.ops.cast(lm(_inputs(), training=training), "float32"))


def _counting(fn, calls, tag):
    def counted(*args, **kwargs):
        calls.append(tag)
        return fn(*args, **kwargs)

    return counted


def test_split_qkv_runs_three_matmuls_with_the_same_outputs():
    shipped, split = _pair(**train.backbone_options("split_qkv"))
    calls = []
    for lm, tag in ((shipped, "fused"), (split, "split")):
        for block in lm.backbone.transformer_layers:
            dense = block.attention.c_attn
            dense.call = _counting(dense.call, calls, tag)
    # dropout 0.1 is on in both: compare at inference.
    np.testing.assert_allclose(_logits(split), _logits(shipped), atol=1e-5)
    assert calls == ["fused"] * TINY_CONFIG["num_layers"]  # the split model never calls c_attn as one matmul


def test_einsum_attention_leaves_the_fused_kernel_with_the_same_outputs(monkeypatch):
    shipped, einsum = _pair(**train.backbone_options("einsum_attention"))
    assert einsum.backbone.dropout == 0.0
    calls = []
    monkeypatch.setattr(
        attention.ops, "dot_product_attention", _counting(attention.ops.dot_product_attention, calls, "fused")
    )
    np.testing.assert_allclose(_logits(einsum, training=True), _logits(shipped), atol=1e-5)
    assert calls == ["fused"] * TINY_CONFIG["num_layers"]  # the shipped model's, at inference


def test_split_qkv_under_mixed_precision():
    shipped, split = _pair(dtype="mixed_bfloat16", fused_qkv_matmul=False)
    assert split.backbone.transformer_layers[0].attention.compute_dtype == "bfloat16"
    np.testing.assert_allclose(_logits(split), _logits(shipped), atol=2e-2)


def test_the_options_are_saved_and_checked_in_presets(tmp_path):
    backbone = GPT1Backbone(**TINY_CONFIG, fused_attention=False, fused_qkv_matmul=False)
    restored = GPT1Backbone.from_config(backbone.get_config())
    attentions = [block.attention for block in restored.transformer_layers]
    assert not any(a.fused_attention or a.fused_qkv_matmul for a in attentions)
    assert GPT1Backbone(**TINY_CONFIG).get_config()["fused_attention"] is True  # the default: as shipped
    backbone.save_to_preset(tmp_path / "preset")
    config_path = tmp_path / "preset" / "config.json"
    saved = json.loads(config_path.read_text())
    assert saved["config"]["fused_qkv_matmul"] is False
    # Overridden like any config entry, and a wrong value in config.json is named.
    assert GPT1Backbone.from_preset(str(tmp_path / "preset"), fused_qkv_matmul=True).fused_qkv_matmul
    saved["config"]["fused_attention"] = "yes"
    config_path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match='"fused_attention" must be true or false'):
        GPT1Backbone.from_preset(str(tmp_path / "preset"))


@pytest.mark.filterwarnings("ignore:Layer .* does not have a `quantize` method")
def test_split_qkv_refuses_quantized_weights():
    lm = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG, fused_qkv_matmul=False))
    lm.quantize("int8")
    with pytest.raises(ValueError, match="fused_qkv_matmul=False` needs float weights"):
        lm(_inputs())


def test_every_lever_builds_and_the_benchmark_shapes_are_the_presets():
    for lever in train.LEVERS:
        GPT1Backbone(**dict(configs.TINY, **train.backbone_options(lever)))
    for name, shapes in (("gpt1", configs.FULL), ("gpt1_tiny", configs.TINY)):
        preset = dict(BUILTIN_PRESETS[name]["config"])
        preset.pop("dropout")
        assert preset == shapes
