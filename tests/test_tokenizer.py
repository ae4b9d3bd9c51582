"""GPT1Tokenizer against external oracles, on real text and on bad input.

Oracles: `transformers.OpenAIGPTTokenizer` (in transformers 5 the fast and "slow" names are one
`tokenizers`-backed class, since the pure-Python tokenizer was removed), and `_reference_ids` below,
an independent pure-Python BERT basic tokenizer + textbook BPE written from the spec. The corpus is
Python's own documentation (no download); the vocabulary is trained on it by `train_bpe`.
"""

import json
import os
import random
import subprocess
import sys
import unicodedata

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_gpt1.data.corpus import demo_corpus_lines
from keras_gpt1.tokenizers import (
    GPT1Tokenizer,
    VocabularyError,
    read_hf_vocabulary,
    read_original_vocabulary,
    train_bpe,
    train_tokenizer,
    write_hf_vocabulary,
)
from keras_gpt1.cli.train_tokenizer import add_parser

transformers = pytest.importorskip("transformers")

NUM_MERGES = 2000


# === Fixtures ===


@pytest.fixture(autouse=True)
def _seed():
    """Overrides conftest's reseeding: these tests draw no random numbers, and with TensorFlow
    `tf.random.set_seed` clears the function caches, re-optimising every traced tokenizer graph
    (about a second) before each test."""
    yield


@pytest.fixture(scope="session")
def tokenizer_corpus(tmp_path_factory):
    """(lines, path): about 300 KB of English from Python's docs, one paragraph a line."""
    lines = list(demo_corpus_lines(300_000))
    path = tmp_path_factory.mktemp("tokenizer_corpus") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines, str(path)


@pytest.fixture(scope="session")
def vocab_dir(tokenizer_corpus, tmp_path_factory):
    directory = tmp_path_factory.mktemp("gpt1_vocab")
    train_bpe([tokenizer_corpus[1]], num_merges=NUM_MERGES, output_dir=directory)
    return str(directory)


@pytest.fixture(scope="session")
def tokenizer(vocab_dir):
    return GPT1Tokenizer.from_preset(vocab_dir)


@pytest.fixture(scope="session")
def graph_tokenize(tokenizer):
    """The in-graph path, traced once: [batch] strings -> ragged ids."""
    return tf.function(tokenizer.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])


@pytest.fixture(scope="session")
def hf_tokenizer(vocab_dir):
    return transformers.OpenAIGPTTokenizer.from_pretrained(vocab_dir)


def hf_ids(hf_tokenizer, texts):
    return hf_tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def graph_ids(graph_tokenize, texts):
    return graph_tokenize(tf.constant(list(texts), dtype=tf.string)).to_list()


# === The pure-Python reference ===

# BERT's CJK blocks (as documented for its basic tokenizer).
_CJK = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]  # fmt: skip


def _reference_words(text):
    """Clean, pad CJK, NFD + drop nonspacing marks, lowercase, split on whitespace/punctuation."""
    kept = []
    for ch in text:
        if ch in "\t\n\r":
            kept.append(" ")
        elif ord(ch) == 0xFFFD or unicodedata.category(ch) in ("Cc", "Cf", "Co"):
            continue
        elif ch.isspace():
            kept.append(" ")
        elif any(a <= ord(ch) <= b for a, b in _CJK):
            kept.append(f" {ch} ")
        else:
            kept.append(ch)
    text = unicodedata.normalize("NFD", "".join(kept))
    text = "".join(ch.lower() for ch in text if unicodedata.category(ch) != "Mn")  # per character
    words = []
    for chunk in text.split():
        current = ""
        for ch in chunk:
            if (ch.isascii() and not ch.isalnum()) or unicodedata.category(ch).startswith("P"):
                words += [current] if current else []
                words.append(ch)
                current = ""
            else:
                current += ch
        words += [current] if current else []
    return words


def _reference_bpe(word, ranks):
    """Textbook BPE: the last symbol carries `</w>`; merge the best-ranked pair everywhere."""
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    while len(symbols) > 1:
        rank, a, b = min((ranks.get(pair, float("inf")), *pair) for pair in zip(symbols, symbols[1:]))
        if rank == float("inf"):
            break
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
                merged.append(a + b)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def _reference_ids(texts, vocabulary, merges):
    ranks = {tuple(m): i for i, m in enumerate(merges)}
    cache = {}
    out = []
    for text in texts:
        ids = []
        for word in _reference_words(text):
            if word not in cache:
                cache[word] = [vocabulary.get(s, vocabulary["<unk>"]) for s in _reference_bpe(word, ranks)]
            ids += cache[word]
        out.append(ids)
    return out


# === Faithfulness on real text ===


def test_eager_and_graph_match_transformers_on_every_line(tokenizer, graph_tokenize, hf_tokenizer, tokenizer_corpus):
    lines = tokenizer_corpus[0]
    expected = hf_ids(hf_tokenizer, lines)
    assert sum(map(len, expected)) > 50_000
    assert tokenizer(lines).to_list() == expected
    got = []
    for i in range(0, len(lines), 512):
        got += graph_ids(graph_tokenize, lines[i : i + 512])
    mismatches = [i for i, (a, b) in enumerate(zip(got, expected)) if a != b]
    assert not mismatches, f"first mismatch on line {mismatches[0]}: {lines[mismatches[0]]!r}"


def test_matches_pure_python_reference_on_every_line(tokenizer, tokenizer_corpus, vocab_dir):
    lines = tokenizer_corpus[0]
    vocabulary, merges = read_hf_vocabulary(f"{vocab_dir}/vocab.json", f"{vocab_dir}/merges.txt")
    expected = _reference_ids(lines, vocabulary, merges)
    got = tokenizer(lines).to_list()
    mismatches = [i for i, (a, b) in enumerate(zip(got, expected)) if a != b]
    assert not mismatches, f"first mismatch on line {mismatches[0]}: {lines[mismatches[0]]!r}"


def test_detokenize_gives_the_normalised_text(tokenizer, hf_tokenizer, tokenizer_corpus):
    lines = tokenizer_corpus[0][:400] + ["Héllo,   WORLD!  Ça va?"]
    ids = tokenizer(lines)
    text = [t.decode("utf-8") for t in tokenizer.detokenize(ids).numpy()]
    normalized = [t.decode("utf-8") for t in tokenizer.normalize(lines).numpy()]
    assert text == normalized
    assert text[-1] == "hello , world ! ca va ?"
    assert text[:50] == [hf_tokenizer.decode(row) for row in ids.to_list()[:50]]
    assert tokenizer.detokenize(ids[0]).numpy().decode() == normalized[0]  # one sequence -> scalar


# === The same ids on every path ===


def test_same_ids_eagerly_in_tf_data_and_in_a_tf_function(tokenizer, tokenizer_corpus):
    lines = tokenizer_corpus[0][:300] + ["", "  ", "Émoji 🤗 and 中文"]
    eager = tokenizer(lines).to_list()
    batched = tf.data.Dataset.from_tensor_slices(lines).batch(64).map(tokenizer)
    assert [row for batch in batched for row in batch.to_list()] == eager
    single = tf.data.Dataset.from_tensor_slices(lines[:20]).map(tokenizer)  # scalar elements
    assert [x.numpy().tolist() for x in single] == eager[:20]
    padded = GPT1Tokenizer(tokenizer.vocabulary, tokenizer.merges, sequence_length=16)
    dense = next(iter(tf.data.Dataset.from_tensor_slices(lines).batch(400).map(padded)))
    assert dense.shape == (len(lines), 16)
    assert dense.numpy().tolist() == [(r + [padded.pad_token_id] * 16)[:16] for r in eager]


@pytest.mark.once
@pytest.mark.integration
def test_saved_model_round_trip_in_a_tensorflow_only_process(tokenizer, tokenizer_corpus, tmp_path):
    lines = tokenizer_corpus[0][:50] + ["", "Émoji 🤗 and 中文", "x" * 3000]
    module = tf.Module()
    module.tokenizer = tokenizer  # the tables are tracked on every Keras backend

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(text):
        ids = module.tokenizer(text)
        return {"token_ids": ids.to_tensor(-1), "lengths": ids.row_lengths()}

    path = str(tmp_path / "saved")
    tf.saved_model.save(module, path, signatures={"serving_default": serve})
    lines_path = tmp_path / "lines.json"
    lines_path.write_text(json.dumps(lines))
    code = (
        "import json, sys, tensorflow as tf\n"
        f"lines = json.load(open({str(lines_path)!r}))\n"
        f"out = tf.saved_model.load({path!r}).signatures['serving_default'](text=tf.constant(lines))\n"
        "ids = tf.RaggedTensor.from_tensor(out['token_ids'], lengths=out['lengths']).to_list()\n"
        "assert 'keras_gpt1' not in sys.modules\n"
        "print(json.dumps(ids))\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == tokenizer(lines).to_list()


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="ExportArchive endpoints need TF here")
def test_keras_export_archive(tokenizer, tmp_path):
    archive = keras.export.ExportArchive()
    archive.track(tokenizer)
    archive.add_endpoint(
        "tokenize", lambda x: tokenizer(x).to_tensor(), input_signature=[tf.TensorSpec([None], tf.string)]
    )
    archive.write_out(str(tmp_path / "archive"), verbose=False)
    restored = tf.saved_model.load(str(tmp_path / "archive"))
    texts = ["Hello, world!", "GPT-1 tokenizes this."]
    assert restored.tokenize(tf.constant(texts)).numpy().tolist() == tokenizer(texts).to_tensor().numpy().tolist()


# === Normalisation, Unicode and bad input ===

BAD_INPUTS = [
    "",
    "   \t\n  ",
    "a\x00b\x07c\x1bd e\x7f",  # control characters are deleted (not spaces)
    "soft\u00adhyphen zero\u200bwidth joiner\u200d.",  # format characters too
    "Emoji 🤗🙂 and ❤️ symbols ©®™",
    "中文字符 and 日本語のテキスト 한국어",
    "Accénts: naïve café, Ångström, Øresund, ǅemal, İstanbul, straße, ΣΊΣΥΦΟΣ",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2028line\u3000ideographic",
    "punctuation!!! ... -- (parens) [brackets] {braces} «guillemets» „quotes“ ¿qué? ¡sí!",
    "_start_ _delimiter_ _classify_ </w> <w>",
    "a" * 3000,
    "x" + "ab" * 500 + "1" * 777,
    "mixed\ufffdreplacement\ufffd",
]


@pytest.mark.parametrize("text", BAD_INPUTS)
def test_bad_and_unusual_text_matches_transformers_on_every_path(text, tokenizer, graph_tokenize, hf_tokenizer):
    expected = hf_ids(hf_tokenizer, [text])[0]
    assert tokenizer(text).numpy().tolist() == expected
    assert graph_ids(graph_tokenize, [text])[0] == expected


def test_empty_inputs_and_mixed_batches(tokenizer, graph_tokenize, hf_tokenizer, tokenizer_corpus):
    assert tokenizer("").numpy().tolist() == []
    assert tokenizer([]).to_list() == []
    assert graph_ids(graph_tokenize, []) == []
    batch = ["", tokenizer_corpus[0][0] * 20, "  ", "ok", ""]
    expected = hf_ids(hf_tokenizer, batch)
    assert tokenizer(batch).to_list() == expected
    assert graph_ids(graph_tokenize, batch) == expected
    assert [len(r) for r in expected][0::2] == [0, 0, 0]


def test_invalid_utf8_is_dropped_never_a_crash(tokenizer, graph_tokenize):
    broken = [b"caf\xc3 ok", b"\xff\xfe\xfd", b"ab\xed\xa0\x80cd", b"\xc0\xafx", "lone \udcff surrogate"]
    clean = ["caf ok", "", "abcd", "x", "lone  surrogate"]
    expected = tokenizer(clean).to_list()
    assert tokenizer(np.array(broken[:4] + [b"lone \xed\xb3\xbf surrogate"], dtype=object)).to_list() == expected
    assert tokenizer.tokenize(broken[4]).numpy().tolist() == expected[4]
    as_bytes = [b if isinstance(b, bytes) else b.encode("utf-8", "surrogatepass") for b in broken]
    assert graph_ids(graph_tokenize, as_bytes) == expected


def test_special_token_text_is_ordinary_text(tokenizer, hf_tokenizer):
    """A deliberate difference: Hugging Face matches its added special token `<unk>` in raw text;
    this tokenizer never makes a special token (nor `<unk>`) from text, only from unknown symbols."""
    ours = tokenizer("x <unk> y").numpy().tolist()
    assert ours == tokenizer("x < unk > y").numpy().tolist()
    assert hf_ids(hf_tokenizer, ["x <unk> y"])[0] == [ours[0], tokenizer.unk_token_id, ours[-1]]


def test_unknown_symbols_become_unk(tokenizer):
    unk = tokenizer.unk_token_id
    assert tokenizer("🤗").numpy().tolist() == [unk]
    assert tokenizer("中文").numpy().tolist() == [unk, unk]  # each CJK character is a word
    ids = tokenizer("a🤗b").numpy().tolist()  # one word: a, <unk>, b</w>
    assert len(ids) == 3 and ids[1] == unk and unk not in (ids[0], ids[2])


def test_a_one_megabyte_line(tokenizer, graph_tokenize, hf_tokenizer, tokenizer_corpus):
    line = " ".join(tokenizer_corpus[0])
    line = (line * (1_000_000 // len(line) + 1))[:1_000_000]
    expected = hf_ids(hf_tokenizer, [line])[0]
    assert len(expected) > 150_000
    assert tokenizer(line).numpy().tolist() == expected
    assert graph_ids(graph_tokenize, [line])[0] == expected


def test_every_bmp_code_point_normalises_like_tokenizers(tokenizer):
    """The generated Unicode tables agree with the Rust normaliser + pre-tokenizer everywhere."""
    code_points = [c for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    texts = [f"Ab{chr(c)}x{chr(c)}, {chr(c)}" for c in code_points]
    got = tokenizer._tf_state.normalize(tf.constant(texts)).numpy()
    rust = tokenizer._rust
    bad = []
    for c, text, out in zip(code_points, texts, got):
        words = [w for w, _ in rust.pre_tokenizer.pre_tokenize_str(rust.normalizer.normalize_str(text))]
        if out.decode("utf-8") != " ".join(words):
            bad.append(f"U+{c:04X}")
    assert not bad, f"{len(bad)} code points differ, e.g. {bad[:10]}"


def test_random_text_matches_transformers(tokenizer, graph_tokenize, hf_tokenizer):
    rng = random.Random(0)
    alphabet = list("abcdefghij ABCDE  ,.;'!?-_()") + list("éÉñüßøİıΣσçà") + ["\t", "\n", "\x00", "\u200b"]
    alphabet += ["🤗", "中", "ア", "한", "\u0301", "\ufffd", "…", "—", "´"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(300)]
    expected = hf_ids(hf_tokenizer, texts)
    assert tokenizer(texts).to_list() == expected
    assert graph_ids(graph_tokenize, texts) == expected


def test_original_standardize_mode(vocab_dir, tokenizer):
    original = GPT1Tokenizer.from_preset(vocab_dir, standardize="original")
    bert = tokenizer
    graph = tf.function(original.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    texts = ["wait\u2014what\u2013now\u2015ok", "and so\u2026 on", "it\u00b4s", "plain text"]
    replaced = ["wait-what-now-ok", "and so... on", "it's", "plain text"]
    expected = bert(replaced).to_list()
    assert original(texts).to_list() == expected
    assert graph(tf.constant(texts)).to_list() == expected
    assert bert(texts).to_list() != expected


# === Special tokens, padding, shapes ===


def test_special_tokens_follow_the_base_vocabulary(tokenizer, vocab_dir):
    base = len(json.load(open(f"{vocab_dir}/vocab.json", encoding="utf-8")))
    assert (tokenizer.start_token_id, tokenizer.delimiter_token_id, tokenizer.classify_token_id) == (
        base,
        base + 1,
        base + 2,
    )
    assert tokenizer.vocabulary_size() == base + 3
    assert tokenizer.get_vocabulary()[base:] == ["_start_", "_delimiter_", "_classify_"]
    assert tokenizer.id_to_token(base + 2) == "_classify_" and tokenizer.token_to_id("<unk>") == 0
    ids = tokenizer("_start_ _classify_").numpy().tolist()
    assert not set(ids) & set(tokenizer.special_token_ids)  # text never makes special tokens
    text = tokenizer.detokenize([tokenizer.start_token_id] + tokenizer("hi there").numpy().tolist())
    assert text.numpy().decode() == "_start_ hi there"


def test_special_tokens_already_in_the_vocabulary_are_not_added_twice(vocab_dir):
    vocabulary, merges = read_hf_vocabulary(f"{vocab_dir}/vocab.json", f"{vocab_dir}/merges.txt")
    size = len(vocabulary)
    with_two = dict(vocabulary, _delimiter_=size, _start_=size + 1)
    tokenizer = GPT1Tokenizer(with_two, merges)
    assert (tokenizer.delimiter_token_id, tokenizer.start_token_id, tokenizer.classify_token_id) == (
        size,
        size + 1,
        size + 2,
    )
    assert tokenizer.vocabulary_size() == size + 3
    bare = GPT1Tokenizer(vocabulary, merges, add_special_tokens=False)
    assert bare.vocabulary_size() == size and bare.start_token_id is None


def test_sequence_length_truncates_at_the_end_and_pads_with_unk(vocab_dir, tokenizer):
    short = GPT1Tokenizer.from_preset(vocab_dir, sequence_length=5)
    texts = ["one two three four five six seven eight", "two"]
    full = tokenizer(texts).to_list()
    out = short(texts).numpy().tolist()
    assert out[0] == full[0][:5]
    assert out[1] == full[1] + [short.pad_token_id] * (5 - len(full[1]))
    assert short.pad_token_id == short.unk_token_id == 0
    assert short("two").shape == (5,)
    features = short.to_model_inputs(texts)
    assert features["token_ids"].numpy().tolist() == out
    assert features["padding_mask"].numpy().tolist() == [
        [True] * 5,
        [True] * len(full[1]) + [False] * (5 - len(full[1])),
    ]
    longest = tokenizer.to_model_inputs(texts)
    assert longest["token_ids"].shape == (2, len(full[0]))


def test_input_types_and_errors(tokenizer):
    expected = tokenizer(["hello world"]).to_list()
    assert tokenizer(np.array(["hello world"])).to_list() == expected
    assert tokenizer(tf.constant(["hello world"])).to_list() == expected
    assert tokenizer((b"hello world",)).to_list() == expected
    assert tokenizer.tokenize(tf.constant("hello world")).numpy().tolist() == expected[0]
    with pytest.raises(TypeError, match="strings"):
        tokenizer(tf.constant([1, 2]))
    with pytest.raises(ValueError, match="1-D batch"):
        tokenizer(tf.constant([["a"], ["b"]]))
    with pytest.raises(ValueError, match=r"token ids must be in \[0, "):
        tokenizer.detokenize([[0, tokenizer.vocabulary_size()]])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.id_to_token(-1)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tokenizer.token_to_id("definitely-not-a-token")
    with pytest.raises(ValueError, match="standardize"):
        GPT1Tokenizer({"<unk>": 0}, [], standardize="spacy")
    with pytest.raises(ValueError, match="sequence_length"):
        GPT1Tokenizer({"<unk>": 0}, [], sequence_length=0)


def test_merges_out_of_rank_order_merge_one_at_a_time(tokenizer):
    """A hand-written merges list where a token is used before it is made: Rust's exact order."""
    chars = ["a", "b", "c", "d"]
    vocabulary = {"<unk>": 0}
    for c in chars:
        vocabulary.setdefault(c, len(vocabulary))
        vocabulary.setdefault(c + "</w>", len(vocabulary))
    merges = [("ab", "c"), ("a", "b"), ("c", "d</w>"), ("a", "a"), ("aa", "a"), ("b", "c"), ("bc", "d</w>")]
    for a, b in merges:
        vocabulary.setdefault(a + b, len(vocabulary))
    unordered = GPT1Tokenizer(vocabulary, merges)
    assert not unordered._tf_state._ordered and tokenizer._tf_state._ordered
    graph = tf.function(unordered.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    rng = random.Random(1)
    words = ["".join(rng.choice("abcd") for _ in range(rng.randint(1, 12))) for _ in range(300)]
    assert graph(tf.constant(words)).to_list() == unordered(words).to_list()


# === Vocabulary files ===


def test_vocabulary_file_errors_name_the_file_and_line(tmp_path, vocab_dir):
    vocab_text = open(f"{vocab_dir}/vocab.json", encoding="utf-8").read()
    merges_lines = open(f"{vocab_dir}/merges.txt", encoding="utf-8").read().split("\n")

    def write(name, text):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    good_vocab, good_merges = f"{vocab_dir}/vocab.json", f"{vocab_dir}/merges.txt"
    cases = [
        (write("v1.json", vocab_text.replace('"<unk>": 0,', '"<unk>": 0,,', 1)), good_merges, r"v1\.json.*line 2"),
        (
            write("v2.json", vocab_text.replace('"<unk>": 0', '"<unk>": "zero"', 1)),
            good_merges,
            r"v2\.json' line 2.*not an integer",
        ),
        (
            write("v3.json", vocab_text.replace('"<unk>": 0', '"<unk>": 1', 1)),
            good_merges,
            r"v3\.json' line \d+.*both have id 1",
        ),
        (write("v4.json", vocab_text.replace('"<unk>": 0', '"<nope>": 0', 1)), good_merges, r"v4\.json.*no '<unk>'"),
        (write("v5.json", "[1, 2]"), good_merges, r"v5\.json.*JSON object"),
        (
            good_vocab,
            write("m1.txt", "\n".join(merges_lines[:10] + ["t h e"] + merges_lines[10:])),
            r"m1\.txt' line 11",
        ),
        (
            good_vocab,
            write("m2.txt", "\n".join(merges_lines[:20] + ["zzz qqq"])),
            r"m2\.txt' line 21.*'zzz' is not in .*vocab\.json",
        ),
        (good_vocab, write("m3.txt", "\n".join(merges_lines[:5] + [""] + merges_lines[5:])), r"m3\.txt' line 6"),
        (str(tmp_path / "missing.json"), good_merges, r"missing\.json"),
        (good_vocab, str(tmp_path / "missing.txt"), r"missing\.txt"),
    ]
    for vocab_path, merges_path, pattern in cases:
        with pytest.raises((VocabularyError, FileNotFoundError), match=pattern):
            GPT1Tokenizer(vocab_path, merges_path)
    # The Python entry points check the same things.
    with pytest.raises(VocabularyError, match=r"'merges' entry 2"):
        GPT1Tokenizer({"<unk>": 0, "a": 1, "aa": 2}, ["a a", "b b"])
    with pytest.raises(VocabularyError, match="no gaps"):
        GPT1Tokenizer({"<unk>": 0, "a": 5}, [])


def test_reads_the_original_release_format(tmp_path, vocab_dir):
    vocabulary, merges = read_hf_vocabulary(f"{vocab_dir}/vocab.json", f"{vocab_dir}/merges.txt")
    (tmp_path / "encoder_bpe_40000.json").write_text(json.dumps(vocabulary), encoding="utf-8")
    (tmp_path / "vocab_40000.bpe").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    got = read_original_vocabulary(tmp_path / "encoder_bpe_40000.json", tmp_path / "vocab_40000.bpe")
    assert got == (vocabulary, merges)
    tokenizer = GPT1Tokenizer(str(tmp_path / "encoder_bpe_40000.json"), str(tmp_path / "vocab_40000.bpe"))
    assert (
        tokenizer("Read the original files.").numpy().tolist()
        == GPT1Tokenizer(vocabulary, merges)("Read the original files.").numpy().tolist()
    )
    # Writing gives Hugging Face files that read back identically.
    write_hf_vocabulary(tmp_path / "hf", vocabulary, merges)
    assert read_hf_vocabulary(tmp_path / "hf/vocab.json", tmp_path / "hf/merges.txt") == (vocabulary, merges)


# === Presets and config ===


def test_preset_round_trip(tokenizer, tmp_path):
    configured = GPT1Tokenizer(tokenizer.vocabulary, tokenizer.merges, sequence_length=12, standardize="original")
    configured.save_to_preset(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["assets", "manifest.json", "tokenizer.json"]
    assert sorted(os.listdir(tmp_path / "assets/tokenizer")) == ["merges.txt", "vocab.json"]
    saved = json.load(open(tmp_path / "tokenizer.json"))
    assert saved["class_name"] == "GPT1Tokenizer"
    assert saved["config"]["sequence_length"] == 12 and "vocabulary" not in saved["config"]
    restored = GPT1Tokenizer.from_preset(tmp_path)
    assert restored.get_config() | {"name": None} == configured.get_config() | {"name": None}
    texts = ["Round trip\u2014ok?", "again"]
    assert restored(texts).numpy().tolist() == configured(texts).numpy().tolist()
    # As in KerasHub, the config holds no vocabulary: it is an asset, loaded after the config.
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(configured))
    assert clone.get_config() == configured.get_config()
    with pytest.raises(ValueError, match="no vocabulary yet"):
        clone(texts)
    clone.load_assets(tmp_path / "assets/tokenizer")
    assert clone(texts).numpy().tolist() == configured(texts).numpy().tolist()


def test_preset_errors_name_the_file(tokenizer, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        GPT1Tokenizer.from_preset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        GPT1Tokenizer.from_preset(tmp_path)
    tokenizer.save_to_preset(tmp_path)
    os.remove(tmp_path / "assets/tokenizer/merges.txt")
    with pytest.raises(FileNotFoundError, match=r"assets/tokenizer/merges\.txt"):
        GPT1Tokenizer.from_preset(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"class_name": "GPT1Tokenizer", "config": ')
    with pytest.raises(ValueError, match=r"tokenizer\.json.*line 1"):
        GPT1Tokenizer.from_preset(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"class_name": "Other", "config": {}}')
    with pytest.raises(ValueError, match="describes 'Other'"):
        GPT1Tokenizer.from_preset(tmp_path)


# === Training ===


def test_train_tokenizer_cli_output_loads_in_transformers(tokenizer_corpus, tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "trained"
    args = parser.parse_args(
        ["train-tokenizer", "--corpus", tokenizer_corpus[1], "--merges", "300", "--output", str(out), "--quiet"]
    )
    assert args.func(args) == 0
    merges = open(out / "merges.txt", encoding="utf-8").read().splitlines()
    assert merges[0] == "#version: 0.2" and len(merges) == 301
    ours = GPT1Tokenizer.from_preset(out)
    hf = transformers.OpenAIGPTTokenizer.from_pretrained(str(out))
    texts = tokenizer_corpus[0][:100]
    assert ours(texts).to_list() == hf(texts, add_special_tokens=False)["input_ids"]


def test_train_sizes_and_bad_files(tokenizer_corpus, tmp_path):
    path = tokenizer_corpus[1]
    vocabulary, merges = train_bpe([path], num_merges=123)
    assert len(merges) == 123 and sorted(vocabulary.values()) == list(range(len(vocabulary)))
    assert vocabulary["<unk>"] == 0
    sized = train_tokenizer([path], vocabulary_size=700)
    assert sized.vocabulary_size() == 700
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"fine line\ncaf\xe9 au lait\n")
    with pytest.raises(ValueError, match=r"latin1\.txt' is not UTF-8 text: undecodable byte .* on line 2"):
        train_bpe([str(bad)], num_merges=10)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        train_bpe([str(tmp_path / "nope.txt")], num_merges=10)
    with pytest.raises(ValueError, match="not both"):
        train_bpe([path], num_merges=10, vocabulary_size=100)


@pytest.mark.once
def test_training_is_deterministic_across_processes(tokenizer_corpus):
    """The trainer numbers word-final symbols in hash-map order and breaks ties by id; neither
    the merges nor the ids may depend on the run."""
    script = (
        "import json, sys; from keras_gpt1.tokenizers.train import train_bpe; "
        "v, m = train_bpe([sys.argv[1]], num_merges=2000); print(json.dumps([v, m]))"
    )
    runs = [
        subprocess.run([sys.executable, "-c", script, tokenizer_corpus[1]], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    (vocabulary, merges), (vocabulary_again, merges_again) = (json.loads(r.stdout) for r in runs)
    assert merges == merges_again and vocabulary == vocabulary_again
    # The documented order: <unk>, the unmerged symbols sorted, then merged tokens as learned.
    order = sorted(vocabulary, key=vocabulary.get)
    merged = list(dict.fromkeys(a + b for a, b in merges))
    assert order[0] == "<unk>" and order[len(order) - len(merged) :] == merged
