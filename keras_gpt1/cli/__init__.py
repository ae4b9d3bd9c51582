"""The `keras-gpt1` command line (the top layer): each module parses one subcommand's flags and
calls the library's API; `main` reports the library's errors in the flags' own words.

| subcommand | module | calls |
|---|---|---|
| `train-tokenizer` | `train_tokenizer.py` | `keras_gpt1.tokenizers.train_bpe` |
| `convert` | `convert.py` | `keras_gpt1.convert` |
| `pretrain` | `pretrain.py` | `keras_gpt1.workflows.pretrain` |
| `generate`, `score` | `generate.py` | `keras_gpt1.generation` |
| `finetune`, `evaluate` | `finetune.py` | `keras_gpt1.workflows.finetune`, `evaluate` |
| `export` | `export.py` | `keras_gpt1.export.export_saved_model` |

`distribution.py` holds the `--distribute`/`--mesh` flags that `pretrain` and `finetune` share.
`startup.py` leaves TensorFlow's start-up lines out while `main` imports the library for a
subcommand (unless `--verbose`); the parser is built before that, without Keras (`main.py`).
`flags.py` holds the other shared flags (`--precision`) and the renamed flags' hidden aliases.
"""

from keras_gpt1.cli.main import build_parser, flag_wording, main

__all__ = ["build_parser", "flag_wording", "main"]
