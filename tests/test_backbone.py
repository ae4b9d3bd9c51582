"""The GPT-1 backbone and causal LM: structure, causality, padding, persistence, bad input.

Logit parity with the Hugging Face port lives in test_convert.py (it needs the converters).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import BACKEND, TINY_CONFIG, random_inputs, to_numpy
from keras_gpt1 import GPT1Backbone, GPT1CausalLM
from keras_gpt1.presets import BUILTIN_PRESETS


def tiny_lm(**overrides):
    return GPT1CausalLM(GPT1Backbone(**{**TINY_CONFIG, **overrides}))


def test_paper_configuration_has_exactly_116_534_784_parameters():
    backbone = GPT1Backbone.from_preset("gpt1", load_weights=False)  # the architecture, nothing fetched
    assert backbone.count_params() == 116_534_784
    # The language model adds nothing: its output layer is the tied token embedding.
    assert GPT1CausalLM(backbone).count_params() == 116_534_784


def test_parameter_layout_matches_the_reference():
    config = BUILTIN_PRESETS["gpt1"]["config"]
    backbone = GPT1Backbone(**{**config, "num_layers": 1})
    shapes = {w.path: tuple(w.shape) for w in backbone.weights}
    assert shapes["embeddings/position_embeddings"] == (512, 768)
    assert shapes["embeddings/token_embedding/embeddings"] == (40478, 768)
    assert shapes["h_0/attn/c_attn/kernel"] == (768, 2304)
    assert shapes["h_0/attn/c_proj/kernel"] == (768, 768)
    assert shapes["h_0/c_fc/kernel"] == (768, 3072)
    assert shapes["h_0/c_proj/kernel"] == (3072, 768)
    # 12 tensors per block, as in the original checkpoint; no final LayerNorm.
    assert len([p for p in shapes if p.startswith("h_0/")]) == 12
    assert len(shapes) == 2 + 12


def test_initialisation_is_normal_002_with_zero_biases_and_unit_gains():
    backbone = GPT1Backbone(**{**TINY_CONFIG, "hidden_dim": 64, "intermediate_dim": 256})
    weights = {w.path: to_numpy(w) for w in backbone.weights}
    assert abs(weights["h_0/c_fc/kernel"].std() - 0.02) < 0.002
    assert abs(weights["embeddings/token_embedding/embeddings"].std() - 0.02) < 0.003
    assert np.all(weights["h_0/c_fc/bias"] == 0)
    assert np.all(weights["h_1/ln_2/gamma"] == 1) and np.all(weights["h_1/ln_2/beta"] == 0)


def test_block_is_post_layer_norm_as_in_the_original():
    """Recompute one block by hand in numpy from its weights: n = LN(x + attn(x)); h = LN(n + mlp(n))."""
    from keras_gpt1.layers import GPT1Block, causal_attention_mask  # noqa: F401

    rng = np.random.default_rng(0)
    block = GPT1Block(num_heads=2, hidden_dim=8, intermediate_dim=16, dropout=0.0)
    x = rng.normal(size=(1, 5, 8)).astype("float32")
    out = to_numpy(block(x, padding_mask=np.ones((1, 5), "int32")))
    w = {v.path.split("/", 1)[1]: to_numpy(v) for v in block.weights}

    def layer_norm(v, gain, bias):
        mean = v.mean(-1, keepdims=True)
        var = ((v - mean) ** 2).mean(-1, keepdims=True)  # biased variance
        return (v - mean) / np.sqrt(var + 1e-5) * gain + bias

    def gelu(v):
        return 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))

    qkv = x @ w["attn/c_attn/kernel"] + w["attn/c_attn/bias"]
    q, k, v = np.split(qkv, 3, axis=-1)
    heads = lambda t: t.reshape(1, 5, 2, 4).transpose(0, 2, 1, 3)  # noqa: E731
    scores = heads(q) @ heads(k).transpose(0, 1, 3, 2) / np.sqrt(4)
    scores = np.where(np.tril(np.ones((5, 5), bool)), scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    a = (probs @ heads(v)).transpose(0, 2, 1, 3).reshape(1, 5, 8)
    a = a @ w["attn/c_proj/kernel"] + w["attn/c_proj/bias"]
    n = layer_norm(x + a, w["ln_1/gamma"], w["ln_1/beta"])
    m = gelu(n @ w["c_fc/kernel"] + w["c_fc/bias"]) @ w["c_proj/kernel"] + w["c_proj/bias"]
    expected = layer_norm(n + m, w["ln_2/gamma"], w["ln_2/beta"])
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_changing_token_t_never_changes_logits_before_t():
    lm = tiny_lm()
    inputs = random_inputs(2, 12, TINY_CONFIG["vocabulary_size"])
    base = to_numpy(lm(inputs))
    for t in (0, 5, 11):
        changed = {k: v.copy() for k, v in inputs.items()}
        changed["token_ids"][:, t] = (changed["token_ids"][:, t] + 1) % TINY_CONFIG["vocabulary_size"]
        out = to_numpy(lm(changed))
        np.testing.assert_array_equal(out[:, :t], base[:, :t])
        assert not np.allclose(out[:, t], base[:, t])


def test_right_padding_does_not_change_real_positions():
    lm = tiny_lm()
    inputs = random_inputs(3, 10, TINY_CONFIG["vocabulary_size"], lengths=[10, 6, 1])
    padded = to_numpy(lm(inputs))
    for row, length in enumerate([10, 6, 1]):
        alone = {k: v[row : row + 1, :length] for k, v in inputs.items()}
        np.testing.assert_allclose(padded[row, :length], to_numpy(lm(alone))[0], atol=1e-5)
    assert np.all(np.isfinite(padded))


def test_dropout_is_active_only_in_training():
    lm = tiny_lm(dropout=0.5)
    inputs = random_inputs(1, 8, TINY_CONFIG["vocabulary_size"])
    a, b = to_numpy(lm(inputs)), to_numpy(lm(inputs))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(to_numpy(lm(inputs, training=True)), a)


def test_kv_cache_steps_match_the_full_forward_pass():
    lm = tiny_lm()
    inputs = random_inputs(2, 9, TINY_CONFIG["vocabulary_size"])
    full = to_numpy(lm(inputs))
    cache = lm.backbone.empty_cache(2, TINY_CONFIG["max_sequence_length"])
    logits, _, cache = lm.call_with_cache(inputs["token_ids"][:, :4], cache, 0)
    np.testing.assert_allclose(to_numpy(logits), full[:, :4], atol=1e-5)
    for t in range(4, 9):
        logits, _, cache = lm.call_with_cache(inputs["token_ids"][:, t : t + 1], cache, t)
        np.testing.assert_allclose(to_numpy(logits)[:, 0], full[:, t], atol=1e-5)


def test_mixed_bfloat16_policy_runs_and_stays_close():
    lm = tiny_lm()
    inputs = random_inputs(1, 8, TINY_CONFIG["vocabulary_size"])
    preset_weights = lm.backbone.get_weights()
    lm_bf16 = tiny_lm(dtype="mixed_bfloat16")
    lm_bf16.backbone.set_weights(preset_weights)
    assert lm_bf16.backbone.embeddings.position_embeddings.dtype == "float32"
    out = to_numpy(keras.ops.cast(lm_bf16(inputs), "float32"))
    assert np.all(np.isfinite(out))
    assert np.abs(out - to_numpy(lm(inputs))).max() < 0.1


def test_keras_archive_round_trip(tmp_path):
    lm = tiny_lm()
    inputs = random_inputs(2, 7, TINY_CONFIG["vocabulary_size"], lengths=[7, 3])
    path = str(tmp_path / "lm.keras")
    lm.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, GPT1CausalLM)
    np.testing.assert_array_equal(to_numpy(restored(inputs)), to_numpy(lm(inputs)))
    assert restored.backbone.get_config() == lm.backbone.get_config()


def test_preset_round_trip(tmp_path):
    lm = tiny_lm()
    inputs = random_inputs(2, 7, TINY_CONFIG["vocabulary_size"])
    lm.save_to_preset(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [
        "config.json",
        "manifest.json",
        "metadata.json",
        "model.weights.h5",
        "task.json",
    ]
    restored = GPT1CausalLM.from_preset(str(tmp_path))
    np.testing.assert_array_equal(to_numpy(restored(inputs)), to_numpy(lm(inputs)))
    backbone = GPT1Backbone.from_preset(str(tmp_path), dropout=0.3)
    assert backbone.dropout == 0.3


@pytest.mark.skipif(BACKEND != "tensorflow", reason="spawns the other backends itself; once is enough")
@pytest.mark.integration
def test_same_preset_gives_same_logits_on_every_backend(tmp_path):
    lm = tiny_lm()
    inputs = random_inputs(2, 9, TINY_CONFIG["vocabulary_size"], lengths=[9, 5])
    lm.save_to_preset(str(tmp_path / "preset"))
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = (
        "import sys, numpy as np, keras\n"
        "from keras_gpt1 import GPT1CausalLM\n"
        "lm = GPT1CausalLM.from_preset(sys.argv[1])\n"
        "x = dict(np.load(sys.argv[2]))\n"
        "np.save(sys.argv[3], keras.ops.convert_to_numpy(lm(x)))\n"
    )
    # This run is TensorFlow's: its own load of the preset is the reference.
    results = {"tensorflow": to_numpy(GPT1CausalLM.from_preset(str(tmp_path / "preset"))(inputs))}
    for backend in ("jax", "torch"):
        out = tmp_path / f"{backend}.npy"
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "preset"), str(tmp_path / "inputs.npz"), str(out)],
            env=env,
            check=True,
            capture_output=True,
        )
        results[backend] = np.load(out)
    mask = inputs["padding_mask"].astype(bool)
    for backend in ("jax", "torch"):
        assert np.abs(results[backend][mask] - results["tensorflow"][mask]).max() <= 1e-5, backend


# === Bad input ===


@pytest.mark.parametrize("bad_id", [97, 1000, -1])
def test_out_of_range_token_ids_raise(bad_id):
    lm = tiny_lm()
    inputs = random_inputs(1, 5, TINY_CONFIG["vocabulary_size"])
    inputs["token_ids"][0, 3] = bad_id
    with pytest.raises(ValueError, match=rf"id {bad_id} at index \(0, 3\), outside the vocabulary \[0, 97\)"):
        lm(inputs)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        lm.predict(inputs, verbose=0)


def test_sequence_longer_than_the_context_raises():
    lm = tiny_lm()
    inputs = random_inputs(1, TINY_CONFIG["max_sequence_length"] + 1, TINY_CONFIG["vocabulary_size"])
    with pytest.raises(ValueError, match="length 25.*context of 24 positions"):
        lm(inputs)
    with pytest.raises(ValueError, match="context of 24 positions"):
        lm.predict(inputs, verbose=0)


def test_non_dict_input_raises():
    with pytest.raises(ValueError, match="take a dict"):
        tiny_lm().predict(np.zeros((1, 4), "int32"), verbose=0)


def test_hidden_dim_not_divisible_by_heads_raises():
    with pytest.raises(ValueError, match=r"`hidden_dim` \(30\) must be divisible by `num_heads` \(4\)"):
        GPT1Backbone(**{**TINY_CONFIG, "hidden_dim": 30, "num_heads": 4})


def test_unknown_preset_name_lists_the_built_in_ones():
    with pytest.raises(ValueError, match=r"Unknown preset 'gpt3'.*gpt1_tiny"):
        GPT1CausalLM.from_preset("gpt3")


def test_preset_missing_weights_names_the_file(tmp_path):
    tiny_lm().save_to_preset(str(tmp_path))
    os.remove(tmp_path / "model.weights.h5")
    with pytest.raises(FileNotFoundError, match="model.weights.h5"):
        GPT1CausalLM.from_preset(str(tmp_path))


def test_preset_missing_config_names_the_file(tmp_path):
    tiny_lm().save_to_preset(str(tmp_path))
    os.remove(tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="config.json"):
        GPT1CausalLM.from_preset(str(tmp_path))


def test_corrupt_preset_config_names_the_file_and_line(tmp_path):
    tiny_lm().save_to_preset(str(tmp_path))
    (tmp_path / "config.json").write_text('{\n  "class_name": "GPT1Backbone",\n  "config": {oops}\n}')
    with pytest.raises(ValueError, match=r"config.json.*line 3"):
        GPT1CausalLM.from_preset(str(tmp_path))


def test_corrupt_preset_weights_name_the_file(tmp_path):
    tiny_lm().save_to_preset(str(tmp_path))
    (tmp_path / "model.weights.h5").write_bytes(b"not an h5 file")
    with pytest.raises(ValueError, match="model.weights.h5"):
        GPT1CausalLM.from_preset(str(tmp_path))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"hidden_dim": 64}, "model.weights.h5"),
        ({"num_layers": 1}, r"model.weights.h5.*holds 26 tensors.*model with 14"),
        ({"num_layers": 3}, r"model.weights.h5.*holds 26 tensors.*model with 38"),
    ],
)
def test_preset_weights_of_another_architecture_name_the_file(tmp_path, change, message):
    tiny_lm().save_to_preset(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    config["config"].update(change)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        GPT1CausalLM.from_preset(str(tmp_path))
