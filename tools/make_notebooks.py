"""Builds the notebooks in `notebooks/` from their sources in `notebooks/src/` (outputs stripped).

Each notebook's source is a jupytext percent-format script (`# %%` starts a code cell,
`# %% [markdown]` a Markdown one), so it can be read, linted and diffed as Python. Edit the
source, then run

    python -m tools.make_notebooks            # rewrite notebooks/*.ipynb
    python -m tools.make_notebooks --check    # exit 1 if a notebook is out of date (CI test)
    python -m tools.make_notebooks --readme   # print the README's table of notebooks

`tests/test_notebooks.py` executes every notebook and checks the files match their sources.
"""

import argparse
import os
import sys

import jupytext
import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
SOURCE_DIR = os.path.join(NOTEBOOK_DIR, "src")
# The GitHub location the install cells and the Colab / Kaggle badges point to.
REPOSITORY = "keras-gpt1/keras_gpt1"
BRANCH = "main"


def colab_url(filename):
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/notebooks/{filename}"


def kaggle_url(filename):
    return f"https://kaggle.com/kernels/welcome?src=https://github.com/{REPOSITORY}/blob/{BRANCH}/notebooks/{filename}"


def badges(filename):
    return (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(filename)}) "
        f"[![Open In Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)]({kaggle_url(filename)})"
    )


NB1 = "01_pretrain_and_generate.ipynb"
NB2 = "02_finetune_tasks.ipynb"
NB3 = "03_export_and_serve.ipynb"
NB4 = "04_load_original_weights.ipynb"
NOTEBOOKS = (NB1, NB2, NB3, NB4)
# Where notebook 4 downloads the real weights from (its source names them too).
HF_REPO = "openai-community/openai-gpt"


def source_path(name):
    return os.path.join(SOURCE_DIR, name[: -len(".ipynb")] + ".py")


# One line each for the README's table.
SUMMARIES = {
    NB1: "build the demo corpus, train a BPE tokenizer, pretrain a tiny GPT-1 with `model.fit`, plot "
    "loss and perplexity, generate (greedy and top-p), score text; with a network, OpenAI's GPT-1 "
    '(`from_preset("gpt1")`) on the same prompts',
    NB2: "fine-tune OpenAI's GPT-1 on SST-2 (GLUE) with the paper's recipe (`finetune`), its accuracy "
    "beside the paper's 91.3; on a GPU / TPU also λ = 0 vs λ = 0.5 and a multiple-choice head; "
    "offline, the same steps on stand-ins",
    NB3: "export a SavedModel (OpenAI's GPT-1; offline, a tiny model), inspect its signatures, call it "
    "with raw strings, check it generates what the library does, TF Serving REST requests",
    NB4: "convert the original OpenAI release and the Hugging Face port to presets (downloaded; "
    "offline, a stand-in in both layouts), logit parity with `transformers` (where PyTorch is)",
}


def readme_table():
    rows = ["| notebook | what it shows | open in |", "|---|---|---|"]
    for name, summary in SUMMARIES.items():
        rows.append(f"| [`{name[:-6]}`](notebooks/{name}) | {summary} | {badges(name)} |")
    return "\n".join(rows)


def build(name):
    """The notebook `name` as `.ipynb` text, from its percent-format source."""
    nb = jupytext.read(source_path(name), fmt="py:percent")
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    stem = name.split("_")[0]
    for index, cell in enumerate(nb.cells):
        cell.metadata = {}
        # Stable ids keep regenerated files identical (nbformat would draw random ones).
        cell["id"] = f"nb{stem}-cell{index:02d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(nb)
    if not nb.cells or f"({colab_url(name)})" not in nb.cells[0].source:
        raise ValueError(f"{source_path(name)}: the first cell must carry the notebook's badges: {badges(name)}")
    return nbformat.writes(nb) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check the notebooks are up to date")
    parser.add_argument("--readme", action="store_true", help="print the README's notebook table")
    args = parser.parse_args(argv)
    if args.readme:
        print(readme_table())
        return 0
    stale = []
    for name in NOTEBOOKS:
        path = os.path.join(NOTEBOOK_DIR, name)
        text = build(name)
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            os.makedirs(NOTEBOOK_DIR, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {os.path.relpath(path, ROOT)}")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run `python -m tools.make_notebooks`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
