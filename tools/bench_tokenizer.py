"""Tokenizer throughput: GPT1Tokenizer (in tf.data and eager) vs KerasHub and Rust `tokenizers`.

    python tools/bench_tokenizer.py                   # ~1 MB of the demo corpus, 8,000 merges
    python tools/bench_tokenizer.py --megabytes 0.3 --merges 2000 --repeats 3

All contenders tokenize the same lines (the built-in demo corpus: Python's reference docs and
stdlib docstrings) in batches of `--batch-size`:

- GPT1Tokenizer in `tf.data` (`dataset.batch(n).map(tokenizer)`): the in-graph path.
- GPT1Tokenizer called eagerly on each batch: the Rust fast path plus conversion to tensors.
- KerasHub `BytePairTokenizer` in `tf.data` (its TensorFlow path), on a GPT-2-style byte-level
  vocabulary of the same size trained on the same text (GPT-1's own tokenizer has no KerasHub
  counterpart).
- Hugging Face `tokenizers` (Rust) `encode_batch_fast` with GPT-1's pipeline: the reference.

Each contender runs `--repeats` times after a warm-up pass, interleaved so that background load
hits all alike; the table shows the best time. Targets: in-graph >= 5x KerasHub; eager within 2x
of `tokenizers`. The script also checks that the in-graph ids equal the Rust ids.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=1.0, help="corpus size (default 1.0)")
    parser.add_argument("--merges", type=int, default=8000, help="BPE merges to train (default 8000)")
    parser.add_argument("--batch-size", type=int, default=1024, help="lines per batch (default 1024)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per contender (default 5)")
    parser.add_argument("--skip-keras-hub", action="store_true", help="leave KerasHub out (it is slow)")
    return parser.parse_args(argv)


def train_byte_level(path, vocab_size, directory):
    """A GPT-2-style (byte-level) BPE of `vocab_size` tokens on `path`, as vocab.json + merges.txt."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tokenizer.train([path], trainer)
    tokenizer.model.save(directory)
    return os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt")


def time_passes(contenders, repeats):
    """Best wall and process-CPU times of each contender over `repeats` interleaved passes.

    A contender is `run()` or a pair `(setup, run)`: `run(setup())`, timing only `run`.
    """
    contenders = {
        name: entry if isinstance(entry, tuple) else (lambda: None, (lambda run: lambda _: run())(entry))
        for name, entry in contenders.items()
    }
    for setup, run in contenders.values():
        run(setup())  # warm-up: tracing, table initialisation, caches
    wall = {name: float("inf") for name in contenders}
    cpu = dict(wall)
    for _ in range(repeats):
        for name, (setup, run) in contenders.items():
            state = setup()
            start, start_cpu = time.perf_counter(), time.process_time()
            run(state)
            wall[name] = min(wall[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
    return wall, cpu


def main(argv=None):
    args = parse_args(argv)
    import tensorflow as tf

    from keras_gpt1.data.corpus import demo_corpus_lines
    from keras_gpt1.tokenizers import train_tokenizer

    lines = list(demo_corpus_lines(int(args.megabytes * 1e6)))
    num_bytes = sum(len(line.encode("utf-8")) for line in lines)
    workdir = tempfile.mkdtemp(prefix="bench_tokenizer_")
    corpus_path = os.path.join(workdir, "corpus.txt")
    with open(corpus_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")

    tokenizer = train_tokenizer([corpus_path], num_merges=args.merges)
    rust = tokenizer._rust  # the Rust pipeline the layer wraps
    batches = [lines[i : i + args.batch_size] for i in range(0, len(lines), args.batch_size)]
    dataset = tf.data.Dataset.from_tensor_slices(lines).batch(args.batch_size)
    graph_dataset = dataset.map(tokenizer, num_parallel_calls=tf.data.AUTOTUNE)

    # The in-graph ids must be the Rust ids; a fast wrong answer is no answer.
    graph_ids = [row for batch in graph_dataset for row in batch.to_list()]
    rust_ids = [e.ids for e in rust.encode_batch_fast(lines, add_special_tokens=False)]
    if graph_ids != rust_ids:
        sys.exit("in-graph ids differ from the Rust tokenizer's: not benchmarking a wrong tokenizer")
    num_tokens = sum(len(r) for r in rust_ids)

    def consume(ds):
        for _ in ds:
            pass

    contenders = {
        "GPT1Tokenizer, tf.data (in-graph)": lambda: consume(graph_dataset),
        "GPT1Tokenizer, eager (Rust fast path)": lambda: [tokenizer(b) for b in batches],
        "tokenizers (Rust) encode_batch_fast": lambda: [
            rust.encode_batch_fast(b, add_special_tokens=False) for b in batches
        ],
    }
    if not args.skip_keras_hub:
        import keras_hub

        vocab_path, merges_path = train_byte_level(corpus_path, tokenizer.vocabulary_size, workdir)
        hub = keras_hub.tokenizers.BytePairTokenizer(vocabulary=vocab_path, merges=merges_path)
        hub_dataset = dataset.map(hub, num_parallel_calls=tf.data.AUTOTUNE)
        contenders["KerasHub BytePairTokenizer, tf.data"] = lambda: consume(hub_dataset)

        def fresh_hub_dataset():
            # A new tokenizer starts with an empty word cache, as on a corpus's first pass.
            fresh = keras_hub.tokenizers.BytePairTokenizer(vocabulary=vocab_path, merges=merges_path)
            return dataset.map(fresh, num_parallel_calls=tf.data.AUTOTUNE)

        contenders["KerasHub BytePairTokenizer, tf.data, cold cache"] = (fresh_hub_dataset, consume)

    print(
        f"corpus: {len(lines)} lines, {num_bytes / 1e6:.2f} MB, {num_tokens} GPT-1 tokens; "
        f"vocabulary {tokenizer.vocabulary_size} ({len(tokenizer.merges)} merges); "
        f"batch {args.batch_size}; best of {args.repeats}; {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    best, cpu = time_passes(contenders, args.repeats)
    rust_time = best["tokenizers (Rust) encode_batch_fast"]
    hub_time = best.get("KerasHub BytePairTokenizer, tf.data")
    hub_cpu = cpu.get("KerasHub BytePairTokenizer, tf.data")
    print()
    print("| contender | wall (s) | MB/s | vs KerasHub | vs tokenizers | CPU (s) | CPU vs KerasHub |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, seconds in best.items():
        vs_hub = f"{hub_time / seconds:.1f}x" if hub_time else "-"
        cpu_vs_hub = f"{hub_cpu / cpu[name]:.1f}x" if hub_cpu else "-"
        print(
            f"| {name} | {seconds:.3f} | {num_bytes / seconds / 1e6:.2f} | {vs_hub} | "
            f"{rust_time / seconds:.2f}x | {cpu[name]:.3f} | {cpu_vs_hub} |"
        )
    print()
    graph_time = best["GPT1Tokenizer, tf.data (in-graph)"]
    eager_time = best["GPT1Tokenizer, eager (Rust fast path)"]
    if hub_time:
        verdict = "met" if hub_time / graph_time >= 5 else "NOT met"
        graph_cpu = cpu["GPT1Tokenizer, tf.data (in-graph)"]
        print(
            f"in-graph vs KerasHub (warm cache): {hub_time / graph_time:.1f}x wall, "
            f"{hub_cpu / graph_cpu:.1f}x CPU (target >= 5x: {verdict} on wall time)"
        )
    verdict = "met" if eager_time <= 2 * rust_time else "NOT met"
    print(f"eager vs tokenizers: {eager_time / rust_time:.2f}x the time (target <= 2x: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
