"""Serving speed: the exported SavedModel (TF Serving's graph) against the library's own generate.

One model with GPT-1's 117M dimensions (vocabulary 40,478, 12 layers, 12 heads, 768/3072, context
512) and random weights is saved as a preset once, with a BPE tokenizer trained on a small word
corpus, and exported with `keras-gpt1 export` per weight type (`--dtypes`: `float32`, `bfloat16`,
`int8`). Then two processes stay up side by side for each weight type:

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

Usage:
    python tools/bench_serving.py                        # 117M, float32 (minutes on a small CPU)
    python tools/bench_serving.py --dtypes float32 bfloat16 int8 --json results/serving.json
    python tools/bench_serving.py --quick                # tiny config smoke run
    python tools/benchmark.py serve [options]            # the same, between two ceiling measurements
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

FULL = dict(
    vocabulary_size=40478, num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072, max_sequence_length=512
)
TINY = dict(
    vocabulary_size=1024, num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=256, max_sequence_length=128
)
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


# --------------------------------------------------------------------------------------------
# Workers (each in its own process)
# --------------------------------------------------------------------------------------------


def worker_prepare(args):
    """Saves the random model's preset and exports it once per dtype (KERAS_BACKEND=tensorflow)."""
    import keras

    from keras_gpt1 import GPT1Backbone, GPT1CausalLM
    from keras_gpt1.export import export_saved_model
    from keras_gpt1.tokenizers import train_tokenizer

    cfg = TINY if args.quick else FULL
    corpus = os.path.join(args.workdir, "corpus.txt")
    with open(corpus, "w") as f:
        f.write("\n".join(_corpus()) + "\n")
    tokenizer = train_tokenizer([corpus], vocabulary_size=min(400, cfg["vocabulary_size"]))
    keras.utils.set_random_seed(0)
    lm = GPT1CausalLM(GPT1Backbone(**cfg, dropout=0.0), tokenizer=tokenizer)
    preset = os.path.join(args.workdir, "preset")
    lm.save_to_preset(preset)
    for dtype in args.dtypes:
        start = time.perf_counter()
        export_saved_model(
            preset, os.path.join(args.workdir, dtype), version=1, max_new_tokens=args.new_tokens, dtype=dtype
        )
        sys.stderr.write(f"[prepare] exported {dtype} in {time.perf_counter() - start:.0f} s\n")
    print("RESULT " + json.dumps(dict(params=lm.count_params())), flush=True)


def _serve_loop(call):
    """Answers each JSON request on stdin (`kind`, `texts`) with one `RESULT {json}` line:
    `call(kind, texts)` returns (token rows, extra entries); `seconds` is the call's time, or
    `timed` where the call times only part of itself."""
    for line in sys.stdin:
        request = json.loads(line)
        texts = request["texts"]
        start = time.perf_counter()
        rows, extra = call(request["kind"], texts)
        seconds = time.perf_counter() - start
        print("RESULT " + json.dumps(dict(seconds=seconds, rows=rows, **extra)), flush=True)


def worker_server(args):
    """The SavedModel in a process that imports TensorFlow only."""
    for name in ("keras", "keras_gpt1", "tf_keras", "keras_hub"):
        sys.modules[name] = None
    import tensorflow as tf

    loaded = tf.saved_model.load(args.export_dir)
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
            out = signatures["generate"](text=text, max_new_tokens=tf.constant(args.new_tokens))
        else:
            out = signatures["serving_default"](text=text)
        ids, lengths = out["token_ids"].numpy(), out["lengths"].numpy()
        return [row[:n].tolist() for row, n in zip(ids, lengths)], {}

    _serve_loop(call)


def worker_library(args):
    """`lm.generate` on the preset, in the export's weights (KERAS_BACKEND=tensorflow)."""
    import warnings

    from keras_gpt1.models import GPT1CausalLM

    lm = GPT1CausalLM.from_preset(
        args.preset, dropout=0.0, **({"dtype": "bfloat16"} if args.dtype == "bfloat16" else {})
    )
    if args.dtype == "int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lm.quantize("int8")
    tokenizer = lm.tokenizer

    def call(kind, texts):
        # Text in, text out: what the signatures do. The same prompts as token ids then give
        # the tokens behind the texts for the agreement check (not timed).
        start = time.perf_counter()
        texts_out = lm.generate(texts, max_new_tokens=args.new_tokens)
        seconds = time.perf_counter() - start
        assert len(texts_out) == len(texts)
        ids = [np.asarray(tokenizer(t)).astype("int32").tolist() for t in texts]
        return lm.generate(ids, max_new_tokens=args.new_tokens), dict(timed=seconds)

    _serve_loop(call)


WORKERS = {"prepare": worker_prepare, "server": worker_server, "library": worker_library}


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


class Worker:
    """A long-lived worker process answering one JSON request per line."""

    def __init__(self, name, backend, extra, args):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        if backend:
            env["KERAS_BACKEND"] = backend
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            name,
            "--new-tokens",
            str(args.new_tokens),
            *extra,
        ] + (["--quick"] if args.quick else [])
        self.name = name
        self.proc = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the {self.name} worker exited (code {self.proc.wait()})")
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
                if "timed" in result:  # the library times its own text call (the ids call is the check)
                    result["seconds"] = result["timed"]
                return result

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def measure(dtype, args, workdir):
    """Alternating rounds for one weight type: {(contender, batch): result}."""
    export_dir = os.path.join(workdir, dtype, "1")
    preset = os.path.join(workdir, "preset")
    library = Worker("library", "tensorflow", ["--preset", preset, "--dtype", dtype], args)
    server = Worker("server", None, ["--export-dir", export_dir], args)
    contenders = [("library", library, "generate")] + [(s, server, s) for s in SIGNATURES]
    results = {}
    try:
        texts = {b: prompts(b, args.prompt_words) for b in args.batch_sizes}
        for batch in args.batch_sizes:
            for name, worker, kind in contenders:
                out = worker.ask(kind=kind, texts=texts[batch])
                results[(name, batch)] = dict(first=out["seconds"], rounds=[], rows=out["rows"])
        for r in range(args.repeats):
            order = contenders if r % 2 == 0 else contenders[::-1]
            for batch in args.batch_sizes:
                for name, worker, kind in order:
                    out = worker.ask(kind=kind, texts=texts[batch])
                    results[(name, batch)]["rounds"].append(out["seconds"])
        logits = server.ask(kind="logits", texts=texts[max(args.batch_sizes)])["logits"]
    finally:
        library.close()
        server.close()
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    parser.add_argument("--json", help="also write the results to this file (tools/perf_page.py renders it)")
    parser.add_argument("--keep", metavar="DIR", help="write the preset and exports here and keep them")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds for the preset and exports")
    # Worker-only options.
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--export-dir", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", choices=DTYPES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.new_tokens is None:
        args.new_tokens = 8 if args.quick else 64
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.worker:
        return WORKERS[args.worker](args) or 0

    workdir = args.keep or tempfile.mkdtemp(prefix="bench_serving_")
    os.makedirs(workdir, exist_ok=True)
    try:
        return _drive(args, workdir, sys.argv[1:] if argv is None else list(argv))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _drive(args, workdir, argv):
    cfg = TINY if args.quick else FULL
    start = time.perf_counter()
    if not all(os.path.isfile(os.path.join(workdir, d, "1", "saved_model.pb")) for d in args.dtypes):
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            "prepare",
            "--workdir",
            workdir,
            "--new-tokens",
            str(args.new_tokens),
            "--dtypes",
            *args.dtypes,
        ] + (["--quick"] if args.quick else [])
        env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
        if proc.returncode != 0:
            sys.stderr.write(f"preparing the preset and exports failed:\n{proc.stderr[-4000:]}\n")
            return 1
    sys.stderr.write(f"[prepare] preset and exports ready ({time.perf_counter() - start:.0f} s)\n")
    load = os.getloadavg()[0]
    measured = {}
    for dtype in args.dtypes:
        measured[dtype] = measure(dtype, args, workdir)
        sys.stderr.write(f"[{dtype}] measured\n")

    print(
        f"\nServing: {'tiny' if args.quick else '117M'} config ({cfg['num_layers']} layers, hidden {cfg['hidden_dim']}, "
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
    print()
    for line in lines:
        print("- " + line)
    if args.json:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from benchmark import write_results

        settings = dict(
            config="tiny" if args.quick else "117M",
            prompt_words=args.prompt_words,
            new_tokens=args.new_tokens,
            repeats=args.repeats,
        )
        write_results(args.json, "serve", settings, [], records, argv, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
