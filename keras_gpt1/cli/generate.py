"""`keras-gpt1 generate` (streams tokens as they are produced) and `keras-gpt1 score`."""

import json
import sys
import warnings

GENERATE_DESCRIPTION = """\
Generate text from a preset with a KV cache. Tokens are printed as they are produced (the
compiled loop runs in chunks of steps, as fast as unstreamed); --no-stream prints at the end.
Sampler: greedy by default; --top-k implies top_k, --top-p implies top_p, --temperature alone
implies random sampling; beam search with --sampler beam --num-beams N (not streamed).
"""

SCORE_DESCRIPTION = """\
Score text: per-token log-likelihood (nats) and perplexity under a preset (one forward pass).

A text longer than the model's context (512 tokens) needs --stride: it is then scored in
overlapping windows of the context's length, starting --stride tokens apart.

  keras-gpt1 score --model DIR --file essay.txt --whole-file --stride 64   # half of a 128-token context
"""


def add_parser(subparsers):
    import argparse

    from keras_gpt1.utils.generation_defaults import DEFAULT_MAX_NEW_TOKENS, SAMPLER_NAMES

    gen = subparsers.add_parser(
        "generate",
        help="generate text from a preset (streamed)",
        description=GENERATE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_args(gen)
    prompt = gen.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", metavar="TEXT", help="prompt text (needs the preset's tokenizer)")
    prompt.add_argument("--prompt-ids", metavar="IDS", help="prompt token ids, e.g. '5 6 7' or '5,6,7'")
    gen.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help=f"tokens to generate ({DEFAULT_MAX_NEW_TOKENS})",
    )
    gen.add_argument(
        "--sampler",
        default=None,
        help=f"{' | '.join(SAMPLER_NAMES)} (default: {SAMPLER_NAMES[0]}, or implied by the options below)",
    )
    gen.add_argument("--top-k", type=int, default=None, help="k for top_k sampling")
    gen.add_argument("--top-p", type=float, default=None, help="p for nucleus (top_p) sampling, in (0, 1]")
    gen.add_argument("--temperature", type=float, default=None, help="sampling temperature (> 0)")
    gen.add_argument("--num-beams", type=int, default=None, help="beams for --sampler beam")
    gen.add_argument("--seed", type=int, default=None, help="random seed (same seed, same text)")
    gen.add_argument(
        "--stop-token-ids",
        default=None,
        metavar="IDS",
        help="ids that end generation (ids of the model's tokenizer, e.g. that of '.')",
    )
    gen.add_argument("--no-stream", action="store_true", help="print once at the end")
    # The samplers name their arguments `k` and `p`; the CLI's errors name the flags.
    gen.set_defaults(func=run_generate, flag_names={"k": "--top-k", "p": "--top-p"})

    score = subparsers.add_parser(
        "score",
        help="per-token log-likelihood and perplexity of text",
        description=SCORE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_args(score)
    source = score.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", metavar="TEXT", help="text to score (repeatable)")
    source.add_argument("--file", metavar="FILE", help="text file: one text per non-empty line")
    score.add_argument("--whole-file", action="store_true", help="with --file: score the whole file as one text")
    source.add_argument("--ids", action="append", metavar="IDS", help="token ids to score (repeatable)")
    score.add_argument("--per-token", action="store_true", help="also print each token's log-likelihood")
    score.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    score.add_argument("--batch-size", type=int, default=8, help="texts (windows) per forward pass (8)")
    score.add_argument(
        "--stride", type=int, default=None, help="score texts longer than the context in windows this many tokens apart"
    )
    score.set_defaults(func=run_score)


def _add_model_args(parser):
    from keras_gpt1.cli.flags import add_inference_precision

    parser.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="preset directory, gpt1 (OpenAI's weights, downloaded once), hf://owner/name, or gpt1_tiny (random)",
    )
    add_inference_precision(parser, "the weights computed with", aliases={"--dtype": None, "--quantize": None})


def _parse_ids(text, what):
    parts = text.replace(",", " ").split()
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"{what} must be integers separated by spaces or commas; got {text!r}.") from None


def _load(args):
    """The causal LM of `--model` in `--precision`: float32 and bfloat16 load the weights in that
    dtype, int8 quantizes them (Keras's `quantize("int8")`), none keeps the model as saved. A
    quantized preset loads as saved: only int8 (or no `--precision`) applies to it."""
    from keras_gpt1.models import GPT1CausalLM, preset_io

    precision = args.precision
    if precision not in (None, "int8") and preset_io.with_saved_dtype(args.model, {}):
        raise ValueError(
            f"{args.model} is quantized; --precision {precision} cannot turn it back into floats. Leave "
            "--precision out."
        )
    dtype = {"dtype": precision} if precision not in (None, "int8") else {}
    lm = GPT1CausalLM.from_preset(args.model, dropout=0.0, **dtype)
    if precision != "int8":
        return lm
    saved_modes = {layer.quantization_mode for layer in lm._flatten_layers()} - {None}
    if saved_modes:
        if saved_modes != {precision}:
            raise ValueError(
                f"{args.model} is already quantized ({', '.join(sorted(saved_modes))}); "
                f"--precision {precision} cannot quantize it again. Leave --precision out."
            )
        return lm  # A quantized preset: its layers load quantized already.
    with warnings.catch_warnings():
        # Keras warns for every layer without weights to quantize (LayerNorm, Dropout).
        warnings.filterwarnings("ignore", message=".*does not have a `quantize` method")
        lm.quantize(precision)
    return lm


def _pick_sampler(args):
    name = args.sampler
    if name is None:
        if args.top_k is not None:
            name = "top_k"
        elif args.top_p is not None:
            name = "top_p"
        elif args.temperature is not None:
            name = "random"
        elif args.num_beams is not None:
            name = "beam"
        else:
            name = "greedy"
    from keras_gpt1.generation.samplers import get_sampler

    return get_sampler(name, k=args.top_k, p=args.top_p, temperature=args.temperature, num_beams=args.num_beams)


class _TextStreamer:
    """Prints each new token's text as it arrives.

    GPT-1's detokenization joins the tokens and reads each `</w>` (end of word) as a space, so the
    text grows token by token: a token's text is printed at once, and the space its `</w>` stands
    for when the next token comes (none after the last). Detokenizing the whole continuation
    again for every token would cost more than generating it.
    """

    def __init__(self, tokenizer, out, header):
        self.tokenizer = tokenizer
        self.out = out
        self.header = header  # the prompt, printed with the first token (after input checks)
        self.space_pending = False

    def _text(self, token):
        from keras_gpt1.tokenizers.gpt1_tokenizer import SPECIAL_TOKENS
        from keras_gpt1.tokenizers.vocab_files import END_OF_WORD

        piece = self.tokenizer.id_to_token(token)
        return piece + END_OF_WORD if piece in SPECIAL_TOKENS else piece  # a word of its own

    def __call__(self, ids):
        if self.header is not None:
            self.out.write(self.header)
            self.header = None
        token = int(ids[0])
        if token < 0:
            return
        if self.tokenizer is None:
            self.out.write(f" {token}")
        else:
            from keras_gpt1.tokenizers.vocab_files import END_OF_WORD

            piece = self._text(token)
            ends_word = piece.endswith(END_OF_WORD)
            self.out.write((" " if self.space_pending else "") + (piece[: -len(END_OF_WORD)] if ends_word else piece))
            self.space_pending = ends_word
        self.out.flush()


def run_generate(args):
    from keras_gpt1.generation.generate import generate_ids
    from keras_gpt1.generation.prompts import detokenize, normalize_prompts

    sampler = _pick_sampler(args)
    stop = _parse_ids(args.stop_token_ids, "--stop-token-ids") if args.stop_token_ids else None
    lm = _load(args)
    if args.prompt is not None:
        prompts, _ = normalize_prompts(args.prompt, lm.tokenizer)
    else:
        prompts = [_parse_ids(args.prompt_ids, "--prompt-ids")]
    tokenizer = lm.tokenizer if args.prompt is not None else None
    out = sys.stdout
    prompt_text = detokenize(tokenizer, prompts[0]) if tokenizer else " ".join(map(str, prompts[0]))
    stream = not args.no_stream and sampler.name != "beam"
    streamer = None
    if stream:
        streamer = _TextStreamer(tokenizer, out, prompt_text + (" " if tokenizer else ""))
    result = generate_ids(lm, prompts, args.max_new_tokens, sampler, stop, args.seed, streamer=streamer)
    ids = result["token_ids"][0, : result["lengths"][0]].tolist()
    if not stream:
        if tokenizer:
            drop = set(stop or ())
            out.write(detokenize(tokenizer, [t for t in ids if t not in drop]))
        else:
            out.write(" ".join(map(str, ids)))
    out.write("\n")
    out.flush()
    return 0


def run_score(args):
    from keras_gpt1.generation.score import score

    if args.whole_file and not args.file:
        raise ValueError("--whole-file needs --file.")
    lm = _load(args)
    if args.ids:
        inputs = [_parse_ids(text, "--ids") for text in args.ids]
        labels = args.ids
    else:
        if args.file:
            from keras_gpt1.utils.files import require_file

            with open(require_file(args.file, "text file"), "rb") as f:
                raw = f.read()
            try:
                content = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                line = raw[: e.start].count(b"\n") + 1
                raise ValueError(
                    f"{args.file!r} is not UTF-8 text: undecodable byte {raw[e.start : e.start + 1]!r} on "
                    f"line {line} (a binary file?)."
                ) from None
            if "\0" in content:
                line = content[: content.index("\0")].count("\n") + 1
                raise ValueError(f"{args.file!r} holds a NUL byte on line {line}: a binary file, not text.")
            texts = [content] if args.whole_file else content.splitlines()
            inputs = [text.strip() for text in texts if text.strip()]
            if not inputs:
                raise ValueError(f"{args.file!r} has no text to score (it is empty or all whitespace).")
        else:
            inputs = list(args.text)
        labels = inputs
    results = score(lm, inputs, batch_size=args.batch_size, stride=args.stride)
    total_ll = sum(r["log_likelihood"] for r in results)
    total_n = sum(r["num_scored_tokens"] for r in results)
    for label, r in zip(labels, results):
        if args.json:
            record = {
                "text": label,
                "num_tokens": len(r["token_ids"]),
                "log_likelihood": r["log_likelihood"],
                "perplexity": r["perplexity"],
            }
            if args.per_token:
                record["token_ids"] = r["token_ids"]
                record["token_log_likelihoods"] = [float(x) for x in r["token_log_likelihoods"]]
            print(json.dumps(record))
            continue
        short = label if len(label) <= 60 else label[:57] + "..."
        print(
            f"{short!r}: {len(r['token_ids'])} tokens, log-likelihood {r['log_likelihood']:.4f}, "
            f"perplexity {r['perplexity']:.4f}"
        )
        if args.per_token:
            for token, ll in zip(r["token_ids"][1:], r["token_log_likelihoods"]):
                name = lm.tokenizer.id_to_token(token) if lm.tokenizer is not None and not args.ids else token
                print(f"    {name!s:>20} {float(ll):10.4f}")
    if not args.json and len(results) > 1:
        import math

        print(f"all: {total_n} scored tokens, perplexity {math.exp(-total_ll / total_n):.4f}")
    return 0
