"""The supported versions: pyproject.toml's floors, the import-time check, the Colab runtime's pins.

keras_gpt1 installs into runtimes that already have Keras and KerasHub (keras_gpt1/utils/compat.py),
so an older one than it supports must be named at import, in one line, never met later as an
AttributeError from deep inside.
"""

import os
import pathlib
import re
import subprocess
import sys
import textwrap
import tomllib

import pytest

from keras_gpt1.utils import compat

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _requirements():
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    return project, {re.split(r"[<>=!~\[ ;]", r, 1)[0].lower(): r for r in project["dependencies"]}


def _floor(requirement):
    match = re.search(r">=\s*([0-9][^,;\s]*)", requirement)
    assert match, f"{requirement!r} has no floor"
    return match.group(1)


def _pins(path):
    pins = {}
    for line in (ROOT / path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path}: {line!r} is not pinned with =="
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_checked_floors_are_pyproject_floors():
    _, requirements = _requirements()
    for name, needed in compat.MINIMUM_VERSIONS.items():
        assert _floor(requirements[name]) == needed, f"compat.MINIMUM_VERSIONS[{name!r}] != pyproject.toml"


def test_python_has_no_upper_cap():
    project, _ = _requirements()
    assert "<" not in project["requires-python"], project["requires-python"]


def test_huggingface_hub_floor_leaves_transformers_4_installable():
    # transformers 4.x needs huggingface_hub<1.0 (docs/install.md says which pair was checked).
    _, requirements = _requirements()
    assert compat._release(_floor(requirements["huggingface_hub"])) < (1,)


def test_floors_are_at_or_below_the_colab_runtime():
    # Installing into Colab must replace nothing of the runtime's: every floor is at most the
    # version constraints-colab.txt pins (CI installs that set first and compares freezes after).
    _, requirements = _requirements()
    colab = _pins("constraints-colab.txt")
    for name, requirement in requirements.items():
        key = name.replace("_", "-")
        assert key in colab, f"constraints-colab.txt does not pin {name}, a runtime dependency"
        assert compat._release(_floor(requirement)) <= compat._release(colab[key]), (
            f"{requirement} is above the Colab runtime's {name}=={colab[key]}"
        )


@pytest.mark.parametrize(
    "installed, named",
    [
        ({"keras": "3.12.0", "keras-hub": "0.32.0"}, ["keras 3.12.0"]),
        ({"keras": "3.13.1", "keras-hub": "0.32.0"}, ["keras 3.13.1"]),
        ({"keras": "3.15.1", "keras-hub": "0.25.1"}, ["keras-hub 0.25.1"]),
        ({"keras": "2.15.0", "keras-hub": "0.1.0"}, ["keras 2.15.0", "keras-hub 0.1.0"]),
        ({"keras": "3.13.0rc1", "keras-hub": "0.26.0"}, ["keras 3.13.0rc1"]),
        ({"keras": "3.8.0.dev2024", "keras-hub": "0.26.0"}, ["keras 3.8.0.dev2024"]),
    ],
)
def test_old_versions_are_named(installed, named):
    with pytest.raises(ImportError) as raised:
        compat.check_versions(installed)
    message = str(raised.value)
    assert "\n" not in message
    for package in named:
        name = package.split()[0]
        assert f"{package} is installed and keras_gpt1 needs {name}>={compat.MINIMUM_VERSIONS[name]}" in message
    assert message.count("is installed") == len(named)
    assert "pip install " in message


@pytest.mark.parametrize(
    "installed",
    [
        {"keras": "3.13.2", "keras-hub": "0.26.0"},
        {"keras": "3.15.1", "keras-hub": "0.32.0"},
        {"keras": "3.13.10", "keras-hub": "0.100.0"},  # compared as numbers, not as text
        {"keras": "3.14.0.dev2026", "keras-hub": "0.27.0+local"},
        {},  # no metadata (a source checkout): the import decides
    ],
)
def test_supported_versions_pass(installed):
    compat.check_versions(installed)


@pytest.mark.integration
def test_import_names_an_old_keras_hub():
    # The real import path: the package metadata says keras-hub 0.20.0. One ImportError line
    # from keras_gpt1, raised before keras_hub itself is imported.
    code = (
        "import importlib.metadata as m, sys\n"
        "real = m.version\n"
        "m.version = lambda name: '0.20.0' if name == 'keras-hub' else real(name)\n"
        "try:\n"
        "    import keras_gpt1\n"
        "except ImportError as error:\n"
        "    print('ImportError:', error)\n"
        "    print('keras_hub imported:', 'keras_hub' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "ImportError: keras-hub 0.20.0 is installed and keras_gpt1 needs keras-hub>=0.26.0" in result.stdout
    assert "keras_hub imported: False" in result.stdout


def test_ci_installs_as_the_notebooks_do():
    # .ci/colab-runtime's install is the notebooks' install cell: the same pins of every package
    # the runtime has, then `pip install -c` of them.
    ci = (ROOT / ".ci" / "colab-runtime").read_text(encoding="utf-8")
    sources = sorted((ROOT / "notebooks" / "src").glob("*.py"))
    assert len(sources) == 4
    for source in sources:
        text = source.read_text(encoding="utf-8")
        start, end = text.index("    installed = {}\n"), text.index("    # %pip install -q -c runtime-pins.txt")
        pins = textwrap.dedent(text[start:end])
        assert pins in ci, f"{source.name}'s install cell and .ci/colab-runtime pin differently"
        assert '"keras-gpt1 @ git+https://github.com/keras-gpt1/keras_gpt1"' in text[end:].splitlines()[0]
    assert "pip install -q -c .venv-colab/runtime-pins.txt ." in ci
