"""Flags that several subcommands share, and renamed flags kept one release as hidden aliases.

One concept has one flag name on every subcommand: the input model is `--model`, the input text
`--corpus`, what a command writes `--output`, and the precision `--precision`, whose values are
`keras_gpt1.utils.precision`'s (training and inference each take their subset).

A renamed flag's old name keeps working for one release: `add_flag` adds the new flag with its
old names as hidden aliases, left out of `--help` and the usage line. An alias prints one line
on stderr naming the flag that replaces it, then does what the new flag does. The new flag and
its aliases form one mutually exclusive group, so argparse itself refuses an old and a new name
given together (`--mixed-bfloat16 --precision float32`), and either satisfies a required flag.

Example:
```python
add_flag(parser, "--model", aliases={"--from": None}, required=True, metavar="DIR")
# keras-gpt1 finetune --from DIR ... prints on stderr, then runs as with --model DIR:
# keras-gpt1 finetune: warning: --from is deprecated and will be removed in the next release; use --model.
```
"""

import argparse
import sys

from keras_gpt1.utils.precision import INFERENCE_PRECISIONS, TRAINING_PRECISIONS


class DeprecatedAlias(argparse.Action):
    """An old flag name: prints one line on stderr naming `new_flag`, then stores into the new
    flag's `dest`. With a `value`, the alias is a bare flag that meant `new_flag value`; without
    one, it takes the new flag's argument."""

    def __init__(self, option_strings, dest, new_flag, value=None, nargs=None, **kwargs):
        super().__init__(option_strings, dest, nargs=0 if value is not None else nargs, **kwargs)
        self.new_flag = new_flag
        self.value = value

    def __call__(self, parser, namespace, values, option_string=None):
        replacement = self.new_flag if self.value is None else f"{self.new_flag} {self.value}"
        print(
            f"{parser.prog}: warning: {option_string} is deprecated and will be removed in the next release; "
            f"use {replacement}.",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values if self.value is None else self.value)


def add_flag(parser, flag, aliases, required=False, **kwargs):
    """Adds `flag` to `parser` (an argparse parser or argument group; `kwargs` as for
    `add_argument`) with its deprecated `aliases`: `{old flag: None}` for an old name that takes
    the same argument, `{old flag: value}` for a bare old flag that meant `flag value`. Returns
    the new flag's action.

    Example:
    ```python
    add_flag(parser, "--corpus", aliases={"--input": None}, required=True, nargs="+", metavar="FILE")
    ```
    """
    group = parser.add_mutually_exclusive_group(required=required)
    action = group.add_argument(flag, **kwargs)
    for old, value in aliases.items():
        takes = {} if value is not None else {"nargs": action.nargs, "type": action.type, "choices": action.choices}
        group.add_argument(
            old, dest=action.dest, action=DeprecatedAlias, new_flag=flag, value=value, help=argparse.SUPPRESS, **takes
        )
    return action


def add_training_precision(parser, page, aliases=None):
    """`--precision` of the commands that train: `TRAINING_PRECISIONS`, `auto` by default
    (`page` is the docs page that explains it)."""
    return add_flag(
        parser,
        "--precision",
        aliases or {},
        choices=TRAINING_PRECISIONS,
        default="auto",
        help="auto (default): mixed_bfloat16 for wide models on TensorFlow or PyTorch on a CPU with native "
        f"bfloat16, where it was measured faster; else float32 ({page})",
    )


def add_inference_precision(parser, what, aliases=None):
    """`--precision` of the commands that run a trained model: `INFERENCE_PRECISIONS`, the
    model's own by default (`what` says what the precision applies to)."""
    return add_flag(
        parser,
        "--precision",
        aliases or {},
        choices=INFERENCE_PRECISIONS,
        default=None,
        help=f"{what}: float32, bfloat16 (half the bytes read per token) or int8 (Keras's quantize('int8')); "
        "default: the model's own",
    )
