"""The notebooks in `notebooks/` run top to bottom, and are committed without outputs.

Each notebook is executed with `nbclient` on a Jupyter kernel running this interpreter
(`sys.executable`: jupyter_client maps the `python3` kernel spec that `ipykernel` installs into
the environment onto it), in a temporary working directory, with `KERAS_GPT1_NOTEBOOK_QUICK=1`
(the notebooks' smallest settings), `HF_HUB_OFFLINE=1` and the `KERAS_BACKEND` of this test run,
which the notebooks' first cell keeps. Any cell error fails the test with the cell and its
traceback. With a network the notebooks use OpenAI's GPT-1 and real task data; offline they use
stand-ins and say so in one line. CI has no network, and `HF_HUB_OFFLINE=1` makes the offline
path the one tested wherever the suite runs, so a run never downloads 480 MB of weights.

Each notebook runs under one backend, the one its first cell defaults to: the library calls they
make are tested on every backend in their own test files, and running each notebook three times
would triple the suite's longest tests. Without PyTorch (the Colab runtime CI environment, whose
PyPI torch would be a CUDA build of several GB), notebook 4 runs under JAX instead and skips its
parity check with `transformers`, saying so.

The executions are marked `notebook`: CI runs them in the Colab runtime (`.ci/colab-runtime`), the
runtime they are written for, and `make test` leaves them out (`make test-notebooks` runs them).
"""

import importlib.util
import os
import re
import time

# Plain imports, not importorskip: these are dev dependencies (pyproject.toml), and a missing one
# must fail the suite rather than skip every notebook.
import ipykernel  # noqa: F401
import keras
import matplotlib  # noqa: F401
import nbclient
import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
from tools import make_notebooks  # noqa: E402

BACKEND = keras.config.backend()
NOTEBOOKS = sorted(make_notebooks.NOTEBOOKS)
# The parity check of notebook 4 runs transformers on PyTorch.
HAS_TORCH = all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))
# The backend each notebook's first cell defaults to.
DEFAULT_BACKEND = {
    make_notebooks.NB1: "jax",
    make_notebooks.NB2: "jax",  # fine-tuning
    make_notebooks.NB3: "tensorflow",  # export: in-process under TensorFlow
    make_notebooks.NB4: "torch",  # conversion: the transformers oracle runs on PyTorch anyway
}
# Where each notebook runs: all backends, or the one its first cell defaults to.
RUNS_UNDER = {
    make_notebooks.NB1: ("jax",),
    make_notebooks.NB2: ("jax",),
    make_notebooks.NB3: ("tensorflow",),
    make_notebooks.NB4: ("torch",) if HAS_TORCH else ("jax",),
}
# The one line each notebook prints when it falls back to its offline stand-in.
OFFLINE_LINE = "No network: using the offline stand-in"
DRAWS_PLOTS = {make_notebooks.NB1, make_notebooks.NB2}
# What each executed notebook must have shown (issue #9's list), beyond running without an error.
SHOWS = {
    make_notebooks.NB1: (
        "tokens; special token ids",  # the tokenizer, trained
        "Epoch 3/3",  # model.fit ran (the quick settings: 3 evaluation intervals)
        "val_perplexity",  # with validation, plotted next to training loss (DRAWS_PLOTS)
        "greedy :",  # the two samplers
        "top-p  :",
    ),
    make_notebooks.NB2: (
        "| task | λ | accuracy | F1 | MCC |",  # the metrics table
        "| classification | 0.0 |",
        "| classification | 0.5 |",
        "| multiple-choice | 0.0 |",
        "| multiple-choice | 0.5 |",
        "P(acceptable) =",
    ),
    make_notebooks.NB3: (
        "| `serving_default` |",  # the signatures, inspected
        "| `generate` |",
        "| `score` |",
        "-> ",  # raw strings in, text out
        "curl -s -X POST http://localhost:8501/v1/models/gpt1:predict",  # the REST request
        '{"predictions": [',  # and its answer
    ),
    make_notebooks.NB4: (
        f"https://huggingface.co/{make_notebooks.HF_REPO}/resolve/main/config.json",  # where to download
        "raw.githubusercontent.com/openai/finetune-transformer-lm/master/model/params_shapes.json",
        "params_shapes.json",  # the original layout's files ...
        "model.safetensors",  # ... and the Hugging Face port's
        # Parity with transformers, for both converted presets; without PyTorch, said to be skipped.
        *(("preset_from_hf: logits", "preset_from_original: logits") if HAS_TORCH else ("it needs PyTorch",)),
        "round trip gives identical weights: True",
    ),
}
CELL_TIMEOUT = 600


def _load(name):
    with open(os.path.join(NOTEBOOK_DIR, name), encoding="utf-8") as f:
        return nbformat.read(f, as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
@pytest.mark.integration
@pytest.mark.notebook
def test_notebook_runs(name, tmp_path, monkeypatch):
    if BACKEND not in RUNS_UNDER[name]:
        pytest.skip(f"{name} runs under the {RUNS_UNDER[name][0]} backend only (see the module docstring)")
    monkeypatch.setenv("KERAS_GPT1_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("KERAS_BACKEND", BACKEND)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the offline path, deterministic (see the docstring)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # ipykernel then draws figures inline
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    nb = _load(name)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        startup_timeout=180,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the failing cell
    print(f"{name} on {BACKEND}: {time.perf_counter() - start:.1f} s")
    text = "\n".join(output.get("text", "") for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs)
    # The first cell reports the backend it set: the kernel really ran the backend under test.
    assert f"backend: {BACKEND}" in text
    shown = text + "\n".join(  # printed text and displayed objects (the Markdown tables)
        output.get("data", {}).get(kind, "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        for kind in ("text/plain", "text/markdown")
    )
    for marker in SHOWS[name]:
        assert marker in shown, f"{name} never showed {marker!r}"
    assert text.count(OFFLINE_LINE) == 1 and text.count("No network") == 1, f"{name}: not one offline line"
    if name in DRAWS_PLOTS:
        images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
        assert images, f"{name} drew no figure"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_without_outputs(name):
    nb = _load(name)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name} cell {index} has outputs: strip them"
            assert cell.execution_count is None, f"{name} cell {index} has an execution count"
    nbformat.validate(nb)


def test_notebooks_match_their_generator():
    found = sorted(n for n in os.listdir(NOTEBOOK_DIR) if n.endswith(".ipynb"))
    assert found == NOTEBOOKS, "notebooks/ and tools/make_notebooks.py disagree on the notebooks"
    assert make_notebooks.main(["--check"]) == 0, "run `python -m tools.make_notebooks`"


def test_notebook_sources_are_plain_python():
    # The sources are what people edit and review: each must parse as Python, so linters and
    # editors read them as code. jupytext comments out IPython magics (`# %pip install ...`); a
    # magic stands for a statement, as IPython runs it.
    for name in NOTEBOOKS:
        with open(make_notebooks.source_path(name), encoding="utf-8") as f:
            text = re.sub(r"^(\s*)# %pip .*$", r"\1pass", f.read(), flags=re.MULTILINE)
        assert text.startswith("# ---\n# jupyter:") and "\n# %%\n" in text, name
        compile(text, make_notebooks.source_path(name), "exec")


def test_notebook_layout():
    assert sorted(RUNS_UNDER) == NOTEBOOKS and sorted(SHOWS) == NOTEBOOKS and sorted(DEFAULT_BACKEND) == NOTEBOOKS
    for name in NOTEBOOKS:
        cells = _load(name).cells
        code = [c.source for c in cells if c.cell_type == "code"]
        assert 'os.environ["KERAS_BACKEND"]' in code[0], f"{name}: the first code cell must pick the backend"
        assert f'os.environ.get("KERAS_BACKEND", "{DEFAULT_BACKEND[name]}")' in code[0], name
        # The backend a user gets by default is one the notebook is tested under.
        assert DEFAULT_BACKEND[name] in RUNS_UNDER[name] or not HAS_TORCH, name
        assert 'find_spec("keras_gpt1") is None' in code[1] and "%pip install" in code[1], name
        assert not any("import keras" in c for c in code[:2]), f"{name}: Keras imported before the backend is set"
        # PyPI's Linux torch is a CUDA build of several GB: Colab and Kaggle have their own.
        assert not any(re.search(r"%pip install.*\btorch\b", c) for c in code), f"{name} installs PyTorch"
        assert sum(c.count("hub_reachable()") for c in code) == 1, f"{name}: check the network once, in its settings"
        markdown = "\n".join(c.source for c in cells if c.cell_type == "markdown")
        assert "Settings → Internet" in markdown, f"{name}: no word on Kaggle's Internet toggle"
        headings = [c.source.splitlines()[0] for c in cells if c.cell_type == "markdown"]
        assert "## Scaling up on a GPU/TPU runtime" in headings, f"{name}: no scaling-up section"
        assert "colab.research.google.com" in cells[0].source and "kaggle.com" in cells[0].source, name


def test_readme_links_every_notebook():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    for name in NOTEBOOKS:
        assert make_notebooks.colab_url(name) in readme, f"README has no Open-in-Colab link to {name}"
        assert make_notebooks.kaggle_url(name) in readme, f"README has no Open-in-Kaggle link to {name}"
    table = make_notebooks.readme_table()
    assert table in readme, "README's notebook table is stale: paste `python -m tools.make_notebooks --readme`"
    assert "(docs/notebooks.md)" in readme, "README does not link the notebooks page"
    with open(os.path.join(ROOT, "docs", "notebooks.md"), encoding="utf-8") as f:
        assert "## Scaling up on a GPU/TPU runtime" in f.read(), "docs/notebooks.md does not say how to scale up"
