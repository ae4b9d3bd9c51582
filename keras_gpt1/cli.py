"""The `keras-gpt1` command line: argument parsing only; each subcommand calls the Python API.

Each feature module contributes `add_parser(subparsers)`, which registers its subcommand and sets
`func` to a handler taking the parsed `args`. Heavy imports happen inside handlers, so `--help`
is instant.
"""

import argparse
import errno
import sys

# (module, function) pairs registering subcommands, in the order `--help` lists them.
SUBCOMMANDS = [
    ("keras_gpt1.tokenizers.cli", "add_train_tokenizer_parser"),
    ("keras_gpt1.convert.cli", "add_parser"),
    ("keras_gpt1.training.cli", "add_parser"),
    ("keras_gpt1.generation.cli", "add_parser"),
    ("keras_gpt1.tasks.cli", "add_parser"),
    ("keras_gpt1.export.cli", "add_parser"),
]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-gpt1",
        description="GPT-1 for Keras 3 (TensorFlow, JAX, PyTorch). "
        "Pick the backend with KERAS_BACKEND=tensorflow|jax|torch.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import importlib

    for module_name, function in SUBCOMMANDS:
        getattr(importlib.import_module(module_name), function)(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, PermissionError, ConnectionError) as e:
        # User errors: one clear line, no traceback.
        print(f"keras-gpt1 {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as e:
        # An output path that is a file (or a file inside a path): name it, no traceback.
        print(f"keras-gpt1 {args.command}: error: {e.strerror}: {e.filename!r}.", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        print(f"keras-gpt1 {args.command}: error: {e.strerror}", file=sys.stderr)  # names the file
        return 1


if __name__ == "__main__":
    sys.exit(main())
