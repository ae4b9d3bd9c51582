"""The `keras-gpt1` command line: `main` builds the parser from the subcommand modules beside this
one and reports library errors as one line.

Each subcommand module offers `add_parser(subparsers)`, which registers its subcommand and sets
`func` to a handler taking the parsed `args`. Heavy imports happen inside handlers: what
`add_parser` reads (choices, defaults, the task families) comes from modules that import no Keras
(tests/test_cli_startup.py checks it).

Library errors name Python arguments in backticks (`` `learning_rate` ``, `` `mode='data'` ``);
`flag_wording` rewrites them as the flags of the command that ran (`--learning-rate`,
`--distribute data`), so each audience reads its own names.

**Start-up.** When the installed `keras-gpt1` script runs, the package's public API waits for
`main` (`keras_gpt1/__init__.py` says why): the parser is built from the subcommand modules
without Keras, so `--help` and `--version` answer without importing Keras or TensorFlow. A
subcommand then imports the library inside `startup.quiet_import`, which leaves TensorFlow's and
absl's start-up lines out of standard error; the `--verbose` flag every subcommand takes keeps
them.
"""

import argparse
import errno
import re
import sys

from keras_gpt1.cli import convert, export, finetune, generate, pretrain, startup, train_tokenizer

# The subcommand modules, in the order `--help` lists them.
SUBCOMMANDS = (train_tokenizer, convert, pretrain, generate, finetune, export)


def _installed_version():
    """The installed distribution's version, read from its metadata: importing the package would
    import Keras and a backend just to print a number."""
    import importlib.metadata

    try:
        return importlib.metadata.version("keras-gpt1")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "(not installed)"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-gpt1",
        description="GPT-1 for Keras 3 (TensorFlow, JAX, PyTorch). "
        "Pick the backend with KERAS_BACKEND=tensorflow|jax|torch.",
    )
    parser.add_argument("--version", action="version", version=f"keras-gpt1 {_installed_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    for subparser in subparsers.choices.values():
        subparser.add_argument(
            "--verbose",
            action="store_true",
            help="show TensorFlow's and absl's start-up and log lines (left out by default)",
        )
    return parser


_BACKTICKED = re.compile(r"`([^`]+)`")
# `verbose` is left out: the library's `verbose` arguments set progress output, not `--verbose`.
_NOT_FLAGS = ("command", "func", "flag_names", "verbose")


def flag_wording(message, args):
    """`message` with each backticked Python argument the command has a flag for written as that
    flag: `` `name` `` becomes `--name`, `` `name=value` `` becomes `--name value` (a bare flag for
    True). A flag is `--` and the argument's name with dashes, unless the subcommand's
    `flag_names` default (`{argument or argument=value: flag}`) says otherwise.

    Example:
    ```python
    flag_wording("`mesh='2x4'` needs `mode='data'`.", args)   # "--mesh 2x4 needs --distribute data."
    ```
    """
    flags = {dest: "--" + dest.replace("_", "-") for dest in vars(args) if dest not in _NOT_FLAGS}
    flags.update(getattr(args, "flag_names", None) or {})

    def replace(match):
        token = match.group(1)
        if token in flags:
            return flags[token]
        name, equals, value = token.partition("=")
        if not equals or name not in flags:
            return match.group(0)
        value = value.strip("'\"")
        return flags[name] if value == "True" else f"{flags[name]} {value}"

    return _BACKTICKED.sub(replace, message)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    with startup.quiet_import(quiet=not args.verbose):
        import keras_gpt1

        keras_gpt1._import_public_api()  # deferred when this process is the `keras-gpt1` script
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, PermissionError, ConnectionError) as e:
        # User errors: one clear line, no traceback.
        print(f"keras-gpt1 {args.command}: error: {flag_wording(str(e), args)}", file=sys.stderr)
        return 2
    except FloatingPointError as e:
        # A diverged run (a NaN or infinite loss): nothing of it saved; the message says what to do.
        print(f"keras-gpt1 {args.command}: error: {flag_wording(str(e), args)}", file=sys.stderr)
        return 1
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as e:
        # An output path that is a file (or a file inside a path): name it, no traceback.
        print(f"keras-gpt1 {args.command}: error: {e.strerror}: {e.filename!r}.", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno == errno.EROFS:
            # A write the library did not name itself (it raises a PermissionError that does).
            where = f": {e.filename!r}" if e.filename else ""
            print(f"keras-gpt1 {args.command}: error: {e.strerror}{where}.", file=sys.stderr)
            return 2
        if e.errno != errno.ENOSPC:
            raise
        print(f"keras-gpt1 {args.command}: error: {e.strerror}", file=sys.stderr)  # names the file
        return 1
