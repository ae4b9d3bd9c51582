"""Developer tools, run from the repository root as modules (`python -m tools.<name>`); not installed.

- `tools.bench`: the benchmark harness and the performance page (docs/performance.md).
- `tools.make_notebooks`: builds notebooks/*.ipynb from their sources in notebooks/src.
- `tools.gen_tokenizer_unicode_tables`: generates keras_gpt1/tokenizers/_unicode_tables.py.
"""
