"""The benchmark harness's front door: one mode per workload, each between two measurements of the
machine's ceilings. Run from the repository root:

    python -m tools.bench.benchmark train [options]      # training: tools.bench.train
    python -m tools.bench.benchmark generate [options]   # generation: tools.bench.generate
    python -m tools.bench.benchmark serve [options]      # the exported SavedModel: tools.bench.serve
    python -m tools.bench.benchmark tokenize [options]   # the tokenizer: tools.bench.tokenize
    python -m tools.bench.benchmark MODE --help          # the mode's options

`train`, `generate` and `serve` take `--quick` (a tiny smoke run) and `--json FILE`: the run's
results, which `python -m tools.bench.perf_page --add FILE` files into docs/perf_results/ and
renders into docs/performance.md. The ceilings (matmul GFLOP/s in fp32 and bf16, memory read
GB/s; `tools.bench.ceilings`) are measured before and after the run, in worker processes, and
recorded in its results; `train` measures them itself, as its MFU needs them.
"""

import argparse
import sys

from tools.bench import generate, serve, tokenize, train
from tools.bench.ceilings import format_ceilings, machine_summary, measure_ceilings_subprocess
from tools.bench.results import record_ceilings

MODES = {"train": train, "generate": generate, "serve": serve, "tokenize": tokenize}


def between_ceilings(mode, argv):
    """Runs `mode.main(argv)` between two ceiling measurements, which go into its `--json` results."""
    quick = "--quick" in argv
    print(f"machine: {machine_summary()}", flush=True)
    ceilings = [measure_ceilings_subprocess(quick=quick)]
    print(f"ceilings at start: {format_ceilings(ceilings[0])}", flush=True)
    code = mode.main(argv)
    ceilings.append(measure_ceilings_subprocess(quick=quick))
    print(f"ceilings at end:   {format_ceilings(ceilings[1])}", flush=True)
    if code == 0:
        json_option = argparse.ArgumentParser(add_help=False)
        json_option.add_argument("--json")
        record_ceilings(json_option.parse_known_args(argv)[0].json, ceilings)
    return code


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in MODES:
        parser = argparse.ArgumentParser(
            prog="python -m tools.bench.benchmark",
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("mode", choices=list(MODES))
        parser.parse_args(argv[:1])  # --help, or the error naming the modes
        return 2
    mode, options = MODES[argv[0]], argv[1:]
    if mode is train or "-h" in options or "--help" in options:
        return mode.main(options) or 0
    return between_ceilings(mode, options) or 0


if __name__ == "__main__":
    sys.exit(main())
