"""The `keras-gpt1` command's start-up: help without Keras or a backend, and no TensorFlow or absl
start-up lines unless `--verbose` (keras_gpt1/cli/startup.py; keras_gpt1/__init__.py says why the
package's import waits for the command's `main`).

The subprocess tests run the installed console script, as a user does: only that script defers
the package's import.
"""

import os
import subprocess
import sys
import sysconfig
import textwrap

import pytest

from conftest import BACKEND
from keras_gpt1.cli.startup import is_startup_line, quiet_import

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(sysconfig.get_path("scripts"), "keras-gpt1")
SUBCOMMANDS = ("train-tokenizer", "convert", "pretrain", "generate", "score", "finetune", "evaluate", "export")
HEAVY = ("tensorflow", "keras", "keras_hub", "jax", "torch")

# What TensorFlow 2.21 prints on standard error while it is imported, whatever TF_CPP_MIN_LOG_LEVEL says.
TENSORFLOW_STARTUP = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    b"I0000 00:00:1796687895.805757   11859 port.cc:153] oneDNN custom operations are on.\n"
    b"I0000 00:00:1796687895.806074   11859 cudart_stub.cc:31] Could not find cuda drivers on your machine.\n"
    b"E0000 00:00:1796688013.230870   12931 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n"
)
KEPT = (
    b"F0000 00:00:1796688013.230870   12931 check.cc:1] Check failed: a fatal record is kept\n",
    b"/work/x.py:3: UserWarning: a Python warning\n",
    b"keras-gpt1 pretrain: error: --steps must be a positive integer\n",
)

needs_script = pytest.mark.skipif(not os.path.isfile(SCRIPT), reason="keras-gpt1 is not installed")


def test_startup_lines_are_recognised():
    assert all(is_startup_line(line) for line in TENSORFLOW_STARTUP.splitlines(keepends=True))
    assert not any(is_startup_line(line) for line in KEPT)


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_import_drops_only_startup_lines(capfd, monkeypatch, quiet):
    # Written to file descriptor 2 directly, as TensorFlow's C++ code writes them.
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    with quiet_import(quiet=quiet):
        os.write(2, TENSORFLOW_STARTUP + b"".join(KEPT))
    err = capfd.readouterr().err.encode()
    assert err == (b"".join(KEPT) if quiet else TENSORFLOW_STARTUP + b"".join(KEPT))
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == ("3" if quiet else None)


def test_quiet_import_keeps_a_level_the_user_set(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    with quiet_import():
        pass
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


def test_quiet_import_restores_stderr_after_an_error(capfd):
    with pytest.raises(ImportError, match="broken"):
        with quiet_import():
            os.write(2, b"said before the error\n")
            raise ImportError("broken")
    os.write(2, b"said after\n")
    assert capfd.readouterr().err == "said before the error\nsaid after\n"


# Runs the installed script's code in this process, as the script does (its program name is
# `keras-gpt1`), for `--help` of the command and of each subcommand, then lists what got imported.
HELP_RUNNER = textwrap.dedent(
    """
    import runpy, sys

    script, commands = sys.argv[1], sys.argv[2:]
    for command in [[]] + [[name] for name in commands]:
        sys.argv = [script, *command, "--help"]
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exit:
            assert exit.code in (0, None), (command, exit.code)
        loaded = [name for name in {heavy} if name in sys.modules]
        print("IMPORTED", " ".join(command) or "keras-gpt1", loaded, file=sys.stderr)
    """
).format(heavy=HEAVY)


@pytest.mark.integration
@pytest.mark.once
@needs_script
def test_help_imports_no_keras_nor_backend():
    proc = subprocess.run(
        [sys.executable, "-c", HELP_RUNNER, SCRIPT, *SUBCOMMANDS],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=dict(os.environ, KERAS_BACKEND=BACKEND),
    )
    assert proc.returncode == 0, proc.stderr
    imported = [line for line in proc.stderr.splitlines() if line.startswith("IMPORTED")]
    assert imported == [f"IMPORTED {name} []" for name in ("keras-gpt1", *SUBCOMMANDS)], proc.stderr
    for name in SUBCOMMANDS:
        assert f"usage: keras-gpt1 {name} " in proc.stdout
    assert proc.stdout.count("--verbose") >= len(SUBCOMMANDS)


@pytest.mark.integration
@needs_script
def test_a_command_prints_tensorflows_startup_lines_only_with_verbose(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 20, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["KERAS_BACKEND"] = BACKEND
    runs = {}
    for verbose in ([], ["--verbose"]):
        output = tmp_path / f"tokenizer{len(verbose)}"
        command = [SCRIPT, "train-tokenizer", "--corpus", str(corpus), "--merges", "10", "--output", str(output)]
        proc = subprocess.run(command + verbose, capture_output=True, timeout=600, cwd=ROOT, env=env)
        assert proc.returncode == 0, proc.stderr.decode()
        assert (output / "merges.txt").is_file()
        runs[bool(verbose)] = proc
    quiet_lines = [line for line in runs[False].stderr.splitlines() if is_startup_line(line)]
    assert quiet_lines == [], runs[False].stderr.decode()
    if _tensorflow_installed():
        # The lines exist in this environment: --verbose shows them.
        assert any(is_startup_line(line) for line in runs[True].stderr.splitlines()), runs[True].stderr.decode()


def _tensorflow_installed():
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None
