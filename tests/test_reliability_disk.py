"""Writing onto a real full filesystem and a real read-only one: `convert`, `export`,
`save_to_preset` and `finetune` refuse with one line naming what they would write, and leave
nothing behind (no `.tmp-new-*` staging folder, no partial `model.weights.h5`).

The filesystems are small tmpfs mounts, made and unmounted by the fixtures below; mounting
needs root (CI runs as root), so without it these tests are skipped, saying why. A simulated
ENOSPC (a patched writer raising it) is tested beside each writer (tests/test_convert.py,
test_export.py, test_tasks.py, test_reliability*.py); here the kernel itself refuses. Before
the free-space checks, a real full disk made h5py crash the process (a segmentation fault)
halfway through `model.weights.h5`: one subprocess test runs the command line as a user would.
"""

import contextlib
import errno
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

from conftest import BACKEND, ONCE_BACKEND, TINY_CONFIG
from keras_gpt1.cli import main as cli_main
from keras_gpt1.utils.files import DiskFullError, estimated_weights_file_bytes

FILLER = "filler.bin"
# What the full filesystem has left: room for a config file, never for a model's weights.
LEFT_FREE = 24 * 1024
SIZE = "2m"  # the tmpfs: a tiny model fits with room to spare (see the control test)


def _mount_refusal():
    """Why tmpfs mounts cannot be made here (None when they can): not root, or not permitted
    (a container without CAP_SYS_ADMIN)."""
    if not sys.platform.startswith("linux"):
        return "tmpfs mounts need Linux"
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root (CI runs as root)"
    probe = f"/tmp/keras-gpt1-mount-probe-{uuid.uuid4().hex}"
    os.makedirs(probe)
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], capture_output=True)
        if result.returncode != 0:
            return f"mount -t tmpfs is not permitted here: {result.stderr.decode(errors='replace').strip()}"
        subprocess.run(["umount", probe], check=True)
        return None
    except FileNotFoundError:
        return "the mount command is not installed"
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(probe)


_REFUSAL = _mount_refusal()
pytestmark = pytest.mark.skipif(_REFUSAL is not None, reason=str(_REFUSAL))


@contextlib.contextmanager
def tmpfs(path, size=SIZE):
    """A tmpfs of `size` mounted at `path` for the block, unmounted after (even on failure)."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # busy: detach it


def _fill(path, leave):
    """Fills the filesystem at `path` with one file, leaving about `leave` bytes free."""
    free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
    fd = os.open(os.path.join(path, FILLER), os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.posix_fallocate(fd, 0, max(0, free - leave))
    finally:
        os.close(fd)


@pytest.fixture(params=["full", "read-only"])
def bad_disk(request, tmp_path):
    """`(kind, mount point)`: a real tmpfs that is nearly full (`LEFT_FREE` bytes left) or mounted
    read-only; unmounted when the test ends."""
    mount = tmp_path / "mnt"
    with tmpfs(mount):
        if request.param == "full":
            _fill(mount, LEFT_FREE)
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        yield request.param, mount


def _entries(mount):
    """Every entry under the mount point but the filler (hidden staging folders included)."""
    found = []
    for root, dirs, files in os.walk(mount):
        found += [os.path.relpath(os.path.join(root, n), mount) for n in dirs + files]
    return sorted(set(found) - {FILLER})


def _assert_one_line(err, command, kind):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"keras-gpt1 {command}: error: "), err
    assert "Traceback" not in err
    if kind == "full":
        assert "No space left on the device" in lines[0] and "needs about" in lines[0] and "free" in lines[0], err
    else:
        assert "read-only" in lines[0].lower(), err


def _expected_code(kind):
    return 1 if kind == "full" else 2  # a full disk is an environment fault; read-only, a bad --output


# === Sources: a tiny Hugging Face model, tiny presets ===


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A tiny `OpenAIGPTLMHeadModel` saved with `save_pretrained` (safetensors)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.OpenAIGPTConfig(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=24)
    path = tmp_path_factory.mktemp("hf")
    transformers.OpenAIGPTLMHeadModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from keras_gpt1.tokenizers import train_tokenizer

    corpus = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    corpus.write_text("the cat sat on the mat .\nthe dog sat on the log .\n" * 20, encoding="utf-8")
    return train_tokenizer([str(corpus)], vocabulary_size=120)


def _models(tokenizer):
    """`{name: model}`: a backbone, a causal LM and a classifier, tiny."""
    from keras_gpt1 import GPT1Backbone, GPT1CausalLM
    from keras_gpt1.tasks import GPT1TextClassifier
    from keras_gpt1.tasks.registry import get_family

    def backbone():
        return GPT1Backbone(**dict(TINY_CONFIG, vocabulary_size=tokenizer.vocabulary_size()))

    preprocessor = get_family("classification").make_preprocessor(tokenizer, 16)
    return {
        "backbone": backbone(),
        "causal LM": GPT1CausalLM(backbone(), tokenizer=tokenizer),
        "classifier": GPT1TextClassifier(backbone(), num_classes=2, preprocessor=preprocessor),
    }


@pytest.fixture(scope="module")
def models(tokenizer):
    return _models(tokenizer)


@pytest.fixture(scope="module")
def lm_preset(models, tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "preset"
    models["causal LM"].save_to_preset(str(path))
    return str(path)


@pytest.fixture(scope="module")
def hf_shaped_preset(tmp_path_factory):
    """A preset the Hugging Face port can hold (MLP width 4 x hidden), for converting a preset to Hugging Face's layout."""
    from keras_gpt1 import GPT1Backbone

    path = tmp_path_factory.mktemp("hf_preset") / "tiny"
    GPT1Backbone(**dict(TINY_CONFIG, intermediate_dim=4 * TINY_CONFIG["hidden_dim"])).save_to_preset(str(path))
    return str(path)


def _convert_args(direction, hf_dir, hf_shaped_preset, output):
    if direction == "from Hugging Face":
        return ["convert", "--model", str(hf_dir), "--output", str(output)]
    return ["convert", "--model", hf_shaped_preset, "--output", str(output)]


# === convert ===


@pytest.mark.once
@pytest.mark.parametrize("direction", ["from Hugging Face", "to Hugging Face"])
@pytest.mark.parametrize("where", ["new", "nested/deeper", "."], ids=["new folder", "nested folders", "mount point"])
def test_convert_onto_a_full_or_read_only_disk_is_one_line_and_leaves_nothing(
    bad_disk, direction, where, hf_dir, hf_shaped_preset, capsys
):
    kind, mount = bad_disk
    code = cli_main(_convert_args(direction, hf_dir, hf_shaped_preset, mount / where))
    assert code == _expected_code(kind)
    _assert_one_line(capsys.readouterr().err, "convert", kind)
    # No `.tmp-new-*`, no partial weights, not even the folder. (The output lock makes the
    # missing folders to hold its lock file and removes the innermost one only.)
    assert _entries(mount) in ([], ["nested"] if where == "nested/deeper" else [])


@pytest.mark.once
@pytest.mark.parametrize("direction", ["from Hugging Face", "to Hugging Face"])
def test_convert_fits_on_the_same_small_filesystem_when_it_is_not_full(
    direction, hf_dir, hf_shaped_preset, tmp_path, capsys
):
    """The control: the free-space check refuses for want of space, not by being too careful."""
    with tmpfs(tmp_path / "mnt") as mount:
        assert cli_main(_convert_args(direction, hf_dir, hf_shaped_preset, mount / "out")) == 0, capsys.readouterr()
        assert not [n for n in os.listdir(mount / "out") if n.startswith(".")]


@pytest.mark.once
def test_an_earlier_model_survives_a_convert_overwrite_onto_a_full_disk(hf_dir, tmp_path, capsys):
    with tmpfs(tmp_path / "mnt") as mount:
        assert cli_main(["convert", "--model", str(hf_dir), "--output", str(mount / "out")]) == 0
        before = {name: (mount / "out" / name).read_bytes() for name in os.listdir(mount / "out") if name != "assets"}
        _fill(mount, LEFT_FREE)
        assert cli_main(["convert", "--model", str(hf_dir), "--output", str(mount / "out"), "--overwrite"]) == 1
        _assert_one_line(capsys.readouterr().err, "convert", "full")
        after = {name: (mount / "out" / name).read_bytes() for name in os.listdir(mount / "out") if name != "assets"}
        assert after == before


@pytest.mark.integration
@pytest.mark.once
def test_convert_on_a_full_disk_from_the_shell_exits_1_with_one_line(hf_dir, tmp_path):
    """As a user runs it: h5py used to crash the process here (exit 139, 26 tracebacks)."""
    with tmpfs(tmp_path / "mnt") as mount:
        _fill(mount, LEFT_FREE)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run(
            [sys.executable, "-m", "keras_gpt1.cli", "convert", "--model", str(hf_dir), "--output", str(mount / "o")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 1, proc.stderr[-3000:]
        ours = [line for line in proc.stderr.splitlines() if line.startswith("keras-gpt1 ")]
        assert len(ours) == 1 and "No space left on the device" in ours[0], proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr and "h5py" not in proc.stderr
        assert _entries(mount) == []


# === save_to_preset ===


@pytest.mark.parametrize("name", ["backbone", "causal LM", "classifier"])
def test_save_to_preset_onto_a_full_or_read_only_disk_names_it_and_leaves_nothing(bad_disk, name, models):
    kind, mount = bad_disk
    model = models[name]
    for target in (mount / "preset", mount):  # a new folder; the mount point itself
        with pytest.raises(OSError) as info:
            model.save_to_preset(str(target))
        if kind == "full":
            assert isinstance(info.value, DiskFullError) and info.value.errno == errno.ENOSPC
            assert f"for preset {str(target)!r}: it needs about" in str(info.value)
            assert estimated_weights_file_bytes(model.weights) > LEFT_FREE
        else:
            assert info.value.errno == errno.EROFS and str(mount) in str(info.value)
        assert _entries(mount) == []


def test_save_to_preset_fits_when_the_disk_is_not_full(models, tmp_path):
    """The control for the estimate: every model saves on the same small filesystem, unfilled,
    and the estimate is never below what the files take."""
    with tmpfs(tmp_path / "mnt") as mount:
        for name, model in models.items():
            target = mount / name.replace(" ", "_")
            model.save_to_preset(str(target))
            used = sum(os.path.getsize(os.path.join(r, f)) for r, _, files in os.walk(target) for f in files)
            weights = sum(os.path.getsize(target / f) for f in os.listdir(target) if f.endswith(".weights.h5"))
            assert weights <= estimated_weights_file_bytes(model.weights) < used + 200 * 1024, name


# === export ===


@pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="export traces under TensorFlow; other backends run this same code in a TensorFlow worker "
    "(test_export_from_another_backend_onto_a_full_or_read_only_disk)",
)
@pytest.mark.parametrize("where", ["base", "base/nested", "."], ids=["new base", "nested base", "mount point"])
def test_export_onto_a_full_or_read_only_disk_is_one_line_and_leaves_nothing(bad_disk, where, lm_preset, capsys):
    kind, mount = bad_disk
    code = cli_main(["export", "--model", lm_preset, "--output", str(mount / where)])
    assert code == _expected_code(kind)
    _assert_one_line(capsys.readouterr().err, "export", kind)
    assert _entries(mount) in ([], ["base"] if where == "base/nested" else [])  # see the convert test


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's own write failing: the TensorFlow run")
def test_export_whose_savedmodel_outgrows_the_space_left_is_one_line(lm_preset, tmp_path, capsys):
    """The weights fit, so the check before tracing passes, but the graph does not:
    TensorFlow's `ResourceExhaustedError` comes out as the same one line, and nothing is left."""
    from keras_gpt1 import GPT1CausalLM

    lm = GPT1CausalLM.from_preset(lm_preset)
    weights = sum(int(np.prod(v.shape)) * 4 for v in lm.variables)
    with tmpfs(tmp_path / "mnt") as mount:
        _fill(mount, weights + 8 * 1024)
        assert cli_main(["export", "--model", lm_preset, "--output", str(mount / "serving")]) == 1
        _assert_one_line(capsys.readouterr().err, "export", "full")
        assert _entries(mount) in ([], ["serving"])  # the base folder may stay; no version, no staging


@pytest.mark.integration
@pytest.mark.skipif(BACKEND == "tensorflow", reason="the subprocess path: the JAX and PyTorch runs")
@pytest.mark.skipif(BACKEND != ONCE_BACKEND, reason=f"the same subprocess from every backend: the {ONCE_BACKEND} run")
def test_export_from_another_backend_onto_a_full_or_read_only_disk(bad_disk, lm_preset, capsys):
    """The TensorFlow worker's error comes back as the class it was raised as: the Python API
    raises it, and the command line prints its one line with the exit code of the TensorFlow run."""
    from keras_gpt1.export import export_saved_model

    kind, mount = bad_disk
    if kind == "full":
        with pytest.raises(DiskFullError, match="No space left on the device for SavedModel .*needs about"):
            export_saved_model(lm_preset, str(mount / "serving"))
    else:
        with pytest.raises(PermissionError, match="is not writable: Read-only file system"):
            export_saved_model(lm_preset, str(mount / "serving"))
    assert cli_main(["export", "--model", lm_preset, "--output", str(mount / "serving")]) == _expected_code(kind)
    _assert_one_line(capsys.readouterr().err, "export", kind)
    assert _entries(mount) in ([], ["serving"])


# === finetune ===


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("task") / "train.jsonl"
    rows = [("the cat sat on the mat .", "pos"), ("the dog sat on the log .", "neg")] * 4
    path.write_text("".join(f'{{"text": "{t}", "label": "{y}"}}\n' for t, y in rows), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("where", ["model", "."], ids=["new folder", "mount point"])
def test_finetune_onto_a_full_or_read_only_disk_refuses_before_training(
    bad_disk, where, lm_preset, train_file, capsys, monkeypatch
):
    import keras

    kind, mount = bad_disk

    def no_training(*args, **kwargs):
        raise AssertionError("refused only after training: the hours spent are lost")

    monkeypatch.setattr(keras.Model, "fit", no_training)
    argv = ["finetune", "--task", "classification", "--train", train_file, "--model", lm_preset]
    code = cli_main([*argv, "--output", str(mount / where), "--epochs", "1", "--batch-size", "4"])
    assert code == _expected_code(kind)
    _assert_one_line(capsys.readouterr().err, "finetune", kind)
    assert _entries(mount) == []
