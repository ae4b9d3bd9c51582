"""Output folders have an owner (docs/reliability.md, "Output folders"): one writer at a time,
refused at once with the holder named, no stale lock after a `kill -9`; a folder holding another
kind of artifact is refused unless the user says `--overwrite` (`--restart` for pretrain), and
then the old artifact goes as a whole."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from conftest import BACKEND, file_tree, write_pretraining_data
from keras_gpt1.cli import main as cli_main
from keras_gpt1.utils import locks
from keras_gpt1.utils.locks import LOCK_FILE, OutputInUseError, lock_holder, output_lock

PRETRAIN_FLAGS = [
    "--num-layers", "2", "--num-heads", "2", "--hidden-dim", "32", "--intermediate-dim", "64",
    "--max-sequence-length", "32", "--batch-size", "4", "--steps", "2", "--eval-interval", "2",
    "--validation-batches", "1", "--sample-length", "0", "--no-tensorboard",
]  # fmt: skip


class Artifacts(dict):
    """One of each artifact the commands meet, `{kind: path}` plus `"inputs"`, each made on first
    use and kept for the module (the TensorFlow run needs only the cheap ones, for `export`)."""

    def __init__(self, root):
        super().__init__()
        self.root = root

    def __missing__(self, kind):
        self[kind] = getattr(self, "_" + kind)()
        return self[kind]

    def _inputs(self):
        from keras_gpt1.tokenizers import train_tokenizer

        corpus, tokenizer_dir = write_pretraining_data(self.root, max_bytes=8_000, vocabulary_size=200)
        words = self.root / "words.txt"
        words.write_text("the quick brown fox jumps over the lazy dog\n" * 5, encoding="utf-8")
        train = self.root / "train.csv"
        rows = "".join(f"the {w} fox,{i % 2}\n" for i, w in enumerate(["quick", "lazy"] * 4))
        train.write_text("text,label\n" + rows)
        self.tokenizer = train_tokenizer([str(words)], num_merges=10)
        return {"corpus": corpus, "tokenizer": tokenizer_dir, "words": str(words), "train": str(train)}

    def _preset(self):
        from keras_gpt1.models import GPT1Backbone, GPT1CausalLM

        self["inputs"]
        backbone = GPT1Backbone(
            vocabulary_size=self.tokenizer.vocabulary_size(),
            num_layers=1,
            num_heads=2,
            hidden_dim=16,
            intermediate_dim=64,  # 4 x hidden: the Hugging Face port can hold it
            max_sequence_length=16,
            dropout=0.0,
        )
        GPT1CausalLM(backbone, tokenizer=self.tokenizer).save_to_preset(str(self.root / "preset"))
        return str(self.root / "preset")

    def _hf(self):
        from keras_gpt1.convert import convert_preset_to_hf

        convert_preset_to_hf(self["preset"], str(self.root / "hf"))
        return str(self.root / "hf")

    def _classifier(self):
        from keras_gpt1.workflows.finetuning import finetune

        output = str(self.root / "classifier")
        finetune("classification", self["inputs"]["train"], preset=self["preset"], output=output, epochs=1, verbose=0)
        return output

    def _run(self):
        inputs, output = self["inputs"], str(self.root / "run")
        argv = ["pretrain", "--corpus", inputs["corpus"], "--tokenizer", inputs["tokenizer"], "--output", output]
        assert cli_main(argv + PRETRAIN_FLAGS) == 0
        return output

    def _pair(self):
        output = str(self.root / "pair")
        argv = ["train-tokenizer", "--corpus", self["inputs"]["words"], "--merges", "5", "--output", output, "--quiet"]
        assert cli_main(argv) == 0
        return output

    def _tokenizer_preset(self):
        self["inputs"]
        self.tokenizer.save_to_preset(str(self.root / "tokenizer_preset"))
        return str(self.root / "tokenizer_preset")

    def _saved_model(self):  # detected by name: a real export needs TensorFlow
        (self.root / "saved_model").mkdir()
        (self.root / "saved_model" / "saved_model.pb").write_bytes(b"graph")
        return str(self.root / "saved_model")

    def _export_base(self):
        (self.root / "export_base" / "1").mkdir(parents=True)
        (self.root / "export_base" / "1" / "saved_model.pb").write_bytes(b"graph")
        return str(self.root / "export_base")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return Artifacts(tmp_path_factory.mktemp("artifacts"))


# What each artifact is called in the refusal, and the entry that shows it.
KINDS = {
    "run": ("a pretraining run", "run.json"),
    "classifier": ("a fine-tuned task model", "finetune.json"),
    "preset": ("a model", "config.json"),
    "hf": ("a Hugging Face model", "config.json"),
    "pair": ("a tokenizer", "vocab.json"),
    "tokenizer_preset": ("a tokenizer", "tokenizer.json"),
    "saved_model": ("a SavedModel", "saved_model.pb"),
    "export_base": ("SavedModel exports", os.path.join("1", "saved_model.pb")),
}


def copy_of(made, kind, tmp_path):
    """A private copy of one artifact, with a file of the user's own beside it."""
    target = tmp_path / kind
    shutil.copytree(made[kind], target)
    (target / "NOTES.md").write_text("mine")
    return target


def command(name, made, output):
    """The argv of command `name` writing into `output`."""
    inputs = made["inputs"]
    argv = {
        "pretrain": lambda: (
            ["pretrain", "--corpus", inputs["corpus"], "--tokenizer", inputs["tokenizer"]] + PRETRAIN_FLAGS
        ),
        "finetune": lambda: (
            ["finetune", "--task", "classification", "--train", inputs["train"]]
            + ["--model", made["preset"], "--epochs", "1", "--batch-size", "4"]
        ),
        "convert-to-hf": lambda: ["convert", "--model", made["preset"]],
        "convert-from-hf": lambda: ["convert", "--model", made["hf"]],
        "train-tokenizer": lambda: ["train-tokenizer", "--corpus", inputs["words"], "--merges", "5", "--quiet"],
        "export": lambda: ["export", "--model", made["preset"]],
    }[name]()
    return argv + ["--output", str(output)]


def one_error_line(capsys, name):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"keras-gpt1 {name.split('-')[0] if name.startswith('convert') else name}: error: "), err
    return err


# === One writer at a time ===


@pytest.fixture
def held_by_thread():
    """`hold(folder)`: a helper thread takes the folder's lock and keeps it until the test ends.
    Another thread of this process is refused as another process is (the kernel would not)."""
    stops = []

    def hold(folder):
        taken, stop = threading.Event(), threading.Event()

        def holder():
            with output_lock(folder, "test holder"):
                taken.set()
                stop.wait(60)

        thread = threading.Thread(target=holder, daemon=True)
        thread.start()
        assert taken.wait(10)
        stops.append((stop, thread))

    yield hold
    for stop, thread in stops:
        stop.set()
        thread.join(10)


COMMANDS = ["pretrain", "finetune", "convert-to-hf", "convert-from-hf", "train-tokenizer"]


@pytest.mark.once
@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("kind", [None, "run", "classifier"])
def test_a_second_writer_is_refused_at_once_naming_the_holder(made, name, kind, tmp_path, held_by_thread, capsys):
    output = copy_of(made, kind, tmp_path) if kind else tmp_path / "new"
    held_by_thread(output)
    before = file_tree(output)
    assert cli_main(command(name, made, output)) == 2
    err = one_error_line(capsys, name)
    assert f"Output directory {str(output)!r} is in use by pid {os.getpid()}" in err, err
    assert "wait for it to finish or choose another --output" in err and "test holder" not in err
    assert file_tree(output) == before  # nothing written, nothing removed


@pytest.mark.once
def test_library_writers_are_refused_with_output_in_use_error(made, tmp_path, held_by_thread):
    from keras_gpt1.models import GPT1CausalLM
    from keras_gpt1.workflows.finetuning import finetune
    from keras_gpt1.workflows import pretrain

    output = tmp_path / "busy"
    held_by_thread(output)
    inputs = made["inputs"]
    calls = [
        lambda: GPT1CausalLM.from_preset(made["preset"]).save_to_preset(str(output)),
        lambda: GPT1CausalLM.from_preset(made["preset"]).backbone.save_to_preset(str(output)),
        lambda: finetune("classification", inputs["train"], preset=made["preset"], output=str(output), verbose=0),
        lambda: pretrain(corpus=[inputs["corpus"]], tokenizer=inputs["tokenizer"], output=str(output), verbose=0),
    ]
    for call in calls:
        with pytest.raises(OutputInUseError, match=rf"is in use by pid {os.getpid()} on host .*started \d{{4}}-") as e:
            call()
        assert isinstance(e.value, ValueError) and e.value.holder["pid"] == os.getpid()
        assert e.value.holder["writer"] == "test holder"
    assert os.listdir(output) == [LOCK_FILE]


@pytest.mark.once
def test_a_refused_pretrain_never_removes_a_folder_another_run_just_created(
    made, tmp_path, held_by_thread, monkeypatch
):
    """Two runs start together into a new folder: the one refused must not take the folder for
    its own leftover (a refused run removes the folder it created) while the other writes it."""
    from keras_gpt1.workflows import pretraining

    output = tmp_path / "new"
    real = pretraining.ensure_writable_dir

    def other_run_starts(path):  # between the refused run's look at `output` and its lock
        real(path)
        held_by_thread(output)
        (output / "tokenizer.json").write_text("the other run's")

    monkeypatch.setattr(pretraining, "ensure_writable_dir", other_run_starts)
    inputs = made["inputs"]
    with pytest.raises(OutputInUseError):
        pretraining.pretrain(corpus=[inputs["corpus"]], tokenizer=inputs["tokenizer"], output=str(output), verbose=0)
    assert (output / "tokenizer.json").read_text() == "the other run's"


@pytest.mark.once
def test_the_lock_nests_in_one_thread_and_leaves_no_trace(tmp_path):
    output = tmp_path / "new" / "out"
    with output_lock(output, "outer"):
        assert lock_holder(output)["writer"] == "outer"
        with output_lock(output, "inner"):  # pretrain's final save_to_preset inside its own lock
            pass
        assert os.path.exists(output / LOCK_FILE)
    assert lock_holder(output) is None
    assert not os.path.exists(output)  # created for the lock and left empty: removed again
    (tmp_path / "kept").mkdir()
    with output_lock(tmp_path / "kept"):
        (tmp_path / "kept" / "model.weights.h5").write_bytes(b"w")
    assert os.listdir(tmp_path / "kept") == ["model.weights.h5"]  # the lock file never stays


@pytest.mark.once
def test_the_lock_file_is_no_model_file_to_the_folder_helpers(tmp_path):
    from keras_gpt1 import presets
    from keras_gpt1.utils.artifacts import MODEL_ENTRIES, artifact_kind
    from keras_gpt1.utils.files import remove_stale_temporaries, replace_in_dir

    output = tmp_path / "out"
    with output_lock(output, "writer"):
        assert artifact_kind(output) == (None, None)
        assert remove_stale_temporaries(str(output)) == []
        with replace_in_dir(str(output), MODEL_ENTRIES + presets.PRESET_ENTRIES) as staging:
            (tmp_path / "out" / "unrelated.txt").write_text("x")
            open(os.path.join(staging, "config.json"), "w").close()
        assert sorted(os.listdir(output)) == sorted([LOCK_FILE, "config.json", "unrelated.txt"])
        assert lock_holder(output)["writer"] == "writer"  # still held after the swap


HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("locks", sys.argv[1])
locks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(locks)
with locks.output_lock(sys.argv[2], "holder"):
    print("locked", flush=True)
    time.sleep(300)
"""


@pytest.mark.once
@pytest.mark.integration
def test_another_process_is_named_and_its_kill_leaves_no_stale_lock(made, tmp_path, capsys):
    """A real second process holds the folder (the kernel's lock, not this process's table); after
    `kill -9` its lock file stays but locks nothing, and the next writer goes ahead."""
    output = tmp_path / "tok"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, locks.__file__, str(output)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        record = lock_holder(output)
        assert record["pid"] == holder.pid and record["writer"] == "holder"
        for name in ("train-tokenizer", "pretrain"):
            assert cli_main(command(name, made, output)) == 2
            err = one_error_line(capsys, name)
            assert f"is in use by pid {holder.pid} on host " in err and f"(-c {locks.__file__}" in err, err
            assert os.listdir(output) == [LOCK_FILE]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert holder.returncode == -signal.SIGKILL
    assert os.listdir(output) == [LOCK_FILE] and lock_holder(output) is None  # a file, not a lock
    assert cli_main(command("train-tokenizer", made, output)) == 0
    assert sorted(os.listdir(output)) == ["merges.txt", "vocab.json"]


@pytest.mark.skipif(
    BACKEND != "tensorflow", reason="export runs in-process on TensorFlow only (a subprocess elsewhere)"
)
@pytest.mark.parametrize("kind", [None, "export_base"])
def test_export_holds_its_base_folder(made, kind, tmp_path, held_by_thread, capsys):
    output = copy_of(made, kind, tmp_path) if kind else tmp_path / "serving"
    held_by_thread(output)
    before = file_tree(output)
    assert cli_main(command("export", made, output)) == 2
    assert f"is in use by pid {os.getpid()}" in one_error_line(capsys, "export")
    assert file_tree(output) == before


# === A folder holding another artifact ===

# Which command accepts which artifact as its own (to continue or replace), and the flag that
# lets it replace any other model (None: no flag replaces; SavedModel exports never are).
ACCEPTS = {
    "pretrain": ({"run"}, "--restart"),
    "finetune": ({"classifier"}, "--overwrite"),
    "convert-to-hf": (set(), "--overwrite"),
    "convert-from-hf": (set(), "--overwrite"),
    "train-tokenizer": ({"pair"}, None),
    "export": ({"export_base"}, None),
}
EXPORTS = {"saved_model", "export_base"}


def refusals(names):
    return [(name, kind) for name in names for kind in KINDS if kind not in ACCEPTS[name][0]]


def check_refused(name, kind, output, capsys):
    err = one_error_line(capsys, name)
    what, evidence = KINDS[kind]
    if name == "train-tokenizer" and kind == "tokenizer_preset":
        what = "a tokenizer preset"  # which loaders read before a vocab.json + merges.txt pair
    assert f"{str(output)!r} already holds {what} ({evidence}" in err, err
    flag = ACCEPTS[name][1]
    if flag is None or kind in EXPORTS:
        assert "never replaces; pick another directory" in err and "--overwrite" not in err, err
    else:
        assert f"Pick another directory, or pass {flag} to replace it" in err, err


@pytest.mark.once
@pytest.mark.parametrize("name,kind", refusals(COMMANDS))
def test_a_folder_holding_another_artifact_is_refused(made, name, kind, tmp_path, capsys):
    output = copy_of(made, kind, tmp_path)
    before = file_tree(output)
    assert cli_main(command(name, made, output)) == 2
    check_refused(name, kind, output, capsys)
    assert file_tree(output) == before


@pytest.mark.skipif(
    BACKEND != "tensorflow", reason="export runs in-process on TensorFlow only (a subprocess elsewhere)"
)
@pytest.mark.parametrize("name,kind", refusals(["export"]))
def test_export_refuses_a_folder_that_is_not_an_export_base(made, name, kind, tmp_path, capsys):
    if kind in ("run", "classifier"):  # only their record files matter here: skip training one
        output = copy_of(made, "preset", tmp_path / kind)
        (output / KINDS[kind][1]).write_text("{}")
    else:
        output = copy_of(made, kind, tmp_path)
    before = file_tree(output)
    assert cli_main(command(name, made, output) + ["--overwrite"]) == 2  # no flag makes it one
    check_refused(name, kind, output, capsys)
    assert file_tree(output) == before


@pytest.mark.once
@pytest.mark.parametrize("name", ["convert-to-hf", "finetune", "pretrain"])
@pytest.mark.parametrize("kind", sorted(EXPORTS))
def test_the_replacing_flag_never_deletes_saved_model_exports(made, name, kind, tmp_path, capsys):
    output = copy_of(made, kind, tmp_path)
    before = file_tree(output)
    assert cli_main(command(name, made, output) + [ACCEPTS[name][1]]) == 2
    check_refused(name, kind, output, capsys)
    assert file_tree(output) == before


def model_files(folder):
    return sorted(name for name in os.listdir(folder) if name != "NOTES.md")


@pytest.mark.once
@pytest.mark.parametrize("kind", ["classifier", "hf"])
def test_pretrain_restart_replaces_another_model_as_a_whole(made, kind, tmp_path, capsys):
    output = copy_of(made, kind, tmp_path)
    assert cli_main(command("pretrain", made, output) + ["--restart"]) == 0
    names = model_files(output)
    for stale in ("finetune.json", "task.weights.h5", "model.safetensors", "vocab.json", "merges.txt"):
        assert stale not in names, names
    assert {"run.json", "config.json", "model.weights.h5", "tokenizer.json", "checkpoints"} <= set(names)
    assert (output / "NOTES.md").read_text() == "mine" and LOCK_FILE not in names
    with open(output / "task.json") as f:
        assert json.load(f)["class_name"] == "GPT1CausalLM"
    capsys.readouterr()
    # `evaluate` reads the folder as what it now is: a pretrained model, not a classifier.
    assert cli_main(["evaluate", "--model", str(output), "--data", made["inputs"]["train"]]) == 2
    err = one_error_line(capsys, "evaluate")
    assert "finetune.json" in err and "task.json is missing" not in err, err


@pytest.mark.once
@pytest.mark.parametrize("kind", ["run", "hf"])
def test_finetune_overwrite_replaces_another_model_as_a_whole(made, kind, tmp_path, capsys):
    output = copy_of(made, kind, tmp_path)
    assert cli_main(command("finetune", made, output) + ["--overwrite"]) == 0
    names = model_files(output)
    for stale in ("run.json", "checkpoints", "loss_curve.png", "model.safetensors", "vocab.json"):
        assert stale not in names, names
    assert {"finetune.json", "task.json", "task.weights.h5", "config.json"} <= set(names)
    assert cli_main(["evaluate", "--model", str(output), "--data", made["inputs"]["train"], "--json"]) == 0
    assert "accuracy" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.once
@pytest.mark.parametrize("kind", ["run", "classifier", "preset"])
def test_convert_overwrite_replaces_another_model_as_a_whole(made, kind, tmp_path):
    from keras_gpt1.utils.artifacts import artifact_kind

    output = copy_of(made, kind, tmp_path)
    assert cli_main(command("convert-to-hf", made, output) + ["--overwrite"]) == 0
    assert artifact_kind(output) == ("a Hugging Face model", "config.json")
    names = model_files(output)
    assert names == ["config.json", "merges.txt", "model.safetensors", "vocab.json"], names


@pytest.mark.once
def test_finetune_replaces_its_own_kind_without_a_flag(made, tmp_path):
    output = copy_of(made, "classifier", tmp_path)
    assert cli_main(command("finetune", made, output) + ["--epochs", "2"]) == 0
    with open(output / "finetune.json") as f:
        assert json.load(f)["recipe"]["epochs"] == 2


@pytest.mark.once
def test_evaluate_names_a_mixed_folder_instead_of_a_missing_task_config(made, tmp_path, capsys):
    """A folder written before owners existed: a classifier's finetune.json beside a causal LM's
    task.json (pretrain wrote over it). It would load a fresh, untrained head and score it."""
    output = copy_of(made, "classifier", tmp_path)
    shutil.copy(os.path.join(made["preset"], "task.json"), output / "task.json")
    assert cli_main(["evaluate", "--model", str(output), "--data", made["inputs"]["train"]]) == 2
    err = one_error_line(capsys, "evaluate")
    assert "task.json holds a causal language model, not a fine-tuned task: the folder mixes two models" in err
    assert "keras-gpt1 finetune --overwrite" in err and "is missing" not in err, err
    os.remove(output / "task.json")
    assert cli_main(["evaluate", "--model", str(output), "--data", made["inputs"]["train"]]) == 2
    assert "it has no task.json (the task head's config)" in one_error_line(capsys, "evaluate")


# === pretrain: another run's folder, its own inputs ===


@pytest.mark.once
def test_pretrain_refuses_another_runs_folder_even_without_a_checkpoint(made, tmp_path, capsys):
    output = copy_of(made, "run", tmp_path)
    shutil.rmtree(output / "checkpoints")  # e.g. deleted to save space: nothing to resume from
    before = file_tree(output)
    argv = command("pretrain", made, output)
    argv[argv.index("--steps") + 1] = "3"  # another run
    assert cli_main(argv) == 2
    err = one_error_line(capsys, "pretrain")
    assert "holds a run with different settings (steps differ)" in err and "--restart" in err, err
    assert file_tree(output) == before  # its tokenizer too: never overwritten before the check
    assert cli_main(argv + ["--restart"]) == 0
    with open(output / "run.json") as f:
        assert json.load(f)["settings"]["steps"] == 3


@pytest.mark.once
def test_pretrain_never_writes_into_the_preset_it_starts_from(made, tmp_path, capsys):
    output = copy_of(made, "preset", tmp_path)
    before = file_tree(output)
    for extra in ([], ["--restart"]):
        argv = ["pretrain", "--corpus", made["inputs"]["corpus"], "--model", str(output), "--output", str(output)]
        assert cli_main(argv + ["--steps", "1", "--no-tensorboard", "--sample-length", "0", *extra]) == 2
        assert "is the --model directory the run starts from" in one_error_line(capsys, "pretrain")
    assert file_tree(output) == before


@pytest.mark.once
def test_pretrain_into_its_own_tokenizer_folder(made, tmp_path, capsys):
    """`train-tokenizer --output runs/a` then `pretrain --tokenizer runs/a --output runs/a` is a
    natural sequence: accepted (with `--restart` it is refused: it would delete the tokenizer)."""
    output = copy_of(made, "pair", tmp_path)
    argv = ["pretrain", "--corpus", made["inputs"]["corpus"], "--tokenizer", str(output), "--output", str(output)]
    argv += ["--num-layers", "1", "--hidden-dim", "16", "--num-heads", "2", "--intermediate-dim", "32"]
    argv += ["--max-sequence-length", "8", "--batch-size", "2", "--steps", "1", "--validation-batches", "1"]
    argv += ["--no-tensorboard", "--sample-length", "0"]
    before = file_tree(output)
    assert cli_main(argv + ["--restart"]) == 2
    assert "is also the --tokenizer directory, which --restart would delete" in one_error_line(capsys, "pretrain")
    assert file_tree(output) == before
    assert cli_main(argv) == 0
    assert {"run.json", "vocab.json", "merges.txt", "tokenizer.json"} <= set(os.listdir(output))
