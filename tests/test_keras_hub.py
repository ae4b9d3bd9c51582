"""GPT-1 as a native KerasHub model: KerasHub's own contract tests on our classes, the auto-class
loads, presets (and the format keras_gpt1 wrote before KerasHub's, refused with how to convert
it), quantized presets, and the bad inputs."""

import json
import os
import pathlib
import re
import shutil

import keras
import keras_hub
import numpy as np
import pytest
from keras_hub.src.tests.test_case import TestCase

from conftest import TINY_CONFIG
from keras_gpt1.models import GPT1Backbone, GPT1CausalLM, preset_io
from task_fixtures import TINY_TASK_CONFIG, make_tiny_preset

BACKBONE_KWARGS = dict(TINY_CONFIG)
# Words the tiny preset's tokenizer knows (tests/task_fixtures.py trains it on them).
TEXTS = ["a cat is not in the house and it was very near the river on a good day"] * 8


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory):
    """A causal LM preset with a BPE tokenizer (`make_tiny_preset`), made once for this module."""
    return make_tiny_preset(tmp_path_factory.mktemp("tiny"))


def _inputs(batch=2, length=5):
    rng = np.random.default_rng(0)
    token_ids = rng.integers(1, BACKBONE_KWARGS["vocabulary_size"], size=(batch, length)).astype("int32")
    padding_mask = np.ones((batch, length), "int32")
    padding_mask[1, 3:] = 0
    return {"token_ids": token_ids, "padding_mask": padding_mask}


class GPT1BackboneContractTest(TestCase):
    def test_backbone_contract(self):
        self.run_backbone_test(
            cls=GPT1Backbone,
            init_kwargs=dict(BACKBONE_KWARGS),
            input_data=_inputs(),
            expected_output_shape=(2, 5, 32),
        )

    def test_model_saving(self):
        self.run_model_saving_test(cls=GPT1Backbone, init_kwargs=dict(BACKBONE_KWARGS), input_data=_inputs())

    def test_causal_lm_serialization(self):
        lm = GPT1CausalLM(GPT1Backbone(**BACKBONE_KWARGS))
        self.run_serialization_test(lm)

    def test_causal_lm_model_saving(self):
        self.run_model_saving_test(
            cls=GPT1CausalLM, init_kwargs={"backbone": GPT1Backbone(**BACKBONE_KWARGS)}, input_data=_inputs()
        )


class GPT1CausalLMTaskTest(TestCase):
    @pytest.fixture(autouse=True)
    def _preset(self, tiny_preset):
        self.preset = tiny_preset

    def test_causal_lm_task_contract(self):
        from keras_gpt1.models import GPT1CausalLMPreprocessor

        tokenizer = GPT1CausalLM.from_preset(self.preset).tokenizer
        size = TINY_TASK_CONFIG["vocabulary_size"]
        backbone = GPT1Backbone(**{**BACKBONE_KWARGS, "vocabulary_size": size})
        preprocessor = GPT1CausalLMPreprocessor(tokenizer, sequence_length=8)
        self.run_task_test(
            cls=GPT1CausalLM,
            init_kwargs={"backbone": backbone, "preprocessor": preprocessor},
            train_data=(["the quick brown fox jumps", "a language model"],),
            expected_output_shape=(2, 8, size),
        )


def _tiny_lm():
    return GPT1CausalLM(GPT1Backbone(**BACKBONE_KWARGS))


def _logits(model, x):
    return keras.ops.convert_to_numpy(model(x))


# === Auto classes and presets ===


def test_keras_hub_auto_classes_load_our_classes(tmp_path, tiny_preset):
    lm = GPT1CausalLM.from_preset(tiny_preset)
    lm.save_to_preset(str(tmp_path))
    for name in ("config.json", "metadata.json", "model.weights.h5", "task.json", "tokenizer.json"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "assets" / "tokenizer").is_dir()
    backbone = keras_hub.models.Backbone.from_preset(str(tmp_path))
    causal_lm = keras_hub.models.CausalLM.from_preset(str(tmp_path))
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(str(tmp_path))
    assert type(backbone) is GPT1Backbone
    assert type(causal_lm) is GPT1CausalLM and isinstance(causal_lm, keras_hub.models.CausalLM)
    assert type(tokenizer).__name__ == "GPT1Tokenizer"
    x = _inputs()
    x["token_ids"] %= 100
    np.testing.assert_allclose(_logits(causal_lm, x), _logits(lm, x), atol=1e-6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(backbone(x)), keras.ops.convert_to_numpy(lm.backbone(x)), atol=1e-6
    )


def test_int8_preset_round_trip_gives_the_same_logits(tmp_path, tiny_preset):
    lm = GPT1CausalLM.from_preset(tiny_preset)
    lm.quantize("int8")
    x = _inputs()
    x["token_ids"] %= 100
    expected = _logits(lm, x)
    lm.save_to_preset(str(tmp_path))
    for load in (GPT1CausalLM.from_preset, keras_hub.models.CausalLM.from_preset):
        restored = load(str(tmp_path))
        modes = {layer.quantization_mode for layer in restored.backbone._flatten_layers() if layer.weights}
        assert "int8" in modes
        np.testing.assert_allclose(_logits(restored, x), expected, atol=1e-5, rtol=0)
    restored = GPT1Backbone.from_preset(str(tmp_path))
    assert restored.transformer_layers[0].quantization_mode is None  # a block has no weights itself
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(x)), keras.ops.convert_to_numpy(lm.backbone(x)), atol=1e-5, rtol=0
    )


def test_fit_on_strings_and_on_a_dataset_of_strings_lowers_the_loss(tiny_preset):
    import tensorflow as tf

    lm = GPT1CausalLM.from_preset(tiny_preset)
    before = lm.evaluate(TEXTS, batch_size=4, verbose=0, return_dict=True)["loss"]
    lm.fit(TEXTS, batch_size=4, epochs=3, verbose=0)
    lm.fit(tf.data.Dataset.from_tensor_slices(TEXTS).batch(4), epochs=2, verbose=0)
    after = lm.evaluate(TEXTS, batch_size=4, verbose=0, return_dict=True)["loss"]
    assert after < before
    # Token ids go to the model as they are.
    x = _inputs()
    x["token_ids"] %= 100
    lm.fit(x, x["token_ids"], sample_weight=x["padding_mask"], batch_size=2, verbose=0)


def test_text_without_a_preprocessor_is_refused():
    with pytest.raises(ValueError, match="got text but has no preprocessor"):
        _tiny_lm().fit(["some text"], verbose=0)


# === Bad input ===


def _foreign_preset(tmp_path):
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=16
    )
    backbone.save_to_preset(str(tmp_path))
    return str(tmp_path)


@pytest.mark.parametrize("load", [GPT1Backbone.from_preset, GPT1CausalLM.from_preset])
def test_preset_of_another_model_family_names_both_classes(tmp_path, load):
    with pytest.raises(ValueError, match=r"GPT2Backbone.*not a GPT1Backbone"):
        load(_foreign_preset(tmp_path))


def test_config_json_of_another_format_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "openai-gpt", "n_embd": 32}')
    with pytest.raises(ValueError, match=r"config.json.*not a GPT1Backbone.*keras-gpt1 convert"):
        GPT1Backbone.from_preset(str(tmp_path))
    (tmp_path / "config.json").write_text('{"registered_name": "nobody>Nothing", "config": {}}')
    with pytest.raises(ValueError, match=r"Nothing.*not a GPT1Backbone"):
        GPT1Backbone.from_preset(str(tmp_path))


def test_backbone_config_json_is_what_keras_hubs_saver_writes(tiny_preset):
    saved = json.loads(pathlib.Path(tiny_preset, "config.json").read_text())
    assert preset_io.backbone_config_json(saved["config"]) == saved  # the hub cache writes it for hf:// architectures


def test_load_backbone_config_names_what_it_cannot_read(tmp_path):
    with pytest.raises(ValueError, match=r"'kaggle://someone/gpt' is a remote handle.*GPT1Backbone.from_preset"):
        preset_io.load_backbone_config("kaggle://someone/gpt")
    with pytest.raises(ValueError, match=r"Unknown preset 'gpt3'.*gpt1_tiny"):
        preset_io.load_backbone_config("gpt3")
    with pytest.raises(FileNotFoundError, match="config.json"):
        preset_io.load_backbone_config(str(tmp_path))


def _in_the_earlier_format(preset, directory):
    """A copy of `preset` as keras_gpt1 wrote presets before they were KerasHub's: `config.json`
    and `tokenizer.json` as `{"module", "class_name", "config"}` without a `registered_name` (and
    without the config keys added since), the same weights and vocabulary files, and no
    `metadata.json`, `task.json` or `preprocessor.json`."""
    directory.mkdir()
    shutil.copytree(os.path.join(preset, "assets"), directory / "assets")
    shutil.copy(os.path.join(preset, "model.weights.h5"), directory)
    for name, module, dropped in (
        ("config.json", "keras_gpt1", ("name", "trainable", "fused_attention", "fused_qkv_matmul")),
        ("tokenizer.json", "keras_gpt1.tokenizers", ("name", "trainable", "config_file")),
    ):
        saved = json.loads(pathlib.Path(preset, name).read_text())
        config = {k: v for k, v in saved["config"].items() if k not in dropped}
        (directory / name).write_text(
            json.dumps({"module": module, "class_name": saved["class_name"], "config": config})
        )
    return directory


def _docs_example(heading):
    """The Python example under `### heading` in docs/keras_hub.md."""
    page = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "keras_hub.md").read_text(encoding="utf-8")
    return re.search(r"```python\n(.*?)```", page.split(f"### {heading}\n", 1)[1], re.S).group(1)


def test_a_preset_in_the_earlier_format_is_refused_with_how_to_convert_it(tmp_path, tiny_preset, monkeypatch):
    from keras_gpt1.tokenizers import GPT1Tokenizer

    old = _in_the_earlier_format(tiny_preset, tmp_path / "old_preset")
    for load, name in (
        (GPT1Backbone.from_preset, "config.json"),
        (GPT1CausalLM.from_preset, "config.json"),
        (preset_io.load_backbone_config, "config.json"),  # pretrain, finetune, convert --to-hf
        (GPT1Tokenizer.from_preset, "tokenizer.json"),
    ):
        where = re.escape(repr(str(old / name)))
        with pytest.raises(
            ValueError, match=where + r" is in the format .* Re-run `keras-gpt1 convert`.*save_to_preset"
        ):
            load(str(old))
    # The conversion docs/keras_hub.md shows, run as written: the same model, in KerasHub's format.
    monkeypatch.chdir(tmp_path)
    exec(_docs_example("Presets in the earlier format"), {})
    converted = keras_hub.models.CausalLM.from_preset(str(tmp_path / "new_preset"))
    lm = GPT1CausalLM.from_preset(tiny_preset)
    x = _inputs()
    x["token_ids"] %= 100
    np.testing.assert_allclose(_logits(converted, x), _logits(lm, x), atol=1e-6, rtol=0)
    assert converted.tokenizer(TEXTS[:1]).to_list() == lm.tokenizer(TEXTS[:1]).to_list()


# === KerasHub samplers and generate() arguments ===


@pytest.mark.parametrize(
    "sampler, expected",
    [
        ("greedy", "Greedy()"),
        ("top_k", "TopK(k=5, temperature=1.0)"),
        (keras_hub.samplers.GreedySampler(), "Greedy()"),
        (keras_hub.samplers.TopKSampler(k=3, temperature=0.5), "TopK(k=3, temperature=0.5)"),
        (keras_hub.samplers.TopPSampler(p=0.5), "TopP(p=0.5, temperature=1.0)"),
        (keras_hub.samplers.RandomSampler(temperature=2.0), "Random(temperature=2.0)"),
        (keras_hub.samplers.BeamSampler(num_beams=2), "Beam(num_beams=2)"),
    ],
)
def test_compile_maps_samplers_onto_the_decode_loop(sampler, expected):
    lm = _tiny_lm()
    lm.compile(sampler=sampler)
    assert repr(lm.sampler) == expected


def test_keras_hub_top_k_matches_ours_token_for_token():
    lm = _tiny_lm()
    prompts = [[5, 6, 7], [8]]
    lm.compile(sampler=keras_hub.samplers.TopKSampler(k=4))
    theirs = lm.generate(prompts, max_new_tokens=5, seed=3)
    ours = lm.generate(prompts, max_new_tokens=5, seed=3, sampler="top_k", k=4)
    assert theirs == ours


class _CustomSampler(keras_hub.samplers.Sampler):
    def get_next_token(self, probabilities):
        return keras.ops.argmin(probabilities, axis=-1)


@pytest.mark.parametrize(
    "sampler",
    [
        keras_hub.samplers.ContrastiveSampler(),
        keras_hub.samplers.TopPSampler(p=0.5, k=10),
        keras_hub.samplers.BeamSampler(return_all_beams=True),
        _CustomSampler(),
    ],
)
def test_a_sampler_the_decode_loop_cannot_run_is_refused_naming_those_it_can(sampler):
    lm = _tiny_lm()
    with pytest.raises(ValueError, match=r"cannot run the KerasHub sampler.*GreedySampler, TopKSampler"):
        lm.compile(sampler=sampler)
    with pytest.raises(ValueError, match="cannot run the KerasHub sampler"):
        lm.generate([5, 6], max_new_tokens=2, sampler=sampler)
    with pytest.raises(ValueError, match=r"Unknown sampler 'contrastive'.*top_k"):
        lm.compile(sampler="contrastive")


def test_max_length_is_the_output_length_prompt_included():
    lm = _tiny_lm()
    out = lm.generate([[5, 6, 7], [8]], max_length=6, stop_token_ids=None)
    assert [len(row) for row in out] == [6, 6]
    assert out[0][:3] == [5, 6, 7] and out[1][:1] == [8]
    # max_new_tokens keeps its meaning: new tokens per row.
    assert [len(row) for row in lm.generate([[5, 6, 7], [8]], max_new_tokens=2)] == [5, 3]
    stripped = lm.generate([[5, 6, 7], [8]], max_length=6, strip_prompt=True)
    assert stripped == [out[0][3:], out[1][1:]]
    arrays = lm.generate(
        {"token_ids": np.array([[5, 6, 7], [8, 0, 0]]), "padding_mask": np.array([[1, 1, 1], [1, 0, 0]])},
        max_length=6,
        strip_prompt=True,
    )
    np.testing.assert_array_equal(arrays["padding_mask"].sum(axis=1), [3, 5])
    np.testing.assert_array_equal(arrays["token_ids"][1], out[1][1:])


def test_stop_token_ids_end_a_row():
    lm = _tiny_lm()
    free = lm.generate([5, 6, 7], max_new_tokens=6)
    stop = free[4]  # the second generated token
    stopped = lm.generate([5, 6, 7], max_new_tokens=6, stop_token_ids=[stop])
    assert stopped == free[: free.index(stop, 3) + 1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_length": 3}, r"Prompt 0 has 3 tokens.*max_length"),
        ({"max_length": 25}, r"`max_length` must be an integer in \[2, 24\]"),
        ({"max_length": 6, "max_new_tokens": 2}, "not both"),
        ({"max_length": 4.5}, "`max_length` must be an integer"),
    ],
)
def test_bad_max_length_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _tiny_lm().generate([5, 6, 7], **kwargs)


def test_a_task_preset_gives_its_backbone_and_a_causal_lm_to_keras_hub(tmp_path):
    from keras_gpt1.tasks import GPT1Task, GPT1TextClassifier

    classifier = GPT1TextClassifier(GPT1Backbone(**BACKBONE_KWARGS), num_classes=3)
    classifier.save_to_preset(str(tmp_path))
    x = _inputs()
    backbone = keras_hub.models.Backbone.from_preset(str(tmp_path))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(backbone(x)), keras.ops.convert_to_numpy(classifier.backbone(x)), atol=1e-6
    )
    # No tokenizer in this preset: KerasHub's loader needs `preprocessor=None` for that.
    lm = keras_hub.models.CausalLM.from_preset(str(tmp_path), preprocessor=None)
    assert type(lm) is GPT1CausalLM
    # The classifier comes back, head included, through its class, GPT1Task and KerasHub's auto class.
    for restored in (
        GPT1TextClassifier.from_preset(str(tmp_path)),
        GPT1Task.from_preset(str(tmp_path)),
        keras_hub.models.TextClassifier.from_preset(str(tmp_path), preprocessor=None),
    ):
        assert type(restored) is GPT1TextClassifier and restored.num_classes == 3
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(restored(x)), keras.ops.convert_to_numpy(classifier(x)), atol=1e-6
        )
