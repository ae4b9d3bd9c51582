"""Presets are verified and their configs checked before anything is built (docs/reliability.md).

- Every preset keras_gpt1 writes carries `manifest.json` (size and SHA-256 of its weights and
  tokenizer files); every loader checks the files it reads against it first.
- `config.json` is checked against the weights file's tensor shapes (metadata only) and against
  the memory available before a model is allocated; a missing key, a wrong dtype or boolean, and
  a tokenizer config with an unknown value are refused naming the file and the key.
- A tokenizer that does not fit the backbone's embedding is refused when the preset loads.
"""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import TINY_CONFIG
from keras_gpt1.cli import main as cli_main

MANIFEST = "manifest.json"
VOCAB = "assets/tokenizer/vocab.json"
MERGES = "assets/tokenizer/merges.txt"
TOKEN_EMBEDDING = "layers/gpt1_embedding/token_embedding/vars/0"


def _train_tokenizer(root, num_merges):
    from keras_gpt1.data.corpus import demo_corpus_lines
    from keras_gpt1.tokenizers import train_tokenizer

    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(demo_corpus_lines(max_bytes=6_000)) + "\n", encoding="utf-8")
    return train_tokenizer([str(corpus)], num_merges=num_merges)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One preset of each kind keras_gpt1 writes, by its own `save_to_preset`: a causal LM with
    its tokenizer, a backbone alone, a tokenizer alone, a text classifier with its preprocessor."""
    from keras_gpt1.models import GPT1Backbone, GPT1CausalLM
    from keras_gpt1.tasks import GPT1TextClassifier, GPT1TextClassifierPreprocessor

    root = tmp_path_factory.mktemp("presets")
    tokenizer = _train_tokenizer(root, num_merges=40)
    backbone = GPT1Backbone(**dict(TINY_CONFIG, vocabulary_size=tokenizer.vocabulary_size()))
    paths = {kind: str(root / kind) for kind in ("lm", "backbone", "tokenizer", "task")}
    GPT1CausalLM(backbone, tokenizer=tokenizer).save_to_preset(paths["lm"])
    backbone.save_to_preset(paths["backbone"])
    tokenizer.save_to_preset(paths["tokenizer"])
    preprocessor = GPT1TextClassifierPreprocessor(tokenizer, sequence_length=16)
    GPT1TextClassifier(backbone, num_classes=2, preprocessor=preprocessor).save_to_preset(paths["task"])
    return paths


def _copy(source, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(source, target)
    return str(target)


def _manifest(preset):
    with open(os.path.join(preset, MANIFEST), encoding="utf-8") as f:
        return json.load(f)["files"]


def _flip_inside_tensor(h5_path, dataset=TOKEN_EMBEDDING, count=100):
    """Flips `count` bytes in the middle of a tensor's data, keeping the file's size (the issue's
    case: h5py reads such a file without complaint)."""
    import h5py

    with h5py.File(h5_path, "r") as f:
        data = f[dataset] if dataset else _datasets(f)[0]
        offset, size = data.id.get_offset(), data.id.get_storage_size()
    count = min(count, size)
    start = offset + (size - count) // 2
    with open(h5_path, "r+b") as f:
        f.seek(start)
        raw = bytearray(f.read(count))
        f.seek(start)
        f.write(bytes(b ^ 0xFF for b in raw))


def _datasets(f):
    import h5py

    found = []
    f.visititems(lambda name, obj: found.append(obj) if isinstance(obj, h5py.Dataset) and obj.size > 4 else None)
    return found


def _truncate(path, keep=0.5):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep)])


def _swap_two_lines(path):
    """Same size, same bytes, another order: only a checksum sees it."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    lines[2], lines[3] = lines[3], lines[2]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def _edit_json(path, edit, section="config"):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    target = data if section is None else data[section]
    for key, value in edit.items():
        if value is _DELETE:
            target.pop(key)
        else:
            target[key] = value
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


_DELETE = object()


def _loaders(kind):
    """Every public loader of a preset of `kind`: ours and KerasHub's auto classes."""
    import keras_hub

    from keras_gpt1.models import GPT1Backbone, GPT1CausalLM
    from keras_gpt1.tasks import GPT1TextClassifier
    from keras_gpt1.tokenizers import GPT1Tokenizer

    return {
        "lm": [
            GPT1CausalLM.from_preset,
            GPT1Backbone.from_preset,
            GPT1Tokenizer.from_preset,
            keras_hub.models.CausalLM.from_preset,
            keras_hub.models.Backbone.from_preset,
            keras_hub.tokenizers.Tokenizer.from_preset,
        ],
        "backbone": [GPT1Backbone.from_preset, keras_hub.models.Backbone.from_preset],
        "tokenizer": [GPT1Tokenizer.from_preset],  # KerasHub's loader needs a config.json
        "task": [GPT1TextClassifier.from_preset, keras_hub.models.TextClassifier.from_preset],
    }[kind]


# === 1. Every preset carries a manifest of its binary files ===


@pytest.mark.once
@pytest.mark.parametrize(
    "kind, listed",
    [
        ("lm", ["assets/tokenizer/merges.txt", "assets/tokenizer/vocab.json", "model.weights.h5"]),
        ("backbone", ["model.weights.h5"]),
        ("tokenizer", ["assets/tokenizer/merges.txt", "assets/tokenizer/vocab.json"]),
        ("task", ["assets/tokenizer/merges.txt", "assets/tokenizer/vocab.json", "model.weights.h5", "task.weights.h5"]),
    ],
)
def test_every_saved_preset_lists_its_binary_files_not_its_json_configs(saved, kind, listed):
    from keras_gpt1.utils.manifest import file_sha256

    entries = _manifest(saved[kind])
    assert sorted(entries) == listed
    for name, entry in entries.items():
        path = os.path.join(saved[kind], name)
        assert entry == {"size": os.path.getsize(path), "sha256": file_sha256(path)}


@pytest.mark.once
def test_savers_writing_into_one_preset_keep_each_others_entries(saved, tmp_path):
    from keras_gpt1.tokenizers import GPT1Tokenizer

    preset = _copy(saved["backbone"], tmp_path)
    GPT1Tokenizer.from_preset(saved["tokenizer"]).save_to_preset(preset)  # as `convert` does
    assert sorted(_manifest(preset)) == [MERGES, VOCAB, "model.weights.h5"]


@pytest.mark.once
def test_weight_shards_are_listed_and_verified(tmp_path):
    import keras_hub

    from keras_gpt1.models import GPT1Backbone

    preset = str(tmp_path / "sharded")
    GPT1Backbone(**TINY_CONFIG).save_to_preset(preset, max_shard_size=0.00002)  # about 20 KB a shard
    shards = sorted(n for n in os.listdir(preset) if n.startswith("model_"))
    assert len(shards) > 1 and sorted(_manifest(preset)) == shards
    GPT1Backbone.from_preset(preset)
    _flip_inside_tensor(os.path.join(preset, shards[1]), dataset=None)
    for load in (GPT1Backbone.from_preset, keras_hub.models.Backbone.from_preset):
        with pytest.raises(ValueError, match=f"{shards[1]}' is corrupt or truncated: it does not match its checksum"):
            load(preset)


@pytest.mark.once
def test_a_converted_preset_is_verified_too(tmp_path):
    from keras_gpt1.convert.hf import convert_hf_to_preset, convert_preset_to_hf
    from keras_gpt1.models import GPT1Backbone

    source = str(tmp_path / "source")
    GPT1Backbone(**dict(TINY_CONFIG, intermediate_dim=4 * TINY_CONFIG["hidden_dim"])).save_to_preset(source)
    convert_preset_to_hf(source, str(tmp_path / "hf"))
    convert_hf_to_preset(str(tmp_path / "hf"), str(tmp_path / "converted"))
    converted = str(tmp_path / "converted")
    assert "model.weights.h5" in _manifest(converted)
    _flip_inside_tensor(os.path.join(converted, "model.weights.h5"))
    with pytest.raises(ValueError, match=r"model\.weights\.h5' is corrupt or truncated"):
        GPT1Backbone.from_preset(converted)


# === 1. Damaged files are refused by name, by every loader, before they are read ===


DAMAGE = {
    "flip-bytes-in-a-tensor": ("model.weights.h5", _flip_inside_tensor),
    "truncated-weights": ("model.weights.h5", _truncate),
    "truncated-vocab": (VOCAB, _truncate),
    "merges-reordered": (MERGES, _swap_two_lines),
    "emptied-merges": (MERGES, lambda p: open(p, "w").close()),
    "task-head-flipped": ("task.weights.h5", lambda p: _flip_inside_tensor(p, dataset=None)),
}
CASES = [
    ("lm", "flip-bytes-in-a-tensor"),
    ("lm", "truncated-weights"),
    ("lm", "truncated-vocab"),
    ("lm", "merges-reordered"),
    ("lm", "emptied-merges"),
    ("backbone", "flip-bytes-in-a-tensor"),
    ("tokenizer", "merges-reordered"),
    ("tokenizer", "truncated-vocab"),
    ("task", "task-head-flipped"),
    ("task", "flip-bytes-in-a-tensor"),
    ("task", "merges-reordered"),
]


@pytest.mark.once
@pytest.mark.parametrize("kind, damage", CASES, ids=[f"{k}-{d}" for k, d in CASES])
def test_a_damaged_preset_file_is_refused_by_every_loader(saved, tmp_path, kind, damage):
    name, damage_file = DAMAGE[damage]
    preset = _copy(saved[kind], tmp_path)
    path = os.path.join(preset, name)
    size = os.path.getsize(path)
    damage_file(path)
    if damage in ("flip-bytes-in-a-tensor", "merges-reordered", "task-head-flipped"):
        assert os.path.getsize(path) == size  # only the checksum can tell
    # A backbone loader reads no tokenizer file, a tokenizer loader no weights: nothing to refuse.
    reads = "Backbone" if name.startswith("assets") else "Tokenizer"
    loaders = [load for load in _loaders(kind) if reads not in load.__qualname__]
    for load in loaders:
        with pytest.raises(ValueError) as info:
            load(preset)
        message = str(info.value)
        assert f"{path!r} is corrupt or truncated" in message, (load, message)
        assert ("bytes, the manifest says" in message) == (os.path.getsize(path) != size), message


def test_flipped_weights_never_score_and_the_cli_says_so_in_one_line(saved, tmp_path, capsys):
    from keras_gpt1.models import GPT1CausalLM

    preset = _copy(saved["lm"], tmp_path)
    _flip_inside_tensor(os.path.join(preset, "model.weights.h5"))
    with pytest.raises(ValueError, match="does not match its checksum"):
        GPT1CausalLM.from_preset(preset)
    assert cli_main(["score", "--model", preset, "--ids", "1 2 3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "model.weights.h5' is corrupt or truncated" in err, err


@pytest.mark.once
@pytest.mark.parametrize("kind", ["lm", "task", "tokenizer"])
def test_a_preset_without_a_manifest_loads_as_before(saved, tmp_path, kind):
    preset = _copy(saved[kind], tmp_path)
    os.unlink(os.path.join(preset, MANIFEST))
    _swap_two_lines(os.path.join(preset, MERGES))  # unverifiable now: loads (merges change)
    for load in _loaders(kind)[:1]:
        assert load(preset) is not None


@pytest.mark.once
@pytest.mark.parametrize("content", ["", "{not json", '{"files": [1, 2]}', '{"files": {"model.weights.h5": 3}}'])
def test_a_damaged_manifest_is_itself_refused_by_name(saved, tmp_path, content):
    from keras_gpt1.models import GPT1Backbone

    preset = _copy(saved["backbone"], tmp_path)
    with open(os.path.join(preset, MANIFEST), "w") as f:
        f.write(content)
    with pytest.raises(ValueError, match=r"is damaged: its manifest\.json is unreadable"):
        GPT1Backbone.from_preset(preset)


@pytest.mark.once
def test_a_listed_file_that_is_gone_is_named(saved, tmp_path):
    from keras_gpt1.tokenizers import GPT1Tokenizer

    preset = _copy(saved["lm"], tmp_path)
    os.unlink(os.path.join(preset, MERGES))
    with pytest.raises(FileNotFoundError, match=r"merges\.txt"):
        GPT1Tokenizer.from_preset(preset)


# === 1. A tokenizer that does not fit the embedding is refused at load ===


@pytest.mark.once
@pytest.mark.parametrize("num_merges", [10, 80])
def test_a_tokenizer_of_another_size_than_the_embedding_is_refused(saved, tmp_path, num_merges, capsys):
    from keras_gpt1.models import GPT1CausalLM
    from keras_gpt1.tasks import GPT1TextClassifier

    other = _train_tokenizer(tmp_path, num_merges)
    for kind, load in (("lm", GPT1CausalLM.from_preset), ("task", GPT1TextClassifier.from_preset)):
        preset = _copy(saved[kind], tmp_path, kind)
        other.save_to_preset(preset)  # the assets replaced, the manifest updated: no checksum error
        rows = json.load(open(os.path.join(preset, "config.json")))["config"]["vocabulary_size"]
        with pytest.raises(ValueError) as info:
            load(preset)
        message = str(info.value)
        assert f"give {other.vocabulary_size()} token ids" in message and f"the embedding {rows} rows" in message
        assert "vocab.json" in message and "config.json" in message and preset in message
        assert cli_main(["score", "--model", preset, "--ids", "1 2 3"]) == 2
        err = capsys.readouterr().err
        assert "does not fit its backbone" in err and err.count("\n") == 1, err


@pytest.mark.once
def test_a_pretrained_embedding_without_the_fine_tuning_rows_still_loads(tmp_path):
    """A converted GPT-1 embeds the text ids only (40,478), its tokenizer adds 3 special tokens:
    that is no mismatch, and a task adds the rows."""
    from keras_gpt1.models import GPT1Backbone, GPT1CausalLM
    from keras_gpt1.tasks import GPT1TextClassifier

    tokenizer = _train_tokenizer(tmp_path, 30)
    backbone = GPT1Backbone(**dict(TINY_CONFIG, vocabulary_size=tokenizer.base_vocabulary_size))
    GPT1CausalLM(backbone, tokenizer=tokenizer).save_to_preset(str(tmp_path / "p"))
    assert GPT1CausalLM.from_preset(str(tmp_path / "p")).backbone.vocabulary_size == tokenizer.base_vocabulary_size
    task = GPT1TextClassifier.from_preset(str(tmp_path / "p"), num_classes=2)
    assert task.backbone.vocabulary_size == tokenizer.vocabulary_size()


# === 2. config.json against the weights, before anything is allocated ===


@pytest.fixture
def nothing_built(monkeypatch):
    """Fails the test if a backbone gets built: the check must come first."""
    from keras_gpt1.models import backbone as backbone_module

    def refuse(*args, **kwargs):
        raise AssertionError("a backbone was built before config.json was checked")

    monkeypatch.setattr(backbone_module.GPT1Backbone, "__init__", refuse)


@pytest.mark.once
@pytest.mark.parametrize(
    "edit, key, held",
    [
        ({"max_sequence_length": 20_000_000}, "max_sequence_length", 24),
        ({"vocabulary_size": 50_000_000}, "vocabulary_size", None),
        ({"vocabulary_size": 10**12}, "vocabulary_size", None),
        ({"num_layers": 7}, "num_layers", 2),
        ({"hidden_dim": 64, "intermediate_dim": 128}, "hidden_dim", 32),
        ({"intermediate_dim": 4096}, "intermediate_dim", 64),
    ],
)
def test_config_sizes_the_weights_do_not_hold_are_refused_before_allocation(
    saved, tmp_path, nothing_built, edit, key, held, capsys
):
    from keras_gpt1.models import GPT1Backbone, GPT1CausalLM

    preset = _copy(saved["lm"], tmp_path)
    held = held if held is not None else json.load(open(os.path.join(preset, "config.json")))["config"][key]
    _edit_json(os.path.join(preset, "config.json"), edit)
    for load in (GPT1CausalLM.from_preset, GPT1Backbone.from_preset):
        with pytest.raises(ValueError) as info:
            load(preset)
        message = str(info.value)
        config_path = os.path.join(preset, "config.json")
        assert f'{config_path!r} says "{key}" is {edit[key]}; the weights hold {held}' in message, message
    assert cli_main(["score", "--model", preset, "--ids", "1 2 3"]) == 2
    assert f'"{key}" is {edit[key]}' in capsys.readouterr().err


@pytest.mark.once
@pytest.mark.parametrize(
    "edit",
    [
        {"vocabulary_size": 10**12},
        {"max_sequence_length": 10**11},
        {"num_layers": 10**8},
        {"hidden_dim": 2**21, "num_heads": 2, "intermediate_dim": 2**21},
    ],
    ids=["vocabulary", "context", "layers", "width"],
)
def test_without_weights_a_config_that_cannot_fit_in_memory_is_refused(saved, tmp_path, nothing_built, edit):
    from keras_gpt1.models import GPT1Backbone, GPT1CausalLM

    preset = _copy(saved["lm"], tmp_path)
    _edit_json(os.path.join(preset, "config.json"), edit)
    for load in (GPT1CausalLM.from_preset, GPT1Backbone.from_preset):
        with pytest.raises(ValueError, match=r"config\.json describes .* GB for its weights alone, and only .* GB"):
            load(preset, load_weights=False)
    with pytest.raises(ValueError, match="'gpt1_tiny' describes"):  # a built-in name with overrides
        GPT1Backbone.from_preset("gpt1_tiny", load_weights=False, **edit)


@pytest.mark.once
def test_the_memory_check_compares_with_what_is_available(saved, monkeypatch):
    from keras_gpt1.models import GPT1Backbone
    from keras_gpt1.utils import checks

    needed = 4 * 97 * 32  # the token embedding alone is more than 12 KB
    monkeypatch.setattr(checks, "available_memory_bytes", lambda: needed)
    with pytest.raises(ValueError, match=r"parameters\) needs about"):
        GPT1Backbone.from_preset(saved["backbone"], load_weights=False)
    monkeypatch.setattr(checks, "available_memory_bytes", lambda: 10**9)
    assert GPT1Backbone.from_preset(saved["backbone"], load_weights=False).vocabulary_size > 0


@pytest.mark.once
def test_weight_shapes_from_a_config_match_a_built_backbone():
    from keras_gpt1.models import GPT1Backbone
    from keras_gpt1.models.preset_io import backbone_weight_shapes

    for config in (TINY_CONFIG, dict(TINY_CONFIG, num_layers=3, intermediate_dim=48, max_sequence_length=7)):
        built = [tuple(w.shape) for w in GPT1Backbone(**config).weights]
        assert sorted(backbone_weight_shapes(config)) == sorted(built)


# === 7. and 8. Config keys: missing, of the wrong kind, or with an unknown value ===


@pytest.mark.once
@pytest.mark.parametrize(
    "file, edit, message",
    [
        ("config.json", {"num_heads": _DELETE}, 'the required key "num_heads" is missing'),
        ("config.json", {"vocabulary_size": _DELETE}, 'the required key "vocabulary_size" is missing'),
        ("config.json", {"hidden_dim": _DELETE}, 'the required key "hidden_dim" is missing'),
        ("config.json", {"dtype": "float7"}, '"dtype" must be a Keras dtype policy'),
        ("config.json", {"dtype": {"class_name": "DTypePolicy", "config": {"name": "bfloat17"}}}, "got 'bfloat17'"),
        ("config.json", {"dtype": 7}, '"dtype" must be a Keras dtype policy'),
        ("config.json", {"rematerialize": "yes"}, '"rematerialize" must be true or false'),
        ("config.json", {"rematerialize": "false"}, '"rematerialize" must be true or false'),
        ("config.json", {"rematerialize": 1}, '"rematerialize" must be true or false'),
        ("tokenizer.json", {"standardize": "klingon"}, "\"standardize\" must be one of 'bert', 'original'"),
        ("tokenizer.json", {"standardize": "BERT"}, "\"standardize\" must be one of 'bert', 'original'"),
        ("tokenizer.json", {"add_special_tokens": "no"}, '"add_special_tokens" must be true or false'),
        ("tokenizer.json", {"dtype": "float32"}, "\"dtype\" must be one of 'int32', 'int64'"),
        ("tokenizer.json", {"sequence_length": 0}, '"sequence_length" must be an integer >= 1'),
    ],
)
def test_bad_config_values_are_refused_naming_file_and_key(saved, tmp_path, file, edit, message, capsys):
    from keras_gpt1.models import GPT1CausalLM

    preset = _copy(saved["lm"], tmp_path)
    path = os.path.join(preset, file)
    _edit_json(path, edit)
    with pytest.raises(ValueError) as info:
        GPT1CausalLM.from_preset(preset)
    assert message in str(info.value) and repr(path) in str(info.value), str(info.value)
    assert cli_main(["score", "--model", preset, "--ids", "1 2 3"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.once
@pytest.mark.parametrize("kind", ["tokenizer", "lm", "task"])
def test_an_unknown_standardize_is_refused_by_the_tokenizer_loaders(saved, tmp_path, kind):
    from keras_gpt1.models import GPT1Backbone
    from keras_gpt1.tasks import GPT1TextClassifier
    from keras_gpt1.tokenizers import GPT1Tokenizer

    preset = _copy(saved[kind], tmp_path)
    _edit_json(os.path.join(preset, "tokenizer.json"), {"standardize": "klingon"})
    loaders = {"tokenizer": [GPT1Tokenizer.from_preset], "task": [GPT1TextClassifier.from_preset]}
    for load in loaders.get(kind, [GPT1Tokenizer.from_preset]):
        with pytest.raises(ValueError, match=r"tokenizer\.json'.*\"standardize\" must be one of 'bert', 'original'"):
            load(preset)
    if kind != "tokenizer":  # the backbone alone reads no tokenizer file: it loads
        assert GPT1Backbone.from_preset(preset).vocabulary_size > 0


@pytest.mark.once
def test_the_tokenizer_config_inside_preprocessor_json_is_checked_too(saved, tmp_path):
    """KerasHub's loader builds the tokenizer from `preprocessor.json`, never reading tokenizer.json."""
    from keras_gpt1.models import GPT1CausalLM

    preset = _copy(saved["lm"], tmp_path)
    path = os.path.join(preset, "preprocessor.json")
    with open(path) as f:
        data = json.load(f)
    data["config"]["tokenizer"]["config"]["standardize"] = "klingon"
    with open(path, "w") as f:
        json.dump(data, f)
    with pytest.raises(ValueError, match=r"preprocessor\.json \(its tokenizer\)'.*\"standardize\""):
        GPT1CausalLM.from_preset(preset)


# === 7. Emptied or corrupt vocabulary files, without a manifest to catch them ===


@pytest.mark.once
@pytest.mark.parametrize(
    "name, content, message",
    [
        (MERGES, "", "the file is empty (truncated?)"),
        (MERGES, "\n\n  \n", "the file is empty (truncated?)"),
        (MERGES, "#version: 0.2\nt h e\n", "line 2: expected two tokens"),
        (VOCAB, "", "invalid JSON at line 1"),
        (VOCAB, '{"<unk>": 0, "a": ', "invalid JSON"),
        (VOCAB, '{"<unk>": 0, "a": 5}', "ids must be 0..1 with no gaps"),
    ],
)
def test_emptied_or_corrupt_vocabulary_files_are_named(saved, tmp_path, name, content, message):
    from keras_gpt1.models import GPT1CausalLM
    from keras_gpt1.tokenizers import GPT1Tokenizer

    preset = _copy(saved["lm"], tmp_path)
    os.unlink(os.path.join(preset, MANIFEST))  # hand-made or older: the content checks alone
    path = os.path.join(preset, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)
    for load in (GPT1Tokenizer.from_preset, GPT1CausalLM.from_preset):
        with pytest.raises(ValueError) as info:
            load(preset)
        assert message in str(info.value) and path in str(info.value), str(info.value)


@pytest.mark.once
def test_a_tokenizer_without_merges_works(tmp_path):
    """A merges.txt holding only its header line is a valid tokenizer (letters only), not an error."""
    from keras_gpt1.tokenizers import GPT1Tokenizer

    vocabulary = {"<unk>": 0, "a": 1, "b</w>": 2, "a</w>": 3}
    tokenizer = GPT1Tokenizer(vocabulary, [])
    tokenizer.save_to_preset(str(tmp_path / "t"))
    with open(tmp_path / "t" / MERGES, encoding="utf-8") as f:
        assert f.read().strip() == "#version: 0.2"
    reloaded = GPT1Tokenizer.from_preset(str(tmp_path / "t"))
    np.testing.assert_array_equal(np.asarray(reloaded("ab a")), [1, 2, 3])


@pytest.mark.once
def test_a_file_is_hashed_once_while_it_stays_unchanged(saved, tmp_path, monkeypatch):
    """The loaders of one `from_preset` share the check: a 500 MB weights file is hashed once."""
    from keras_gpt1.utils import manifest

    preset = _copy(saved["backbone"], tmp_path)
    hashed = []
    original = manifest.file_sha256
    monkeypatch.setattr(manifest, "file_sha256", lambda path: hashed.append(path) or original(path))
    for _ in range(3):
        manifest.verify_files(preset, ["model.weights.h5"])
    assert len(hashed) == 1
    _flip_inside_tensor(os.path.join(preset, "model.weights.h5"))  # a write: hashed again, and refused
    with pytest.raises(ValueError, match="does not match its checksum"):
        manifest.verify_files(preset, ["model.weights.h5"])
    assert len(hashed) == 2
