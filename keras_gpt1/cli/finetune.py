"""`keras-gpt1 finetune` and `keras-gpt1 evaluate`: argument parsing only (see `finetune.py`)."""

FINETUNE_DESCRIPTION = """\
Fine-tune a pretrained preset on one of GPT-1's task families, with the paper's recipe
(LR 6.25e-5, batch 32, 3 epochs, 0.2 % warmup then linear decay, auxiliary LM loss 0.5).

Input files are .csv / .tsv (header row) or .jsonl. Columns are read by role; by default the
column has the role's name:
{families}
`choices` is a JSONL list, or several columns: choices=COL1,COL2,...
Map other names with --columns ROLE=COLUMN ..., e.g. --columns text=sentence label=sentiment.

Example:
  keras-gpt1 finetune --task classification --train train.csv --validation dev.csv \\
      --model my_pretrained_preset --output my_classifier --columns text=sentence
"""

EVALUATE_DESCRIPTION = """\
Print a fine-tuned model's metrics on a labelled file, read the way its training files were
(columns, classes, context length from the model's finetune.json; --columns overrides).
Classification-type tasks: accuracy, F1, Matthews correlation; regression: Pearson, Spearman;
multiple choice: accuracy.

Example:
  keras-gpt1 evaluate --model my_classifier --data test.csv
"""


# `finetune` arguments whose flag is not `--` + the name with dashes: the CLI's error messages
# name the flag (`keras_gpt1.cli.flag_wording`).
FLAG_NAMES = {"preset": "--model", "label_names": "--labels", "warmup_fraction": "--warmup"}


_LABELS = {
    "classes": "a class",
    "classes or score": "a class, or a number with --regression",
    "index": "the 0-based index of the right candidate",
}


def _families_table():
    """One line per registered family: its name, roles and what its label is."""
    from keras_gpt1.tasks.registry import FAMILIES

    lines = []
    for family in FAMILIES.values():
        roles = ", ".join((*family.roles, "label"))
        lines.append(f"  {family.name:<17} {roles:<28} (label: {_LABELS.get(family.labels, family.labels)})")
    return "\n".join(lines)


def add_parser(subparsers):
    import argparse

    from keras_gpt1.tasks.registry import FAMILIES, task_names
    from keras_gpt1.cli.flags import add_flag, add_training_precision

    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a preset on classification / entailment / similarity / multiple choice",
        description=FINETUNE_DESCRIPTION.format(families=_families_table()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--task",
        required=True,
        choices=task_names(),
        help="; ".join(f"{f.name}: {f.description}" for f in FAMILIES.values()),
    )
    parser.add_argument("--train", required=True, metavar="FILE", help="training data (.csv, .tsv, .jsonl)")
    parser.add_argument("--validation", metavar="FILE", help="validation data, scored after training")
    add_flag(
        parser,
        "--model",
        aliases={"--from": None},
        required=True,
        metavar="PRESET",
        help="pretrained preset directory (with its tokenizer), gpt1 (OpenAI's weights) or hf://owner/name",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="where to save the fine-tuned model")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace another kind of model in --output (a pretraining run, a preset); a fine-tuned one is "
        "replaced without it",
    )
    parser.add_argument("--columns", nargs="+", metavar="ROLE=COLUMN", help="column mapping, e.g. text=sentence")
    parser.add_argument(
        "--labels", metavar="A,B,...", help="declared classes in index order (default: the training file's, sorted)"
    )
    parser.add_argument(
        "--regression", action="store_true", help="similarity: predict a number (STS-B) instead of classes"
    )
    parser.add_argument(
        "--lm-weight", type=float, default=0.5, help="auxiliary LM loss weight λ; 0 turns it off (default 0.5)"
    )
    parser.add_argument("--learning-rate", type=float, default=6.25e-5, help="peak learning rate (default 6.25e-5)")
    parser.add_argument("--batch-size", type=int, default=32, help="default 32")
    parser.add_argument("--epochs", type=int, default=3, help="default 3")
    parser.add_argument("--warmup", type=float, default=0.002, help="warmup fraction of all updates (default 0.002)")
    parser.add_argument(
        "--weight-decay", type=float, default=0.01, help="decoupled weight decay on matrices (default 0.01)"
    )
    parser.add_argument("--dropout", type=float, default=0.1, help="classifier dropout (default 0.1)")
    parser.add_argument(
        "--sequence-length", type=int, help="packed length (default: longest training example, capped at the context)"
    )
    parser.add_argument("--seed", type=int, default=0, help="initialisation, dropout and data order (0)")
    parser.add_argument(
        "--lora-rank", type=int, metavar="R",
        help="train only rank-R LoRA adapters (each block's c_attn) and the task head; the saved model holds them merged",
    )  # fmt: skip
    add_training_precision(parser, "docs/finetuning.md")
    from keras_gpt1.cli.distribution import DISTRIBUTION_FLAG_NAMES, add_distribution_arguments

    add_distribution_arguments(parser)
    parser.set_defaults(func=run_finetune, flag_names={**FLAG_NAMES, **DISTRIBUTION_FLAG_NAMES})

    parser = subparsers.add_parser(
        "evaluate",
        help="print a fine-tuned model's metrics on a labelled file",
        description=EVALUATE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="directory written by `keras-gpt1 finetune`")
    parser.add_argument("--data", required=True, metavar="FILE", help="labelled data (.csv, .tsv, .jsonl)")
    parser.add_argument(
        "--columns", nargs="+", metavar="ROLE=COLUMN", help="column mapping overriding the training run's"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.set_defaults(func=run_evaluate)


def _print_metrics(metrics, title):
    print(title)
    for name, value in metrics.items():
        print(f"  {name}: {value:.4f}")


def run_finetune(args):
    from keras_gpt1.tasks.data import parse_columns
    from keras_gpt1.workflows.finetuning import finetune

    columns = parse_columns(args.columns, args.task)
    labels = None
    if args.labels is not None:
        labels = [name.strip() for name in args.labels.split(",")]
        if not all(labels):
            raise ValueError(f"--labels {args.labels!r} contains an empty class name.")
    from keras_gpt1.cli.distribution import distribution_from_args

    with distribution_from_args(args, preset=args.model):
        result = finetune(
            args.task,
            args.train,
            args.validation,
            preset=args.model,
            output=args.output,
            columns=columns,
            label_names=labels,
            regression=args.regression,
            lm_weight=args.lm_weight,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            epochs=args.epochs,
            warmup_fraction=args.warmup,
            weight_decay=args.weight_decay,
            dropout=args.dropout,
            sequence_length=args.sequence_length,
            seed=args.seed,
            precision=args.precision,
            verbose=2,
            lora_rank=args.lora_rank,
            overwrite=args.overwrite,
        )
    if result.metrics is not None:
        _print_metrics(result.metrics, f"validation ({args.validation}):")
    print(f"saved the fine-tuned model to {args.output}")
    return 0


def run_evaluate(args):
    import json

    from keras_gpt1.tasks.data import parse_columns
    from keras_gpt1.presets import FINETUNE_FILE
    from keras_gpt1.workflows.finetuning import evaluate
    from keras_gpt1.utils.files import read_json
    import os

    columns = None
    if args.columns:
        info = read_json(
            os.path.join(args.model, FINETUNE_FILE), "fine-tuning record (written by `keras-gpt1 finetune`)"
        )
        parsed = parse_columns(args.columns, info.get("task"))
        given = {spec.partition("=")[0].strip() for spec in args.columns}
        columns = {role: column for role, column in parsed.items() if role in given}
    metrics = evaluate(args.model, args.data, columns=columns, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(metrics))
    else:
        _print_metrics(metrics, f"{args.data}:")
    return 0
