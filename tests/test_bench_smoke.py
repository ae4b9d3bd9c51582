"""Smoke run of the benchmark harness (`python -m tools.bench.benchmark`), so that it cannot rot.

No timing assertions: the harness's figures depend on the machine and its load. The test checks
that a tiny training run completes in a subprocess and prints the table with its columns and a
row for keras_gpt1, and that the ceilings module returns positive figures. The harness spawns its
own processes with their own backends, so these run once (`once`, tests/conftest.py) rather than
under each backend. `make test` runs one harness command end to end (a one-step training table);
the others, each minutes of subprocesses, are marked `bench` and run with `make test-bench`.
"""

import json
import os
import subprocess
import sys

import pytest

from tools.bench import ceilings, perf_page, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = [pytest.mark.once, pytest.mark.integration]


def _harness(*args, module="tools.bench.benchmark"):
    """stdout of `python -m MODULE ARGS` from the repository root, which must succeed."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_train_quick_prints_table(tmp_path):
    results = str(tmp_path / "train.json")
    lines = _harness(
        "train", "--quick", "--peers", "--backends", "tensorflow", "--steps", "1", "--json", results
    ).splitlines()
    header = next(line for line in lines if line.startswith("| contender"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    for column in ("tokens/s", "step s", "first step s", "vs KerasHub", "vs transformers", "MFU", "peak RSS GiB"):
        assert column in columns
    row = next(line for line in lines if line.startswith("| keras_gpt1 | tensorflow"))
    cells = dict(zip(columns, (c.strip() for c in row.strip("|").split("|"))))
    assert float(cells["tokens/s"]) > 0
    assert 0 < float(cells["peak RSS GiB"]) < 64
    assert cells["MFU"].endswith("%")
    assert any(line.startswith("ceilings at start: matmul GFLOP/s: TF fp32") for line in lines)
    with open(results) as f:  # the recorded command reruns as written: the mode once
        assert json.load(f)["command"][:5] == ["python", "-m", "tools.bench.benchmark", "train", "--quick"]
    _check_rendered_page(results, tmp_path, "## Training (tiny), ", "| keras_gpt1 | tensorflow | float32 |")


@pytest.mark.bench
def test_train_quick_with_the_memory_options():
    lines = _harness(
        "train",
        "--quick",
        "--peers",
        "--backends",
        "tensorflow",
        "--steps",
        "1",
        "--head-chunk-size",
        "16",
        "--rematerialize",
    ).splitlines()
    row = next(
        line for line in lines if line.startswith("| keras_gpt1, head chunks of 16, rematerialized | tensorflow")
    )
    assert float(row.strip("|").split("|")[5]) > 0  # tokens/s


def test_ceilings_are_positive():
    result = ceilings.measure_ceilings(quick=True, libraries=("tensorflow",))
    assert result["tf_fp32"] > 0 and result["tf_bf16"] > 0 and result["read_gbps"] > 0
    assert result["fp32"] == result["tf_fp32"]
    assert "cores" in ceilings.machine_summary()


def _table(stdout, first_column):
    """Header cells and rows (as dicts) of the markdown table whose header starts with `first_column`."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column}"))
    columns = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(columns, (c.strip() for c in line.strip("|").split("|")))))
    return columns, rows


@pytest.mark.bench
def test_tokenize_quick_prints_table():
    stdout = _harness("tokenize", "--megabytes", "0.03", "--merges", "200", "--repeats", "1", "--passes", "2")
    columns, rows = _table(stdout, "contender")
    for column in ("MB/s", "vs KerasHub", "vs tokenizers", "tf.data set-up (s)"):
        assert column in columns
    by_name = {row["contender"]: row for row in rows}
    graph = by_name["GPT1Tokenizer, tf.data (in-graph)"]
    assert float(graph["MB/s"]) > 0 and float(graph["tf.data set-up (s)"]) > 0
    assert "KerasHub BytePairTokenizer, tf.data" in by_name
    assert "in-graph vs KerasHub (warm cache)" in stdout


@pytest.mark.bench
def test_generate_quick_prints_table(tmp_path):
    results = str(tmp_path / "generate.json")
    stdout = _harness(
        "generate",
        "--quick",
        "--backends",
        "tensorflow",
        "--batch-sizes",
        "1",
        "2",
        "--repeats",
        "1",
        "--dtypes",
        "float32",
        "int8",
        "--json",
        results,
    )
    columns, rows = _table(stdout, "library (backend)")
    assert "fraction of bandwidth" in columns
    ours = [row for row in rows if row["library (backend)"] == "keras_gpt1 (tensorflow)"]
    assert [(row["weights"], row["batch"]) for row in ours] == [
        ("float32", "1"),
        ("float32", "2"),
        ("int8", "1"),
        ("int8", "2"),
    ]
    assert all(float(row["tokens/s"]) > 0 for row in ours)
    assert [row["weights"] for row in rows if row["library (backend)"] == "keras_hub (tensorflow)"] == [
        "float32",
        "float32",
        "int8",
        "int8",
    ]
    assert [row["weights"] for row in rows if row["library (backend)"] == "transformers (torch)"] == [
        "float32",
        "float32",
    ]
    assert "batch 1, any weights: best keras_gpt1" in stdout
    # The batch sizes alternate round by round, and the ratio's spread over the rounds is printed.
    assert "keras_gpt1 (tensorflow, int8): batch 2 / batch 1 tokens/s = " in stdout
    assert "round by round: median" in stdout
    # The streamed call (the CLI's default) is timed in the same rounds and compared.
    assert "keras_gpt1 (tensorflow, float32): streamed / unstreamed tokens/s at batch 1 = " in stdout
    _check_rendered_page(
        results,
        tmp_path,
        "## Generation (tiny), ",
        "| keras_gpt1 (tensorflow) | int8 | 2 |",
        "| tensorflow | float32 | 1 |",
    )
    # A before/after pair: the same contenders' tokens/s from two files, archived and linked with their ratio.
    with open(results) as f:
        before = json.load(f)
    for row in before["rows"]:
        row["tokens_per_s"] = row["tokens_per_s"] / 2 if row.get("tokens_per_s") else row.get("tokens_per_s")
    before_path = tmp_path / "before.json"
    before_path.write_text(json.dumps(before))
    page = tmp_path / "compared.md"
    folder = str(tmp_path / "pairs")
    _harness(
        "--results", folder, "--pair", str(before_path), results, "--output", str(page), module="tools.bench.perf_page"
    )
    (pair,) = [
        line for line in page.read_text().splitlines() if line.startswith("| [") and "pair_generate_tiny" in line
    ]
    assert pair.count("keras_gpt1 · tensorflow · int8 · batch") == 2 and pair.count(": 2.00×") >= 2, pair


@pytest.mark.bench
def test_serve_quick_prints_table(tmp_path):
    results = str(tmp_path / "serve.json")
    stdout = _harness("serve", "--quick", "--dtypes", "float32", "int8", "--json", results)
    columns, rows = _table(stdout, "contender")
    for column in ("tokens/s", "vs library", "per-round ratio (median, range)", "greedy agreement"):
        assert column in columns
    contenders = ["library generate", "SavedModel generate", "SavedModel serving_default"]
    assert [(r["contender"], r["weights"], r["batch"]) for r in rows] == [
        (c, w, b) for w in ("float32", "int8") for b in ("1", "8") for c in contenders
    ]
    assert all(float(r["tokens/s"]) > 0 for r in rows)
    # The export generates the library's greedy tokens (exact in float32: the same maths).
    assert all(
        r["greedy agreement"] == "1.00"
        for r in rows
        if r["weights"] == "float32" and r["contender"] != "library generate"
    )
    assert "float32, batch 8: SavedModel / library tokens/s = generate " in stdout
    assert "SavedModel int8 against float32 (batch 8): greedy agreement " in stdout
    # The ceilings measured around the run land in its results and on the page beside its figures.
    with open(results) as f:
        ceilings = json.load(f)["ceilings"]
    assert len(ceilings) == 2 and all(c["read_gbps"] > 0 and c["tf_fp32"] > 0 for c in ceilings)
    _check_rendered_page(
        results,
        tmp_path,
        "## Serving: the exported SavedModel against the library (tiny), ",
        "| SavedModel serving_default | int8 | 8 |",
        "Ceilings (start; end): TF fp32 ",
    )


@pytest.mark.bench
def test_profile_serving_step_quick_prints_each_part():
    stdout = _harness("--quick", module="tools.bench.profile_serving_step")
    lines = stdout.splitlines()
    for part in ("whole step", "attention", "LayerNorm", "cache write", "GELU", "weight products alone"):
        assert any(line.startswith(f"{part}: ") and " ms" in line for line in lines), (part, stdout)


def test_transformers_is_compared_in_each_policy(monkeypatch):
    args = train.argparse.Namespace(
        backends=["jax"],
        policies=["float32", "mixed_bfloat16"],
        jit=["auto"],
        levers=["shipped"],
        peers=["keras_hub", "transformers"],
    )
    peers = [c for c in train._contenders(args) if c[0] == "transformers"]
    assert peers == [
        ("transformers", "torch", "float32", "eager", "shipped"),
        ("transformers", "torch", "mixed_bfloat16", "eager", "shipped"),
    ]
    # GPU memory is read from the worker's own framework, and is None on a CPU.
    if not ceilings.gpu_names():
        for backend in ("jax", "torch"):
            monkeypatch.setenv("KERAS_BACKEND", backend)
            assert train.peak_gpu_bytes("keras_gpt1") is None
        assert train.peak_gpu_bytes("transformers") is None


def _check_rendered_page(results, tmp_path, *expected):
    """The JSON results, filed into a results folder, render into docs/performance.md's format,
    machine and date included, in the section of their workload and kind of machine."""
    with open(results) as f:
        data = json.load(f)
    assert data["schema"] == 1 and data["machine"]["cores"] == os.cpu_count()
    assert all(row["tokens_per_s"] > 0 for row in data["rows"] if row.get("tokens_per_s") is not None)
    page = tmp_path / "performance.md"
    folder = str(tmp_path / "perf_results")
    _harness("--results", folder, "--add", results, "--output", str(page), module="tools.bench.perf_page")
    text = page.read_text()
    assert f"measured {data['machine']['date']}" in text and "AVX2:" in text
    assert f"## {perf_page.title(data)}" in text
    for line in expected:
        assert line in text, line


@pytest.mark.bench
def test_train_quick_levers_table():
    # The levers that change the model's maths (einsum_attention, split_qkv) are checked in
    # process by tests/test_bench_levers.py; these three each run in a worker of their own.
    stdout = _harness(
        "train",
        "--quick",
        "--peers",
        "keras_hub",
        "--backends",
        "tensorflow",
        "--steps",
        "1",
        "--levers",
        "keras_loss",
        "sgd",
        "no_dropout",
    )
    columns, rows = _table(stdout, "lever")
    assert "vs shipped" in columns
    ours = {row["lever"]: row for row in rows if row["library"] == "keras_gpt1"}
    # "shipped" is added as the reference when it is not asked for.
    assert list(ours) == ["shipped", "keras_loss", "sgd", "no_dropout"]
    assert all(float(row["tokens/s"]) > 0 for row in ours.values())
    assert ours["shipped"]["vs shipped"] == "-"
    assert all(row["vs shipped"].endswith("x") for name, row in ours.items() if name != "shipped")
    # KerasHub takes only the dropout lever.
    assert [row["lever"] for row in rows if row["library"] == "keras_hub"] == ["shipped", "no_dropout"]
