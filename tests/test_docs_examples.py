"""Every fenced Python and shell example of README.md and docs/*.md, run as written.

Each page is one test: its examples run in order, Python blocks sharing one namespace (a page's
examples build on each other), shell lines `keras-gpt1 ...` through the command-line entry point
in this process (`keras_gpt1.cli.main`, what the `keras-gpt1` script calls). Each page runs in
its own copy of a scratch directory that holds what the docs assume (`outputs/gpt1-demo`, the main
job's preset, a short run of the same command; small data files), with `"gpt1"` served by a
stand-in of the Hub repository (tests/test_hub.py) and `HF_HUB_OFFLINE=1`. A failure names the
file and the line.

A fence indented inside a list item is an example too (its indentation is removed). A block that
cannot run here says so where readers see it: the line before its fence is
`*Not run by the docs test: <reason>.*`. A page may register a task family (the fifth-family
walk-through of docs/architecture.md): the registry is restored after each page. Blocks in other
languages (`text`, `json`) are output, not examples. The pages run on the TensorFlow backend only
(the export examples need it; the backends themselves are the rest of the suite's business).
"""

import contextlib
import io
import json
import pathlib
import re
import shlex
import sys
import time

import pytest

from conftest import BACKEND, compile_without_xla
from keras_gpt1.tasks import registry

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP_MARKER = re.compile(r"^\*Not run by the docs test: (.+)\.\*$")
LANGUAGES = {"python": "python", "bash": "shell", "sh": "shell", "shell": "shell", "console": "shell"}

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        BACKEND != "tensorflow", reason="the docs run once, on TensorFlow (their export examples need it)"
    ),
]


class Block:
    def __init__(self, page, line, language, code, skip):
        self.page, self.line, self.language, self.code, self.skip = page, line, language, code, skip

    @property
    def where(self):
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page):
    """The fenced examples of a page (a fence may be indented), with the line of each opening fence."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = re.match(r"^( *)```(\w*)\s*$", lines[i])
        if not match:
            i += 1
            continue
        start, indent, language = i, match.group(1), match.group(2)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith(indent + "```"))
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = SKIP_MARKER.match(previous.strip())
        if language in LANGUAGES:
            body = lines[start + 1 : end]
            if any(line.strip() and not line.startswith(indent) for line in body):
                raise AssertionError(
                    f"{page.relative_to(ROOT)}:{start + 1}: a line of the block is indented less than its fence"
                )
            code = "\n".join(line[len(indent) :] for line in body)
            blocks.append(Block(page, start + 1, LANGUAGES[language], code, marker.group(1) if marker else None))
        i = end + 1
    return blocks


def shell_commands(code):
    """Commands of a shell block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(words)
    return commands


def run_command(words, block):
    from keras_gpt1.cli import main

    if words[0] != "keras-gpt1":
        raise AssertionError(
            f"{block.where}: `{' '.join(words)}` is not a keras-gpt1 command; mark the block "
            "`*Not run by the docs test: <reason>.*` if it cannot run here."
        )
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(words[1:])
        except SystemExit as e:  # `--help` exits through argparse
            status = e.code or 0
    if status != 0:
        raise AssertionError(f"{block.where}: `{' '.join(words)}` exited {status}:\n{err.getvalue()[-3000:]}")


def run_page(page, namespace):
    ran = skipped = 0
    for block in blocks_of(page):
        if block.skip:
            skipped += 1
            continue
        if block.language == "python":
            try:
                exec(compile(block.code, block.where, "exec"), namespace)
            except Exception as e:
                raise AssertionError(f"{block.where}: the example raised {type(e).__name__}: {e}") from e
        else:
            for words in shell_commands(block.code):
                run_command(words, block)
        ran += 1
    return ran, skipped


# === The scratch directory the docs assume ===


@pytest.fixture(scope="module")
def docs_workspace(tmp_path_factory):
    """A directory with the main job's preset and small task files, and a stand-in `"gpt1"`."""
    from test_hub import use_hf_home, write_standin

    from keras_gpt1.cli import main

    root = tmp_path_factory.mktemp("docs")
    hf_home = root / "hf_home"
    write_standin(hf_home)
    patch = pytest.MonkeyPatch()
    try:
        # huggingface_hub read HF_HOME at import: its constants are set too (as tests/test_hub.py does).
        use_hf_home(patch, hf_home)
        patch.setenv("KERAS_GPT1_CACHE", str(hf_home / "keras_gpt1"))
        patch.chdir(root)
        compile_without_xla(patch)  # the fixture's own `pretrain` (before the tests' autouse patch)
        # The main job's preset (`keras-gpt1 pretrain`), from a short run of the same command.
        with contextlib.redirect_stdout(io.StringIO()):
            argv = ["pretrain", "--steps", "20", "--eval-interval", "20", "--no-tensorboard", "--sample-length", "0"]
            assert main(argv) == 0
        write_task_files(root)
        yield root
    finally:
        patch.undo()


def write_task_files(root):
    """The small data files the examples read: task files (CSV, SST-2 as GLUE ships it, and the
    question-answering files of docs/architecture.md's fifth family), a prompts file, a long essay,
    a few "books" and a corpus, the stand-in `"gpt1"` as a Hugging Face checkpoint `openai-gpt/`,
    and the main job's preset in the original release's layout (`finetune-transformer-lm/model`;
    its hidden size, 64, gives the default head count)."""
    import shutil

    from keras_gpt1 import GPT1Backbone
    from keras_gpt1.convert.openai import write_openai_checkpoint

    words = ["good", "bad", "fine", "dull", "great", "poor", "nice", "awful"]
    rows = [(f"a {w} film", int(i % 2 == 0)) for i, w in enumerate(words * 3)]
    for name in ("train.csv", "dev.csv", "test.csv"):
        (root / name).write_text("sentence,label\n" + "".join(f"{t},{y}\n" for t, y in rows), encoding="utf-8")
    (root / "SST-2").mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (root / "SST-2" / name).write_text(
            "sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8"
        )
    qa = [
        {"question": "what does the cat see", "passage": "the cat sees a red house", "answer": a, "label": y}
        for a, y in (("a red house", 1), ("a blue car", 0), ("the red house", 1), ("a dog", 0))
    ] * 3
    for name in ("qa_train.jsonl", "qa_dev.jsonl"):
        (root / name).write_text("".join(json.dumps(row) + "\n" for row in qa), encoding="utf-8")
    (root / "prompts.txt").write_text("the cat sat on\nonce upon a time\n", encoding="utf-8")
    story = "the cat sat on the mat . the dog ran in the park and the sun was warm . "
    (root / "essay.txt").write_text(story * 40, encoding="utf-8")
    (root / "corpus.txt").write_text((story + "\n") * 20, encoding="utf-8")
    (root / "books").mkdir()
    (root / "books" / "one.txt").write_text((story + "\n") * 20, encoding="utf-8")
    (root / "books" / "two.txt").write_text("once upon a time there was a function that returned a value .\n" * 20)
    snapshot = next((root / "hf_home" / "hub").glob("models--*/snapshots/*"))
    shutil.copytree(snapshot, root / "openai-gpt", symlinks=False)
    backbone = GPT1Backbone.from_preset(str(root / "outputs" / "gpt1-demo"))
    write_openai_checkpoint(backbone, root / "finetune-transformer-lm" / "model")


# === The tests ===


def test_every_example_is_found_and_skips_are_explained():
    """The parser sees every fence of every page, and each skipped block gives its reason."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        fences = len(re.findall(r"^ *```(?:python|bash|sh|shell|console)\s*$", text, flags=re.M))
        assert len(blocks_of(page)) == fences, page
    skipped = [b for page in PAGES for b in blocks_of(page) if b.skip]
    assert all(len(b.skip) > 10 for b in skipped), [b.where for b in skipped]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_examples_run(page, docs_workspace, tmp_path, monkeypatch, capsys):
    # Each page in its own copy of the scratch directory: what one page writes (`my_gpt1`,
    # `gpt1_serving/1`, ...) never meets another's, and a page run alone (`-k`) runs as in the suite.
    import shutil

    workspace = tmp_path / "workspace"
    shutil.copytree(docs_workspace, workspace, ignore=lambda d, names: ["hf_home"] if d == str(docs_workspace) else [])
    monkeypatch.chdir(workspace)
    start = time.perf_counter()
    namespace = {"__name__": "__docs__"}
    families = dict(registry.FAMILIES)
    try:
        ran, skipped = run_page(page, namespace)
    finally:  # a page that registers a task family (docs/architecture.md) leaves the registry as it was
        registry.FAMILIES.clear()
        registry.FAMILIES.update(families)
    with capsys.disabled():
        sys.stdout.write(
            f"\n{page.relative_to(ROOT)}: {ran} examples run, {skipped} skipped, {time.perf_counter() - start:.0f} s"
        )


def test_finetune_from_the_cli_and_from_python_gives_the_same_result(tmp_path):
    """The README's claim: `keras-gpt1 finetune` and `finetune(...)` with the same arguments train
    the same model (both seed 0 by default, whatever the random state before)."""
    import keras
    from test_hub import write_standin

    from keras_gpt1.cli import main
    from keras_gpt1.convert import convert_hf_to_preset
    from keras_gpt1.workflows.finetuning import finetune

    write_standin(tmp_path / "hf")
    preset = str(tmp_path / "preset")
    convert_hf_to_preset(next((tmp_path / "hf" / "hub").glob("models--*/snapshots/*")), preset)
    rows = [(f"a {w} film", i % 2) for i, w in enumerate(["good", "bad", "fine", "dull"] * 3)]
    for name in ("train.csv", "dev.csv"):
        text = "text,label\n" + "".join(f"{t},{y}\n" for t, y in rows)
        (tmp_path / name).write_text(text, encoding="utf-8")
    train, dev = str(tmp_path / "train.csv"), str(tmp_path / "dev.csv")

    keras.utils.set_random_seed(1)  # a different random state before each: the default seed decides
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(["finetune", "--task", "classification", "--model", preset, "--train", train,
                       "--validation", dev, "--output", str(tmp_path / "cli"), "--epochs", "1",
                       "--batch-size", "4"])  # fmt: skip
    assert status == 0
    cli = json.loads((tmp_path / "cli" / "finetune.json").read_text())

    keras.utils.set_random_seed(2)
    result = finetune("classification", train, dev, preset=preset, output=str(tmp_path / "py"), epochs=1,
                      batch_size=4, verbose=0)  # fmt: skip
    assert cli["recipe"]["seed"] == 0
    assert cli["validation_metrics"] == pytest.approx(result.metrics, rel=1e-6)
    assert cli["history"].keys() == result.history.keys()
    for key, values in result.history.items():
        assert cli["history"][key] == pytest.approx(values, rel=1e-6), key
