"""Task input packers (TensorFlow preprocessing; the same on every Keras backend, so the graph vs
eager checks run once per backend anyway: they are cheap)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_gpt1.tasks.packers import (
    ClassificationPacker,
    MultipleChoicePacker,
    PairPacker,
    SimilarityPacker,
    packed_length,
    packer_for_task,
)
from keras_gpt1.tokenizers import train_tokenizer

TEXT = [
    "Return a copy of the string with its first character capitalized and the rest lowercased.",
    "The try statement specifies exception handlers and cleanup code for a group of statements.",
    "A function definition is an executable statement.",
    "Lists are mutable sequences, typically used to store collections of homogeneous items.",
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("packer_corpus") / "corpus.txt"
    path.write_text("\n".join(TEXT * 3), encoding="utf-8")
    return train_tokenizer([str(path)], num_merges=60)


def ids_of(tokenizer, text):
    return tokenizer(text).numpy().tolist()


def real(x, row):
    """The real tokens of one packed row."""
    ids, mask = np.asarray(x["token_ids"]), np.asarray(x["padding_mask"])
    return ids[row][mask[row] == 1].tolist()


def test_classification_layout(tokenizer):
    s, e = tokenizer.start_token_id, tokenizer.classify_token_id
    x = ClassificationPacker(tokenizer, sequence_length=64)(TEXT[:2])
    assert x["token_ids"].shape == (2, 64) and x["padding_mask"].shape == (2, 64)
    for row in range(2):
        assert real(x, row) == [s] + ids_of(tokenizer, TEXT[row]) + [e]
    # Padding is at the end, with the pad id, and the mask is a prefix of ones.
    mask = x["padding_mask"].numpy()[1]
    n = int(mask.sum())
    assert mask[:n].all() and not mask[n:].any()
    assert (x["token_ids"].numpy()[1, n:] == tokenizer.pad_token_id).all()


def test_pair_and_similarity_layouts(tokenizer):
    s, d, e = tokenizer.start_token_id, tokenizer.delimiter_token_id, tokenizer.classify_token_id
    a, b = ids_of(tokenizer, TEXT[2]), ids_of(tokenizer, TEXT[0])
    pair = PairPacker(tokenizer, 64)(([TEXT[2]], [TEXT[0]]))
    assert real(pair, 0) == [s] + a + [d] + b + [e]

    sim = SimilarityPacker(tokenizer, 160)(([TEXT[2], TEXT[1]], [TEXT[0], TEXT[3]]))
    assert sim["token_ids"].shape == (2, 2, 160)
    flat = {k: tf.reshape(v, [4, 160]) for k, v in sim.items()}
    assert real(flat, 0) == [s] + a + [d] + b + [e]  # pair 0, order A-B
    assert real(flat, 1) == [s] + b + [d] + a + [e]  # pair 0, order B-A
    c, f = ids_of(tokenizer, TEXT[1]), ids_of(tokenizer, TEXT[3])
    assert real(flat, 2) == [s] + c + [d] + f + [e]
    assert real(flat, 3) == [s] + f + [d] + c + [e]


def test_multiple_choice_layout(tokenizer):
    s, d, e = tokenizer.start_token_id, tokenizer.delimiter_token_id, tokenizer.classify_token_id
    context = [TEXT[0], TEXT[1]]
    choices = [["lists are mutable", "a function"], ["the try statement", "exception handlers"]]
    x = MultipleChoicePacker(tokenizer, 160)((context, choices))
    assert x["token_ids"].shape == (2, 2, 160)
    flat = {k: tf.reshape(v, [4, 160]) for k, v in x.items()}
    for i in range(2):
        for k in range(2):
            expected = [s] + ids_of(tokenizer, context[i]) + [d] + ids_of(tokenizer, choices[i][k]) + [e]
            assert real(flat, 2 * i + k) == expected


def test_single_example_and_graph_mode_match_eager(tokenizer):
    packer = PairPacker(tokenizer, 40)
    eager = packer((TEXT[:3], TEXT[1:4]))
    one = packer((TEXT[0], TEXT[1]))
    assert one["token_ids"].shape == (40,)
    np.testing.assert_array_equal(one["token_ids"], eager["token_ids"][0])
    ds = tf.data.Dataset.from_tensor_slices((TEXT[:3], TEXT[1:4])).batch(3).map(lambda a, b: packer((a, b)))
    graph = next(iter(ds))
    np.testing.assert_array_equal(graph["token_ids"], eager["token_ids"])
    np.testing.assert_array_equal(graph["padding_mask"], eager["padding_mask"])


def test_truncation_keeps_every_segment(tokenizer):
    s, d, e = tokenizer.start_token_id, tokenizer.delimiter_token_id, tokenizer.classify_token_id
    long_a, long_b = " ".join(TEXT), " ".join(TEXT[::-1])
    a, b = ids_of(tokenizer, long_a), ids_of(tokenizer, long_b)
    short = ids_of(tokenizer, "a function")
    length = 21  # 3 special tokens + 18 for the segments
    packer = PairPacker(tokenizer, length)
    # Two long segments: an even split, each cut at its end (the original's n_ctx//2 rule).
    both = packer(([long_a], [long_b]))
    assert real(both, 0) == [s] + a[:9] + [d] + b[:9] + [e]
    # A short one is kept whole; the long one gets the rest of the budget.
    lopsided = packer(([long_a], ["a function"]))
    assert real(lopsided, 0) == [s] + a[: 18 - len(short)] + [d] + short + [e]
    assert int(lopsided["padding_mask"].numpy().sum()) == length
    # A classification text is cut at its end, keeping the extract token last.
    cls = ClassificationPacker(tokenizer, 10)([long_a])
    assert real(cls, 0) == [s] + a[:8] + [e]
    # The untruncated packed length, as the original code picks the context.
    assert packed_length("entailment", tokenizer, {"premise": [long_a], "hypothesis": ["a function"]}) == len(a) + len(short) + 3


def test_packer_for_task_and_bad_configuration(tokenizer):
    assert isinstance(packer_for_task("similarity", tokenizer, 16), SimilarityPacker)
    with pytest.raises(ValueError, match="Unknown task"):
        packer_for_task("translation", tokenizer, 16)
    with pytest.raises(ValueError, match="too short"):
        PairPacker(tokenizer, 4)
    with pytest.raises(ValueError, match="without `sequence_length`"):
        ClassificationPacker(type(tokenizer)(tokenizer.vocabulary, tokenizer.merges, **{**tokenizer.get_config(), "sequence_length": 8}), 16)
    no_specials = type(tokenizer)(
        tokenizer.vocabulary, tokenizer.merges, **{**tokenizer.get_config(), "add_special_tokens": False}
    )
    with pytest.raises(ValueError, match="start_token_id"):
        ClassificationPacker(no_specials, 16)
    with pytest.raises(ValueError, match="same shape"):
        PairPacker(tokenizer, 16)((["a", "b"], ["c"]))
    with pytest.raises(ValueError, match="one more axis"):
        MultipleChoicePacker(tokenizer, 16)((["a", "b"], ["c", "d"]))
