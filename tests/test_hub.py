"""Weights by name (`"gpt1"`, `hf://owner/name`), without any network.

A *stand-in* of the Hub repository `openai-community/openai-gpt` lives in a temporary
huggingface_hub cache: a small random `OpenAIGPTLMHeadModel` saved with `save_pretrained`, and
transformers' own tokenizer files with exactly as many tokens as the embedding has rows (as the
real repository has: 40,478 and 40,478), plus the other files that repository holds.
`HF_HOME` points there and `HF_HUB_OFFLINE=1`, so huggingface_hub serves the files from its cache
as it would after a download. `transformers` is the oracle for logits and greedy tokens.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
huggingface_hub = pytest.importorskip("huggingface_hub")

from keras_gpt1 import hub  # noqa: E402
from keras_gpt1.cli import main  # noqa: E402
from keras_gpt1.models import GPT1Backbone, GPT1CausalLM, preset_io  # noqa: E402

REPO = "openai-community/openai-gpt"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
HF_SMALL = dict(n_embd=32, n_layer=2, n_head=2, n_positions=32)
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
MERGES = ["t h", "th e</w>", "a n", "an d</w>", "i n", "in g</w>", "e r</w>", "o n</w>", "o f</w>",
          "t o</w>", "i s</w>", "a t</w>", "h e</w>", "c a", "ca t</w>", "d o", "do g</w>", "th e",
          "r e", "w a"]  # fmt: skip
TEXT = ["the cat and the dog , 42 times !", "is the zebra at home ?"]
TOLERANCE = 1e-4


def vocabulary():
    """97 tokens: the embedding has 97 rows, so the 3 special tokens have none (as in GPT-1)."""
    tokens = ["<unk>", *LETTERS, *(c + "</w>" for c in LETTERS), ",</w>", "!</w>", "?</w>", ".</w>"]
    tokens += [m.replace(" ", "") for m in MERGES]
    return {token: i for i, token in enumerate(tokens)}


def write_standin(hf_home, repo=REPO, model_type=None, weights=True, seed=0):
    """A snapshot of `repo` in `hf_home`'s hub cache, laid out as huggingface_hub leaves it."""
    repo_dir = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    vocab = vocabulary()
    torch.manual_seed(seed)
    model = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(vocab_size=len(vocab), **HF_SMALL)).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # bigger than the default init: logits that mean something
            parameter.copy_(0.2 * torch.randn_like(parameter))
    model.save_pretrained(snapshot)
    model.generation_config.save_pretrained(snapshot)
    (snapshot / "vocab.json").write_text(json.dumps(vocab))
    (snapshot / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    tokenizer = transformers.OpenAIGPTTokenizer(str(snapshot / "vocab.json"), str(snapshot / "merges.txt"))
    tokenizer.save_pretrained(snapshot)  # tokenizer_config.json, tokenizer.json
    (snapshot / "README.md").write_text("---\nlicense: mit\n---\n# OpenAI GPT (stand-in)\n")
    if not weights:
        (snapshot / "model.safetensors").unlink()
    if model_type is not None:
        config = json.loads((snapshot / "config.json").read_text())
        (snapshot / "config.json").write_text(json.dumps({**config, "model_type": model_type}))
    return model, tokenizer


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """HF_HOME with the stand-in repository; offline. Shared by the module (built once)."""
    hf_home = tmp_path_factory.mktemp("hf_home")
    model, tokenizer = write_standin(hf_home)
    with pytest.MonkeyPatch.context() as mp:
        use_hf_home(mp, hf_home)
        yield {"home": hf_home, "model": model, "tokenizer": tokenizer}


def use_hf_home(mp, hf_home, offline=True):
    # Subprocesses read the environment; this process's huggingface_hub read it at import.
    mp.setenv("HF_HOME", str(hf_home))
    mp.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    mp.delenv("HF_HUB_CACHE", raising=False)
    mp.delenv(hub.CACHE_ENV, raising=False)
    mp.setattr(huggingface_hub.constants, "HF_HOME", str(hf_home))
    mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def hf_greedy(model, ids, new):
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=new, do_sample=False, pad_token_id=0)
    return out[0].tolist()


# === Weights by name ===


def test_gpt1_by_name_is_the_hub_model_converted_and_cached(standin, monkeypatch):
    model, hf_tokenizer = standin["model"], standin["tokenizer"]
    lm = GPT1CausalLM.from_preset("gpt1", dropout=0.0)
    entry = standin["home"] / "keras_gpt1" / "openai-community--openai-gpt"
    assert lm.tokenizer is not None and entry.is_dir()

    ids = [to_numpy(lm.tokenizer(t)).tolist() for t in TEXT]
    assert ids == [hf_tokenizer(t)["input_ids"] for t in TEXT]
    assert max(max(row) for row in ids) < 97 and 0 not in sum(ids, [])  # text never yields special ids
    with torch.no_grad():
        expected = model(torch.tensor([ids[0]])).logits.numpy()
    actual = to_numpy(lm({"token_ids": np.array([ids[0]]), "padding_mask": np.ones((1, len(ids[0])), "int32")}))
    assert np.abs(expected).max() > 0.5
    np.testing.assert_allclose(actual, expected, atol=TOLERANCE, rtol=0)
    assert lm.generate([ids[1]], max_new_tokens=8)[0] == hf_greedy(model, ids[1], 8)

    # Second call: the cache alone, the Hub (and its download cache) untouched.
    def no_network(*args, **kwargs):
        raise AssertionError("the cached preset must load without huggingface_hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    again = GPT1Backbone.from_preset("gpt1")
    for a, b in zip(again.weights, lm.backbone.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    import keras_hub

    from keras_gpt1.tasks import GPT1TextClassifier

    # KerasHub's auto class on the name: a GPT1TextClassifier, + the 3 special-token rows.
    classifier = keras_hub.models.TextClassifier.from_preset("gpt1", num_classes=2)
    assert type(classifier) is GPT1TextClassifier and classifier.num_classes == 2
    embedding = to_numpy(classifier.backbone.token_embedding.embeddings)
    np.testing.assert_array_equal(embedding[:97], model.transformer.tokens_embed.weight.detach().numpy())
    assert embedding.shape == (100, 32)
    # The entry is an ordinary preset: it loads by path, so the cache can be moved.
    assert GPT1CausalLM.from_preset(str(entry)).tokenizer.vocabulary_size() == 100


def test_load_weights_false_is_the_architecture_alone(standin):
    assert preset_io.resolve_preset("gpt1", load_weights=False) == "gpt1"
    assert preset_io.resolve_preset("gpt1_tiny") == "gpt1_tiny"  # random weights, always
    assert preset_io.resolve_preset("some/dir") == "some/dir"
    # An hf:// repository not converted yet: config.json only.
    hf_home = standin["home"]
    write_standin(hf_home, "someone/small-gpt", seed=1)
    lm = GPT1CausalLM.from_preset("hf://someone/small-gpt", load_weights=False)
    assert lm.backbone.vocabulary_size == 97 and lm.backbone.hidden_dim == 32 and lm.tokenizer is None
    assert not (hf_home / "keras_gpt1" / "someone--small-gpt").exists()
    weights = GPT1CausalLM.from_preset("hf://someone/small-gpt")  # now the real thing
    assert weights.tokenizer is not None
    with pytest.raises(ValueError, match="Malformed Hugging Face handle"):
        GPT1CausalLM.from_preset("hf://just-a-name")


# === The journey: generate, score, fine-tune, evaluate ===


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def task_rows(task):
    a, b = ["the cat is at home", "the dog ran to the end"], ["the zebra is here", "a cat and a dog"]
    if task == "classification":
        return [{"text": t, "label": i % 2} for i, t in enumerate(a + b)]
    if task in ("entailment", "similarity"):
        first = "premise" if task == "entailment" else "first"
        second = "hypothesis" if task == "entailment" else "second"
        return [{first: x, second: y, "label": i % 2} for i, (x, y) in enumerate(zip(a + b, b + a))]
    return [{"context": x, "choices": [y, x], "label": i % 2} for i, (x, y) in enumerate(zip(a + b, b + a))]


@pytest.mark.once
def test_cli_generate_and_score_read_gpt1(standin, capsys):
    model, hf_tokenizer = standin["model"], standin["tokenizer"]
    prompt = "the cat and the dog"
    ids = hf_tokenizer(prompt)["input_ids"]
    command = ["generate", "--model", "gpt1", "--prompt-ids", " ".join(map(str, ids)), "--max-new-tokens", "5"]
    assert main(command + ["--no-stream"]) == 0
    assert capsys.readouterr().out.split() == [str(t) for t in hf_greedy(model, ids, 5)]
    assert main(["generate", "--model", "gpt1", "--prompt", prompt, "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith(prompt)
    assert main(["score", "--model", "gpt1", "--text", prompt, "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with torch.no_grad():  # transformers' loss: the mean negative log-likelihood of tokens 2..n
        loss = model(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    assert record["num_tokens"] == len(ids)
    assert abs(record["log_likelihood"] + loss * (len(ids) - 1)) < 1e-3


@pytest.mark.once
@pytest.mark.parametrize("task", ["classification", "entailment", "similarity", "multiple-choice"])
def test_finetune_each_task_family_from_gpt1(standin, task, tmp_path):
    from keras_gpt1.workflows.finetuning import evaluate, finetune

    data = write_rows(tmp_path / "train.jsonl", task_rows(task))
    result = finetune(
        task, data, data, preset="gpt1", output=str(tmp_path / "model"), epochs=1, batch_size=2, verbose=0
    )
    from keras_gpt1.tasks import GPT1Task
    from keras_gpt1.tasks.registry import get_family

    model = GPT1Task.from_preset(str(tmp_path / "model"))
    assert type(model) is get_family(task).task_class
    assert model.backbone.vocabulary_size == 100  # the three special-token rows were added
    metrics = evaluate(str(tmp_path / "model"), data)
    assert metrics and all(np.isfinite(v) for v in metrics.values() if isinstance(v, float))
    assert result is not None


@pytest.mark.once
def test_cli_finetune_and_evaluate_from_gpt1(standin, tmp_path, capsys):
    data = write_rows(tmp_path / "train.jsonl", task_rows("classification"))
    output = str(tmp_path / "clf")
    assert (
        main(
            [
                "finetune",
                "--task",
                "classification",
                "--train",
                data,
                "--model",
                "gpt1",
                "--output",
                output,
                "--epochs",
                "1",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    assert main(["evaluate", "--model", output, "--data", data, "--json"]) == 0
    assert "accuracy" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.once
def test_pretrain_continues_from_gpt1_whose_tokenizer_outgrows_the_embedding(standin, tmp_path):
    """LM data is plain text: the 3 special tokens without rows do not stop continued pretraining."""
    from keras_gpt1.workflows.pretraining import pretrain

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat and the dog at home .\n" * 40)
    result = pretrain(
        corpus=[str(corpus)],
        preset="hf://openai-community/openai-gpt",
        output=str(tmp_path / "run"),
        steps=2,
        batch_size=2,
        sequence_length=16,
        tensorboard=False,
        sample_length=4,
        verbose=0,
    )
    lm = GPT1CausalLM.from_preset(str(tmp_path / "run"))
    assert lm.backbone.vocabulary_size == 97 and lm.tokenizer.vocabulary_size() == 100
    assert result is not None


# === Export and serving: the pretrained tokenizer has special tokens beyond the embedding ===

SERVE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    for name in ("keras", "keras_gpt1", "keras_hub", "tf_keras"):
        sys.modules[name] = None
    import tensorflow as tf

    lm_dir, clf_dir = sys.argv[1:3]
    lm = tf.saved_model.load(lm_dir)
    out = lm.signatures["generate"](text=tf.constant([sys.argv[3]]), max_new_tokens=tf.constant(5))
    score = lm.signatures["score"](text=tf.constant([sys.argv[3]]))
    clf = tf.saved_model.load(clf_dir)
    probs = list(clf.signatures["serving_default"](text=tf.constant(["the cat is at home"])).values())
    leaked = sorted(n for n, m in sys.modules.items() if m is not None and n.split(".")[0] in ("keras", "keras_gpt1"))
    print(json.dumps({"token_ids": out["token_ids"].numpy().tolist(), "lengths": out["lengths"].numpy().tolist(),
                      "perplexity": float(score["perplexity"].numpy()[0]), "outputs": len(probs), "leaked": leaked}))
    """
)


@pytest.mark.integration
@pytest.mark.skipif(
    keras.config.backend() != "tensorflow", reason="once (TensorFlow run): the graph is the same from every backend"
)
def test_export_gpt1_and_a_task_model_then_serve_raw_strings_with_tensorflow_only(standin, tmp_path):
    model = standin["model"]
    data = write_rows(tmp_path / "train.jsonl", task_rows("classification"))
    clf = str(tmp_path / "clf")
    assert (
        main(
            [
                "finetune",
                "--task",
                "classification",
                "--train",
                data,
                "--model",
                "gpt1",
                "--output",
                clf,
                "--epochs",
                "1",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    assert main(["export", "--model", "gpt1", "--output", str(tmp_path / "lm_serving"), "--version", "1"]) == 0
    assert main(["export", "--model", clf, "--output", str(tmp_path / "clf_serving"), "--version", "1"]) == 0
    # One task model: the other families' fine-tuning from "gpt1" (special-token rows added) is
    # test_finetune_each_task_family_from_gpt1's, and their exports test_export.py's.
    prompt = "the cat and the dog"
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "PYTHONPATH")}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            SERVE_SCRIPT,
            str(tmp_path / "lm_serving" / "1"),
            str(tmp_path / "clf_serving" / "1"),
            prompt,
        ],
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["leaked"] == [] and result["outputs"] >= 1
    ids = standin["tokenizer"](prompt)["input_ids"]
    assert result["token_ids"][0][: result["lengths"][0]] == hf_greedy(model, ids, 5)
    assert np.isfinite(result["perplexity"])


# === Bad input and faults ===


def test_unreachable_hub_without_cache_names_what_failed_and_the_ways_out(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty_home"
    empty.mkdir()
    use_hf_home(monkeypatch, empty)  # offline, nothing cached
    for call in (lambda: GPT1CausalLM.from_preset("gpt1"), lambda: GPT1Backbone.from_preset("hf://someone/other")):
        with pytest.raises(hub.PretrainedWeightsUnavailable) as info:
            call()
        message = str(info.value)
        assert "Could not fetch hf://" in message and "connect" in message
        assert "keras-gpt1 convert --model" in message and "load_weights=False" in message
    assert main(["generate", "--model", "gpt1", "--prompt", "hi"]) == 2
    assert "Could not fetch hf://openai-community/openai-gpt" in capsys.readouterr().err
    # Online but the Hub does not answer (refused connection): the same clear error.
    use_hf_home(monkeypatch, empty, offline=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(
        huggingface_hub.constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}",
    )
    with pytest.raises(hub.PretrainedWeightsUnavailable, match="three ways out|Three ways out"):
        GPT1CausalLM.from_preset("gpt1")
    # The architecture needs nothing from the Hub.
    assert GPT1Backbone.from_preset("gpt1_tiny").count_params() > 0
    assert not (empty / "keras_gpt1" / "openai-community--openai-gpt").exists()


def test_hub_reachable_is_false_offline_and_when_nothing_answers(monkeypatch):
    import time

    # Offline by the environment variable alone (huggingface_hub read it at import, as unset).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_reachable() is False
    # Online, but nothing listens at the endpoint (port 9, "discard", closed on localhost): a
    # refused connection answers False at once, well within the timeout.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    assert hub.hub_reachable(timeout=10.0) is False
    assert time.monotonic() - start < 5.0
    # Something listening there (a local socket standing in for the Hub): True.
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub.hub_reachable() is True
    # Offline by huggingface_hub's own setting (HF_HUB_OFFLINE set before it was imported).
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert hub.hub_reachable() is False


def test_repositories_that_are_not_gpt1_checkpoints(tmp_path, monkeypatch):
    home = tmp_path / "home"
    write_standin(home, "someone/bert-like", model_type="bert")
    write_standin(home, "someone/gpt2-like", model_type="gpt2")
    write_standin(home, "someone/no-weights", weights=False)
    use_hf_home(monkeypatch, home)
    for repo, model_type in (("someone/bert-like", "bert"), ("someone/gpt2-like", "gpt2")):
        with pytest.raises(ValueError, match=f"hf://{repo} is not an OpenAI GPT model.*model_type '{model_type}'"):
            GPT1CausalLM.from_preset(f"hf://{repo}")
        with pytest.raises(ValueError, match=f"model_type '{model_type}'"):
            GPT1CausalLM.from_preset(f"hf://{repo}", load_weights=False)
    # Offline, the snapshot is what the cache holds: the weights are missing from the cache, not
    # from the repository (see test_offline_cache_entry_without_weights_names_the_missing_file).
    with pytest.raises(hub.PretrainedWeightsUnavailable, match="model.safetensors.*missing from the local"):
        GPT1CausalLM.from_preset("hf://someone/no-weights")
    assert not any(p.name.startswith(("someone", ".tmp-")) for p in (home / "keras_gpt1").iterdir())


def test_half_written_cache_entries_never_load(standin, tmp_path, monkeypatch):
    home = tmp_path / "home"
    write_standin(home, "someone/gpt", seed=2)
    use_hf_home(monkeypatch, home)
    cache = home / "keras_gpt1"
    import keras_gpt1.convert.hf as hf

    real = hf.convert_hf_to_preset

    def interrupted(hf_dir, output, overwrite=False):
        real(hf_dir, output, overwrite)  # everything written...
        raise KeyboardInterrupt  # ...but the process dies before the rename

    monkeypatch.setattr(hf, "convert_hf_to_preset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        GPT1CausalLM.from_preset("hf://someone/gpt")
    assert not (cache / "someone--gpt").exists()
    # A crash leaves its temporary directory behind (no finally runs on SIGKILL); so does a
    # half-copied entry moved in by hand (no config.json). Neither loads; the next call rebuilds.
    (cache / ".tmp-someone--gpt-killed").mkdir()
    (cache / ".tmp-someone--gpt-killed" / "config.json").write_text("{")
    monkeypatch.setattr(hf, "convert_hf_to_preset", real)
    lm = GPT1CausalLM.from_preset("hf://someone/gpt")
    assert lm.tokenizer is not None
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == ["someone--gpt"]


TWO_PROCESSES = textwrap.dedent(
    """
    import sys
    from keras_gpt1.models import GPT1CausalLM
    lm = GPT1CausalLM.from_preset("hf://someone/raced")
    print("LOADED", lm.backbone.vocabulary_size, lm.tokenizer.vocabulary_size())
    """
)


@pytest.mark.integration
@pytest.mark.once  # two subprocesses: the same from every backend
def test_two_processes_converting_at_once(tmp_path):
    home = tmp_path / "home"
    write_standin(home, "someone/raced", seed=3)
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop(hub.CACHE_ENV, None)
    env.pop("HF_HUB_CACHE", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TWO_PROCESSES], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
        assert "LOADED 97 100" in out
    # One converted, the other waited for it and loaded its result.
    assert sum(err.count("Converting hf://someone/raced") for _, err in outputs) == 1
    entries = sorted(p.name for p in (home / "keras_gpt1").iterdir() if not p.name.endswith(".lock"))
    assert entries == ["someone--raced"]


# === The full 117M layout ===


@pytest.mark.slow
def test_full_size_gpt1_through_the_same_path(tmp_path, monkeypatch):
    home = tmp_path / "home"
    repo_dir = home / "hub" / f"models--{REPO.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig()).save_pretrained(snapshot)
    # Offline, a snapshot without its tokenizer files is refused (it would be cached as complete).
    (snapshot / "vocab.json").write_text(json.dumps(vocabulary()))
    (snapshot / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    use_hf_home(monkeypatch, home)
    lm = GPT1CausalLM.from_preset("gpt1")
    from keras_gpt1.presets import BUILTIN_PRESETS

    config = lm.backbone.get_config()
    for key, value in BUILTIN_PRESETS["gpt1"]["config"].items():  # the architecture of the name
        assert config[key] == value, key
    assert lm.backbone.count_params() == 116_534_784


# === Offline: one exception with the right hint; what the cache lacks, named ===


def _no_network(monkeypatch, home):
    """Online by the settings (HF_HUB_OFFLINE=0), but nothing answers: a refused connection."""
    use_hf_home(monkeypatch, home, offline=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(
        huggingface_hub.constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}",
    )


@pytest.mark.once  # before any model is built: the same on every backend
@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE set", "no network"])
def test_offline_from_python_is_one_exception_whose_hint_fits_the_cause(tmp_path, monkeypatch, offline):
    import traceback

    import keras_hub

    empty = tmp_path / "empty_home"
    empty.mkdir()
    if offline:
        use_hf_home(monkeypatch, empty)
    else:
        _no_network(monkeypatch, empty)
    calls = {
        "GPT1CausalLM gpt1": lambda: GPT1CausalLM.from_preset("gpt1"),
        "GPT1Backbone hf://": lambda: GPT1Backbone.from_preset("hf://someone/other"),
        "KerasHub CausalLM gpt1": lambda: keras_hub.models.CausalLM.from_preset("gpt1"),
    }
    for name, call in calls.items():
        with pytest.raises(hub.PretrainedWeightsUnavailable) as info:
            call()
        error = info.value
        # One traceback, not huggingface_hub's chain of three or four before the good message.
        assert error.__cause__ is None and error.__suppress_context__, name
        assert "".join(traceback.format_exception(error)).count("Traceback (most recent call last)") == 1, name
        message = str(error)
        assert "\n" not in message and "local preset directory" in message, name
        if offline:
            assert "unset HF_HUB_OFFLINE" in message, name
        else:  # the variable is not set: no hint to unset it
            assert "HF_HUB_OFFLINE" not in message and "no network" in message, name


@pytest.mark.once  # before any model is built: the same on every backend
@pytest.mark.parametrize(
    "keep", [["config.json"], ["config.json", "vocab.json", "merges.txt"]], ids=["config only", "config and vocabulary"]
)
def test_offline_cache_entry_without_weights_names_the_missing_file(tmp_path, monkeypatch, capsys, keep):
    home = tmp_path / "home"
    write_standin(home, "someone/gpt")
    snapshot = home / "hub" / "models--someone--gpt" / "snapshots" / COMMIT
    for path in snapshot.iterdir():
        if path.name not in keep:
            path.unlink()
    use_hf_home(monkeypatch, home)
    with pytest.raises(hub.PretrainedWeightsUnavailable) as info:
        GPT1CausalLM.from_preset("hf://someone/gpt")
    message = str(info.value)
    assert "model.safetensors" in message and "missing from the local Hugging Face cache" in message
    assert str(snapshot) in message and "HF_HUB_OFFLINE is set" in message
    assert "no weights this library reads" not in message
    capsys.readouterr()  # transformers' progress bars, from writing the stand-in
    assert main(["generate", "--model", "hf://someone/gpt", "--prompt", "hi"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.safetensors" in err[0] and "missing from the local" in err[0]
    assert not any(p.name.startswith(("someone", ".tmp-")) for p in (home / "keras_gpt1").iterdir())


@pytest.mark.once  # before any model is built: the same on every backend
@pytest.mark.parametrize(
    "remove",
    [["vocab.json", "merges.txt", "tokenizer.json"], ["merges.txt"], ["vocab.json"]],
    ids=["no tokenizer files", "no merges.txt", "no vocab.json"],
)
def test_offline_cache_entry_without_its_tokenizer_is_not_converted(tmp_path, monkeypatch, remove):
    home = tmp_path / "home"
    write_standin(home, "someone/gpt")
    snapshot = home / "hub" / "models--someone--gpt" / "snapshots" / COMMIT
    for name in remove:
        (snapshot / name).unlink()
    use_hf_home(monkeypatch, home)
    for _ in range(2):  # and not cached by the first attempt
        with pytest.raises(hub.PretrainedWeightsUnavailable) as info:
            GPT1CausalLM.from_preset("hf://someone/gpt")
        message = str(info.value)
        assert "tokenizer of hf://someone/gpt is missing from the local Hugging Face cache" in message
        for name in remove:
            if name != "tokenizer.json":
                assert name in message
        assert "Nothing was converted or cached" in message
        assert [p.name for p in (home / "keras_gpt1").iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.once
def test_online_a_repository_without_weights_or_tokenizer_is_what_it_is(tmp_path, monkeypatch):
    """When the Hub answers, the snapshot is the repository: no weights is "no weights this
    library reads", and no tokenizer files converts the weights alone (the repository has none)."""
    home = tmp_path / "home"
    write_standin(home, "someone/no-weights", weights=False)
    write_standin(home, "someone/no-tokenizer")
    snapshot = home / "hub" / "models--someone--no-tokenizer" / "snapshots" / COMMIT
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        (snapshot / name).unlink()
    use_hf_home(monkeypatch, home)
    monkeypatch.setattr(hub, "_offline_reason", lambda: None)  # as if the Hub had served these
    with pytest.raises(ValueError, match="hf://someone/no-weights has no weights this library reads"):
        GPT1CausalLM.from_preset("hf://someone/no-weights")
    assert GPT1CausalLM.from_preset("hf://someone/no-tokenizer").tokenizer is None
    assert (home / "keras_gpt1" / "someone--no-tokenizer").is_dir()


@pytest.mark.once
def test_offline_cache_entry_with_tokenizer_json_alone_converts_with_its_tokenizer(tmp_path, monkeypatch):
    """The fast tokenizer's single file holds the same vocabulary and merges: not refused."""
    home = tmp_path / "home"
    write_standin(home, "someone/gpt")
    snapshot = home / "hub" / "models--someone--gpt" / "snapshots" / COMMIT
    for name in ("vocab.json", "merges.txt"):
        (snapshot / name).unlink()
    use_hf_home(monkeypatch, home)
    assert GPT1CausalLM.from_preset("hf://someone/gpt").tokenizer is not None


@pytest.mark.once
@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_converted_cache_entries_follow_the_umask(tmp_path, monkeypatch, mask):
    home = tmp_path / "home"
    write_standin(home, "someone/gpt")
    use_hf_home(monkeypatch, home)
    previous = os.umask(mask)
    try:
        GPT1Backbone.from_preset("hf://someone/gpt", load_weights=False)  # the architecture entry
        GPT1Backbone.from_preset("hf://someone/gpt")  # the converted preset
    finally:
        os.umask(previous)
    entries = [home / "keras_gpt1" / "someone--gpt", home / "keras_gpt1" / "someone--gpt.architecture"]
    for entry in entries:
        assert entry.is_dir()
        for path in [entry, *entry.rglob("*")]:
            expected = (0o777 if path.is_dir() else 0o666) & ~mask
            assert path.stat().st_mode & 0o777 == expected, path
