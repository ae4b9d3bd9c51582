"""`keras-gpt1 pretrain`: the flags, mapped onto a `PretrainConfig` for `keras_gpt1.workflows.pretrain`
(which does the work); its errors name the flags (`FLAG_NAMES`, `keras_gpt1.cli.flag_wording`).
"""

DESCRIPTION = """\
Pretrain GPT-1 with model.fit (next-token loss, the paper's Adam + decoupled weight decay +
warmup/cosine schedule + clipping) on the backend chosen by KERAS_BACKEND.

With no arguments: trains a small model on a built-in corpus made from Python's own
documentation (no download), training a tokenizer first; it shows the validation perplexity
before and after, writes a preset and its loss curve to outputs/gpt1-demo, and prints a top-k
sample with a fixed seed. The demo's own settings (DEMO_SETTINGS) apply to the flags you leave out.

Rerunning the same command after an interruption resumes from the newest checkpoint in
--output, exactly where it stopped. TensorBoard logs go to OUTPUT/logs.

examples:
  keras-gpt1 pretrain
  keras-gpt1 pretrain --corpus 'books/*.txt' --model gpt1_tiny --steps 2000 --output runs/books
  keras-gpt1 pretrain --corpus data.jsonl.gz --text-field body --tokenizer my_tokenizer/
  keras-gpt1 pretrain --model gpt1 --batch-size 64 --gradient-accumulation-steps 16 \\
      --sequence-length 512 --precision mixed_bfloat16 --corpus 'books/*.txt' --epochs 1
"""


# `keras-gpt1 pretrain` without --corpus trains gpt1_tiny on the built-in corpus with these, each
# where its flag is not given: chosen so that about two minutes on two CPU cores end in text that
# reads like the corpus (docs/pretraining.md, "The demo", has the options measured).
DEFAULT_FLAGS = {"batch_size": 32}  # off the demo: None means pretrain()'s own default
DEMO_SETTINGS = {
    "steps": 1800,  # many small updates: at this size a step's cost is mostly fixed overhead
    "batch_size": 8,
    "learning_rate": 1e-3,  # higher rates stall this post-LN model at the word-frequency plateau
    "dropout": 0.0,  # a two-minute run underfits; nothing to regularize
}


# `PretrainConfig` fields (or field=value) whose flag is not `--` + the name with dashes: the CLI's
# error messages name the flag.
FLAG_NAMES = {
    "global_clipnorm": "--clipnorm",
    "preset": "--model",
    "resume=False": "--restart",
    "tensorboard=False": "--no-tensorboard",
}


def add_parser(subparsers):
    import argparse

    from keras_gpt1.cli.flags import add_flag, add_training_precision

    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain GPT-1 on text files (no arguments: a small demo on a built-in corpus)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--corpus",
        nargs="+",
        metavar="FILE",
        help="text files or globs: .txt (a line per paragraph), .jsonl, optionally .gz "
        "(default: the built-in Python-docs corpus)",
    )
    data.add_argument("--text-field", default="text", help="text key of .jsonl records (default: text)")
    data.add_argument("--validation-fraction", type=float, default=0.05, help="share of sequences held out (0.05)")
    model = parser.add_argument_group("model and tokenizer")
    add_flag(
        model,
        "--model",
        aliases={"--preset": None},
        default="gpt1_tiny",
        help="gpt1_tiny | gpt1 (architectures, random init) | a preset DIR or hf://owner/name "
        "to continue from (default: gpt1_tiny)",
    )
    model.add_argument(
        "--tokenizer",
        metavar="DIR",
        help="a tokenizer/preset directory (default: the preset's, else one trained on the corpus)",
    )
    model.add_argument(
        "--vocabulary-size",
        type=int,
        default=2000,
        help="tokens of a tokenizer trained here, special tokens included (2000)",
    )
    model.add_argument(
        "--dropout", type=float, help=f"override the preset's dropout rate (the demo: {DEMO_SETTINGS['dropout']})"
    )
    for name, what in [
        ("num-layers", "transformer blocks"),
        ("num-heads", "attention heads"),
        ("hidden-dim", "model width"),
        ("intermediate-dim", "MLP width"),
        ("max-sequence-length", "context length"),
    ]:
        model.add_argument(f"--{name}", type=int, help=f"override a built-in preset's {what}")
    train = parser.add_argument_group("training")
    length = train.add_mutually_exclusive_group()
    length.add_argument(
        "--steps",
        type=int,
        help=f"optimizer updates (default: 1 epoch of your corpus; the demo: {DEMO_SETTINGS['steps']})",
    )
    length.add_argument("--epochs", type=float, help="passes over the corpus (default: 1 on your corpus)")
    train.add_argument(
        "--batch-size", type=int, help=f"sequences per update (32; the demo: {DEMO_SETTINGS['batch_size']})"
    )
    train.add_argument("--sequence-length", type=int, help="tokens per sequence (default: the model's context)")
    train.add_argument("--learning-rate", type=float, help="peak rate (default: 2.5e-4 for hidden >= 768, else 1e-3)")
    train.add_argument("--warmup-steps", type=int, help="linear warmup updates (default: 10%% of the run, <= 2000)")
    train.add_argument("--weight-decay", type=float, default=0.01, help="decoupled, matrices only (0.01)")
    train.add_argument("--clipnorm", type=float, default=1.0, help="global gradient-norm clip (1.0)")
    train.add_argument(
        "--gradient-accumulation-steps",
        type=int,
        default=1,
        help="micro-batches per update; --batch-size must be divisible by it (1)",
    )
    add_training_precision(train, "docs/pretraining.md", aliases={"--mixed-bfloat16": "mixed_bfloat16"})
    train.add_argument(
        "--head-chunk-size",
        type=int,
        help="compute the LM head and loss this many tokens at a time, never the full logits (saves memory)",
    )
    train.add_argument(
        "--rematerialize",
        action="store_true",
        help="recompute each block's activations in the backward pass (much less memory, ~25%% more compute)",
    )
    train.add_argument("--seed", type=int, default=0, help="initialisation, dropout and data order (0)")
    run = parser.add_argument_group("output")
    run.add_argument("--output", default="outputs/gpt1-demo", help="run + preset directory (outputs/gpt1-demo)")
    run.add_argument("--eval-interval", type=int, help="updates between evaluations/checkpoints (default: run/6)")
    run.add_argument("--validation-batches", type=int, default=50, help="batches per evaluation, at most (50)")
    run.add_argument("--keep-checkpoints", type=int, default=3, help="checkpoints kept (3)")
    run.add_argument("--restart", action="store_true", help="start over: delete the run or model in --output")
    run.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    run.add_argument("--sample-prompt", default="the function returns", help="prompt of the final sample")
    run.add_argument("--sample-length", type=int, default=40, help="tokens of the final sample (0: none)")
    from keras_gpt1.cli.distribution import DISTRIBUTION_FLAG_NAMES, add_distribution_arguments

    add_distribution_arguments(parser)
    parser.set_defaults(func=run_pretrain, flag_names={**FLAG_NAMES, **DISTRIBUTION_FLAG_NAMES})
    return parser


def run_pretrain(args):
    import sys

    if args.rematerialize:
        # Before anything starts JAX's CPU client (which reads XLA_FLAGS once); harmless elsewhere.
        from keras_gpt1.layers import keep_rematerialization_on_jax_cpu

        keep_rematerialization_on_jax_cpu()

    _apply_demo_settings(args)
    from keras_gpt1.cli.distribution import distribution_from_args
    from keras_gpt1.workflows import pretrain
    from keras_gpt1.workflows.pretraining import main_verbosity

    config = config_from_args(args, verbose=main_verbosity())  # bad values: refused before any set-up
    try:
        with distribution_from_args(args, preset=args.model):
            pretrain(config)  # a diverged run raises a FloatingPointError: `keras_gpt1.cli` reports it
    except KeyboardInterrupt:
        # Ctrl-C: checkpoints are written atomically, so the newest one on disk is whole.
        print(f"keras-gpt1 pretrain: interrupted. {_resume_hint(config.output, config.resume)}", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended
    return 0


def _resume_hint(output, resume=True):
    """How to go on after an interrupted run in `output`: what was kept, and that rerunning the
    same command (without `--restart`, which would delete the checkpoints) resumes it. The newest
    checkpoint is verified by the resume, not here: Ctrl-C should end the command at once."""
    import os

    from keras_gpt1.training.callbacks import list_checkpoints
    from keras_gpt1.workflows.pretraining import CHECKPOINT_DIR, RUN_FILE

    if not os.path.isfile(os.path.join(output, RUN_FILE)):
        return "Training had not started; rerun the same command to start it."
    checkpoints = list_checkpoints(os.path.join(output, CHECKPOINT_DIR))
    if not checkpoints:
        return f"No checkpoint was written yet; rerun the same command to start the run in {output!r} again."
    same = "the same command" if resume else "the same command without --restart"
    return f"Rerun {same} to resume from the newest checkpoint, {checkpoints[-1][1]!r}."


def _apply_demo_settings(args):
    """Fills the flags left out with `DEMO_SETTINGS` when the run is the demo (no corpus, gpt1_tiny)."""
    demo = args.corpus is None and args.model == "gpt1_tiny"
    for name, value in DEMO_SETTINGS.items():
        if name == "steps" and args.epochs is not None:
            continue
        if getattr(args, name, None) is None:
            setattr(args, name, value if demo else DEFAULT_FLAGS.get(name))


def config_from_args(args, verbose=1):
    """The `PretrainConfig` of parsed `keras-gpt1 pretrain` flags (after `_apply_demo_settings`)."""
    from keras_gpt1.workflows.pretrain_config import ARCHITECTURE_KEYS, PretrainConfig

    return PretrainConfig(
        corpus=args.corpus,
        preset=args.model,
        tokenizer=args.tokenizer,
        output=args.output,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        sequence_length=args.sequence_length,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        global_clipnorm=args.clipnorm,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        precision=args.precision,
        head_chunk_size=args.head_chunk_size,
        rematerialize=args.rematerialize,
        dropout=args.dropout,
        architecture={key: getattr(args, key) for key in ARCHITECTURE_KEYS},
        vocabulary_size=args.vocabulary_size,
        validation_fraction=args.validation_fraction,
        validation_batches=args.validation_batches,
        eval_interval=args.eval_interval,
        keep_checkpoints=args.keep_checkpoints,
        seed=args.seed,
        text_field=args.text_field,
        resume=not args.restart,
        tensorboard=not args.no_tensorboard,
        sample_prompt=args.sample_prompt,
        sample_length=args.sample_length,
        verbose=verbose,
    )
