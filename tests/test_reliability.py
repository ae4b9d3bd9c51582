"""Bad input and faults across the library: each gets a clear error naming the problem (never a
silent wrong result or a raw traceback), and no work is lost. See docs/reliability.md."""

import numpy as np
import pytest

from conftest import TINY_CONFIG, file_tree
from keras_gpt1.cli import main as cli_main
from keras_gpt1.utils.checks import as_int32_ids

WIDE = 2**32 + 5  # int32 would wrap it to 5


@pytest.fixture(scope="module")
def lm():
    from keras_gpt1.models import GPT1Backbone, GPT1CausalLM

    return GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))


# === Token ids that do not fit int32 are refused before any cast ===


@pytest.mark.parametrize(
    "values",
    [
        [5, WIDE, 7],
        np.array([5, WIDE, 7], dtype=np.int64),
        np.array([5, 2**63 + 5, 7], dtype=np.uint64),
        [5, 2**70, 7],  # past int64 too
        [5, -(2**31) - 1, 7],
    ],
    ids=["list", "int64", "uint64", "past-int64", "below-int32"],
)
def test_as_int32_ids_refuses_ids_int32_cannot_hold(values):
    with pytest.raises(ValueError, match=r"contains id -?\d+ at index \(1,\), outside the int32 range"):
        as_int32_ids(values)


def test_as_int32_ids_keeps_valid_ids_and_checks_the_vocabulary():
    np.testing.assert_array_equal(as_int32_ids(np.array([5, 6], np.uint64)), [5, 6])
    assert as_int32_ids(np.array([5, 6], np.int64)).dtype == np.int32
    with pytest.raises(ValueError, match=r"id 97 at index \(0,\), outside the vocabulary \[0, 97\)"):
        as_int32_ids([97], vocabulary_size=97)
    with pytest.raises(ValueError, match="integer token ids"):
        as_int32_ids([5, 1.5])


@pytest.mark.parametrize(
    "prompt",
    [
        [5, WIDE, 7],
        np.array([5, WIDE, 7]),
        np.array([5, 2**63 + 5, 7], dtype=np.uint64),
        [[5, WIDE, 7], [1, 2]],
        {"token_ids": np.array([[5, WIDE, 7]])},
    ],
    ids=["list", "int64", "uint64", "batch", "dict"],
)
def test_generate_and_score_refuse_wide_ids(lm, prompt):
    with pytest.raises(ValueError, match=r"contains id \d+ at index"):
        lm.generate(prompt, max_new_tokens=2)
    with pytest.raises(ValueError, match=r"contains id \d+ at index"):
        lm.score(prompt)


@pytest.mark.parametrize(
    "token_ids",
    [np.array([[5, WIDE, 7]]), np.array([[5, 2**63 + 5, 7]], np.uint64), [[5, WIDE, 7]]],
    ids=["int64", "uint64", "list"],
)
def test_model_call_predict_and_fit_refuse_wide_ids(lm, token_ids):
    x = {"token_ids": token_ids, "padding_mask": np.ones((1, 3), "int32")}
    with pytest.raises(ValueError, match=r"contains id \d+ at index \(0, 1\)"):
        lm(x)
    with pytest.raises(ValueError, match=r"contains id \d+ at index \(0, 1\)"):
        lm.predict(x, verbose=0)
    lm.compile(optimizer="sgd", jit_compile=False)
    with pytest.raises(ValueError, match=r"contains id \d+ at index \(0, 1\)"):
        lm.fit(x, np.zeros((1, 3), "int32"), epochs=1, verbose=0)


@pytest.fixture(scope="module")
def preset_dir(lm, tmp_path_factory):
    path = tmp_path_factory.mktemp("preset") / "tiny"
    lm.save_to_preset(str(path))
    return str(path)


@pytest.mark.parametrize("ids", [f"5 {WIDE} 7", f"5,{2**31},7", f"5 {2**80} 7", "5 -1 7"])
def test_cli_refuses_out_of_range_ids_in_one_line(preset_dir, ids, capsys):
    for command in (["score", "--ids", ids], ["generate", "--prompt-ids", ids, "--max-new-tokens", "2"]):
        assert cli_main([command[0], "--model", preset_dir, *command[1:]]) == 2
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err
        assert "outside" in err, err


# === One corpus reader for pretrain and train-tokenizer; bad files refused by name ===


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory):
    import gzip
    import json

    from keras_gpt1.data.corpus import demo_corpus_lines

    root = tmp_path_factory.mktemp("corpus")
    lines = list(demo_corpus_lines(max_bytes=15_000))
    text = "\n".join(lines) + "\n"
    (root / "plain.txt").write_text(text, encoding="utf-8")
    (root / "records.jsonl").write_text("\n".join(json.dumps({"body": line}) for line in lines) + "\n")
    with gzip.open(root / "plain.txt.gz", "wt", encoding="utf-8") as f:
        f.write(text)
    with gzip.open(root / "records.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps({"body": line}) for line in lines) + "\n")
    return root


def test_train_tokenizer_reads_every_corpus_format_alike(corpus_files):
    from keras_gpt1.tokenizers.train import train_bpe

    expected = train_bpe([str(corpus_files / "plain.txt")], num_merges=150)
    for files, field in [
        (["records.jsonl"], "body"),
        (["plain.txt.gz"], "text"),
        (["records.jsonl.gz"], "body"),
        (["plain.txt*"], "text"),  # a glob: plain.txt and plain.txt.gz, the text twice
    ]:
        got = train_bpe([str(corpus_files / f) for f in files], num_merges=150, text_field=field)
        if files == ["plain.txt*"]:
            assert len(got[1]) == 150
        else:
            assert got == expected, files


def _corrupt_gzip(path):
    import gzip
    import random

    raw = bytearray(gzip.compress(("some words here and there\n" * 4000).encode()))
    rng = random.Random(0)
    for i in range(40, len(raw) - 40, 97):
        raw[i] = rng.randrange(256)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.txt", b"", "is empty"),
        ("blank.txt", b"  \n\t\n \n", "is empty"),
        ("blank.jsonl", b'{"text": "  "}\n\n', "is empty"),
        ("nofield.jsonl", b'{"other": "x"}\n', "line 1: expected a JSON object with a string field 'text'"),
        ("latin1.txt", "caf\u00e9\n".encode("latin-1"), "is not UTF-8 text"),
        ("truncated.txt.gz", None, "corrupt or truncated"),
        ("scrambled.txt.gz", None, "corrupt or truncated"),
    ],
)
def test_bad_corpus_files_are_refused_by_name_by_both_commands(tmp_path, name, content, message, capsys):
    import gzip

    path = tmp_path / name
    if name == "truncated.txt.gz":
        path.write_bytes(gzip.compress(b"hello world\n" * 500)[:-20])
    elif name == "scrambled.txt.gz":
        _corrupt_gzip(path)
    else:
        path.write_bytes(content)
    for argv in (
        ["train-tokenizer", "--corpus", str(path), "--output", str(tmp_path / "tok"), "--quiet"],
        ["pretrain", "--corpus", str(path), "--output", str(tmp_path / "run"), "--steps", "1"],
    ):
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert repr(str(path)) in err and message in err and "Traceback" not in err, err
    assert not (tmp_path / "tok").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("size", [0, 1, 3, -5])
def test_vocabulary_size_below_the_special_tokens_is_refused_alike(corpus_files, tmp_path, size, capsys):
    plain = str(corpus_files / "plain.txt")
    for argv in (
        ["train-tokenizer", "--corpus", plain, "--vocabulary-size", str(size), "--output", str(tmp_path / "t")],
        ["pretrain", "--corpus", plain, "--vocabulary-size", str(size), "--output", str(tmp_path / "r")],
    ):
        assert cli_main(argv) == 2
        assert "--vocabulary-size must be an integer >= 4" in capsys.readouterr().err  # the flag, on the CLI


@pytest.mark.parametrize("flag, value", [("--merges", 10**11), ("--merges", 2**40), ("--vocabulary-size", 10**12)])
def test_huge_merge_counts_are_bounded_by_the_corpus(corpus_files, tmp_path, flag, value, capsys):
    output = tmp_path / "tok"
    argv = [
        "train-tokenizer",
        "--corpus",
        str(corpus_files / "plain.txt"),
        flag,
        str(value),
        "--output",
        str(output),
        "--quiet",
    ]
    assert cli_main(argv) == 0
    merges = (output / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert 100 < len(merges) < 5000  # all the corpus offers, learned in a normal process


def test_over_long_lines_are_split_at_whitespace_with_the_same_tokens(tmp_path):
    import warnings

    from keras_gpt1.data import text_files
    from keras_gpt1.tokenizers.train import train_bpe

    assert text_files.split_long_line("aaa bbb ccc", max_chars=4) == ["aaa bbb", "ccc"]
    assert text_files.split_long_line("aaaaaaaa bb", max_chars=4) == ["aaaaaaaa", "bb"]
    assert text_files.split_long_line("short", max_chars=4) == ["short"]
    words = [f"w{i % 37}x{i % 11}" for i in range(30_000)]  # about 200,000 characters on one line
    long_file, broken_file = tmp_path / "long.txt", tmp_path / "broken.txt"
    long_file.write_text("first line\n" + " ".join(words) + "\nlast line\n", encoding="utf-8")
    broken_file.write_text("first line\n" + "\n".join(words) + "\nlast line\n", encoding="utf-8")
    with pytest.warns(
        UserWarning, match=r"long.txt' has 1 line\(s\) longer than 65,536 characters \(the first: line 2"
    ):
        text_files.check_corpus_file(str(long_file))
    pieces = list(text_files.iter_texts(str(long_file)))
    assert max(len(p) for p in pieces) <= text_files.MAX_LINE_CHARS + 20 and len(pieces) > 3
    assert " ".join(pieces).split() == ("first line " + " ".join(words) + " last line").split()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train_bpe([str(long_file)], num_merges=50) == train_bpe([str(broken_file)], num_merges=50)


def test_lm_dataset_splits_over_long_lines_into_the_same_token_stream(tmp_path):
    pytest.importorskip("tensorflow")
    import warnings

    from keras_gpt1.data.lm_dataset import LMDataset
    from keras_gpt1.tokenizers.train import train_tokenizer

    words = [f"w{i % 37}x{i % 11}" for i in range(30_000)]
    long_file, broken_file = tmp_path / "long.txt", tmp_path / "broken.txt"
    long_file.write_text("first line\n" + " ".join(words) + "\nlast line\n", encoding="utf-8")
    broken_file.write_text("first line\n" + "\n".join(words) + "\nlast line\n", encoding="utf-8")
    tokenizer = train_tokenizer([str(broken_file)], num_merges=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        streams = [
            np.concatenate([c.numpy() for c in LMDataset(str(f), tokenizer, 8, 2).token_ids()])
            for f in (long_file, broken_file)
        ]
        pieces = [len(t) for c in LMDataset(str(long_file), tokenizer, 8, 2).lines() for t in c.numpy()]
    np.testing.assert_array_equal(streams[0], streams[1])
    assert len(pieces) > 100 and max(pieces) < 2000  # the long line came in pieces of 256 words


# === Task files with a repeated column ===


@pytest.mark.parametrize(
    "name, content, repeated",
    [
        ("train.csv", "text,label,text\nhello,1,other\n", "['text']"),
        ("train.csv", "text, label ,label\nhello,1,0\n", "['label']"),  # names are stripped
        ("train.tsv", "text\tlabel\tlabel\tx\tx\nhello\t1\t0\ta\tb\n", "['label', 'x']"),
    ],
)
def test_task_files_with_repeated_columns_are_refused(tmp_path, name, content, repeated):
    from keras_gpt1.tasks.data import read_task_file

    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        read_task_file(str(path), "classification")
    assert f"{name}:1: the header names column(s) {repeated} more than once" in str(info.value)


def test_jsonl_task_rows_with_a_repeated_key_are_refused(tmp_path):
    from keras_gpt1.tasks.data import read_task_file

    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0, "label": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"train.jsonl:2: the key 'label' appears more than once"):
        read_task_file(str(path), "classification")


# === score --file on a binary file; preset config.json damage ===


@pytest.mark.parametrize(
    "content, message",
    [
        (b"good line\n\x89PNG\r\n\x1a\n\xff\xfe", "is not UTF-8 text: undecodable byte b'\\x89' on line 2"),
        (b"line one\nline two\n\x00\x01\x02", "holds a NUL byte on line 3"),
        (b"\xff" * 64, "on line 1"),
    ],
)
def test_score_file_on_binary_data_names_the_file_and_line(preset_dir, tmp_path, content, message, capsys):
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    assert cli_main(["score", "--model", preset_dir, "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert repr(str(path)) in err and message in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"hidden_dim": 64, "intermediate_dim": 128}, "tensor shapes do not match the model config.json describes"),
        ({"vocabulary_size": 98}, "tensor shapes do not match"),
        ({"num_layers": 3}, "holds 26 tensors but the config in config.json describes a model with 38"),
        ({"num_layers": "2"}, "\"num_layers\" must be an integer >= 1; got '2'"),
        ({"hidden_dim": 32.0}, '"hidden_dim" must be an integer >= 1; got 32.0'),
        ({"dropout": "0.1"}, '"dropout" must be a finite number >= 0 and < 1'),
        ({"num_heads": 3}, '"hidden_dim" (32) must be divisible by "num_heads" (3)'),
        ({"max_sequence_length": 0}, '"max_sequence_length" must be an integer >= 1; got 0'),
    ],
)
def test_damaged_preset_configs_are_refused_by_name(preset_dir, tmp_path, edit, message, capsys):
    import json
    import shutil

    from keras_gpt1.models import GPT1CausalLM

    damaged = tmp_path / "damaged"
    shutil.copytree(preset_dir, damaged)
    config_path = damaged / "config.json"
    data = json.loads(config_path.read_text())
    data["config"].update(edit)
    config_path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as info:
        GPT1CausalLM.from_preset(str(damaged))
    assert message in str(info.value) and str(damaged) in str(info.value), str(info.value)
    assert cli_main(["score", "--model", str(damaged), "--ids", "1 2 3"]) == 2
    assert message in capsys.readouterr().err


# === Files follow the umask; a full disk names what was being written and leaves nothing ===


@pytest.fixture(scope="module")
def hf_preset_dir(tmp_path_factory):
    """A preset the Hugging Face port can hold (MLP width 4 x hidden)."""
    from keras_gpt1.models import GPT1Backbone

    path = tmp_path_factory.mktemp("hf_preset") / "tiny"
    GPT1Backbone(**dict(TINY_CONFIG, intermediate_dim=4 * TINY_CONFIG["hidden_dim"])).save_to_preset(str(path))
    return str(path)


@pytest.fixture
def umask():
    """Sets a umask for one test (restored after)."""
    import os

    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def _mode(path):
    import os

    return os.stat(path).st_mode & 0o777


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_written_files_and_directories_follow_the_umask(hf_preset_dir, tmp_path, umask, mask):
    import os

    from keras_gpt1.convert.hf import convert_preset_to_hf
    from keras_gpt1.utils.files import atomic_dir, atomic_path

    umask(mask)
    with atomic_path(tmp_path / "private.bin") as tmp:  # as safetensors writes: a 0600 file
        os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))
    assert _mode(tmp_path / "private.bin") == 0o666 & ~mask
    with atomic_dir(tmp_path / "export" / "1") as tmp:  # a tempfile.mkdtemp directory: 0700
        (tmp_path / "inner.txt").write_text("x")
        os.makedirs(os.path.join(tmp, "variables"))
        with open(os.path.join(tmp, "variables", "data"), "w") as f:
            f.write("x")
        os.chmod(os.path.join(tmp, "variables", "data"), 0o600)
    for path in (tmp_path / "export" / "1", tmp_path / "export" / "1" / "variables"):
        assert _mode(path) == 0o777 & ~mask
    assert _mode(tmp_path / "export" / "1" / "variables" / "data") == 0o666 & ~mask
    convert_preset_to_hf(hf_preset_dir, str(tmp_path / "hf"))
    for name in ("model.safetensors", "config.json"):
        assert _mode(tmp_path / "hf" / name) == 0o666 & ~mask, name


@pytest.mark.parametrize("partial", [b"", b"half a file"])
def test_disk_full_writing_weights_names_the_file_and_leaves_no_partial_output(
    hf_preset_dir, tmp_path, monkeypatch, partial
):
    import errno
    import os

    from keras_gpt1.convert.hf import convert_preset_to_hf
    from keras_gpt1.utils.files import atomic_write_text

    from keras_gpt1.convert import hf

    def full(path, tensors, metadata=None):
        with open(path, "wb") as f:
            f.write(partial)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hf, "_write_safetensors", full)
    with pytest.raises(OSError, match=r"while writing weights .*model.safetensors.*free some space") as info:
        convert_preset_to_hf(hf_preset_dir, str(tmp_path / "hf"))
    assert info.value.errno == errno.ENOSPC
    assert not (tmp_path / "hf").exists()  # the directory it would have created: not even that

    target = tmp_path / "notes.txt"
    target.write_text("the old text")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError, match=r"notes.txt'.*needs about 1.0 MB"):
        atomic_write_text(target, "x" * 1_000_000)
    assert target.read_text() == "the old text" and os.listdir(tmp_path).count("notes.txt") == 1


def test_an_output_that_is_an_existing_file_is_named_not_called_unwritable(hf_preset_dir, preset_dir, tmp_path, capsys):
    import keras

    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    plain = tmp_path / "corpus.txt"
    plain.write_text("some text to learn from\n" * 20)
    commands = [
        ["train-tokenizer", "--corpus", str(plain), "--output", str(blocker)],
        ["pretrain", "--corpus", str(plain), "--output", str(blocker)],
        ["convert", "--model", hf_preset_dir, "--output", str(blocker)],
    ]
    if keras.config.backend() == "tensorflow":  # elsewhere the export runs in a TF subprocess
        commands.append(["export", "--model", preset_dir, "--output", str(blocker)])
    for argv in commands:
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"{str(blocker)!r} is an existing file, not a directory" in err and "Traceback" not in err, err
    assert blocker.read_text() == "keep me"


# === Replacing an output never loses the old one ===


def _fail_on_call(monkeypatch, module, name, call, code=5):
    real, count = getattr(module, name), [0]

    def failing(*args, **kwargs):
        count[0] += 1
        if count[0] == call:
            raise OSError(code, f"injected failure in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


@pytest.mark.parametrize("where", ["writing", "moving the old aside", "moving the new in"])
def test_a_replaced_directory_survives_a_failure_at_any_point(tmp_path, monkeypatch, where):
    """`atomic_dir` (exports, checkpoints): the old directory is renamed aside, not deleted, until
    the new one is in place."""
    import os

    from keras_gpt1.utils.files import atomic_dir

    target = tmp_path / "export" / "1"
    target.mkdir(parents=True)
    (target / "saved_model.pb").write_bytes(b"the old model")
    before = file_tree(tmp_path)
    if where != "writing":
        _fail_on_call(monkeypatch, os, "rename", 1 if where == "moving the old aside" else 2)
    with pytest.raises(OSError, match="injected failure"):
        with atomic_dir(target, "SavedModel") as tmp:
            with open(os.path.join(tmp, "saved_model.pb"), "wb") as f:
                f.write(b"the new model")
            if where == "writing":
                raise OSError(5, "injected failure while writing")
    assert file_tree(tmp_path) == before
    monkeypatch.undo()
    with atomic_dir(target, "SavedModel") as tmp:
        with open(os.path.join(tmp, "saved_model.pb"), "wb") as f:
            f.write(b"the new model")
    assert file_tree(tmp_path) == {"export": None, "export/1": None, "export/1/saved_model.pb": b"the new model"}


def test_replacing_cleans_staging_left_by_a_killed_writer_but_keeps_old_files(tmp_path):
    import os
    import time

    from keras_gpt1.utils.files import STALE_STAGING_S, replace_in_dir

    out = tmp_path / "out"
    for name in (".tmp-new-killed", ".tmp-new-live", ".old-abc"):
        (out / name).mkdir(parents=True)
        (out / name / "model.weights.h5").write_bytes(b"x")
    old = time.time() - STALE_STAGING_S - 60
    os.utime(out / ".tmp-new-killed", (old, old))
    os.utime(out / ".old-abc", (old, old))
    with replace_in_dir(out, ["model.weights.h5"]) as staging:
        (tmp_path / "out" / os.path.basename(staging) / "model.weights.h5").write_bytes(b"new")
    assert sorted(os.listdir(out)) == [".old-abc", ".tmp-new-live", "model.weights.h5"]
    assert (out / "model.weights.h5").read_bytes() == b"new"


@pytest.mark.parametrize("rename_call", [None, 2, 3, 4], ids=["writing", "old aside", "first in", "second in"])
def test_train_tokenizer_never_leaves_a_mismatched_pair(corpus_files, tmp_path, monkeypatch, rename_call, capsys):
    import errno
    import os

    from keras_gpt1.tokenizers import vocab_files

    corpus, output = str(corpus_files / "plain.txt"), tmp_path / "tok"
    assert cli_main(["train-tokenizer", "--corpus", corpus, "--merges", "20", "--output", str(output)]) == 0
    (output / "README.md").write_text("mine")
    before = file_tree(tmp_path)
    if rename_call is None:  # the disk fills up while merges.txt is written, after vocab.json
        opened = []

        def full(path, *args, **kwargs):
            opened.append(path)
            if len(opened) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return open(path, *args, **kwargs)

        monkeypatch.setattr(vocab_files, "open", full, raising=False)
    else:  # the swap: two old files renamed aside, then the two new ones in (the disk fills up)
        _fail_on_call(monkeypatch, os, "rename", rename_call, errno.ENOSPC)
    code = cli_main(["train-tokenizer", "--corpus", corpus, "--merges", "30", "--output", str(output)])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 1 and f"No space left on the device while writing tokenizer {str(output)!r}" in err, err
    assert file_tree(tmp_path) == before
    assert cli_main(["train-tokenizer", "--corpus", corpus, "--merges", "30", "--output", str(output)]) == 0
    assert sorted(os.listdir(output)) == ["README.md", "merges.txt", "vocab.json"]
    assert len((output / "merges.txt").read_text().splitlines()) == 1 + 30
