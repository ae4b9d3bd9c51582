"""Task preprocessors: the paper's input transformations, packed by KerasHub preprocessors
(TensorFlow string ops, the same under every Keras backend: these tests run once, marked
`once`). KerasHub's own contract tests on them are in `test_task_keras_hub.py`."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_CONFIG, to_numpy

from keras_gpt1.models import GPT1Backbone
from keras_gpt1.tasks import (
    GPT1MultipleChoice,
    GPT1MultipleChoicePreprocessor,
    GPT1Similarity,
    GPT1SimilarityPreprocessor,
    GPT1TextClassifier,
    GPT1TextClassifierPreprocessor,
    get_family,
)
from keras_gpt1.tokenizers import train_tokenizer

pytestmark = pytest.mark.once

TEXT = [
    "Return a copy of the string with its first character capitalized and the rest lowercased.",
    "The try statement specifies exception handlers and cleanup code for a group of statements.",
    "A function definition is an executable statement.",
    "Lists are mutable sequences, typically used to store collections of homogeneous items.",
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("preprocessor_corpus") / "corpus.txt"
    path.write_text("\n".join(TEXT * 3), encoding="utf-8")
    return train_tokenizer([str(path)], num_merges=60)


def tokenizer_with(tokenizer, **config):
    return type(tokenizer)(tokenizer.vocabulary, tokenizer.merges, **{**tokenizer.get_config(), **config})


def ids_of(tokenizer, text):
    return np.asarray(tokenizer(text)).tolist()


def real(x, row):
    """The real tokens of one packed row."""
    ids, mask = np.asarray(x["token_ids"]), np.asarray(x["padding_mask"])
    return ids[row][mask[row] == 1].tolist()


def flat(x, length):
    return {k: np.asarray(v).reshape(-1, length) for k, v in x.items()}


def test_classification_layout(tokenizer):
    s, e = tokenizer.start_token_id, tokenizer.classify_token_id
    x = GPT1TextClassifierPreprocessor(tokenizer, sequence_length=64)(TEXT[:2])
    assert set(x) == {"token_ids", "padding_mask"}
    assert x["token_ids"].shape == (2, 64) and x["padding_mask"].shape == (2, 64)
    for row in range(2):
        assert real(x, row) == [s] + ids_of(tokenizer, TEXT[row]) + [e]
    # Padding is at the end, with the pad id, and the mask is a prefix of ones.
    mask = np.asarray(x["padding_mask"])[1]
    n = int(mask.sum())
    assert mask[:n].all() and not mask[n:].any()
    assert (np.asarray(x["token_ids"])[1, n:] == tokenizer.pad_token_id).all()
    # Labels and sample weights pass through as KerasHub's `(x, y, sample_weight)`.
    packed, y, w = GPT1TextClassifierPreprocessor(tokenizer, sequence_length=64)(
        TEXT[:2], y=[1, 0], sample_weight=[1.0, 0.5]
    )
    np.testing.assert_array_equal(packed["token_ids"], x["token_ids"])
    assert np.asarray(y).tolist() == [1, 0] and np.asarray(w).tolist() == [1.0, 0.5]


def test_pair_and_similarity_layouts(tokenizer):
    s, d, e = tokenizer.start_token_id, tokenizer.delimiter_token_id, tokenizer.classify_token_id
    a, b = ids_of(tokenizer, TEXT[2]), ids_of(tokenizer, TEXT[0])
    for num_segments in (None, 2):
        pair = GPT1TextClassifierPreprocessor(tokenizer, 64, num_segments=num_segments)(([TEXT[2]], [TEXT[0]]))
        assert pair["token_ids"].shape == (1, 64)
        assert real(pair, 0) == [s] + a + [d] + b + [e]

    sim = GPT1SimilarityPreprocessor(tokenizer, 160)(([TEXT[2], TEXT[1]], [TEXT[0], TEXT[3]]))
    assert sim["token_ids"].shape == (2, 2, 160) and sim["padding_mask"].shape == (2, 2, 160)
    rows = flat(sim, 160)
    assert real(rows, 0) == [s] + a + [d] + b + [e]  # pair 0, order A-B
    assert real(rows, 1) == [s] + b + [d] + a + [e]  # pair 0, order B-A
    c, f = ids_of(tokenizer, TEXT[1]), ids_of(tokenizer, TEXT[3])
    assert real(rows, 2) == [s] + c + [d] + f + [e]
    assert real(rows, 3) == [s] + f + [d] + c + [e]
    # A dict keyed by the roles is the same input.
    keyed = GPT1SimilarityPreprocessor(tokenizer, 160)({"first": [TEXT[2], TEXT[1]], "second": [TEXT[0], TEXT[3]]})
    np.testing.assert_array_equal(keyed["token_ids"], sim["token_ids"])


def test_multiple_choice_layout(tokenizer):
    s, d, e = tokenizer.start_token_id, tokenizer.delimiter_token_id, tokenizer.classify_token_id
    context = [TEXT[0], TEXT[1]]
    choices = [["lists are mutable", "a function"], ["the try statement", "exception handlers"]]
    x = GPT1MultipleChoicePreprocessor(tokenizer, 160)((context, choices))
    assert x["token_ids"].shape == (2, 2, 160)
    rows = flat(x, 160)
    for i in range(2):
        for k in range(2):
            expected = [s] + ids_of(tokenizer, context[i]) + [d] + ids_of(tokenizer, choices[i][k]) + [e]
            assert real(rows, 2 * i + k) == expected
    # A single example: a string and its candidates.
    one = GPT1MultipleChoicePreprocessor(tokenizer, 160)((context[1], choices[1]))
    assert one["token_ids"].shape == (2, 160)
    np.testing.assert_array_equal(one["token_ids"], x["token_ids"][1])


def test_single_example_and_graph_mode_match_eager(tokenizer):
    preprocessor = GPT1TextClassifierPreprocessor(tokenizer, 40, num_segments=2)
    eager = preprocessor((TEXT[:3], TEXT[1:4]))
    one = preprocessor((TEXT[0], TEXT[1]))
    assert one["token_ids"].shape == (40,)
    np.testing.assert_array_equal(one["token_ids"], eager["token_ids"][0])
    ds = tf.data.Dataset.from_tensor_slices((TEXT[:3], TEXT[1:4])).batch(3).map(lambda a, b: preprocessor((a, b)))
    graph = next(iter(ds))
    np.testing.assert_array_equal(graph["token_ids"], eager["token_ids"])
    np.testing.assert_array_equal(graph["padding_mask"], eager["padding_mask"])
    # With labels, unbatched then batched, in a tf.data pipeline.
    labelled = tf.data.Dataset.from_tensor_slices(((TEXT[:3], TEXT[1:4]), [0, 1, 0])).map(preprocessor).batch(3)
    x, y = next(iter(labelled))
    np.testing.assert_array_equal(x["token_ids"], eager["token_ids"])
    assert np.asarray(y).tolist() == [0, 1, 0]

    # Similarity and multiple choice: a tf.function gives the eager ids.
    similarity = GPT1SimilarityPreprocessor(tokenizer, 48)
    choices = GPT1MultipleChoicePreprocessor(tokenizer, 48)
    pairs = (tf.constant(TEXT[:2]), tf.constant(TEXT[2:]))
    candidates = (tf.constant(TEXT[:2]), tf.constant([TEXT[2:], TEXT[:2]]))
    for preprocessor, inputs in ((similarity, pairs), (choices, candidates)):
        graph = tf.function(lambda inputs, preprocessor=preprocessor: preprocessor(inputs))(inputs)
        eager = preprocessor(inputs)
        for key in ("token_ids", "padding_mask"):
            np.testing.assert_array_equal(graph[key], eager[key])


def test_truncation_keeps_every_segment(tokenizer):
    s, d, e = tokenizer.start_token_id, tokenizer.delimiter_token_id, tokenizer.classify_token_id
    long_a, long_b = " ".join(TEXT), " ".join(TEXT[::-1])
    a, b = ids_of(tokenizer, long_a), ids_of(tokenizer, long_b)
    short = ids_of(tokenizer, "a function")
    length = 21  # 3 special tokens + 18 for the segments
    preprocessor = GPT1TextClassifierPreprocessor(tokenizer, length)
    # Two long segments: an even split, each cut at its end (the original's n_ctx//2 rule).
    both = preprocessor(([long_a], [long_b]))
    assert real(both, 0) == [s] + a[:9] + [d] + b[:9] + [e]
    # A short one is kept whole; the long one gets the rest of the budget.
    lopsided = preprocessor(([long_a], ["a function"]))
    assert real(lopsided, 0) == [s] + a[: 18 - len(short)] + [d] + short + [e]
    assert int(np.asarray(lopsided["padding_mask"]).sum()) == length
    # A classification text is cut at its end, keeping the extract token last.
    cls = GPT1TextClassifierPreprocessor(tokenizer, 10)([long_a])
    assert real(cls, 0) == [s] + a[:8] + [e]
    # Similarity trims both orders alike; multiple choice keeps every candidate.
    sim = flat(GPT1SimilarityPreprocessor(tokenizer, length)(([long_a], [long_b])), length)
    assert real(sim, 0) == [s] + a[:9] + [d] + b[:9] + [e]
    assert real(sim, 1) == [s] + b[:9] + [d] + a[:9] + [e]
    mc = flat(GPT1MultipleChoicePreprocessor(tokenizer, length)(([long_a], [[long_b, "a function"]])), length)
    assert real(mc, 0) == [s] + a[:9] + [d] + b[:9] + [e]
    assert real(mc, 1) == [s] + a[: 18 - len(short)] + [d] + short + [e]
    # The untruncated packed length, as the original code picks the context.
    entailment = get_family("entailment")
    assert (
        entailment.packed_length(tokenizer, {"premise": [long_a], "hypothesis": ["a function"]})
        == len(a) + len(short) + 3
    )


def test_families_make_their_preprocessors_and_bad_configuration(tokenizer):
    for name, cls, segments in (
        ("classification", GPT1TextClassifierPreprocessor, 1),
        ("entailment", GPT1TextClassifierPreprocessor, 2),
        ("similarity", GPT1SimilarityPreprocessor, None),
        ("multiple-choice", GPT1MultipleChoicePreprocessor, None),
    ):
        preprocessor = get_family(name).make_preprocessor(tokenizer, 16)
        assert type(preprocessor) is cls and preprocessor.sequence_length == 16
        assert getattr(preprocessor, "num_segments", None) == segments
    with pytest.raises(ValueError, match="Unknown task 'translation'"):
        get_family("translation")
    with pytest.raises(ValueError, match="too short"):
        GPT1TextClassifierPreprocessor(tokenizer, 4)
    with pytest.raises(ValueError, match="too short"):
        GPT1SimilarityPreprocessor(tokenizer, 4)
    GPT1TextClassifierPreprocessor(tokenizer, 3, num_segments=1)  # s text e
    with pytest.raises(ValueError, match="sequence_length"):
        GPT1MultipleChoicePreprocessor(tokenizer, 2.5)
    with pytest.raises(ValueError, match="num_segments"):
        GPT1TextClassifierPreprocessor(tokenizer, 16, num_segments=3)
    with pytest.raises(ValueError, match="round_robin"):
        GPT1TextClassifierPreprocessor(tokenizer, 16, truncate="waterfall")
    with pytest.raises(ValueError, match="without `sequence_length`"):
        GPT1TextClassifierPreprocessor(tokenizer_with(tokenizer, sequence_length=8), 16)
    no_specials = tokenizer_with(tokenizer, add_special_tokens=False)
    with pytest.raises(ValueError, match="start_token_id"):
        GPT1TextClassifierPreprocessor(no_specials, 16)(["a"])
    with pytest.raises(ValueError, match="same shape"):
        GPT1TextClassifierPreprocessor(tokenizer, 16)((["a", "b"], ["c"]))
    with pytest.raises(ValueError, match="same shape"):
        GPT1SimilarityPreprocessor(tokenizer, 16)((["a", "b"], ["c"]))
    with pytest.raises(ValueError, match="one more axis"):
        GPT1MultipleChoicePreprocessor(tokenizer, 16)((["a", "b"], ["c", "d"]))
    with pytest.raises(TypeError, match="`text` must be text"):
        GPT1TextClassifierPreprocessor(tokenizer, 16)(np.array([1, 2]))
    with pytest.raises(ValueError, match=r"missing inputs \['second'\]"):
        GPT1SimilarityPreprocessor(tokenizer, 16)({"first": ["a"]})
    with pytest.raises(
        ValueError, match=r"takes 2 inputs per example, a tuple \(context, choices\); got a single input"
    ):
        GPT1MultipleChoicePreprocessor(tokenizer, 16)(["a"])
    # Without a length, it packs to the backbone's context once it joins a task.
    unset = GPT1TextClassifierPreprocessor(tokenizer)
    with pytest.raises(ValueError, match="no `sequence_length` yet"):
        unset(["a"])


def test_pairs_to_a_single_text_preprocessor_and_texts_to_a_pair_one_name_the_inputs(tokenizer):
    single = GPT1TextClassifierPreprocessor(tokenizer, 16, num_segments=1)
    with pytest.raises(
        ValueError, match=r"takes one text per example \(classification\); got a pair per example.*batch of strings"
    ):
        single((["a man sleeps"], ["a person rests"]))
    pair = GPT1TextClassifierPreprocessor(tokenizer, 16, num_segments=2)
    with pytest.raises(
        ValueError, match=r"takes a pair per example \(entailment\); got one text per example.*\(premises, hypotheses\)"
    ):
        pair(["a man sleeps"])
    # The same in a tf.data pipeline (graph mode).
    with pytest.raises(ValueError, match=r"takes a pair per example"):
        tf.data.Dataset.from_tensor_slices(["a", "b"]).batch(2).map(pair)
    # Three segments are not a classifier input at all.
    with pytest.raises(ValueError, match="one text or a pair per example; got a tuple of 3"):
        GPT1TextClassifierPreprocessor(tokenizer, 16)((["a"], ["b"], ["c"]))
    # Similarity takes a pair, never one text.
    with pytest.raises(ValueError, match=r"GPT1Similarity takes 2 inputs per example, a tuple \(first, second\)"):
        GPT1SimilarityPreprocessor(tokenizer, 16)(["a man sleeps"])
    # Through a task's `fit`, `predict` and `evaluate`: the same errors, before any data pipeline.
    backbone = GPT1Backbone(**{**TINY_CONFIG, "vocabulary_size": tokenizer.vocabulary_size()})
    classifier = GPT1TextClassifier(backbone, num_classes=2, preprocessor=single, compile=False)
    with pytest.raises(ValueError, match=r"takes one text per example \(classification\); got a pair per example"):
        classifier.predict((["a man sleeps"], ["a person rests"]), verbose=0)
    entailment = GPT1TextClassifier(backbone, num_classes=2, preprocessor=pair)
    with pytest.raises(ValueError, match=r"takes a pair per example \(entailment\); got one text per example"):
        entailment.fit(["a man sleeps"], [1], verbose=0)
    similarity = GPT1Similarity(backbone, preprocessor=GPT1SimilarityPreprocessor(tokenizer, 16))
    with pytest.raises(ValueError, match=r"GPT1Similarity takes 2 inputs per example"):
        similarity.evaluate(["a man sleeps"], [1.0], verbose=0)


def test_multiple_choice_rows_with_differing_candidates_are_refused_naming_the_row(tokenizer):
    preprocessor = GPT1MultipleChoicePreprocessor(tokenizer, 16)
    context = ["she opened the door", "he sat", "it rained"]
    choices = [["and walked in", "the moon"], ["down", "up"], ["all day"]]
    message = r"same number of candidates in every row: row 0 has 2, row 2 has 1"
    with pytest.raises(ValueError, match=message):
        preprocessor((context, choices))
    with pytest.raises(ValueError, match=message):
        preprocessor((tf.constant(context), tf.ragged.constant(choices)))
    # In graph mode the counts are not known yet: refused without the row.
    with pytest.raises(ValueError, match="same number of candidates in every row"):
        tf.function(lambda c, k: preprocessor((c, k)))(tf.constant(context), tf.ragged.constant(choices))
    backbone = GPT1Backbone(**{**TINY_CONFIG, "vocabulary_size": tokenizer.vocabulary_size()})
    model = GPT1MultipleChoice(backbone, preprocessor=GPT1MultipleChoicePreprocessor(tokenizer, 16), compile=False)
    with pytest.raises(ValueError, match=message):
        model.predict((context, choices), verbose=0)
    # The same number in every row is fine, and it may differ between batches.
    assert model.predict((context[:2], choices[:2]), verbose=0).shape == (2, 2)
    assert model.predict((context[2:], [["all day", "a", "b"]]), verbose=0).shape == (1, 3)


def test_sequence_length_is_fitted_to_the_task_backbone(tokenizer):
    backbone = GPT1Backbone(**{**TINY_CONFIG, "vocabulary_size": tokenizer.vocabulary_size()})
    context = backbone.max_sequence_length
    for task, preprocessor_cls, kwargs in (
        (GPT1TextClassifier, GPT1TextClassifierPreprocessor, {"num_classes": 2}),
        (GPT1Similarity, GPT1SimilarityPreprocessor, {}),
        (GPT1MultipleChoice, GPT1MultipleChoicePreprocessor, {}),
    ):
        with pytest.raises(
            ValueError,
            match=rf"packs {context + 1} tokens but the {task.__name__}'s backbone has a context of {context}",
        ):
            task(backbone, preprocessor=preprocessor_cls(tokenizer, context + 1), compile=False, **kwargs)
        # None: the backbone's context.
        preprocessor = preprocessor_cls(tokenizer)
        model = task(backbone, preprocessor=preprocessor, compile=False, **kwargs)
        assert model.preprocessor.sequence_length == context
    x = preprocessor((TEXT[:1], [TEXT[1:3]]))
    assert x["token_ids"].shape == (1, 2, context)
    assert to_numpy(model.predict((TEXT[:1], [TEXT[1:3]]), verbose=0)).shape == (1, 2)
