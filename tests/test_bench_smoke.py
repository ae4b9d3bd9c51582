"""Smoke run of the benchmark harness (tools/benchmark.py), so that it cannot rot.

No timing assertions: the harness's figures depend on the machine and its load. The test checks
that a tiny training run completes in a subprocess and prints the table with its columns and a
row for keras_gpt1, and that the ceilings module returns positive figures. The harness spawns its
own processes with their own backends, so these run once (`once`, tests/conftest.py) rather than
under each backend. `make test` runs one harness command end to end (a one-step training table);
the others, each minutes of subprocesses, are marked `bench` and run with `make test-bench`.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")

pytestmark = [pytest.mark.once, pytest.mark.integration]


def _harness(*args):
    """stdout of `tools/benchmark.py ARGS`, which must succeed."""
    proc = subprocess.run(
        [sys.executable, os.path.join(TOOLS, "benchmark.py"), *args],
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
        assert json.load(f)["command"][:3] == ["tools/benchmark.py", "train", "--quick"]
    _check_rendered_page(results, tmp_path, "## Training (tiny)", "| keras_gpt1 | tensorflow | float32 |")


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
    sys.path.insert(0, TOOLS)
    try:
        import ceilings
    finally:
        sys.path.remove(TOOLS)
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
        "## Generation (tiny",
        "| keras_gpt1 (tensorflow) | int8 | 2 |",
        "| tensorflow | float32 | 1 |",
    )
    # A before/after table: the same contenders' tokens/s from two files, and their ratio.
    with open(results) as f:
        before = json.load(f)
    for row in before["rows"]:
        row["tokens_per_s"] = row["tokens_per_s"] / 2 if row.get("tokens_per_s") else row.get("tokens_per_s")
    before_path = tmp_path / "before.json"
    before_path.write_text(json.dumps(before))
    page = tmp_path / "compared.md"
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(TOOLS, "perf_page.py"),
            "--compare",
            str(before_path),
            results,
            "--output",
            str(page),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    compared = [line for line in page.read_text().splitlines() if line.startswith("| keras_gpt1 · tensorflow · int8")]
    assert len(compared) == 2 and all(line.endswith("| 2.00× |") for line in compared), compared


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
        "## Serving: the exported SavedModel against the library (tiny",
        "| SavedModel serving_default | int8 | 8 |",
        "Ceilings (start; end): TF fp32 ",
    )


@pytest.mark.bench
def test_profile_serving_step_quick_prints_each_part():
    proc = subprocess.run(
        [sys.executable, os.path.join(TOOLS, "profile_serving_step.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for part in ("whole step", "attention", "LayerNorm", "cache write", "GELU", "weight products alone"):
        assert any(line.startswith(f"{part}: ") and " ms" in line for line in lines), (part, proc.stdout)


def test_perf_page_update_replaces_only_the_rerun_sections(tmp_path):
    spec = importlib.util.spec_from_file_location("perf_page", os.path.join(TOOLS, "perf_page.py"))
    perf_page = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf_page)
    machine = {"cpu": "CPU", "cores": 2, "avx2": True, "bf16": False, "amx": False, "date": "2026-01-02"}
    run = {
        "schema": 1,
        "kind": "serve",
        "machine": machine,
        "command": ["serve"],
        "ceilings": {},
        "settings": {"config": "tiny", "prompt_words": 3, "new_tokens": 4, "repeats": 1},
        "rows": [],
        "summary": [],
    }
    rendered = perf_page.render([run])
    heading = next(line for line in rendered.splitlines() if line.startswith("## Serving"))
    page = f"# Performance\n\nintro\n\n## Training (x)\n\ntrain table\n\n{heading}\n\nold serve table\n\n## Generation (y)\n\ngen\n"
    updated = perf_page.update(page, [run])
    sections = [s.splitlines()[0] for s in updated.split("\n\n") if s.startswith("## ")]
    assert sections == ["## Training (x)", heading, "## Generation (y)"]  # in place, others kept
    assert "old serve table" not in updated and "train table" in updated and updated.endswith("gen\n")
    assert "measured 2026-01-02" in updated and "do not edit" in updated  # the generated intro
    # A new heading is appended; a heading the page holds twice is refused, not guessed at.
    appended = perf_page.update("# Performance\n\n## Training (x)\n\nt\n", [run])
    assert appended.index("## Training (x)") < appended.index(heading)
    with pytest.raises(ValueError, match="2 sections headed"):
        perf_page.update(page + f"\n{heading}\n\nagain\n", [run])
    # The command line: a missing page is named, not created from nothing.
    proc = subprocess.run(
        [sys.executable, os.path.join(TOOLS, "perf_page.py"), "--update", "--output", str(tmp_path / "missing.md")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode != 0 and "missing.md: cannot read the page to update" in proc.stderr


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(TOOLS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_perf_page_gpu_runs_stand_beside_the_cpu_runs():
    perf_page = _load_tool("perf_page")
    cpu = {"cpu": "CPU", "cores": 2, "avx2": True, "bf16": True, "amx": False, "date": "2026-01-02"}
    gpu = dict(cpu, gpus=["NVIDIA H200"])
    row = {
        "contender": "keras_gpt1",
        "backend": "jax",
        "policy": "mixed_bfloat16",
        "jit": "auto",
        "lever": "shipped",
        "batch": 8,
        "sequence": 512,
        "row": {"step": 1.0},
        "tokens_per_s": 100.0,
        "mfu": 0.1,
        "peak_rss_gib": 1.0,
    }

    def train(machine, **extra):
        return {
            "schema": 1,
            "kind": "train",
            "machine": machine,
            "command": ["train"],
            "ceilings": [],
            "settings": {"config": "117M", "peak_gflops": 1.0},
            "rows": [dict(row, **extra)],
            "summary": [],
        }

    on_cpu, on_gpu = train(cpu, peak_gpu_gib=None), train(gpu, peak_gpu_gib=5.07)
    page = perf_page.render([on_cpu, on_gpu])
    headings = [line for line in page.splitlines() if line.startswith("## ")]
    assert headings == ["## Training (117M)", "## Training (117M, NVIDIA H200)"]
    cpu_section, gpu_section = page.split("## Training (117M, NVIDIA H200)")
    assert "GPU: NVIDIA H200; host CPU, 2 cores" in gpu_section and "GPU:" not in cpu_section
    # GPU memory is a column only where a run measured it.
    assert "peak GPU GiB" in gpu_section and "| 5.07 |" in gpu_section and "peak GPU GiB" not in cpu_section
    # Rerunning the GPU harness replaces the GPU section and leaves the CPU's alone.
    updated = perf_page.update(page, [train(gpu, peak_gpu_gib=6.5, tokens_per_s=200.0)])
    assert "| 6.50 |" in updated and "| 5.07 |" not in updated and "| 100.0 |" in updated.split("NVIDIA H200")[0]
    # A levers run is a section of its own, beside the shipped step's.
    levers = train(gpu, lever="no_dropout", contender="keras_gpt1, no_dropout")
    assert "## Training (117M, NVIDIA H200, levers: no_dropout)" in perf_page.render([levers])


def test_transformers_is_compared_in_each_policy(monkeypatch):
    benchmark = _load_tool("benchmark")
    args = benchmark.argparse.Namespace(
        backends=["jax"],
        policies=["float32", "mixed_bfloat16"],
        jit=["auto"],
        levers=["shipped"],
        peers=["keras_hub", "transformers"],
    )
    peers = [c for c in benchmark._contenders(args) if c[0] == "transformers"]
    assert peers == [
        ("transformers", "torch", "float32", "eager", "shipped"),
        ("transformers", "torch", "mixed_bfloat16", "eager", "shipped"),
    ]
    # GPU memory is read from the worker's own framework, and is None on a CPU.
    if not _load_tool("ceilings").gpu_names():
        for backend in ("jax", "torch"):
            monkeypatch.setenv("KERAS_BACKEND", backend)
            assert benchmark.peak_gpu_bytes("keras_gpt1") is None
        assert benchmark.peak_gpu_bytes("transformers") is None


def _check_rendered_page(results, tmp_path, *expected):
    """The JSON results render into docs/performance.md's format, machine and date included."""
    with open(results) as f:
        data = json.load(f)
    assert data["schema"] == 1 and data["machine"]["cores"] == os.cpu_count()
    assert all(row["tokens_per_s"] > 0 for row in data["rows"] if row.get("tokens_per_s") is not None)
    page = tmp_path / "performance.md"
    proc = subprocess.run(
        [sys.executable, os.path.join(TOOLS, "perf_page.py"), results, "--output", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    text = page.read_text()
    assert f"measured {data['machine']['date']}" in text and "AVX2:" in text
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
