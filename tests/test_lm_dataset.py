"""The tf.data pretraining pipeline: packing, split, order, resume position, bad files.

The oracle is a plain-Python re-implementation of the documented rules on a character-level
stand-in tokenizer (one id per Unicode code point), so every token can be traced; one test runs
the real `GPT1Tokenizer` when it is available. The pipeline is TensorFlow code whatever the Keras
backend, but its batches feed `fit` on every backend, so it runs under each.
"""

import gzip
import json
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_gpt1.data.lm_dataset import LMDataset, check_corpus_file, resolve_corpus_files  # noqa: E402


class CharTokenizer:
    """Stand-in: one id per code point (ragged, like `GPT1Tokenizer` without `sequence_length`)."""

    vocabulary_size = 0x110000

    def tokenize(self, strings):
        return tf.strings.unicode_decode(strings, "UTF-8")


def _lines(n, seed=0):
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "épsilon", "zeta", "ηta", "theta"]
    return [" ".join(rng.choice(words, size=rng.integers(0, 9))) for _ in range(n)]


@pytest.fixture
def corpus(tmp_path):
    """Three files of three kinds; returns (glob patterns, the expected token stream)."""
    a, b, c = _lines(40, 1), _lines(30, 2), _lines(25, 3)
    (tmp_path / "a.txt").write_text("\n".join(a) + "\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(b))  # no final newline: the last line still counts
    with open(tmp_path / "c.jsonl", "w", encoding="utf-8") as f:
        for line in c:
            f.write(json.dumps({"text": line, "id": 1}) + "\n")
    stream = [ord(ch) for line in a + b + c for ch in line]
    return [str(tmp_path / "*.txt"), str(tmp_path / "*.gz"), str(tmp_path / "c.jsonl")], stream


def _windows(dataset):
    return [w.tolist() for w in dataset.as_numpy_iterator()]


def test_packing_keeps_every_token_once(corpus):
    patterns, stream = corpus
    L = 15
    data = LMDataset(patterns, CharTokenizer(), sequence_length=L, batch_size=4, validation_fraction=0.1)
    assert [os.path.basename(p) for p in data.files] == ["a.txt", "b.txt.gz", "c.jsonl"]
    windows = _windows(data.windows())
    n = len(stream) // (L + 1)
    assert len(windows) == n
    # Consecutive, non-overlapping: their concatenation is the stream minus the remainder.
    assert sum(windows, []) == stream[: n * (L + 1)]
    stats = data.count()
    assert stats == {
        "tokens": len(stream),
        "windows": n,
        "remainder": len(stream) % (L + 1),
        "train_windows": n - n // 10,
        "validation_windows": n // 10,
    }


def test_split_is_disjoint_and_complete(corpus):
    patterns, _ = corpus
    data = LMDataset(patterns, CharTokenizer(), sequence_length=7, batch_size=4, validation_fraction=0.2)
    everything = _windows(data.windows())
    train, validation = _windows(data.windows("train")), _windows(data.windows("validation"))
    assert validation == [w for i, w in enumerate(everything) if i % 5 == 4]
    assert train == [w for i, w in enumerate(everything) if i % 5 != 4]
    batches = list(data.validation_dataset().as_numpy_iterator())
    assert sum(len(x["token_ids"]) for x, _, _ in batches) == len(validation)


def test_train_batches_shift_labels_and_cover_each_epoch(corpus):
    patterns, _ = corpus
    L, B = 9, 4
    data = LMDataset(patterns, CharTokenizer(), sequence_length=L, batch_size=B, seed=3)
    train = _windows(data.windows("train"))
    per_epoch = len(train)
    seen = []
    for x, labels, weights in data.train_dataset().take(2 * per_epoch // B + 1).as_numpy_iterator():
        assert x["token_ids"].shape == labels.shape == weights.shape == (B, L)
        np.testing.assert_array_equal(x["token_ids"][:, 1:], labels[:, :-1])
        assert (x["padding_mask"] == 1).all()
        seen += [list(t) + [int(y[-1])] for t, y in zip(x["token_ids"], labels)]
    # Each data epoch is a permutation of the training windows, and epochs are ordered differently.
    first, second = seen[:per_epoch], seen[per_epoch : 2 * per_epoch]
    assert sorted(first) == sorted(train) == sorted(second)
    assert first != train and first != second


def test_order_depends_only_on_seed(corpus):
    patterns, _ = corpus

    def first_batches(seed):
        data = LMDataset(patterns, CharTokenizer(), sequence_length=9, batch_size=4, seed=seed)
        return [x["token_ids"].tolist() for x, _, _ in data.train_dataset().take(6).as_numpy_iterator()]

    a = first_batches(7)
    tf.random.set_seed(99)  # TensorFlow's global seed must not matter
    assert first_batches(7) == a
    assert first_batches(8) != a


def test_start_batch_resumes_the_same_stream(corpus):
    patterns, _ = corpus
    data = LMDataset(patterns, CharTokenizer(), sequence_length=9, batch_size=4, seed=1)
    per_epoch = data.count()["train_windows"] // 4
    full = [x["token_ids"].tolist() for x, _, _ in data.train_dataset().take(per_epoch + 5).as_numpy_iterator()]
    for start in (3, per_epoch - 1, per_epoch + 2):  # inside the first epoch, across, inside the second
        resumed = data.train_dataset(start_batch=start).take(3).as_numpy_iterator()
        assert [x["token_ids"].tolist() for x, _, _ in resumed] == full[start : start + 3]


def test_validation_padding_and_in_memory_cap(corpus, tmp_path):
    """The last validation batch is padded with zero-weight rows on request; a capped split is
    read once and kept in memory (later calls do not touch the files)."""
    patterns, _ = corpus
    data = LMDataset(patterns, CharTokenizer(), sequence_length=7, batch_size=5, validation_fraction=0.2)
    held_out = _windows(data.windows("validation"))
    assert len(held_out) % 5, "the fixture must leave a partial last batch"

    plain = list(data.validation_dataset().as_numpy_iterator())
    assert [len(x["token_ids"]) for x, _, _ in plain][-1] == len(held_out) % 5
    padded = list(data.validation_dataset(pad_final_batch=True).as_numpy_iterator())
    assert len(padded) == len(plain)
    rows = []
    for (x, labels, weights), (px, plabels, pweights) in zip(plain, padded):
        assert px["token_ids"].shape == plabels.shape == pweights.shape == (5, 7)
        real = len(x["token_ids"])
        np.testing.assert_array_equal(px["token_ids"][:real], x["token_ids"])
        np.testing.assert_array_equal(plabels[:real], labels)
        assert (pweights[:real] == 1).all() and (pweights[real:] == 0).all()
        assert (px["padding_mask"] == 1).all()  # dummy rows are ordinary inputs, only unweighted
        rows += [list(t) + [int(y[-1])] for t, y in zip(px["token_ids"][:real], plabels[:real])]
    assert rows == held_out
    # Outside a keras.distribution the default is not to pad.
    assert [len(x["token_ids"]) for x, _, _ in data.validation_dataset(pad_final_batch=None).as_numpy_iterator()][
        -1
    ] < 5

    # A cap: the first batches, identical to the streamed ones, then served from memory.
    capped = list(data.validation_dataset(max_batches=2).as_numpy_iterator())
    assert len(capped) == 2 and data.validation_dataset(max_batches=2).cardinality() == 2
    for (x, labels, _), (y, ylabels, _) in zip(capped, plain[:2]):
        np.testing.assert_array_equal(x["token_ids"], y["token_ids"])
        np.testing.assert_array_equal(labels, ylabels)
    for path in tmp_path.iterdir():
        os.unlink(path)
    again = list(data.validation_dataset(max_batches=2).as_numpy_iterator())
    for (x, _, _), (y, _, _) in zip(again, capped):
        np.testing.assert_array_equal(x["token_ids"], y["token_ids"])


def test_real_tokenizer_stream(tmp_path):
    tokenizers = pytest.importorskip("keras_gpt1.tokenizers")
    if not hasattr(tokenizers, "train_tokenizer"):
        pytest.skip("GPT1Tokenizer not available yet")
    lines = _lines(60, 5)
    path = tmp_path / "text.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tokenizer = tokenizers.train_tokenizer([str(path)], vocabulary_size=300)
    data = LMDataset([str(path)], tokenizer, sequence_length=8, batch_size=2, validation_fraction=0)
    expected = [int(i) for line in lines for i in np.asarray(tokenizer.tokenize(line))]
    windows = _windows(data.windows())
    assert sum(windows, []) == expected[: len(windows) * 9] and len(windows) == len(expected) // 9


# --- bad input ---


def test_missing_and_directory_and_empty_glob(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_corpus_files([str(tmp_path / "missing.txt")])
    with pytest.raises(FileNotFoundError, match="matches no file"):
        resolve_corpus_files([str(tmp_path / "*.txt")])
    with pytest.raises(FileNotFoundError, match="is a directory"):
        resolve_corpus_files([str(tmp_path)])


def test_bad_files_are_reported_by_name_and_line(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt.*is empty"):
        check_corpus_file(str(empty))
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("first line\nsecond caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt.*not UTF-8.*line 2"):
        check_corpus_file(str(latin1))
    records = tmp_path / "bad.jsonl"
    records.write_text('{"text": "ok"}\n{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl.*line 2.*'text'"):
        check_corpus_file(str(records))
    broken = tmp_path / "broken.txt.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="Cannot read corpus file"):
        check_corpus_file(str(broken))
    with pytest.raises(ValueError, match="empty.txt.*is empty"):
        LMDataset([str(empty)], CharTokenizer(), sequence_length=4, batch_size=2)


def test_corpus_shorter_than_one_window(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("tiny\n", encoding="utf-8")
    data = LMDataset([str(path)], CharTokenizer(), sequence_length=8, batch_size=2)
    with pytest.raises(ValueError, match="only 4 tokens, fewer than one window of .* 9 tokens"):
        data.check_size()
    path.write_text("x" * 60 + "\n", encoding="utf-8")  # 6 windows: too few to hold 1 in 20 out
    with pytest.raises(ValueError, match="too few to hold out a validation window"):
        LMDataset([str(path)], CharTokenizer(), sequence_length=9, batch_size=2).check_size()
