"""Weight conversion against the external oracle: randomly initialised `transformers`
`OpenAIGPTLMHeadModel`s saved with `save_pretrained`, converted, and compared logit by logit.

Every parameter of the reference model is re-drawn (biases and LayerNorm gains included): with
the default init (zero biases, unit gains) a swapped bias or gain would go unnoticed.
"""

import errno
import json
import os
import shutil
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.numpy import load_file, save_file  # noqa: E402

from conftest import file_tree, random_inputs, to_numpy  # noqa: E402
from keras_gpt1 import GPT1Backbone, GPT1CausalLM  # noqa: E402
from keras_gpt1.cli import main  # noqa: E402
from keras_gpt1.convert import (  # noqa: E402
    backbone_to_weights,
    convert_hf_to_preset,
    convert_openai_to_preset,
    convert_preset_to_hf,
    expected_shapes,
    hf_state_dict_to_weights,
    read_openai_checkpoint,
    weight_table,
    weights_to_backbone,
    write_openai_checkpoint,
)

HF_SMALL = dict(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=24)
# The same architecture in GPT1Backbone's terms (the port's MLP is 4 × n_embd).
KERAS_SMALL = dict(vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=128,
                   max_sequence_length=24, dropout=0.1)  # fmt: skip
TOLERANCE = 1e-4
# Ragged right padding: rows of 12, 7 and 3 real tokens.
LENGTHS = [12, 7, 3]


def make_hf_model(seed=0, rescale_matrices=True, **overrides):
    torch.manual_seed(seed)
    config = transformers.OpenAIGPTConfig(**{**HF_SMALL, **overrides})
    model = transformers.OpenAIGPTLMHeadModel(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight")):
                parameter.copy_(1 + 0.2 * torch.randn_like(parameter))
            elif parameter.ndim == 1 or rescale_matrices:
                parameter.copy_(0.2 * torch.randn_like(parameter))
    assert model.lm_head.weight is model.transformer.tokens_embed.weight  # still tied
    return model


def hf_logits(model, inputs):
    with torch.no_grad():
        out = model(
            torch.tensor(inputs["token_ids"], dtype=torch.long),
            attention_mask=torch.tensor(inputs["padding_mask"], dtype=torch.long),
        )
    return out.logits.numpy()


def keras_logits(preset_dir, inputs):
    return to_numpy(GPT1CausalLM.from_preset(preset_dir)(inputs))


def assert_logits_match(expected, actual, padding_mask):
    real = padding_mask.astype(bool)  # the port's mask only hides keys: padded rows differ
    assert expected.shape == actual.shape
    assert np.abs(expected[real]).max() > 0.5  # logits big enough for the check to mean something
    np.testing.assert_allclose(actual[real], expected[real], atol=TOLERANCE, rtol=0)


def backbone_arrays(preset_dir):
    return {v.path: to_numpy(v) for v in GPT1Backbone.from_preset(preset_dir).weights}


@pytest.fixture(scope="module")
def hf_model():
    return make_hf_model()


@pytest.fixture(scope="module")
def hf_dir(hf_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("hf")
    hf_model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def inputs():
    return random_inputs(len(LENGTHS), max(LENGTHS), HF_SMALL["vocab_size"], seed=3, lengths=LENGTHS)


@pytest.fixture
def hf_copy(hf_dir, tmp_path):
    """A writable copy of the saved Hugging Face directory, to damage."""
    return shutil.copytree(hf_dir, tmp_path / "hf_copy")


def hf_state_dict(directory):
    return load_file(os.path.join(directory, "model.safetensors"))


# === Hugging Face -> preset: logits parity ===


def test_from_hf_safetensors_logits_parity(hf_model, hf_dir, inputs, tmp_path):
    backbone, tokenizer = convert_hf_to_preset(hf_dir, tmp_path / "preset")
    assert tokenizer is None
    assert (backbone.num_layers, backbone.num_heads, backbone.hidden_dim) == (2, 2, 32)
    assert (backbone.intermediate_dim, backbone.max_sequence_length, backbone.vocabulary_size) == (128, 24, 100)
    assert backbone.dropout == pytest.approx(0.1)
    assert_logits_match(hf_logits(hf_model, inputs), keras_logits(tmp_path / "preset", inputs), inputs["padding_mask"])


@pytest.mark.parametrize("layout", ["pytorch_model.bin", "base_model", "sharded", "bfloat16"])
def test_from_hf_other_layouts(layout, hf_model, hf_dir, inputs, tmp_path):
    """`safe_serialization=False` no longer writes a .bin in transformers 5: write it with torch."""
    source = tmp_path / "hf"
    source.mkdir()
    shutil.copy(hf_dir / "config.json", source)
    model = hf_model
    if layout == "pytorch_model.bin":  # the full state dict, tied lm_head.weight included
        torch.save(model.state_dict(), source / "pytorch_model.bin")
    elif layout == "base_model":  # OpenAIGPTModel: no "transformer." prefix
        tensors = {k: v.numpy() for k, v in model.transformer.state_dict().items()}
        save_file(tensors, str(source / "model.safetensors"), metadata={"format": "pt"})
    elif layout == "sharded":
        shutil.rmtree(source)
        model.save_pretrained(source, max_shard_size="40KB")
        assert (source / "model.safetensors.index.json").exists()
    else:
        model = make_hf_model().to(torch.bfloat16).float()  # the bfloat16 values, as float32
        from safetensors.torch import save_file as save_torch

        state = {k: v.to(torch.bfloat16) for k, v in model.transformer.state_dict().items()}
        save_torch(state, str(source / "model.safetensors"), metadata={"format": "pt"})
    convert_hf_to_preset(source, tmp_path / "preset")
    assert_logits_match(hf_logits(model, inputs), keras_logits(tmp_path / "preset", inputs), inputs["padding_mask"])


# === Original release layout ===


def hand_written_openai_checkpoint(state_dict, directory, num_layers):
    """The original layout, written straight from GPT1_REFERENCE.md (independently of the
    library's writer): positions, tokens, then 12 tensors a block, matrices [1, in, out]."""
    order = ["transformer.positions_embed.weight", "transformer.tokens_embed.weight"]
    for i in range(num_layers):
        p = f"transformer.h.{i}."
        order += [p + "attn.c_attn.weight", p + "attn.c_attn.bias", p + "attn.c_proj.weight",
                  p + "attn.c_proj.bias", p + "ln_1.weight", p + "ln_1.bias", p + "mlp.c_fc.weight",
                  p + "mlp.c_fc.bias", p + "mlp.c_proj.weight", p + "mlp.c_proj.bias",
                  p + "ln_2.weight", p + "ln_2.bias"]  # fmt: skip
    arrays = [state_dict[k][None] if k.endswith("c_attn.weight") or k.endswith("c_proj.weight")
              or k.endswith("c_fc.weight") else state_dict[k] for k in order]  # fmt: skip
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "params_shapes.json"), "w") as f:
        json.dump([list(a.shape) for a in arrays], f)
    flat = np.concatenate([a.reshape(-1) for a in arrays])
    for i, piece in enumerate(np.array_split(flat, 10)):
        np.save(os.path.join(directory, f"params_{i}.npy"), piece)
    return flat


def test_from_openai_layout_logits_parity(hf_model, hf_dir, inputs, tmp_path):
    flat = hand_written_openai_checkpoint(hf_state_dict(hf_dir), tmp_path / "original", 2)
    backbone, _ = convert_openai_to_preset(tmp_path / "original", tmp_path / "preset", num_heads=2)
    assert backbone.get_config()["intermediate_dim"] == 128
    assert_logits_match(hf_logits(hf_model, inputs), keras_logits(tmp_path / "preset", inputs), inputs["padding_mask"])

    # The library's writer produces the same layout, byte for byte.
    weights, _ = hf_state_dict_to_weights(hf_state_dict(hf_dir))
    write_openai_checkpoint(weights, tmp_path / "written")
    with open(tmp_path / "written" / "params_shapes.json") as f:
        shapes = json.load(f)
    assert shapes[:4] == [[24, 32], [100, 32], [1, 32, 96], [96]]
    assert len(shapes) == 2 + 12 * 2
    written = np.concatenate([np.load(tmp_path / "written" / f"params_{i}.npy") for i in range(10)])
    np.testing.assert_array_equal(written, flat)


def test_openai_layout_default_heads(tmp_path):
    # hidden 128 -> 2 heads of GPT-1's head size 64 when the count is not given.
    config = dict(vocabulary_size=50, num_layers=1, hidden_dim=128, intermediate_dim=256, max_sequence_length=8)
    rng = np.random.default_rng(0)
    weights = {name: rng.normal(size=shape).astype("float32") for name, shape in expected_shapes(config).items()}
    write_openai_checkpoint(weights, tmp_path / "original")
    read_config, read_weights = read_openai_checkpoint(tmp_path / "original")
    assert read_config == {**config, "num_heads": 2, "dropout": 0.1}
    for name, array in weights.items():
        np.testing.assert_array_equal(read_weights[name], array)


# === Preset -> Hugging Face, and back ===


@pytest.mark.parametrize("block_bytes", [16 * 2**20, 1000], ids=["whole tensors", "blocks of rows"])
def test_to_hf_round_trip_identical(block_bytes, hf_model, hf_dir, inputs, tmp_path, monkeypatch):
    import functools

    import keras_gpt1.convert.hf as hf

    # Small blocks split every matrix into several writes (the token embedding into 8 rows a block).
    monkeypatch.setattr(hf, "_variable_blocks", functools.partial(hf._variable_blocks, block_bytes=block_bytes))
    convert_hf_to_preset(hf_dir, tmp_path / "preset")
    convert_preset_to_hf(tmp_path / "preset", tmp_path / "hf")
    model, info = transformers.OpenAIGPTLMHeadModel.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.lm_head.weight.data_ptr() == model.transformer.tokens_embed.weight.data_ptr()
    np.testing.assert_array_equal(hf_logits(model.eval(), inputs), hf_logits(hf_model, inputs))

    original, exported = hf_state_dict(hf_dir), hf_state_dict(tmp_path / "hf")
    assert set(exported) == set(original)
    for key in original:
        np.testing.assert_array_equal(exported[key], original[key], err_msg=key)

    convert_hf_to_preset(tmp_path / "hf", tmp_path / "preset_again")
    first, second = backbone_arrays(tmp_path / "preset"), backbone_arrays(tmp_path / "preset_again")
    assert set(first) == set(second)
    for path in first:
        np.testing.assert_array_equal(second[path], first[path], err_msg=path)
    with open(tmp_path / "hf" / "config.json") as f:
        config = json.load(f)
    assert config["afn"] == "gelu" and config["resid_pdrop"] == 0.1 and config["vocab_size"] == 100


def test_fine_tuning_special_token_rows_both_ways(tmp_path):
    # 40,478 base tokens + _start_, _delimiter_, _classify_.
    model = make_hf_model(vocab_size=40481)
    model.save_pretrained(tmp_path / "hf")
    convert_hf_to_preset(tmp_path / "hf", tmp_path / "preset")
    convert_preset_to_hf(tmp_path / "preset", tmp_path / "hf_again")
    reloaded, info = transformers.OpenAIGPTLMHeadModel.from_pretrained(tmp_path / "hf_again", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert reloaded.config.vocab_size == 40481
    ids = np.array([[40478, 5, 40479, 7, 40480, 0]], dtype="int32")
    batch = {"token_ids": ids, "padding_mask": np.array([[1, 1, 1, 1, 1, 0]], dtype="int32")}
    expected = hf_logits(model, batch)
    assert_logits_match(expected, keras_logits(tmp_path / "preset", batch), batch["padding_mask"])
    np.testing.assert_array_equal(hf_logits(reloaded.eval(), batch), expected)


def test_to_hf_rejects_mlp_width_the_port_cannot_hold(tmp_path, tiny_config):
    # Only the config is needed: the check runs before any weights are read.
    (tmp_path / "preset").mkdir()
    config = {"registered_name": "keras_gpt1>GPT1Backbone", "config": tiny_config}  # hidden 32, MLP 64
    (tmp_path / "preset" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"4 × hidden_dim \(128\).*intermediate_dim 64"):
        convert_preset_to_hf(tmp_path / "preset", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_weights_to_backbone_in_memory_round_trip():
    source, target = GPT1Backbone(**KERAS_SMALL), GPT1Backbone(**KERAS_SMALL)
    weights_to_backbone(backbone_to_weights(source), target)
    for a, b in zip(source.weights, target.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    assert [path for _, path in weight_table(2)] == [v.path for v in source.weights]


# === Bad input ===


def rewrite_safetensors(directory, edit):
    tensors = hf_state_dict(directory)
    edit(tensors)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})


def test_missing_tensor_is_named(hf_copy, tmp_path):
    rewrite_safetensors(hf_copy, lambda t: t.pop("transformer.h.1.ln_2.bias"))
    with pytest.raises(ValueError, match=r"missing tensor transformer\.h\.1\.ln_2\.bias \(expected shape \[32\]\)"):
        convert_hf_to_preset(hf_copy, tmp_path / "preset")
    assert not (tmp_path / "preset" / "config.json").exists()


def test_extra_tensor_is_named(hf_copy, tmp_path):
    def add(tensors):
        tensors["multiple_choice_head.summary.weight"] = np.zeros((1, 32), "float32")

    rewrite_safetensors(hf_copy, add)
    with pytest.raises(
        ValueError, match=r"unexpected tensor multiple_choice_head\.summary\.weight \(shape \[1, 32\]\)"
    ):
        convert_hf_to_preset(hf_copy, tmp_path / "preset")


def test_misshaped_tensor_names_both_shapes(hf_copy, tmp_path):
    def shrink(tensors):
        tensors["transformer.h.0.mlp.c_fc.weight"] = np.zeros((32, 100), "float32")

    rewrite_safetensors(hf_copy, shrink)
    with pytest.raises(ValueError) as error:
        convert_hf_to_preset(hf_copy, tmp_path / "preset")
    message = str(error.value)
    assert "transformer.h.0.mlp.c_fc.weight" in message
    assert "[32, 100]" in message and "[32, 128]" in message


def test_untied_lm_head_is_rejected(hf_copy, tmp_path):
    def untie(tensors):
        tensors["lm_head.weight"] = tensors["transformer.tokens_embed.weight"] + 1

    rewrite_safetensors(hf_copy, untie)
    with pytest.raises(ValueError, match="lm_head.weight .* differs from transformer.tokens_embed.weight"):
        convert_hf_to_preset(hf_copy, tmp_path / "preset")


@pytest.mark.parametrize("filename", ["config.json", "model.safetensors"])
def test_missing_hf_file_is_named(filename, hf_copy, tmp_path):
    os.remove(hf_copy / filename)
    with pytest.raises(FileNotFoundError, match=filename.replace(".", r"\.")):
        convert_hf_to_preset(hf_copy, tmp_path / "preset")


def test_corrupt_safetensors_is_named(hf_copy, tmp_path):
    (hf_copy / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"Could not read safetensors file .*model\.safetensors"):
        convert_hf_to_preset(hf_copy, tmp_path / "preset")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"afn": "relu"}, "afn 'relu' is not supported"),
        ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon 1e-06 is not supported"),
        ({"model_type": "gpt2"}, "'gpt2' model, not GPT-1"),
        ({"n_head": 3}, "n_embd \\(32\\) must be divisible by n_head \\(3\\)"),
    ],
)
def test_unsupported_hf_config_is_rejected(change, message, hf_copy, tmp_path):
    config = json.loads((hf_copy / "config.json").read_text())
    (hf_copy / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ValueError, match=message):
        convert_hf_to_preset(hf_copy, tmp_path / "preset")


def test_different_dropout_rates_take_resid_pdrop(hf_copy, tmp_path):
    config = json.loads((hf_copy / "config.json").read_text())
    (hf_copy / "config.json").write_text(json.dumps({**config, "embd_pdrop": 0.2, "resid_pdrop": 0.05}))
    with pytest.warns(UserWarning, match="using resid_pdrop = 0.05"):
        backbone, _ = convert_hf_to_preset(hf_copy, tmp_path / "preset")
    assert backbone.dropout == pytest.approx(0.05)


def test_old_configs_count_special_tokens_apart(hf_copy, tmp_path):
    config = json.loads((hf_copy / "config.json").read_text())
    (hf_copy / "config.json").write_text(json.dumps({**config, "vocab_size": 97, "n_special": 3}))
    backbone, _ = convert_hf_to_preset(hf_copy, tmp_path / "preset")
    assert backbone.vocabulary_size == 100


def test_pytorch_bin_without_torch_says_so(hf_model, hf_dir, tmp_path, monkeypatch):
    source = tmp_path / "hf"
    source.mkdir()
    shutil.copy(hf_dir / "config.json", source)
    torch.save(hf_model.state_dict(), source / "pytorch_model.bin")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ValueError, match=r"pytorch_model\.bin.*needs PyTorch"):
        convert_hf_to_preset(source, tmp_path / "preset")


@pytest.fixture
def original_dir(hf_dir, tmp_path):
    weights, _ = hf_state_dict_to_weights(hf_state_dict(hf_dir))
    write_openai_checkpoint(weights, tmp_path / "original")
    return tmp_path / "original"


def edit_shapes(directory, edit):
    path = directory / "params_shapes.json"
    shapes = json.loads(path.read_text())
    edit(shapes)
    path.write_text(json.dumps(shapes))


def test_missing_params_file_is_named(original_dir, tmp_path):
    os.remove(original_dir / "params_3.npy")
    with pytest.raises(FileNotFoundError, match=r"params_3\.npy"):
        convert_openai_to_preset(original_dir, tmp_path / "preset", num_heads=2)


def test_params_shapes_inconsistent_with_total_size(original_dir, tmp_path):
    def grow_vocabulary(shapes):
        shapes[1][0] += 1  # every shape stays consistent, but one row more than the shards hold

    edit_shapes(original_dir, grow_vocabulary)
    with pytest.raises(ValueError, match=r"describes 29,408 values but params_0\.npy … params_9\.npy hold 29,376"):
        convert_openai_to_preset(original_dir, tmp_path / "preset", num_heads=2)


def test_params_shapes_misshaped_entry_names_both_shapes(original_dir, tmp_path):
    edit_shapes(original_dir, lambda shapes: shapes[14].__setitem__(2, 97))  # h.1 c_attn weight
    with pytest.raises(ValueError, match=r"#14 \(h\.1\.attn\.c_attn\.weight\).*\[1, 32, 97\].*\[1, 32, 96\]"):
        convert_openai_to_preset(original_dir, tmp_path / "preset", num_heads=2)


def test_params_shapes_missing_or_extra_tensor(original_dir, tmp_path):
    edit_shapes(original_dir, lambda shapes: shapes.pop())
    with pytest.raises(ValueError, match="lists 25 tensors.*missing or extra"):
        convert_openai_to_preset(original_dir, tmp_path / "preset", num_heads=2)


def test_openai_layout_needs_head_count_for_small_widths(original_dir, tmp_path):
    with pytest.raises(ValueError, match="pass `num_heads`"):
        convert_openai_to_preset(original_dir, tmp_path / "preset")


def test_existing_output_is_replaced_only_on_request(hf_dir, tmp_path, capsys):
    preset = tmp_path / "preset"
    convert_hf_to_preset(hf_dir, preset)
    (preset / "task.json").write_text("{}")  # the task head of an earlier model
    with pytest.raises(ValueError, match="already holds a model.*pass `overwrite=True`"):
        convert_hf_to_preset(hf_dir, preset)
    convert_hf_to_preset(hf_dir, preset, overwrite=True)
    assert not (preset / "task.json").exists() and (preset / "model.weights.h5").exists()
    assert main(["convert", "--model", str(hf_dir), "--output", str(preset)]) == 2
    assert (
        "already holds a model (config.json). Pick another directory, or pass --overwrite to" in capsys.readouterr().err
    )
    assert main(["convert", "--model", str(hf_dir), "--output", str(preset), "--overwrite"]) == 0


def test_output_must_differ_from_input(hf_copy):
    with pytest.raises(ValueError, match="is the input directory"):
        convert_hf_to_preset(hf_copy, hf_copy)


# === Vocabulary files ===

LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
TEST_MERGES = ["t h", "th e</w>", "a n", "an d</w>", "i n", "in g</w>", "e r</w>", "o n</w>",
               "o f</w>", "t o</w>", "i s</w>", "a t</w>", "h e</w>", "c a", "ca t</w>", "d o",
               "do g</w>", "th e", "r e", "w a"]  # fmt: skip
TEXT = ["The cat and the dog, 42 times!", "Is Zebra at home? Then the end."]


def make_vocabulary():
    """97 tokens: with GPT1Tokenizer's 3 special tokens, exactly the model's 100 rows."""
    tokens = ["<unk>", *LETTERS, *(c + "</w>" for c in LETTERS), ",</w>", "!</w>", "?</w>", ".</w>"]
    tokens += [m.replace(" ", "") for m in TEST_MERGES]
    assert len(tokens) == len(set(tokens)) == 97
    return {token: i for i, token in enumerate(tokens)}


def write_hf_vocabulary_files(directory):
    (directory / "vocab.json").write_text(json.dumps(make_vocabulary()))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(TEST_MERGES) + "\n")


def hf_tokenizer_ids(directory):
    """The oracle: `transformers`' own OpenAIGPT tokenizer reading the same files."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    assert type(tokenizer).__name__.startswith("OpenAIGPTTokenizer")
    return [tokenizer(text)["input_ids"] for text in TEXT]


def our_tokenizer_ids(tokenizer):
    return [to_numpy(tokenizer(text)).tolist() for text in TEXT]


def test_vocabulary_files_travel_with_the_weights(hf_copy, tmp_path):
    write_hf_vocabulary_files(hf_copy)
    expected = hf_tokenizer_ids(hf_copy)
    assert 0 not in sum(expected, [])  # no <unk>: every character is in the vocabulary

    _, tokenizer = convert_hf_to_preset(hf_copy, tmp_path / "preset")
    assert tokenizer.vocabulary_size() == 100 and tokenizer.start_token_id == 97
    loaded = GPT1CausalLM.from_preset(tmp_path / "preset").tokenizer
    assert our_tokenizer_ids(loaded) == expected

    convert_preset_to_hf(tmp_path / "preset", tmp_path / "hf")
    assert hf_tokenizer_ids(tmp_path / "hf") == expected

    weights, _ = hf_state_dict_to_weights(hf_state_dict(hf_copy))
    vocabulary, merges = make_vocabulary(), TEST_MERGES
    write_openai_checkpoint(weights, tmp_path / "original", vocabulary, merges)
    assert (tmp_path / "original" / "encoder_bpe_40000.json").exists()
    assert (tmp_path / "original" / "vocab_40000.bpe").read_text().startswith("#version: 0.2\nt h\n")
    _, tokenizer = convert_openai_to_preset(tmp_path / "original", tmp_path / "preset2", num_heads=2)
    assert tokenizer.standardize == "original"  # the original pipeline's text_standardize
    assert our_tokenizer_ids(tokenizer) == expected


def test_vocabulary_larger_than_the_embedding_is_rejected(tmp_path):
    config = {**KERAS_SMALL, "vocabulary_size": 50}
    weights = {name: np.zeros(shape, "float32") for name, shape in expected_shapes(config).items()}
    write_openai_checkpoint(weights, tmp_path / "original", make_vocabulary(), TEST_MERGES)
    with pytest.raises(ValueError, match="has 97 tokens, but the token embedding has only 50 rows"):
        convert_openai_to_preset(tmp_path / "original", tmp_path / "preset", num_heads=2)


def test_lone_vocabulary_file_is_reported(hf_copy, tmp_path):
    (hf_copy / "vocab.json").write_text(json.dumps({"a</w>": 0}))
    with pytest.raises(FileNotFoundError, match=r"vocab\.json.*but not.*merges\.txt"):
        convert_hf_to_preset(hf_copy, tmp_path / "preset")


# === Command line ===


def test_cli_converts_all_three_ways(hf_model, hf_dir, original_dir, inputs, tmp_path, capsys):
    assert main(["convert", "--model", str(hf_dir), "--output", str(tmp_path / "p1")]) == 0
    out = capsys.readouterr().out
    assert "2 layers, 2 heads, hidden 32" in out and "29,376 parameters" in out
    assert main(["convert", "--model", str(original_dir), "--num-heads", "2",
                 "--output", str(tmp_path / "p2")]) == 0  # fmt: skip
    assert main(["convert", "--model", str(tmp_path / "p2"), "--output", str(tmp_path / "hf")]) == 0
    expected = hf_logits(hf_model, inputs)
    for preset in ("p1", "p2"):
        assert_logits_match(expected, keras_logits(tmp_path / preset, inputs), inputs["padding_mask"])
    reloaded = transformers.OpenAIGPTLMHeadModel.from_pretrained(tmp_path / "hf").eval()
    np.testing.assert_array_equal(hf_logits(reloaded, inputs), expected)


def test_cli_user_errors(tmp_path, hf_dir, capsys):
    assert main(["convert", "--model", str(tmp_path / "nowhere"), "--output", str(tmp_path / "p")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["convert", "--model", str(hf_dir), "--num-heads", "2", "--output", str(tmp_path / "p")]) == 2
    assert "--num-heads only applies to an original-release --model" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "words").mkdir()
    (tmp_path / "words" / "vocab.json").write_text("{}")
    for folder, holds in (("empty", "holds no model"), ("words", "holds a tokenizer (vocab.json)")):
        assert main(["convert", "--model", str(tmp_path / folder), "--output", str(tmp_path / "p")]) == 2
        err = capsys.readouterr().err
        assert f"{holds}: expected a Hugging Face OpenAIGPTLMHeadModel directory" in err and "params_shapes.json" in err
    with pytest.raises(SystemExit) as exit_info:  # argparse: two sources at once, an old name and the new
        main(["convert", "--model", "a", "--from-hf", "b", "--output", "c"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# === Full size ===


@pytest.mark.slow
def test_full_117m_logits_parity(tmp_path):
    # The paper's sizes (OpenAIGPTConfig's defaults), HF's own N(0, 0.02) matrices.
    model = make_hf_model(rescale_matrices=False, vocab_size=40478, n_embd=768, n_layer=12,
                          n_head=12, n_positions=512)  # fmt: skip
    model.save_pretrained(tmp_path / "hf")
    backbone, _ = convert_hf_to_preset(tmp_path / "hf", tmp_path / "preset")
    assert backbone.count_params() == 116_534_784
    batch = random_inputs(2, 64, 40478, seed=5, lengths=[64, 40])
    assert_logits_match(hf_logits(model, batch), keras_logits(tmp_path / "preset", batch), batch["padding_mask"])


# === Streaming: one tensor at a time ===


@pytest.fixture
def tensor_reads(monkeypatch):
    """The names of the checkpoint tensors read so far, in order."""
    from keras_gpt1.convert.lazy import LazyTensor

    reads, read = [], LazyTensor.read

    def counted(self):
        reads.append(self.source)
        return read(self)

    monkeypatch.setattr(LazyTensor, "read", counted)
    return reads


@pytest.mark.parametrize("layout", ["safetensors", "pytorch_model.bin", "original"])
def test_conversion_reads_each_tensor_once_after_the_checks(layout, hf_model, hf_dir, inputs, tmp_path, tensor_reads):
    from keras_gpt1.convert.hf import read_hf_state_dict
    from keras_gpt1.convert.lazy import LazyTensor

    source = tmp_path / "source"
    if layout == "safetensors":
        source = hf_dir
    elif layout == "pytorch_model.bin":
        source.mkdir()
        shutil.copy(hf_dir / "config.json", source)
        torch.save(hf_model.state_dict(), source / "pytorch_model.bin")
    else:
        hand_written_openai_checkpoint(hf_state_dict(hf_dir), source, 2)
    if layout == "original":
        _, weights = read_openai_checkpoint(source, num_heads=2)
    else:
        weights, _ = read_hf_state_dict(source)
    assert all(isinstance(tensor, LazyTensor) for tensor in weights.values())
    assert tensor_reads == []  # the headers give every shape; no data has been read

    if layout == "original":
        convert_openai_to_preset(source, tmp_path / "preset", num_heads=2)
    else:
        convert_hf_to_preset(source, tmp_path / "preset")
    # 26 tensors, each read once; the .bin also holds lm_head.weight, read with the token
    # embedding to check the tie (before the model is built, so two tensors at most in flight).
    tied = ["lm_head.weight", "transformer.tokens_embed.weight"] if layout == "pytorch_model.bin" else []
    assert len(set(tensor_reads)) == 26 + len(tied[:1])
    twice = sorted({name for name in tensor_reads if tensor_reads.count(name) > 1})
    assert [name.split()[1] for name in twice] == tied[1:]
    assert_logits_match(hf_logits(hf_model, inputs), keras_logits(tmp_path / "preset", inputs), inputs["padding_mask"])


@pytest.fixture
def assigned(monkeypatch):
    """The paths of the Keras variables assigned so far."""
    import keras

    paths, assign = [], keras.Variable.assign

    def counted(self, value):
        paths.append(self.path)
        return assign(self, value)

    monkeypatch.setattr(keras.Variable, "assign", counted)
    return paths


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_converted_variables_are_created_holding_the_checkpoint_tensors(dtype, assigned):
    # Not zeros then `assign`: on TensorFlow with oneDNN every assignment leaves a buffer in the
    # allocator's pool, half a copy of the weights more at the peak (docs/convert.md).
    import keras

    from keras_gpt1.convert.common import build_backbone

    config = {**KERAS_SMALL, "dtype": dtype}
    weights = backbone_to_weights(GPT1Backbone(**KERAS_SMALL))
    backbone = build_backbone(config, weights, "checkpoint")
    assert assigned == []
    assert {v.dtype for v in backbone.weights} == {dtype}
    for name, array in backbone_to_weights(backbone).items():
        expected = to_numpy(keras.ops.cast(weights[name], dtype)).astype("float32")
        np.testing.assert_array_equal(array, expected, err_msg=name)


def test_converted_variables_are_assigned_if_keras_creates_them_at_once(monkeypatch, assigned):
    # If a Keras version allocated variables inside a `StatelessScope` (or ignored the swapped
    # initializer), the build must still hold the checkpoint, not zeros or random draws.
    import contextlib

    import keras

    from keras_gpt1.convert.common import build_backbone

    monkeypatch.setattr(keras, "StatelessScope", contextlib.nullcontext)
    weights = backbone_to_weights(GPT1Backbone(**KERAS_SMALL))
    backbone = build_backbone(KERAS_SMALL, weights, "checkpoint")
    assert len(assigned) == len(weights) == 26
    for name, array in backbone_to_weights(backbone).items():
        np.testing.assert_array_equal(array, weights[name], err_msg=name)


def test_a_checkpoint_that_does_not_fit_is_refused_before_any_tensor_is_read(hf_copy, tmp_path, tensor_reads):
    rewrite_safetensors(hf_copy, lambda t: t.pop("transformer.h.0.ln_1.bias"))
    with pytest.raises(ValueError, match="missing tensor"):
        convert_hf_to_preset(hf_copy, tmp_path / "preset")
    assert tensor_reads == []


def test_truncated_safetensors_names_the_file_and_tensor(hf_copy, tmp_path):
    path = hf_copy / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        convert_hf_to_preset(hf_copy, tmp_path / "preset")
    assert not (tmp_path / "preset").exists()


def test_a_tensor_that_fails_to_read_midway_leaves_nothing_behind():
    import keras

    from keras_gpt1.convert.common import build_backbone
    from keras_gpt1.convert.lazy import LazyTensor

    weights = backbone_to_weights(GPT1Backbone(**KERAS_SMALL))
    reads = []

    def broken():
        reads.append("h.0.mlp.c_fc.weight")
        raise ValueError("Could not read tensor h.0.mlp.c_fc.weight: disk gone")

    weights["h.0.mlp.c_fc.weight"] = LazyTensor(weights["h.0.mlp.c_fc.weight"].shape, broken, "c_fc")
    with pytest.raises(ValueError, match="disk gone"):
        build_backbone(KERAS_SMALL, weights, "checkpoint")
    assert reads == ["h.0.mlp.c_fc.weight"]
    # Nothing of the failed build is left for Keras to create later: the next scope to end
    # (every JAX training step ends one) would otherwise read the broken tensor again.
    with keras.StatelessScope():
        pass
    assert reads == ["h.0.mlp.c_fc.weight"]


# === Replacing a model (--overwrite) never loses the old one ===


@pytest.fixture
def two_presets(hf_copy, tmp_path):
    """Two presets with tokenizers and different weights: the old model and its replacement."""
    write_hf_vocabulary_files(hf_copy)
    convert_hf_to_preset(hf_copy, tmp_path / "old_preset")
    new_hf = tmp_path / "new_hf"
    make_hf_model(seed=7).save_pretrained(new_hf)
    write_hf_vocabulary_files(new_hf)
    convert_hf_to_preset(new_hf, tmp_path / "new_preset")
    return tmp_path / "old_preset", tmp_path / "new_preset"


@pytest.fixture
def old_hf_dir(two_presets, tmp_path):
    """A Hugging Face directory holding the old model, a stale tokenizer.json of an even older
    one, and files that are not the model's (a README, a folder of notes)."""
    output = tmp_path / "hf_out"
    convert_preset_to_hf(two_presets[0], output)
    (output / "tokenizer.json").write_text("{}")
    (output / "README.md").write_text("my model card")
    (output / "notes").mkdir()
    (output / "notes" / "a.txt").write_text("keep")
    return output


def fail_on_call(monkeypatch, module, name, call, error=None, only=None):
    """Makes `module.name` raise on its `call`-th call (1-based; counting only calls for which
    `only(*args)` is true, if given), once; other calls go through."""
    real, count = getattr(module, name), [0]

    def failing(*args, **kwargs):
        if only is None or only(*args):
            count[0] += 1
        if count[0] == call and (only is None or only(*args)):
            raise error or OSError(errno.EIO, f"injected failure in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


def swapping(directory):
    """True for the renames of a swap in `directory`: an entry of it moved out, or one moved in."""
    directory = os.path.abspath(directory)
    return lambda source, target: (
        directory in (os.path.dirname(os.path.abspath(source)), os.path.dirname(os.path.abspath(target)))
    )


def partial_weights_then_disk_full(path, tensors, metadata):
    with open(path, "wb") as f:
        f.write(b"half a safetensors file")
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize(
    "where",
    [
        "weights, disk full",
        "after the weights",
        "vocabulary",
        "read-back check",
        "moving the old aside",
        "moving the new in",
    ],
)
def test_to_hf_overwrite_failing_midway_keeps_the_old_model(where, two_presets, old_hf_dir, monkeypatch):
    import keras_gpt1.convert.hf as hf
    from keras_gpt1.tokenizers import vocab_files

    before = file_tree(old_hf_dir)
    siblings = sorted(os.listdir(old_hf_dir.parent))
    if where == "weights, disk full":
        monkeypatch.setattr(hf, "_write_safetensors", partial_weights_then_disk_full)
    elif where == "after the weights":
        fail_on_call(monkeypatch, hf, "atomic_write_json", 1)
    elif where == "vocabulary":
        fail_on_call(monkeypatch, vocab_files, "write_hf_vocabulary", 1)
    elif where == "read-back check":
        fail_on_call(monkeypatch, hf, "_check_safetensors", 1, ValueError("does not read back as written"))
    elif where == "moving the old aside":  # the second of the five old entries
        fail_on_call(monkeypatch, os, "rename", 2, only=swapping(old_hf_dir))
    else:  # five old entries moved aside, then the second of the four new ones fails
        fail_on_call(monkeypatch, os, "rename", 5 + 2, only=swapping(old_hf_dir))
    with pytest.raises((OSError, ValueError)) as info:
        convert_preset_to_hf(two_presets[1], old_hf_dir, overwrite=True)
    if where == "weights, disk full":
        assert "No space left on the device while writing weights" in str(info.value)
        assert "model.safetensors" in str(info.value)
    assert file_tree(old_hf_dir) == before  # byte for byte, and no temporary left inside
    assert sorted(os.listdir(old_hf_dir.parent)) == siblings  # nor beside it
    reloaded = transformers.OpenAIGPTLMHeadModel.from_pretrained(old_hf_dir)
    old = load_file(os.path.join(old_hf_dir, "model.safetensors"))
    np.testing.assert_array_equal(
        reloaded.transformer.tokens_embed.weight.detach().numpy(), old["transformer.tokens_embed.weight"]
    )


def test_to_hf_overwrite_replaces_the_model_and_keeps_other_files(two_presets, old_hf_dir, inputs):
    assert main(["convert", "--model", str(two_presets[1]), "--output", str(old_hf_dir)]) == 2  # no --overwrite
    assert main(["convert", "--model", str(two_presets[1]), "--output", str(old_hf_dir), "--overwrite"]) == 0
    entries = sorted(os.listdir(old_hf_dir))
    assert entries == ["README.md", "config.json", "merges.txt", "model.safetensors", "notes", "vocab.json"]
    assert (old_hf_dir / "README.md").read_text() == "my model card" and (
        old_hf_dir / "notes" / "a.txt"
    ).read_text() == "keep"
    reloaded = transformers.OpenAIGPTLMHeadModel.from_pretrained(old_hf_dir).eval()
    np.testing.assert_allclose(hf_logits(reloaded, inputs), hf_logits(make_hf_model(seed=7), inputs), atol=TOLERANCE)


@pytest.mark.parametrize("where", ["weights", "tokenizer", "moving the new in"])
def test_preset_overwrite_failing_midway_keeps_the_old_preset(where, two_presets, hf_copy, tmp_path, monkeypatch):
    from keras_gpt1.tokenizers import GPT1Tokenizer

    old = two_presets[0]
    (old / "README.md").write_text("notes")
    before = file_tree(old)
    if where == "weights":

        def disk_full(self, preset_dir, **kwargs):
            with open(os.path.join(preset_dir, "model.weights.h5"), "wb") as f:
                f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(GPT1Backbone, "save_to_preset", disk_full)
    elif where == "tokenizer":
        fail_on_call(monkeypatch, GPT1Tokenizer, "save_to_preset", 1)
    else:
        # Five old entries went aside, then the second new one fails.
        fail_on_call(monkeypatch, os, "rename", 5 + 2, only=swapping(old))
    with pytest.raises(OSError) as info:
        convert_hf_to_preset(hf_copy, old, overwrite=True)
    if where == "weights":
        assert "No space left on the device while writing preset" in str(info.value)
    assert file_tree(old) == before
    assert sorted(os.listdir(tmp_path)) == sorted(["hf_copy", "new_hf", "new_preset", "old_preset"])
