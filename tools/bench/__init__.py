"""The benchmark harness, run from the repository root as modules (`python -m tools.bench.<name>`).

- `benchmark`: the front door, `train`, `generate`, `serve` or `tokenize` between two ceiling
  measurements (`train`, `generate`, `serve`, `tokenize`: one module each).
- `harness`: the worker protocol every measurement runs through (one process, one JSON result).
- `ceilings`: the machine's matmul and memory-read ceilings, and its description.
- `results`, `perf_page`: a run's JSON results, and docs/performance.md rendered from them.
- `convert_memory`, `while_loop`, `profile_serving_step`: measurements for one question each
  (the converters' peak memory, the decode loop's while-loop, the exported decode step's parts).
- `configs`: the model shapes measured.
"""
