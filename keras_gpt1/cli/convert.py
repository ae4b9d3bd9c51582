"""`keras-gpt1 convert`: Hugging Face or original-release checkpoints ↔ keras_gpt1 presets."""

import warnings

from keras_gpt1.utils import artifacts

DESCRIPTION = """\
Convert GPT-1 weights (and vocabulary files, when present). What --model holds decides the
direction:
  a Hugging Face OpenAIGPTLMHeadModel directory (config.json + model.safetensors or
      pytorch_model.bin [+ vocab.json, merges.txt])                        -> a keras_gpt1 preset
  the original release's layout (params_shapes.json + params_0..9.npy
      [+ encoder_bpe_40000.json, vocab_40000.bpe])                         -> a keras_gpt1 preset
  a keras_gpt1 preset -> a directory OpenAIGPTLMHeadModel.from_pretrained loads

examples:
  keras-gpt1 convert --model openai-gpt/ --output presets/gpt1
  keras-gpt1 convert --model presets/gpt1 --output hf_gpt1/
"""

# What `--model` may hold (`keras_gpt1.utils.artifacts` kinds): the presets this library writes
# go to Hugging Face's layout, the two published layouts become presets.
_TO_HUGGING_FACE = (artifacts.PRESET, artifacts.FINETUNED, artifacts.RUN)


def add_parser(subparsers):
    import argparse

    from keras_gpt1.cli.flags import add_flag

    parser = subparsers.add_parser(
        "convert",
        help="convert weights: Hugging Face / original OpenAI release <-> keras_gpt1 preset",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_flag(
        parser,
        "--model",
        aliases={"--from-hf": None, "--from-openai": None, "--to-hf": None},
        required=True,
        metavar="DIR",
        help="the checkpoint to convert: a Hugging Face or original-release directory, or a keras_gpt1 preset",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in --output")
    parser.add_argument(
        "--num-heads",
        type=int,
        default=None,
        help="an original-release --model only: attention heads (the layout does not store them; "
        "default hidden size / 64, i.e. 12 for GPT-1)",
    )
    parser.set_defaults(func=run)
    return parser


def _describe(backbone):
    return (
        f"{backbone.num_layers} layers, {backbone.num_heads} heads, hidden {backbone.hidden_dim}, "
        f"MLP {backbone.intermediate_dim}, context {backbone.max_sequence_length}, "
        f"vocabulary {backbone.vocabulary_size}: {backbone.count_params():,} parameters"
    )


def _model_kind(model):
    """What the `--model` directory holds (an `artifacts` kind), or an error naming what it may hold."""
    import os

    if not os.path.isdir(model):
        raise FileNotFoundError(f"--model {model!r} is not a directory (expected a checkpoint or preset to convert).")
    kind, evidence = artifacts.artifact_kind(model)
    if kind in _TO_HUGGING_FACE or kind in (artifacts.HUGGING_FACE, artifacts.ORIGINAL):
        return kind
    holds = f"holds {kind} ({evidence})" if kind else "holds no model"
    raise ValueError(
        f"--model {model!r} {holds}: expected a Hugging Face OpenAIGPTLMHeadModel directory (config.json + "
        "model.safetensors or pytorch_model.bin), the original release's layout (params_shapes.json) or a "
        "keras_gpt1 preset."
    )


def run(args):
    import sys

    from keras_gpt1.convert import common, hf, openai

    kind = _model_kind(args.model)
    if args.num_heads is not None and kind != artifacts.ORIGINAL:
        raise ValueError(
            f"--num-heads only applies to an original-release --model; {args.model!r} holds {kind}, which stores it."
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if kind == artifacts.HUGGING_FACE:
            backbone, tokenizer = hf.convert_hf_to_preset(args.model, args.output, overwrite=args.overwrite)
            source, target = f"Hugging Face checkpoint {args.model}", f"preset {args.output}"
            has_tokenizer = tokenizer is not None
        elif kind == artifacts.ORIGINAL:
            backbone, tokenizer = openai.convert_openai_to_preset(
                args.model, args.output, num_heads=args.num_heads, overwrite=args.overwrite
            )
            source, target = f"original checkpoint {args.model}", f"preset {args.output}"
            has_tokenizer = tokenizer is not None
        else:
            backbone = hf.convert_preset_to_hf(args.model, args.output, overwrite=args.overwrite)
            source, target = f"preset {args.model}", f"Hugging Face directory {args.output}"
            has_tokenizer = common.preset_vocabulary_files(args.model) is not None
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            print(f"keras-gpt1 convert: warning: {warning.message}", file=sys.stderr)
    print(f"Converted {source} -> {target}")
    print(f"  {_describe(backbone)}")
    print(f"  tokenizer: {'converted' if has_tokenizer else 'none (the source has no vocabulary files)'}")
    return 0
