"""GPT1Tokenizer and GPT1CausalLMPreprocessor against KerasHub's own preprocessing contract tests.

KerasHub's `TestCase.run_preprocessing_layer_test` / `run_preprocessor_test` call the layer
directly, in `tf.data` (batched and unbatched), in Grain, and through `get_config`/`from_config`
and Keras serialization, and compare all of them. The vocabulary is tiny and hand-made so the
expected ids can be read off it.
"""

import json
import os
import warnings

import keras
import keras_hub
import numpy as np
import pytest
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

    def test_vocabulary_size_read_as_a_number_still_works_and_warns(self):
        tokenizer = GPT1Tokenizer(**self.init_kwargs)
        uses = [
            lambda v: v == 28,
            lambda v: v > 27,
            lambda v: v - 3 == 25,
            lambda v: f"{v}" == "28",
            lambda v: int(v) == 28,
        ]
        for use in uses:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.assertTrue(use(tokenizer.vocabulary_size))
            self.assertTrue(any(issubclass(w.category, DeprecationWarning) for w in caught))
            self.assertIn("vocabulary_size()", str(caught[0].message))
        # Uses that CPython reads straight from the int (indexing, `range`, shapes) work silently.
        self.assertEqual(len(range(tokenizer.vocabulary_size)), 28)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the method form never warns
            self.assertEqual(tokenizer.vocabulary_size() + 0, 28)

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


def test_keras_hub_saver_layout_and_the_previous_layout_both_load(tmp_path):
    tokenizer = GPT1Tokenizer(dict(VOCABULARY), list(MERGES), sequence_length=5)
    new = tmp_path / "new"
    tokenizer.save_to_preset(new)
    saved = json.loads((new / "tokenizer.json").read_text())
    assert saved["registered_name"] == "keras_gpt1>GPT1Tokenizer"
    assert "vocabulary" not in saved["config"] and saved["config"]["sequence_length"] == 5
    assert sorted(os.listdir(new / "assets/tokenizer")) == ["merges.txt", "vocab.json"]
    # The layout earlier releases wrote: no registered name, the config without KerasHub's keys.
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
    expected = [[16, 20, 22, 0, 0], [12, 24, 0, 0, 0]]
    for preset in (new, old):
        loaded = GPT1Tokenizer.from_preset(preset)
        assert loaded(TEXT[:2]).numpy().tolist() == expected
        assert loaded.vocabulary_size() == 28


def test_a_keras_archive_restores_the_vocabulary_from_its_assets(tmp_path):
    from keras_gpt1.models import GPT1Backbone, GPT1CausalLM

    tokenizer = GPT1Tokenizer(dict(VOCABULARY), list(MERGES))
    backbone = GPT1Backbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=8,
    )  # fmt: skip
    path = str(tmp_path / "lm.keras")
    GPT1CausalLM(backbone, tokenizer).save(path)
    restored = keras.saving.load_model(path)
    assert restored.tokenizer(TEXT).to_list() == IDS
