"""The fine-tuning tasks as native KerasHub tasks: KerasHub's own contract tests on each task and
preprocessor, the auto classes and task presets, presets that do not fit, and parity with the
task models they replaced (`tests/fixtures/task_logits_before.npz` and `finetune_before.json`,
recorded with `tests/task_fixtures.py` from the old `GPT1Classifier` / `GPT1Similarity` /
`GPT1MultipleChoice`).

Tiny models only: hidden 16, 2 layers, a context of 32, and a tokenizer trained on a few lines.
"""

import functools
import json
import os
import tempfile

import keras
import keras_hub
import numpy as np
import pytest
from conftest import BACKEND, to_numpy
from keras_hub.src.tests import test_case
from task_fixtures import make_tiny_preset, task_name, write_task_files

from keras_gpt1.models import GPT1Backbone, GPT1CausalLM
from keras_gpt1.tasks import (
    GPT1MultipleChoice,
    GPT1MultipleChoicePreprocessor,
    GPT1Similarity,
    GPT1SimilarityPreprocessor,
    GPT1Task,
    GPT1TextClassifier,
    GPT1TextClassifierPreprocessor,
)
from keras_gpt1.tokenizers import train_tokenizer

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


LINES = [
    "the quick brown fox jumps over the lazy dog",
    "a cat sat on the mat and slept all day",
    "the dog chased the cat around the garden",
    "birds sing in the morning light near the river",
]
TINY = {
    "num_layers": 2,
    "num_heads": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
    "max_sequence_length": 32,
    "dropout": 0.0,
}

TEXTS = ["the quick brown fox", "a cat sat on the mat"]
PREMISES = ["the dog chased the cat", "birds sing in the morning"]
HYPOTHESES = ["a dog runs", "the cat slept all day"]
CONTEXTS = ["the quick brown fox", "a cat sat"]
CHOICES = [["jumps over the dog", "sat on the mat", "sings"], ["on the mat", "in the river", "near the garden"]]


@functools.cache
def tokenizer():
    """A BPE tokenizer trained on `LINES` (with fine-tuning's three special tokens)."""
    directory = tempfile.mkdtemp(prefix="task_keras_hub_")
    path = os.path.join(directory, "corpus.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(LINES * 3))
    return train_tokenizer([path], num_merges=40)


def tiny_backbone(vocabulary_size=None):
    """A tiny backbone with rows for every id of `tokenizer()` (special tokens included)."""
    return GPT1Backbone(vocabulary_size=vocabulary_size or tokenizer().vocabulary_size(), **TINY)


def packed(tokenizer_ids, rows, length):
    """`{"token_ids", "padding_mask"}` of right-padded rows (lists of ids), as the preprocessors pack."""
    pad = tokenizer().pad_token_id
    token_ids = np.array([row + [pad] * (length - len(row)) for row in tokenizer_ids], "int32")
    mask = np.array([[1] * len(row) + [0] * (length - len(row)) for row in tokenizer_ids], "int32")
    return {"token_ids": token_ids.reshape(rows + (length,)), "padding_mask": mask.reshape(rows + (length,))}


def ids(text):
    return np.asarray(tokenizer()(text)).tolist()


def sequence(*segments):
    """`s a $ b e` for the given texts."""
    t = tokenizer()
    out = [t.start_token_id]
    for i, segment in enumerate(segments):
        if i:
            out.append(t.delimiter_token_id)
        out += ids(segment)
    return out + [t.classify_token_id]


# === KerasHub's contract tests ===

# (task class, its preprocessor, head kwargs, preprocessor kwargs, train data, output shape)
TASK_CASES = {
    "classification": (
        GPT1TextClassifier,
        GPT1TextClassifierPreprocessor,
        {"num_classes": 2},
        {},
        (TEXTS, [0, 1]),
        (2, 2),
    ),
    "entailment": (
        GPT1TextClassifier,
        GPT1TextClassifierPreprocessor,
        {"num_classes": 3},
        {"num_segments": 2},
        ((PREMISES, HYPOTHESES), [0, 2]),
        (2, 3),
    ),
    "similarity": (
        GPT1Similarity,
        GPT1SimilarityPreprocessor,
        {"num_classes": 2},
        {},
        ((PREMISES, HYPOTHESES), [1, 0]),
        (2, 2),
    ),
    "similarity-regression": (
        GPT1Similarity,
        GPT1SimilarityPreprocessor,
        {"num_classes": None},
        {},
        ((PREMISES, HYPOTHESES), [4.5, 0.5]),
        (2,),
    ),
    "multiple-choice": (
        GPT1MultipleChoice,
        GPT1MultipleChoicePreprocessor,
        {},
        {},
        ((CONTEXTS, CHOICES), [0, 2]),
        (2, 3),
    ),
}


class ContractTestCase(test_case.TestCase):
    # KerasHub's TestCase, imported as a module attribute (pytest collects every TestCase class
    # in the test module's namespace); `tf.test.TestCase.test_session` is a context manager, not
    # a test, that pytest would report as skipped.
    test_session = None


class TaskContractTest(ContractTestCase):
    """`run_task_test` (which runs `run_serialization_test`) and `run_model_saving_test` on each
    task class and each kind of head: a pair classifier (a one-text classifier is the same class
    with one segment, checked by the auto-class test below), a regression similarity (a
    similarity of classes has the classifier's head, checked by the preset round trip) and
    multiple choice."""

    def _init_kwargs(self, name, sequence_length=16):
        cls, preprocessor_cls, head, preprocessor_kwargs, _, _ = TASK_CASES[name]
        preprocessor = preprocessor_cls(tokenizer(), sequence_length=sequence_length, **preprocessor_kwargs)
        return cls, {"backbone": tiny_backbone(), "preprocessor": preprocessor, **head}

    def _check_family(self, name):
        cls, init_kwargs = self._init_kwargs(name)
        train_data, output_shape = TASK_CASES[name][4:]
        self.run_task_test(cls=cls, init_kwargs=init_kwargs, train_data=train_data, expected_output_shape=output_shape)
        # Saving and loading a `.keras` archive, preprocessor (and tokenizer assets) included.
        x = init_kwargs["preprocessor"](train_data[0])
        x = {k: keras.ops.convert_to_numpy(v) for k, v in x.items()}
        self.run_model_saving_test(cls=cls, init_kwargs=init_kwargs, input_data=x, atol=1e-5, rtol=1e-5)

    def test_entailment(self):
        self._check_family("entailment")

    def test_similarity_regression(self):
        self._check_family("similarity-regression")

    def test_multiple_choice(self):
        self._check_family("multiple-choice")


@pytest.mark.once
class PreprocessorContractTest(ContractTestCase):
    """`run_preprocessor_test` (direct call, tf.data batched and unbatched, Grain, config and
    Keras serialization, a new `sequence_length`) on every preprocessor, with the ids expected.
    TensorFlow string ops, the same under every Keras backend: they run once (`once`)."""

    def _check(self, cls, init_kwargs, input_data, expected_x, rows):
        self.init_kwargs = init_kwargs  # `run_preprocessor_test` builds a second layer from it
        length = init_kwargs["sequence_length"]
        assert max(len(row) for row in expected_x) <= length  # no truncation here
        expected = (packed(expected_x, rows, length), input_data[1])
        self.run_preprocessor_test(cls=cls, init_kwargs=init_kwargs, input_data=input_data, expected_output=expected)

    def test_text_classifier_preprocessor_single_texts(self):
        self._check(
            GPT1TextClassifierPreprocessor,
            {"tokenizer": tokenizer(), "sequence_length": 12, "num_segments": 1},
            (TEXTS, [0, 1]),
            [sequence(t) for t in TEXTS],
            (2,),
        )

    def test_text_classifier_preprocessor_pairs(self):
        self._check(
            GPT1TextClassifierPreprocessor,
            {"tokenizer": tokenizer(), "sequence_length": 24},
            ((PREMISES, HYPOTHESES), [1, 0]),
            [sequence(a, b) for a, b in zip(PREMISES, HYPOTHESES)],
            (2,),
        )

    def test_similarity_preprocessor(self):
        self._check(
            GPT1SimilarityPreprocessor,
            {"tokenizer": tokenizer(), "sequence_length": 24},
            ((PREMISES, HYPOTHESES), [1.5, 3.0]),
            [s for a, b in zip(PREMISES, HYPOTHESES) for s in (sequence(a, b), sequence(b, a))],
            (2, 2),
        )

    def test_multiple_choice_preprocessor(self):
        self._check(
            GPT1MultipleChoicePreprocessor,
            {"tokenizer": tokenizer(), "sequence_length": 24},
            ((CONTEXTS, CHOICES), [0, 2]),
            [sequence(c, k) for c, row in zip(CONTEXTS, CHOICES) for k in row],
            (2, 3),
        )

    def test_preprocessors_are_keras_hub_preprocessors(self):
        for cls in (GPT1TextClassifierPreprocessor, GPT1SimilarityPreprocessor, GPT1MultipleChoicePreprocessor):
            self.assertIsInstance(cls(tokenizer(), sequence_length=8), keras_hub.models.Preprocessor)
        self.assertIsInstance(GPT1TextClassifierPreprocessor(tokenizer()), keras_hub.models.TextClassifierPreprocessor)
        self.assertTrue(issubclass(GPT1TextClassifier, keras_hub.models.TextClassifier))
        for cls in (GPT1Similarity, GPT1MultipleChoice):
            self.assertTrue(issubclass(cls, keras_hub.models.Task))


# === Auto classes and task presets ===


def causal_lm_preset(directory):
    """A pretrained-style preset: a causal LM whose backbone has no rows for the special tokens."""
    backbone = tiny_backbone(vocabulary_size=tokenizer().base_vocabulary_size)
    keras.utils.set_random_seed(3)
    path = os.path.join(os.fspath(directory), "lm")
    GPT1CausalLM(backbone, tokenizer=tokenizer()).save_to_preset(path)
    return path


SENTIMENT = (
    ["the quick brown fox", "a lazy dog", "birds sing in the morning", "the cat slept all day"] * 2,
    [1, 0, 1, 0] * 2,
)


def test_text_classifier_auto_class_fits_raw_strings_saves_and_reloads(tmp_path):
    lm_preset = causal_lm_preset(tmp_path)
    classifier = keras_hub.models.TextClassifier.from_preset(lm_preset, num_classes=2)
    assert type(classifier) is GPT1TextClassifier and classifier.num_classes == 2
    # The special tokens got their embedding rows; the preprocessor packs to the context.
    assert classifier.backbone.vocabulary_size == tokenizer().vocabulary_size() == tokenizer().base_vocabulary_size + 3
    assert isinstance(classifier.preprocessor, GPT1TextClassifierPreprocessor)
    assert classifier.preprocessor.sequence_length == TINY["max_sequence_length"]
    lm = GPT1CausalLM.from_preset(lm_preset)
    np.testing.assert_array_equal(
        to_numpy(classifier.backbone.token_embedding.embeddings)[: tokenizer().base_vocabulary_size],
        to_numpy(lm.backbone.token_embedding.embeddings),
    )

    texts, labels = SENTIMENT
    classifier.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = classifier.evaluate(texts, labels, batch_size=4, verbose=0, return_dict=True)["loss"]
    history = classifier.fit(texts, labels, batch_size=4, epochs=4, verbose=0).history
    assert {"loss", "task_loss", "lm_loss", "accuracy"} <= set(history)
    after = classifier.evaluate(texts, labels, batch_size=4, verbose=0, return_dict=True)["loss"]
    assert after < before, (before, after)
    expected = to_numpy(classifier.predict(texts, verbose=0))
    assert expected.shape == (8, 2)

    preset = str(tmp_path / "classifier")
    classifier.save_to_preset(preset)
    task_json = read_json(os.path.join(preset, "task.json"))
    assert task_json["registered_name"] == "keras_gpt1>GPT1TextClassifier"
    assert task_json["config"]["num_classes"] == 2
    for name in (
        "config.json",
        "model.weights.h5",
        "task.weights.h5",
        "preprocessor.json",
        "tokenizer.json",
        "metadata.json",
    ):
        assert os.path.isfile(os.path.join(preset, name)), name
    assert read_json(os.path.join(preset, "preprocessor.json"))["registered_name"] == (
        "keras_gpt1>GPT1TextClassifierPreprocessor"
    )
    for load in (keras_hub.models.TextClassifier.from_preset, GPT1TextClassifier.from_preset, GPT1Task.from_preset):
        restored = load(preset)
        assert type(restored) is GPT1TextClassifier and restored.num_classes == 2, load
        assert type(restored.preprocessor) is GPT1TextClassifierPreprocessor
        np.testing.assert_allclose(to_numpy(restored.predict(texts, verbose=0)), expected, atol=1e-5)


def test_task_presets_round_trip_for_every_family(tmp_path):
    """Each family's task preset comes back whole through its class and `GPT1Task`, with its
    preprocessor; kwargs override the saved head config."""
    for name in ("entailment", "similarity", "similarity-regression", "multiple-choice"):
        cls, preprocessor_cls, head, preprocessor_kwargs, (x, _), _ = TASK_CASES[name]
        preprocessor = preprocessor_cls(tokenizer(), sequence_length=16, **preprocessor_kwargs)
        model = cls(tiny_backbone(), preprocessor=preprocessor, compile=False, **head)
        expected = to_numpy(model.predict(x, verbose=0))
        preset = str(tmp_path / name)
        model.save_to_preset(preset)
        for load in (cls.from_preset, GPT1Task.from_preset):
            restored = load(preset)
            assert type(restored) is cls, (name, load)
            config = {k: v for k, v in restored.get_config().items() if k != "name"}
            assert config == {k: v for k, v in model.get_config().items() if k != "name"}
            np.testing.assert_allclose(to_numpy(restored.predict(x, verbose=0)), expected, atol=1e-5)
        assert GPT1Task.from_preset(preset, lm_weight=0.0).lm_weight == 0.0


def test_num_classes_that_disagrees_with_the_saved_head_names_both_numbers(tmp_path):
    classifier = GPT1TextClassifier(tiny_backbone(), num_classes=2, compile=False)
    classifier.save_to_preset(str(tmp_path / "classifier"))
    with pytest.raises(ValueError, match=r"head of 2 classes, but `num_classes=3` was given"):
        GPT1TextClassifier.from_preset(str(tmp_path / "classifier"), num_classes=3)
    assert GPT1TextClassifier.from_preset(str(tmp_path / "classifier"), num_classes=2).num_classes == 2
    similarity = GPT1Similarity(tiny_backbone(), num_classes=3, compile=False)
    similarity.save_to_preset(str(tmp_path / "similarity"))
    with pytest.raises(ValueError, match=r"GPT1Similarity head of 3 classes, but `num_classes=2` was given"):
        GPT1Similarity.from_preset(str(tmp_path / "similarity"), num_classes=2)


def test_a_preset_of_another_task_class_names_both_classes(tmp_path):
    GPT1Similarity(tiny_backbone(), num_classes=2, compile=False).save_to_preset(str(tmp_path / "similarity"))
    with pytest.raises(ValueError, match=r"holds a GPT1Similarity, not a GPT1TextClassifier"):
        GPT1TextClassifier.from_preset(str(tmp_path / "similarity"))
    with pytest.raises(ValueError, match=r"holds a GPT1Similarity, not a GPT1MultipleChoice"):
        GPT1MultipleChoice.from_preset(str(tmp_path / "similarity"), num_classes=2)


def test_a_keras_hub_task_preset_of_another_model_family_names_both_classes(tmp_path):
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=16
    )
    # With a preprocessor: keras-hub 0.26 (the Colab runtime's) cannot save a task without one.
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat"]
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        keras_hub.models.BertTokenizer(vocabulary=vocabulary), sequence_length=16
    )
    bert = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=preprocessor)
    bert.save_to_preset(str(tmp_path))
    for cls in (GPT1TextClassifier, GPT1Similarity, GPT1MultipleChoice):
        with pytest.raises(ValueError, match=rf"BertTextClassifier.*not a {cls.__name__}"):
            cls.from_preset(str(tmp_path))
    # A backbone-only preset of another family: the backbone classes are named.
    other = tmp_path / "backbone"
    backbone.save_to_preset(str(other))
    with pytest.raises(ValueError, match=r"BertBackbone.*not a GPT1Backbone"):
        GPT1TextClassifier.from_preset(str(other), num_classes=2)


# === Parity with the task models these classes replaced ===

LOGITS_BEFORE = os.path.join(FIXTURES, "task_logits_before.npz")
# fixture case -> (class, head kwargs)
LOGIT_CASES = {
    "classifier": (GPT1TextClassifier, {"num_classes": 3}),
    "similarity": (GPT1Similarity, {"num_classes": 2}),
    "regression": (GPT1Similarity, {"num_classes": None}),
    "multiple_choice": (GPT1MultipleChoice, {}),
}


@pytest.mark.parametrize("case", list(LOGIT_CASES))
def test_logits_match_the_old_task_models(case):
    """The recorded backbone and head weights in the new classes give the old models' outputs
    for the recorded inputs (within 1e-5), on every backend."""
    before = np.load(LOGITS_BEFORE)
    backbone = GPT1Backbone(**json.loads(str(before["config"])))
    for variable in backbone.weights:
        variable.assign(before[f"backbone/{variable.path}"])
    cls, head = LOGIT_CASES[case]
    model = cls(backbone, compile=False, **head)  # default dropout 0.1 and lm_weight 0.5, as recorded
    model.head.kernel.assign(before[f"{case}/head_kernel"])
    model.head.bias.assign(before[f"{case}/head_bias"])
    x = {key: before[f"{case}/{key}"] for key in ("token_ids", "padding_mask")}
    expected = before[f"{case}/output"]
    np.testing.assert_allclose(to_numpy(model(x, training=False)), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(to_numpy(model.predict(x, verbose=0)), expected, atol=1e-5, rtol=0)


FINETUNE_BEFORE = os.path.join(FIXTURES, "finetune_before.json")


@pytest.fixture(scope="module")
def finetune_inputs(tmp_path_factory):
    """The task files and tiny preset `finetune_before.json` was recorded on."""
    directory = tmp_path_factory.mktemp("finetune_parity")
    return write_task_files(directory / "data"), make_tiny_preset(directory / "preset")


@pytest.mark.xla  # the TensorFlow records were made with the default compile (XLA)
@pytest.mark.parametrize(
    "family",
    [
        pytest.param("classification", marks=pytest.mark.once),
        pytest.param("entailment", marks=pytest.mark.once),
        pytest.param("similarity", marks=pytest.mark.once),
        "similarity-regression",
        "multiple-choice",
    ],
)
def test_finetune_gives_the_recorded_history_and_metrics(finetune_inputs, family):
    """`finetune` on the same files, preset and seed gives the old task models' training history
    (losses within 1e-4) and validation metrics (within 1e-6, correlations within 1e-4). Every family in the run that holds
    the `once` tests; on the other backends the two whose losses and inputs differ most from the classifier's
    (mean squared error on a pair of orders; a softmax over candidates of rank-3 inputs), since
    the data and packing are backend-independent and only the training numerics differ."""
    from keras_gpt1.workflows.finetuning import finetune

    files, preset = finetune_inputs
    record = read_json(FINETUNE_BEFORE)[BACKEND][family]
    train, validation, extra = files[family]
    result = finetune(
        task_name(family), train, validation, preset=preset, seed=0, epochs=2, batch_size=4, verbose=0, **extra
    )
    assert result.sequence_length == record["sequence_length"]
    assert set(result.history) == set(record["history"])
    for key, values in record["history"].items():
        np.testing.assert_allclose(result.history[key], values, rtol=1e-4, atol=0, err_msg=key)
    assert set(result.metrics) == set(record["metrics"])
    for key, value in record["metrics"].items():
        # A correlation of near-constant predictions (two epochs of a tiny model) divides by their
        # tiny spread, so it magnifies the last-bit differences between CPUs' float32 kernels
        # (AVX2 against AVX-512/AMX) about a hundredfold: within 1e-4, against 1e-6 for the rest.
        tolerance = 1e-4 if key in ("pearson", "spearman") else 1e-6
        assert result.metrics[key] == pytest.approx(value, abs=tolerance), (key, result.metrics, record["metrics"])
