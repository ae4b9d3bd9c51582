"""docs/performance.md is rendered whole from docs/perf_results/ (tools/bench/perf_page.py): the
committed page is what its results render, rendering is deterministic and idempotent, there is
one section per workload and kind of machine, and archived runs and before/after pairs are linked
from the page instead of appended to it."""

import copy
import json
import os
import shutil

import pytest

from tools.bench import perf_page

pytestmark = pytest.mark.once

RESULTS = os.path.join(perf_page.ROOT, "docs", "perf_results")
CPU = {"cpu": "CPU", "cores": 2, "avx2": True, "bf16": False, "amx": False, "gpus": [], "date": "2026-01-02"}
RUN = {
    "schema": 1,
    "kind": "train",
    "machine": CPU,
    "command": ["python", "-m", "tools.bench.benchmark", "train"],
    "ceilings": [],
    "settings": {"config": "117M", "peak_gflops": 100.0},
    "rows": [
        {
            "contender": "keras_gpt1",
            "library": "keras_gpt1",
            "backend": "jax",
            "policy": "float32",
            "jit": "auto",
            "lever": "shipped",
            "batch": 8,
            "sequence": 512,
            "row": {"step": 1.0},
            "tokens_per_s": 100.0,
            "mfu": 0.1,
            "peak_rss_gib": 1.0,
        }
    ],
    "summary": [],
}


def _run(machine=None, tokens=100.0, **row):
    run = copy.deepcopy(RUN)
    run["machine"] = dict(CPU, **(machine or {}))
    run["rows"][0].update(row, tokens_per_s=tokens)
    return run


def _write(path, data):
    path.write_text(json.dumps(data))
    return str(path)


def _page(results, output):
    assert perf_page.main(["--results", str(results), "--output", str(output)]) == 0
    return output.read_text(encoding="utf-8")


def _headings(page):
    return [line for line in page.splitlines() if line.startswith("## ")]


def test_the_committed_page_is_what_its_results_render():
    assert perf_page.main(["--check"]) == 0, "run `python -m tools.bench.perf_page`"


def test_rendering_is_deterministic_and_idempotent(tmp_path):
    shutil.copytree(RESULTS, tmp_path / "perf_results")
    output = tmp_path / "performance.md"
    first = _page(tmp_path / "perf_results", output)
    assert _page(tmp_path / "perf_results", output) == first  # twice: the same page
    with open(os.path.join(perf_page.ROOT, "docs", "performance.md"), encoding="utf-8") as f:
        assert first == f.read()  # and the same as from docs/, links included (relative)


def test_one_section_per_workload_and_machine_kind():
    current, archived = perf_page.read_folder(RESULTS)
    headings = _headings(perf_page.render(current, archived))
    assert len(headings) == len(set(headings)) == len(current) + 1  # and the archive's
    assert "## Training (117M), avx512_bf16 CPU" in headings and "## Training (117M), NVIDIA H200 GPU" in headings
    kinds = {
        "AVX2": {},
        "avx512_bf16": {"bf16": True},
        "AMX": {"bf16": True, "amx": True},
        "NVIDIA H200": {"bf16": True, "amx": True, "gpus": ["NVIDIA H200"]},
    }
    for kind, flags in kinds.items():
        assert perf_page.machine_kind(dict(CPU, **flags)) == kind


def test_every_archived_file_is_linked_from_the_page():
    current, archived = perf_page.read_folder(RESULTS)
    page = perf_page.render(current, archived)
    assert len(archived) >= 9  # the superseded runs and the five generate pairs and one train pair of 2026-12
    for path, _ in current + archived:
        relative = os.path.relpath(path, os.path.join(perf_page.ROOT, "docs")).replace(os.sep, "/")
        assert f"]({relative})" in page, relative


def test_add_replaces_a_section_run_and_archives_the_old_one(tmp_path):
    results, output = tmp_path / "results", tmp_path / "page.md"
    results.mkdir()
    first = _write(tmp_path / "first.json", _run(tokens=100.0))
    assert perf_page.main(["--results", str(results), "--output", str(output), "--add", first]) == 0
    second = _write(tmp_path / "second.json", _run(tokens=250.0, machine={"date": "2026-01-03"}))
    on_amx = _write(tmp_path / "amx.json", _run(tokens=400.0, machine={"bf16": True, "amx": True}))
    gpu = _write(tmp_path / "gpu.json", _run(tokens=9000.0, machine={"gpus": ["NVIDIA H200"]}, peak_gpu_gib=5.07))
    levers = _write(
        tmp_path / "levers.json", _run(tokens=300.0, lever="no_dropout", contender="keras_gpt1, no_dropout")
    )
    perf_page.main(["--results", str(results), "--output", str(output), "--add", second, on_amx, gpu, levers])
    page = output.read_text(encoding="utf-8")
    assert _headings(page) == [
        "## Training (117M), AVX2 CPU",
        "## Training (117M), AMX CPU",
        "## Training (117M), NVIDIA H200 GPU",
        "## Training levers (117M), AVX2 CPU",
        "## Archive",
    ]
    avx2 = page.split("## Training (117M), AMX CPU")[0]
    assert "| 250.0 |" in avx2 and "| 100.0 |" not in avx2  # the later run shows, the earlier is archived
    assert "](results/archive/2026-01-02_train_117M_avx2.json) | Training (117M), AVX2 CPU |" in page
    # GPU memory is a column only where a run measured it.
    gpu_section = page.split("## Training (117M), NVIDIA H200 GPU")[1].split("## ")[0]
    assert "| 5.07 |" in gpu_section and "peak GPU GiB" not in avx2
    assert sorted(os.listdir(results / "archive")) == ["2026-01-02_train_117M_avx2.json"]


def test_a_pair_is_archived_and_linked_with_its_ratios(tmp_path):
    results, output = tmp_path / "results", tmp_path / "page.md"
    before = _write(tmp_path / "before.json", _run(tokens=100.0))
    after = _write(tmp_path / "after.json", _run(tokens=200.0))
    perf_page.main(["--results", str(results), "--output", str(output), "--pair", before, after])
    page = output.read_text(encoding="utf-8")
    (pair,) = os.listdir(results / "archive")
    line = next(line for line in page.splitlines() if f"(results/archive/{pair})" in line)
    assert f"{before} → {after}" in line and "keras_gpt1 · jax · float32 · jit auto · 8 × 512: 2.00×" in line
    assert _headings(page) == ["## Archive"]  # a pair adds no section
    with pytest.raises(SystemExit, match="a pair is two results of one mode"):
        serve = _write(tmp_path / "serve.json", dict(_run(), kind="serve"))
        perf_page.main(["--results", str(results), "--output", str(output), "--pair", before, serve])


def test_a_folder_the_page_cannot_come_from_is_named(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    _write(results / "a.json", _run())
    _write(results / "b.json", _run(tokens=5.0))
    with pytest.raises(SystemExit, match=r"a.json and .*b.json are both runs of 'Training \(117M\), AVX2 CPU'"):
        perf_page.main(["--results", str(results), "--output", str(tmp_path / "page.md")])
    (results / "b.json").write_text('{"rows": []}')
    with pytest.raises(SystemExit, match=r"b.json: not a result file of tools.bench"):
        perf_page.main(["--results", str(results), "--output", str(tmp_path / "page.md")])
