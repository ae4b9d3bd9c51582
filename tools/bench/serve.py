"""Serving speed: the exported SavedModel (TF Serving's graph) against the library's own generate.

One model with GPT-1's 117M dimensions (vocabulary 40,478, 12 layers, 12 heads, 768/3072, context
512) and random weights is saved as a preset once, with a BPE tokenizer trained on a small word
corpus, and exported with `export_saved_model` per weight type (`--dtypes`: `float32`,
`bfloat16`, `int8`). Then two worker processes (`tools.bench.harness.Worker`) stay up side by
side for each weight type:

- the server: a process that imports TensorFlow only (`keras`, `keras_gpt1`, `tf_keras` and
  `keras_hub` are made unimportable first, as a TF Serving host has none of them), loads the
  SavedModel with `tf.saved_model.load` and calls its `generate` and `serving_default` signatures;
- the library: `KERAS_BACKEND=tensorflow`, `GPT1CausalLM.from_preset` on the same preset (in
  bfloat16, or quantized to int8, like the export), calling `lm.generate` on the same texts.

Both take the same 20-word prompts (strings in, strings out: tokenization and detokenization are
timed on both sides) and generate `--new-tokens` greedy tokens (64), at batch 1 and 8. The driver
sends one call at a time to each process, alternating in rounds whose order reverses every
round, so background load drifts over both alike; the first call of each is timed apart
(compilation, graph warm-up). The ratio is the signature's tokens/s over the library's, from the
best rounds, with the median of the per-round ratios beside it.

The generated tokens are compared too: the server's against the library's at the same weights
(greedy agreement), and, for `bfloat16` and `int8`, against the float32 export's, with the
largest logit difference from the `token_ids` signature on the batch's prompts (relative to the
float32 logits' spread).

Usage (from the repository root):
    python -m tools.bench.serve                        # 117M, float32 (minutes on a small CPU)
    python -m tools.bench.serve --dtypes float32 bfloat16 int8 --json results/serve.json
    python -m tools.bench.serve --quick                # tiny config smoke run
    python -m tools.bench.benchmark serve [options]    # the same, between two ceiling measurements
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from tools.bench import harness
from tools.bench.configs import config, config_name
from tools.bench.results import print_summary, write_results

DTYPES = ("float32", "bfloat16", "int8")
SIGNATURES = ("generate", "serving_default")
WORDS = (
    "the a cat dog sat on mat log bird sang song house tree river walked ran over under quick brown "
    "fox jumped lazy old man woman child city town road long short day night sun moon star light dark "
    "water fire stone wind rain snow green red blue white black small large happy sad first last"
).split()


def _corpus(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=12)) + " ." for _ in range(n)]


def prompts(batch, words, seed=1):
    """`batch` texts of `words` words each (the same texts on both sides)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=words)) for _ in range(batch)]


# === Workers: each runs in its own process (tools.bench.harness) ===


def prepare(workdir, dtypes, new_tokens, quick):
    """Saves the random model's preset and exports it once per dtype (KERAS_BACKEND=tensorflow)."""
    import keras

    from keras_gpt1 import GPT1Backbone, GPT1CausalLM, GPT1Tokenizer
    from keras_gpt1.export import export_saved_model
    from keras_gpt1.tokenizers import train_tokenizer

    cfg = config(quick)
    corpus = os.path.join(workdir, "corpus.txt")
    with open(corpus, "w") as f:
        f.write("\n".join(_corpus()) + "\n")
    trained = train_tokenizer([corpus], vocabulary_size=min(400, cfg["vocabulary_size"]))
    # The model keeps GPT-1's embedding rows (the head's matmul is much of a decode step): the
    # vocabulary is padded to them with tokens that text never produces, as a preset requires.
    vocabulary = trained.vocabulary
    vocabulary.update({f"<unused_{i}>": i for i in range(len(vocabulary), cfg["vocabulary_size"])})
    tokenizer = GPT1Tokenizer(vocabulary=vocabulary, merges=trained.merges)
    keras.utils.set_random_seed(0)
    lm = GPT1CausalLM(GPT1Backbone(**cfg, dropout=0.0), tokenizer=tokenizer)
    preset = os.path.join(workdir, "preset")
    lm.save_to_preset(preset)
    for dtype in dtypes:
        start = time.perf_counter()
        export_saved_model(preset, os.path.join(workdir, dtype), version=1, max_new_tokens=new_tokens, dtype=dtype)
        sys.stderr.write(f"[prepare] exported {dtype} in {time.perf_counter() - start:.0f} s\n")
    return dict(params=lm.count_params())


def _timed(call):
    """A request handler (`kind`, `texts`) around `call(kind, texts)`, which returns (token rows,
    extra entries): `seconds` is the call's time, or `timed` where the call times only part of
    itself."""

    def handle(kind, texts):
        start = time.perf_counter()
        rows, extra = call(kind, texts)
        seconds = time.perf_counter() - start
        return dict(seconds=seconds, rows=rows, **extra)

    return handle


def server(export_dir, new_tokens):
    """The SavedModel in a process that imports TensorFlow only (a `Worker`'s handler)."""
    for name in ("keras", "keras_gpt1", "tf_keras", "keras_hub"):
        sys.modules[name] = None
    import tensorflow as tf

    loaded = tf.saved_model.load(export_dir)
    signatures = loaded.signatures

    def call(kind, texts):
        text = tf.constant(texts)
        if kind == "logits":
            out = signatures["generate"](text=text, max_new_tokens=tf.constant(1))
            ids, lengths = out["token_ids"].numpy(), out["prompt_lengths"].numpy()
            width = int(lengths.max())
            mask = (np.arange(width)[None] < lengths[:, None]).astype("int32")
            logits = signatures["token_ids"](
                token_ids=tf.constant(ids[:, :width] * mask), padding_mask=tf.constant(mask)
            )
            logits = logits["logits"].numpy()
            last = logits[np.arange(len(texts)), lengths - 1]  # the logits that choose the first new token
            return [], dict(logits=last.tolist())
        if kind == "generate":
            out = signatures["generate"](text=text, max_new_tokens=tf.constant(new_tokens))
        else:
            out = signatures["serving_default"](text=text)
        ids, lengths = out["token_ids"].numpy(), out["lengths"].numpy()
        return [row[:n].tolist() for row, n in zip(ids, lengths)], {}

    return _timed(call)


def library(preset, dtype, new_tokens):
    """`lm.generate` on the preset, in the export's weights (KERAS_BACKEND=tensorflow; a
    `Worker`'s handler)."""
    import warnings

    from keras_gpt1.models import GPT1CausalLM

    lm = GPT1CausalLM.from_preset(preset, dropout=0.0, **({"dtype": "bfloat16"} if dtype == "bfloat16" else {}))
    if dtype == "int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lm.quantize("int8")
    tokenizer = lm.tokenizer

    def call(kind, texts):
        # Text in, text out: what the signatures do. The same prompts as token ids then give
        # the tokens behind the texts for the agreement check (not timed).
        start = time.perf_counter()
        texts_out = lm.generate(texts, max_new_tokens=new_tokens)
        seconds = time.perf_counter() - start
        assert len(texts_out) == len(texts)
        ids = [np.asarray(tokenizer(t)).astype("int32").tolist() for t in texts]
        return lm.generate(ids, max_new_tokens=new_tokens), dict(timed=seconds)

    return _timed(call)


# === Driver ===


def _ask(worker, **request):
    result = worker.ask(**request)
    if "timed" in result:  # the library times its own text call (the ids call is the check)
        result["seconds"] = result["timed"]
    return result


def measure(dtype, args, workdir):
    """Alternating rounds for one weight type: {(contender, batch): result}."""
    export_dir = os.path.join(workdir, dtype, "1")
    preset = os.path.join(workdir, "preset")
    with (
        harness.Worker(
            library,
            dict(preset=preset, dtype=dtype, new_tokens=args.new_tokens),
            backend="tensorflow",
            label=f"library ({dtype})",
        ) as library_worker,
        harness.Worker(
            server, dict(export_dir=export_dir, new_tokens=args.new_tokens), label=f"SavedModel ({dtype})"
        ) as server_worker,
    ):
        contenders = [("library", library_worker, "generate")] + [(s, server_worker, s) for s in SIGNATURES]
        results = {}
        texts = {b: prompts(b, args.prompt_words) for b in args.batch_sizes}
        for batch in args.batch_sizes:
            for name, worker, kind in contenders:
                out = _ask(worker, kind=kind, texts=texts[batch])
                results[(name, batch)] = dict(first=out["seconds"], rounds=[], rows=out["rows"])
        for r in range(args.repeats):
            order = contenders if r % 2 == 0 else contenders[::-1]
            for batch in args.batch_sizes:
                for name, worker, kind in order:
                    out = _ask(worker, kind=kind, texts=texts[batch])
                    results[(name, batch)]["rounds"].append(out["seconds"])
        logits = server_worker.ask(kind="logits", texts=texts[max(args.batch_sizes)])["logits"]
    for result in results.values():
        result["seconds"] = min(result["rounds"])
    return results, np.asarray(logits, "float32")


def agreement(rows, reference, new_tokens):
    """Share of the generated tokens (the last `new_tokens` of each row) on which two greedy runs
    agree, counted up to each row's first difference (after one different token a greedy run
    continues from another text)."""
    same = 0
    for a, b in zip(rows, reference):
        for x, y in zip(a[-new_tokens:] if len(a) == len(b) else [], b[-new_tokens:]):
            if x != y:
                break
            same += 1
    return same / max(new_tokens * len(reference), 1)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny config, 8 new tokens, 1 round: a smoke run")
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32"],
        choices=DTYPES,
        help="export --dtype values to measure (int8: Keras's quantize('int8'))",
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--prompt-words", type=int, default=20)
    parser.add_argument("--new-tokens", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None, help="alternating timed rounds (default 3; --quick 1)")
    parser.add_argument("--json", help="also write the results to this file (tools.bench.perf_page renders it)")
    parser.add_argument("--keep", metavar="DIR", help="write the preset and exports here and keep them")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds for the preset and exports")
    args = parser.parse_args(argv)
    if args.new_tokens is None:
        args.new_tokens = 8 if args.quick else 64
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3

    workdir = args.keep or tempfile.mkdtemp(prefix="bench_serving_")
    os.makedirs(workdir, exist_ok=True)
    try:
        return _drive(args, workdir, argv)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _drive(args, workdir, argv):
    cfg = config(args.quick)
    start = time.perf_counter()
    if not all(os.path.isfile(os.path.join(workdir, d, "1", "saved_model.pb")) for d in args.dtypes):
        settings = dict(workdir=workdir, dtypes=args.dtypes, new_tokens=args.new_tokens, quick=args.quick)
        try:
            harness.run(prepare, settings, backend="tensorflow", timeout=args.timeout, label="the preset and exports")
        except harness.WorkerError as e:
            sys.stderr.write(f"{e}\n")
            return 1
    sys.stderr.write(f"[prepare] preset and exports ready ({time.perf_counter() - start:.0f} s)\n")
    load = os.getloadavg()[0]
    measured = {}
    for dtype in args.dtypes:
        measured[dtype] = measure(dtype, args, workdir)
        sys.stderr.write(f"[{dtype}] measured\n")

    print(
        f"\nServing: {config_name(args.quick)} config ({cfg['num_layers']} layers, hidden {cfg['hidden_dim']}, "
        f"vocabulary {cfg['vocabulary_size']}), {args.prompt_words}-word prompts + {args.new_tokens} greedy tokens, "
        f"text in and out; best of {args.repeats} alternating rounds; load average at start {load:.1f} on "
        f"{os.cpu_count()} CPUs.\n"
    )
    print(
        "| contender | weights | batch | tokens/s | first call s | vs library | per-round ratio (median, range) | greedy agreement |"
    )
    print("|---|---|---:|---:|---:|---:|---|---:|")
    records, lines = [], []
    for dtype, (results, logits) in measured.items():
        for batch in args.batch_sizes:
            library = results[("library", batch)]
            for name in ("library",) + SIGNATURES:
                r = results[(name, batch)]
                tokens_per_s = batch * args.new_tokens / r["seconds"]
                record = dict(
                    contender="library generate" if name == "library" else f"SavedModel {name}",
                    weights=dtype,
                    batch=batch,
                    tokens_per_s=tokens_per_s,
                    first_call_s=r["first"],
                )
                if name != "library":
                    per_round = [a / b for a, b in zip(library["rounds"], r["rounds"])]
                    record.update(
                        vs_library=library["seconds"] / r["seconds"],
                        per_round_median=float(np.median(per_round)),
                        per_round_min=min(per_round),
                        per_round_max=max(per_round),
                        agreement=agreement(r["rows"], library["rows"], args.new_tokens),
                    )
                records.append(record)
                print(
                    f"| {record['contender']} | {dtype} | {batch} | {tokens_per_s:.1f} | {r['first']:.1f} | "
                    + (
                        f"{record['vs_library']:.2f}x | {record['per_round_median']:.2f}x ({record['per_round_min']:.2f}-"
                        f"{record['per_round_max']:.2f}x) | {record['agreement']:.2f} |"
                        if name != "library"
                        else "- | - | - |"
                    )
                )
        if dtype != "float32" and "float32" in measured:
            reference, reference_logits = measured["float32"]
            batch = max(args.batch_sizes)
            agree = agreement(
                results[("generate", batch)]["rows"], reference[("generate", batch)]["rows"], args.new_tokens
            )
            spread = float(reference_logits.std())
            error = float(np.abs(logits - reference_logits).max())
            lines.append(
                f"SavedModel {dtype} against float32 (batch {batch}): greedy agreement {agree:.2f}, largest "
                f"first-token logit difference {error:.3f} ({error / spread:.3f} of the float32 logits' std)"
            )
    for dtype in measured:
        for batch in args.batch_sizes:
            ratios = [
                r["vs_library"] for r in records if r["weights"] == dtype and r["batch"] == batch and "vs_library" in r
            ]
            lines.append(
                f"{dtype}, batch {batch}: SavedModel / library tokens/s = "
                + ", ".join(f"{s} {x:.2f}x" for s, x in zip(SIGNATURES, ratios))
            )
    print_summary(lines)
    if args.json:
        settings = dict(prompt_words=args.prompt_words, new_tokens=args.new_tokens, repeats=args.repeats)
        write_results(args.json, "serve", args.quick, settings, [], records, argv, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
