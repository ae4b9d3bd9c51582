"""GPT1Tokenizer and GPT1CausalLMPreprocessor against KerasHub's own preprocessing contract tests.

KerasHub's `TestCase.run_preprocessing_layer_test` / `run_preprocessor_test` call the layer
directly, in `tf.data` (batched and unbatched), in Grain, and through `get_config`/`from_config`
and Keras serialization, and compare all of them. The vocabulary is tiny and hand-made so the
expected ids can be read off it.
"""

import json
import os

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from keras_hub.src.tests.test_case import TestCase

from keras_gpt1.tokenizers import GPT1Tokenizer

# A tiny BPE whose merges build five whole words.
MERGES = ["t h", "th e</w>", "q u", "qu i", "qui c", "quic k</w>", "f o", "fo x</w>", "d o", "do g</w>"]
BASE = ["<unk>", "t", "h", "e</w>", "q", "u", "i", "c", "k</w>", "f", "o", "x</w>", "a</w>", "d", "g</w>"]
VOCABULARY = {token: i for i, token in enumerate(BASE + ["".join(m.split()) for m in MERGES])}
TEXT = ["the quick fox", "a dog", "the fox"]
IDS = [[16, 20, 22], [12, 24], [16, 22]]  # the quick fox a dog


class TokenizerContractTest(TestCase):
    def setUp(self):
        self.init_kwargs = {"vocabulary": dict(VOCABULARY), "merges": list(MERGES)}

    def test_preprocessing_layer_contract(self):
        self.run_preprocessing_layer_test(
            cls=GPT1Tokenizer, init_kwargs=self.init_kwargs, input_data=TEXT, expected_output=IDS
        )

    def test_is_a_keras_hub_tokenizer_with_its_vocabulary_api(self):
        tokenizer = GPT1Tokenizer(**self.init_kwargs)
        self.assertIsInstance(tokenizer, keras_hub.tokenizers.Tokenizer)
        size = tokenizer.vocabulary_size()
        self.assertIs(type(size), int)
        self.assertEqual(size, len(VOCABULARY) + 3)  # _start_, _delimiter_, _classify_
        self.assertEqual(len(tokenizer.get_vocabulary()), size)
        self.assertEqual(tokenizer.special_tokens, ["_start_", "_delimiter_", "_classify_"])
        self.assertEqual(tokenizer.special_token_ids, [25, 26, 27])
        self.assertIsNone(tokenizer.end_token_id)  # GPT-1 has no end-of-text token

    def test_a_tokenizer_without_a_vocabulary_says_so(self):
        tokenizer = GPT1Tokenizer(sequence_length=4)
        for call in (
            lambda: tokenizer("the fox"),
            lambda: tokenizer.detokenize([1, 2]),
            lambda: tokenizer.vocabulary_size(),
            tokenizer.get_vocabulary,
            lambda: tokenizer.token_to_id("the</w>"),
        ):
            with self.assertRaisesRegex(ValueError, "no vocabulary yet"):
                call()
        with self.assertRaisesRegex(ValueError, "`merges` is missing"):
            GPT1Tokenizer(vocabulary=dict(VOCABULARY))
        with self.assertRaisesRegex(ValueError, "`vocabulary` is missing"):
            GPT1Tokenizer(merges=list(MERGES))


def test_keras_hub_saver_layout_loads_and_the_earlier_layout_is_refused(tmp_path):
    tokenizer = GPT1Tokenizer(dict(VOCABULARY), list(MERGES), sequence_length=5)
    new = tmp_path / "new"
    tokenizer.save_to_preset(new)
    saved = json.loads((new / "tokenizer.json").read_text())
    assert saved["registered_name"] == "keras_gpt1>GPT1Tokenizer"
    assert "vocabulary" not in saved["config"] and saved["config"]["sequence_length"] == 5
    assert sorted(os.listdir(new / "assets/tokenizer")) == ["merges.txt", "vocab.json"]
    loaded = GPT1Tokenizer.from_preset(new)
    assert loaded(TEXT[:2]).numpy().tolist() == [[16, 20, 22, 0, 0], [12, 24, 0, 0, 0]]
    assert loaded.vocabulary_size() == 28
    # The layout keras_gpt1 wrote before its presets were KerasHub's: no registered name.
    old = tmp_path / "old"
    (old / "assets/tokenizer").mkdir(parents=True)
    for name in ("vocab.json", "merges.txt"):
        (old / "assets/tokenizer" / name).write_bytes((new / "assets/tokenizer" / name).read_bytes())
    (old / "tokenizer.json").write_text(
        json.dumps(
            {
                "module": "keras_gpt1.tokenizers",
                "class_name": "GPT1Tokenizer",
                "config": {"sequence_length": 5, "standardize": "bert", "add_special_tokens": True, "dtype": "int32"},
            }
        )
    )
    with pytest.raises(ValueError, match=r"tokenizer\.json' is in the format .*keras-gpt1 convert"):
        GPT1Tokenizer.from_preset(old)


def test_a_keras_archive_restores_the_vocabulary_from_its_assets(tmp_path):
    from keras_gpt1.models import GPT1Backbone, GPT1CausalLM

    tokenizer = GPT1Tokenizer(dict(VOCABULARY), list(MERGES))
    backbone = GPT1Backbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=8,
    )  # fmt: skip
    path = str(tmp_path / "lm.keras")
    GPT1CausalLM(backbone, tokenizer=tokenizer).save(path)
    restored = keras.saving.load_model(path)
    assert restored.tokenizer(TEXT).to_list() == IDS


# === GPT1CausalLMPreprocessor ===


class CausalLMPreprocessorContractTest(TestCase):
    def setUp(self):
        from keras_gpt1.models import GPT1CausalLMPreprocessor

        self.cls = GPT1CausalLMPreprocessor
        self.tokenizer = GPT1Tokenizer(dict(VOCABULARY), list(MERGES))
        self.init_kwargs = {"tokenizer": self.tokenizer, "sequence_length": 4}

    def test_preprocessor_contract(self):
        # No start or end token: "the quick fox" is [16, 20, 22] from position 0, padded with 0.
        self.run_preprocessor_test(
            cls=self.cls,
            init_kwargs=self.init_kwargs,
            input_data=["the quick fox"],
            expected_output=(
                {"token_ids": [[16, 20, 22, 0]], "padding_mask": [[1, 1, 1, 0]]},
                [[20, 22, 0, 0]],
                [[1, 1, 0, 0]],
            ),
        )

    def test_truncates_at_the_end_and_labels_the_next_token(self):
        preprocessor = self.cls(self.tokenizer, sequence_length=2)
        x, y, w = preprocessor(["the quick fox a dog", "dog"])
        self.assertAllEqual(x["token_ids"], [[16, 20], [24, 0]])
        self.assertAllEqual(x["padding_mask"], [[True, True], [True, False]])
        self.assertAllEqual(y, [[20, 22], [0, 0]])
        self.assertAllEqual(w, [[True, True], [False, False]])
        # A dataset of strings maps through it.
        ds = tf.data.Dataset.from_tensor_slices(["the quick fox a dog", "dog"]).batch(2).map(preprocessor)
        (x_ds, y_ds, w_ds) = ds.get_single_element()
        self.assertAllEqual(x_ds["token_ids"], x["token_ids"])
        self.assertAllEqual(y_ds, y)

    def test_generate_preprocess_and_postprocess(self):
        preprocessor = self.cls(self.tokenizer, sequence_length=6)
        x = preprocessor.generate_preprocess(["the fox", "a"])
        self.assertAllEqual(x["token_ids"], [[16, 22, 0, 0, 0, 0], [12, 0, 0, 0, 0, 0]])
        self.assertAllEqual(preprocessor.generate_preprocess("the fox", sequence_length=3)["token_ids"], [16, 22, 0])
        generated = {
            "token_ids": np.array([[16, 22, 25, 24, 0], [12, 20, 0, 0, 0]], "int32"),  # 25: _start_
            "padding_mask": np.array([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], bool),
        }
        self.assertEqual(preprocessor.generate_postprocess(generated), ["the fox dog", "a quick"])

    def test_start_and_end_tokens_are_refused_with_the_reason(self):
        for name in ("add_start_token", "add_end_token"):
            with self.assertRaisesRegex(ValueError, f"`{name}=True`.*no start or end-of-text token"):
                self.cls(self.tokenizer, **{name: True})
        with self.assertRaisesRegex(ValueError, "without `sequence_length`"):
            self.cls(GPT1Tokenizer(dict(VOCABULARY), list(MERGES), sequence_length=8))
        for bad in (0, -3, 2.5, "8"):
            with self.assertRaisesRegex(ValueError, "sequence_length"):
                self.cls(self.tokenizer, sequence_length=bad)

    def test_is_a_keras_hub_causal_lm_preprocessor_and_saves_as_a_preset(self):
        import keras_gpt1

        preprocessor = self.cls(self.tokenizer, sequence_length=5)
        self.assertIsInstance(preprocessor, keras_hub.models.CausalLMPreprocessor)
        self.assertIs(keras_gpt1.GPT1CausalLMPreprocessor, self.cls)
        preset = self.get_temp_dir()
        preprocessor.save_to_preset(preset)
        self.assertTrue(os.path.isfile(os.path.join(preset, "preprocessor.json")))
        self.assertTrue(os.path.isfile(os.path.join(preset, "assets/tokenizer/vocab.json")))
        restored = self.cls.from_config(json.load(open(os.path.join(preset, "preprocessor.json")))["config"])
        restored.tokenizer.load_assets(os.path.join(preset, "assets/tokenizer"))
        self.assertAllEqual(restored(TEXT)[0]["token_ids"], preprocessor(TEXT)[0]["token_ids"])


def test_keras_hub_auto_classes_find_the_gpt1_tokenizer_and_preprocessor(tmp_path):
    from keras_gpt1.models import GPT1Backbone, GPT1CausalLMPreprocessor

    tokenizer = GPT1Tokenizer(dict(VOCABULARY), list(MERGES))
    backbone = GPT1Backbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=8,
    )  # fmt: skip
    # config.json as KerasHub's preset saver writes it (the registered name finds the backbone).
    (tmp_path / "config.json").write_text(json.dumps(keras.saving.serialize_keras_object(backbone)))
    GPT1CausalLMPreprocessor(tokenizer, sequence_length=6).save_to_preset(tmp_path)
    loaded = keras_hub.tokenizers.Tokenizer.from_preset(str(tmp_path))
    assert type(loaded) is GPT1Tokenizer
    assert loaded(TEXT).to_list() == IDS
    preprocessor = keras_hub.models.CausalLMPreprocessor.from_preset(str(tmp_path))
    assert type(preprocessor) is GPT1CausalLMPreprocessor and preprocessor.sequence_length == 6
    x, _, _ = preprocessor(TEXT[:1])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(x["token_ids"]), [[16, 20, 22, 0, 0, 0]])
