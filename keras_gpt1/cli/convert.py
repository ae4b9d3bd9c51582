"""`keras-gpt1 convert`: Hugging Face or original-release checkpoints ↔ keras_gpt1 presets."""

import warnings

DESCRIPTION = """\
Convert GPT-1 weights (and vocabulary files, when present).
  --from-hf DIR      an OpenAIGPTLMHeadModel directory (config.json + model.safetensors or
                     pytorch_model.bin [+ vocab.json, merges.txt]) -> preset
  --from-openai DIR  the original release layout (params_shapes.json + params_0..9.npy
                     [+ encoder_bpe_40000.json, vocab_40000.bpe]) -> preset
  --to-hf PRESET     a keras_gpt1 preset -> a directory OpenAIGPTLMHeadModel.from_pretrained loads
"""


def add_parser(subparsers):
    import argparse

    parser = subparsers.add_parser(
        "convert",
        help="convert weights: Hugging Face / original OpenAI release <-> keras_gpt1 preset",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-hf", metavar="DIR", help="Hugging Face OpenAIGPTLMHeadModel directory")
    source.add_argument("--from-openai", metavar="DIR", help="original release checkpoint directory")
    source.add_argument("--to-hf", metavar="PRESET_DIR", help="keras_gpt1 preset directory to export")
    parser.add_argument("--output", required=True, metavar="DIR", help="directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in --output")
    parser.add_argument(
        "--num-heads",
        type=int,
        default=None,
        help="--from-openai only: attention heads (the layout does not store them; "
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


def run(args):
    import sys

    from keras_gpt1.convert import common, hf, openai

    if args.num_heads is not None and not args.from_openai:
        raise ValueError("--num-heads only applies to --from-openai (the other formats store it).")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.from_hf:
            backbone, tokenizer = hf.convert_hf_to_preset(args.from_hf, args.output, overwrite=args.overwrite)
            source, target = f"Hugging Face checkpoint {args.from_hf}", f"preset {args.output}"
            has_tokenizer = tokenizer is not None
        elif args.from_openai:
            backbone, tokenizer = openai.convert_openai_to_preset(
                args.from_openai, args.output, num_heads=args.num_heads, overwrite=args.overwrite
            )
            source, target = f"original checkpoint {args.from_openai}", f"preset {args.output}"
            has_tokenizer = tokenizer is not None
        else:
            backbone = hf.convert_preset_to_hf(args.to_hf, args.output, overwrite=args.overwrite)
            source, target = f"preset {args.to_hf}", f"Hugging Face directory {args.output}"
            has_tokenizer = common.preset_vocabulary_files(args.to_hf) is not None
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            print(f"keras-gpt1 convert: warning: {warning.message}", file=sys.stderr)
    print(f"Converted {source} -> {target}")
    print(f"  {_describe(backbone)}")
    print(f"  tokenizer: {'converted' if has_tokenizer else 'none (the source has no vocabulary files)'}")
    return 0
