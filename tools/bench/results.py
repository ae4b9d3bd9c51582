"""One benchmark run as a JSON file: what `tools.bench.perf_page` renders into docs/performance.md.

A result file holds one run: `schema`, `kind` (`train`, `generate` or `serve`), `machine` (CPU,
cores, its vector extensions, GPUs, date), the `command` that reruns it, the run's `settings`, the
`ceilings` measured around it, one row per contender and the harness's `summary` lines.
"""

import json
import os

from tools.bench.ceilings import machine_record
from tools.bench.configs import config_name

SCHEMA = 1
ENTRY_POINT = ("python", "-m", "tools.bench.benchmark")


def write_results(path, kind, quick, settings, ceilings, rows, argv, summary=()):
    """Writes one run of mode `kind` (run with the options `argv`, on the tiny model if `quick`) to `path`."""
    data = dict(
        schema=SCHEMA,
        kind=kind,
        machine=machine_record(),
        command=[*ENTRY_POINT, kind, *argv],
        settings=dict(config=config_name(quick), **settings),
        ceilings=list(ceilings),
        rows=rows,
        summary=list(summary),
    )
    write_json(path, data)


def print_summary(lines):
    """Prints the harness's ratio lines (a run's `summary`) as a list under its table."""
    if lines:
        print()
        for line in lines:
            print("- " + line)


def write_json(path, data):
    """Writes `data` to `path` through a temporary file, so that a reader never sees half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def record_ceilings(path, ceilings):
    """Puts the ceilings measured around a run into the results it wrote to `path`, so that the
    page shows them beside its figures. A missing file (the run failed) stays missing."""
    if not path or not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data["ceilings"] = list(ceilings)
    write_json(path, data)
