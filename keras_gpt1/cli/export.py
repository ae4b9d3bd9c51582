"""`keras-gpt1 export`: a preset → a TF Serving SavedModel (`OUTPUT/<version>/saved_model.pb`)."""

DESCRIPTION = """\
Export a preset (causal LM or fine-tuned task model, with its tokenizer) as a SavedModel for
TensorFlow Serving: signatures take raw text (tf.string tensors) and tokenize inside the graph.
Runs on any backend: the graph is built under TensorFlow (in a subprocess when KERAS_BACKEND is
jax or torch). Causal LM signatures: serving_default (text -> generated text), generate (text,
max_new_tokens), score (text -> log-likelihood, perplexity), token_ids (ids -> logits). Task
models: serving_default (text | text_a, text_b | context, candidates -> probabilities, label)
and token_ids. Prompts and texts longer than --max-length are truncated; max_new_tokens is
clamped to [1, max-length - 1].
"""


def add_parser(subparsers):
    import argparse

    from keras_gpt1.cli.flags import add_inference_precision
    from keras_gpt1.utils.generation_defaults import DEFAULT_MAX_NEW_TOKENS

    parser = subparsers.add_parser(
        "export",
        help="export a preset as a TF Serving SavedModel (raw-text signatures)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="preset directory to export, gpt1 (OpenAI's weights) or hf://owner/name",
    )
    parser.add_argument(
        "--output", required=True, metavar="SAVEDMODEL_DIR", help="model base path; the export goes in VERSION/"
    )
    parser.add_argument("--version", type=int, default=1, help="version directory number (1)")
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="longest sequence built: prompt + new tokens (LM) or packed length (tasks); default: the "
        "packed length in finetune.json, else the context",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help=f"tokens serving_default generates (causal LM; {DEFAULT_MAX_NEW_TOKENS})",
    )
    parser.add_argument(
        "--task",
        choices=["classification", "entailment"],
        default=None,
        help="for a GPT1TextClassifier: one text (classification) or a pair text_a/text_b (entailment); "
        "default: the task in the directory's finetune.json, else what its preprocessor takes (a pair: entailment)",
    )
    add_inference_precision(parser, "the weights the graph computes with (causal LM)", aliases={"--dtype": None})
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version directory")
    # The export's option is `dtype`; the CLI's errors name the flag.
    parser.set_defaults(func=run_export, flag_names={"dtype": "--precision"})


def run_export(args):
    from keras_gpt1.export import ExportOptions, export_saved_model

    options = ExportOptions(
        version=args.version,
        max_length=args.max_length,
        max_new_tokens=args.max_new_tokens,
        task=args.task,
        overwrite=args.overwrite,
        dtype=args.precision,
    )
    path = export_saved_model(args.model, args.output, options)
    from keras_gpt1.export.saved_model import signature_summary

    print(f"Exported {args.model} to {path}")
    for name, signature in signature_summary(path).items():
        inputs = ", ".join(f"{k}: {dtype}{list(shape)}" for k, (dtype, shape) in signature["inputs"].items())
        outputs = ", ".join(f"{k}: {dtype}{list(shape)}" for k, (dtype, shape) in signature["outputs"].items())
        print(f"  {name}({inputs}) -> {outputs}")
    return 0
