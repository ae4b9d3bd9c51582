"""`keras-gpt1 train-tokenizer`: learn GPT-1 BPE merges from text files (no TensorFlow needed).

    keras-gpt1 train-tokenizer --corpus books/*.txt --merges 40000 --output my_tokenizer/

writes `my_tokenizer/vocab.json` and `my_tokenizer/merges.txt` (Hugging Face format), which
`GPT1Tokenizer.from_preset("my_tokenizer")`, `keras-gpt1 pretrain --tokenizer my_tokenizer` and
`transformers.OpenAIGPTTokenizer.from_pretrained("my_tokenizer")` all load.
"""

import os
import time

from keras_gpt1.tokenizers.train import DEFAULT_MERGES


def add_parser(subparsers):
    """Registers `train-tokenizer`; its handler is `run_train_tokenizer(args)`."""
    from keras_gpt1.cli.flags import add_flag

    parser = subparsers.add_parser(
        "train-tokenizer",
        help="learn GPT-1 BPE merges from text files",
        description="Learn GPT-1 BPE merges (BERT-style normalisation, `</w>` word ends) from UTF-8 "
        "text files with Hugging Face `tokenizers`; writes vocab.json and merges.txt.",
    )
    add_flag(
        parser,
        "--corpus",
        aliases={"--input": None},
        nargs="+",
        required=True,
        metavar="FILE",
        help="text files or globs, read as `pretrain --corpus` reads them: UTF-8 text or .jsonl, optionally .gz",
    )
    parser.add_argument("--text-field", default="text", help="text key of .jsonl records (default: text)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--merges",
        type=int,
        default=None,
        metavar="N",
        help=f"number of merges to learn (default {DEFAULT_MERGES}, as GPT-1)",
    )
    size.add_argument(
        "--vocabulary-size",
        type=int,
        default=None,
        metavar="N",
        help="instead of --merges: the tokenizer's total size, special tokens included",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="directory for vocab.json + merges.txt")
    parser.add_argument(
        "--min-frequency", type=int, default=2, metavar="N", help="never merge pairs seen fewer times (2)"
    )
    parser.add_argument(
        "--standardize",
        choices=("bert", "original"),
        default="bert",
        help="text normalisation: Hugging Face's spaCy-free 'bert' (default) or 'original', which "
        "adds the original text_standardize replacements (load with standardize='original' too)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_train_tokenizer)
    return parser


def run_train_tokenizer(args):
    """Handler of `keras-gpt1 train-tokenizer`; returns the exit status."""
    from keras_gpt1.tokenizers.train import train_bpe

    start = time.perf_counter()
    vocabulary, merges = train_bpe(
        args.corpus,
        num_merges=args.merges,
        vocabulary_size=args.vocabulary_size,
        min_frequency=args.min_frequency,
        standardize=args.standardize,
        output_dir=args.output,
        show_progress=not args.quiet,
        text_field=args.text_field,
    )
    requested = args.merges if args.merges is not None else DEFAULT_MERGES
    if args.vocabulary_size is not None:
        requested = None
    print(
        f"Learned {len(merges)} merges; vocabulary of {len(vocabulary)} tokens "
        f"(+3 special tokens in GPT1Tokenizer) in {time.perf_counter() - start:.1f} s."
    )
    if requested is not None and len(merges) < requested:
        print(
            f"Note: the text ran out of pairs seen {args.min_frequency}+ times after {len(merges)} of "
            f"the {requested} merges asked for."
        )
    print(f"Wrote {os.path.join(args.output, 'vocab.json')} and {os.path.join(args.output, 'merges.txt')}.")
    if args.standardize != "bert":
        print(f"Load it with GPT1Tokenizer.from_preset({args.output!r}, standardize={args.standardize!r}).")
    return 0
