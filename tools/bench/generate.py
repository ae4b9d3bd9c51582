"""Generation speed: keras_gpt1 (KV cache) vs KerasHub GPT2CausalLM vs transformers OpenAIGPT.

Greedy decoding, GPT-1's 117M dimensions (vocabulary 40,478, 12 layers, 12 heads, 768/3072,
context 512), random weights, a 32-token prompt and 128 new tokens, batch 1 and 8. Each library
and backend runs in its own worker process (`tools.bench.harness`; KERAS_BACKEND is fixed per
process), ours and KerasHub's alternating per backend; memory read bandwidth is measured in the same run (numpy sum over a
1 GB array, best of 3, before and after; on a machine with a CUDA GPU, a device-to-device copy on
the GPU instead) to give the fraction of the bandwidth ceiling:

    fraction = (weight bytes read per decode step / seconds per step) / measured GB/s

At batch 1 a decode step reads every weight once, so this is the share of the memory-bound
ceiling reached. `--dtypes` picks the weights: `float32`, `bfloat16`, and `int8` (float32 weights
after Keras's `quantize("int8")`, for both Keras libraries; transformers gets no int8 run). Tokens/s
include the prefill and the whole `generate` call; the first (compiling) call is reported
separately and not timed.

Usage (from the repository root; `python -m tools.bench.benchmark generate ...` runs the same
between two measurements of the machine's ceilings):
    python -m tools.bench.generate                 # full run (many minutes on a small CPU)
    python -m tools.bench.generate --quick         # tiny config smoke run (seconds per backend)
    python -m tools.bench.generate --backends jax torch --batch-sizes 1 --repeats 3
    python -m tools.bench.generate --dtypes float32 int8 bfloat16    # the performance page
"""

import argparse
import os
import shutil
import sys
import time

import numpy as np

from tools.bench import harness
from tools.bench.ceilings import measure_ceilings_subprocess, read_bandwidth_gbps
from tools.bench.configs import config, config_name, openai_gpt_arguments
from tools.bench.results import print_summary, write_results


def _gpu_bandwidth():
    """A CUDA GPU's read GB/s (device-to-device copy, measured in a worker), or None."""
    if shutil.which("nvidia-smi") is None:
        return None
    ceilings = measure_ceilings_subprocess(libraries=("torch",))
    return ceilings.get("gpu_read_gbps") if ceilings else None


# === Workers: each runs in its own process (tools.bench.harness) ===


def _prompts(batch, length, vocab, seed=0):
    return np.random.default_rng(seed).integers(1, vocab, size=(batch, length)).astype("int32")


def _time_batches(runs, repeats):
    """Times `runs` ({batch: fn}) in `repeats` rounds, each round running every batch once.

    The first call of each (compiling) is timed apart and reported as `first`. Interleaving the
    batch sizes gives each the same share of the host's ups and downs (on a shared machine memory
    bandwidth drifts over seconds), so the batch-8 / batch-1 ratio compares like with like.
    `seconds` is the best round, `rounds` every round's time.
    """
    results = {}
    for batch, fn in runs.items():
        start = time.perf_counter()
        fn()
        results[batch] = dict(batch=batch, first=time.perf_counter() - start, rounds=[])
    for _ in range(repeats):
        for batch, fn in runs.items():
            start = time.perf_counter()
            fn()
            results[batch]["rounds"].append(time.perf_counter() - start)
    for result in results.values():
        result["seconds"] = min(result["rounds"])
    return list(results.values())


def worker_keras_gpt1(cfg, args):
    import keras

    from keras_gpt1 import GPT1Backbone, GPT1CausalLM
    from keras_gpt1.generation import generate_ids

    keras.utils.set_random_seed(0)
    kw = {"dtype": args.dtype} if args.dtype == "bfloat16" else {}
    lm = GPT1CausalLM(GPT1Backbone(**cfg, dropout=0.0, **kw))
    _quantize(lm, args.dtype)

    def runner(batch, stream=False):
        prompts = list(_prompts(batch, args.prompt_length, cfg["vocabulary_size"]))
        streamer = (lambda ids: None) if stream else None

        def run():
            out = generate_ids(lm, prompts, max_new_tokens=args.new_tokens, streamer=streamer)
            assert out["lengths"].min() == args.prompt_length + args.new_tokens

        return run

    # The streamed call (what `keras-gpt1 generate` does by default) runs in the same rounds as
    # the unstreamed ones, at the smallest batch size.
    runs = {batch: runner(batch) for batch in args.batch_sizes}
    runs["streamed"] = runner(min(args.batch_sizes), stream=True)
    results = _time_batches(runs, args.repeats)
    for result in results:
        if result["batch"] == "streamed":
            result.update(batch=min(args.batch_sizes), streamed=True)
    return lm.count_params(), _bytes_per_param(lm), results


def _quantize(lm, dtype):
    if dtype == "int8":
        import warnings

        with warnings.catch_warnings():  # "Layer ... does not have a `quantize` method": no weights
            warnings.simplefilter("ignore")
            lm.quantize("int8")


def _bytes_per_param(model):
    import keras

    total = sum(
        int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize for v in model.weights
    )
    return total / max(model.count_params(), 1)


def worker_keras_hub(cfg, args):
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(**cfg, dropout=0.0, dtype="bfloat16" if args.dtype == "bfloat16" else None)
    lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    _quantize(lm, args.dtype)
    lm.compile(sampler="greedy")
    total = args.prompt_length + args.new_tokens

    def runner(batch):
        token_ids = np.zeros((batch, total), "int32")
        token_ids[:, : args.prompt_length] = _prompts(batch, args.prompt_length, cfg["vocabulary_size"])
        mask = np.zeros((batch, total), bool)
        mask[:, : args.prompt_length] = True
        inputs = {"token_ids": token_ids, "padding_mask": mask}

        def run():
            out = lm.generate(inputs, stop_token_ids=None)
            assert np.asarray(out["padding_mask"]).all()

        return run

    results = _time_batches({batch: runner(batch) for batch in args.batch_sizes}, args.repeats)
    return lm.count_params(), _bytes_per_param(lm), results


def worker_transformers(cfg, args):
    import torch
    from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel

    torch.manual_seed(0)
    model_config = OpenAIGPTConfig(**openai_gpt_arguments(cfg), resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where the Keras backends run too
    model = OpenAIGPTLMHeadModel(model_config).eval().to(device)
    if args.dtype == "bfloat16":
        model = model.to(torch.bfloat16)

    def runner(batch):
        ids = torch.tensor(_prompts(batch, args.prompt_length, cfg["vocabulary_size"]), dtype=torch.long, device=device)

        def run():
            with torch.no_grad():
                out = model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=args.new_tokens,
                    min_new_tokens=args.new_tokens,
                    do_sample=False,
                    pad_token_id=0,
                )
            assert out.shape[1] == args.prompt_length + args.new_tokens

        return run

    # No KV cache: every step recomputes the prefix, so one timed round is plenty.
    results = _time_batches({batch: runner(batch) for batch in args.hf_batch_sizes}, 1)
    params = sum(p.numel() for p in model.parameters())
    return params, next(model.parameters()).element_size(), results


WORKERS = {"keras_gpt1": worker_keras_gpt1, "keras_hub": worker_keras_hub, "transformers": worker_transformers}
DTYPES = ["float32", "bfloat16", "int8"]


def measure(library, dtype, quick, prompt_length, new_tokens, repeats, batch_sizes, hf_batch_sizes, torch_threads=None):
    """One library's greedy generation in one weight type, in a worker: parameters, bytes per
    parameter, and per batch size the first call's and each timed round's seconds."""
    settings = argparse.Namespace(**locals())
    if torch_threads and (library == "transformers" or os.environ.get("KERAS_BACKEND") == "torch"):
        import torch

        torch.set_num_threads(torch_threads)
    params, bytes_per_param, results = WORKERS[library](config(quick), settings)
    return dict(params=params, bytes_per_param=bytes_per_param, results=results)


# === Driver ===


def spawn(worker, backend, dtype, args):
    """One library's result from its own worker, or None (the reason on stderr) if it failed."""
    settings = dict(
        library=worker,
        dtype=dtype,
        quick=args.quick,
        prompt_length=args.prompt_length,
        new_tokens=args.new_tokens,
        repeats=args.repeats,
        batch_sizes=args.batch_sizes,
        hf_batch_sizes=args.hf_batch_sizes,
        torch_threads=args.torch_threads,
    )
    start = time.perf_counter()
    try:
        data = harness.run(
            measure, settings, backend=backend, timeout=args.timeout, label=f"{worker} ({backend}, {dtype})"
        )
    except harness.WorkerError as e:
        sys.stderr.write(f"{e}\n")
        return None
    data["wall"] = time.perf_counter() - start
    # Progress as it comes, so a long run's finished parts are not lost.
    summary = ", ".join(
        f"batch {r['batch']}: {r['batch'] * args.new_tokens / r['seconds']:.1f} tok/s" for r in data["results"]
    )
    sys.stderr.write(f"[{worker} ({backend}, {dtype})] {summary} (wall {data['wall']:.0f} s)\n")
    sys.stderr.flush()
    return data


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.generate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny config, 8+8 tokens: a smoke run")
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument(
        "--hf-batch-sizes",
        nargs="+",
        type=int,
        default=None,
        help="transformers batch sizes (default: same as --batch-sizes)",
    )
    parser.add_argument("--prompt-length", type=int, default=None)
    parser.add_argument("--new-tokens", type=int, default=None)
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="timed rounds after the first call; each round runs every batch size once "
        "(transformers: one timed run); the best round is kept",
    )
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32"],
        choices=DTYPES,
        help="weights to measure, each in its own processes (int8: Keras's quantize('int8'))",
    )
    parser.add_argument("--skip-keras-hub", action="store_true")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per worker process")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads for every PyTorch worker (default: PyTorch's own)",
    )
    parser.add_argument("--json", help="also write the results to this file (tools.bench.perf_page renders it)")
    args = parser.parse_args(argv)
    if args.prompt_length is None:
        args.prompt_length = 8 if args.quick else 32
    if args.new_tokens is None:
        args.new_tokens = 8 if args.quick else 128
    if args.hf_batch_sizes is None:
        args.hf_batch_sizes = args.batch_sizes

    gigabytes = 0.1 if args.quick else 1.0
    gpu = _gpu_bandwidth()
    bandwidth = [gpu or read_bandwidth_gbps(gigabytes)]
    load = os.getloadavg()
    rows = []  # (worker, backend, dtype, result)
    for dtype in args.dtypes:
        for backend in args.backends:
            for worker in ["keras_gpt1"] + ([] if args.skip_keras_hub else ["keras_hub"]):
                rows.append((worker, backend, dtype, spawn(worker, backend, dtype, args)))
        if not args.skip_transformers and dtype != "int8":  # its Conv1D layers have no int8 path
            rows.append(("transformers", "torch", dtype, spawn("transformers", "torch", dtype, args)))
    bandwidth.append(_gpu_bandwidth() or read_bandwidth_gbps(gigabytes))
    gbps = float(np.mean(bandwidth))

    cfg = config(args.quick)
    print(
        f"\nGreedy generation, {config_name(args.quick)} config ({cfg['num_layers']} layers, hidden "
        f"{cfg['hidden_dim']}, vocabulary {cfg['vocabulary_size']}), prompt {args.prompt_length} + "
        f"{args.new_tokens} new tokens. Memory read bandwidth measured in this run: "
        f"{', '.join(f'{b:.1f}' for b in bandwidth)} GB/s (mean {gbps:.1f} GB/s); load average at start "
        f"{load[0]:.1f} on {os.cpu_count()} CPUs"
        + (f"; PyTorch threads: {args.torch_threads}" if args.torch_threads else "")
        + ".\n"
    )
    print(
        "| library (backend) | weights | batch | tokens/s | ms per step | first call s | weights read GB/s "
        "| fraction of bandwidth |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    records = []
    table = {}
    streamed = {}  # (backend, dtype) -> keras_gpt1's streamed tokens/s at the smallest batch
    rounds = {}  # (backend, dtype, batch) -> keras_gpt1's seconds per round
    for worker, backend, dtype, data in rows:
        name = f"{worker} ({backend})"
        if data is None:
            print(f"| {name} | {dtype} | | failed | | | | |")
            continue
        weight_bytes = data["params"] * data["bytes_per_param"]
        for r in data["results"]:
            per_step = r["seconds"] / args.new_tokens
            tokens_per_s = r["batch"] * args.new_tokens / r["seconds"]
            if r.get("streamed"):
                streamed[(backend, dtype)] = tokens_per_s
                continue
            read = weight_bytes / per_step / 1e9
            table[(worker, backend, dtype, r["batch"])] = tokens_per_s
            if worker == "keras_gpt1":
                rounds[(backend, dtype, r["batch"])] = r["rounds"]
            records.append(
                dict(
                    library=worker,
                    backend=backend,
                    weights=dtype,
                    batch=r["batch"],
                    tokens_per_s=tokens_per_s,
                    ms_per_step=per_step * 1e3,
                    first_call_s=r["first"],
                    weights_gbps=read,
                    fraction_of_bandwidth=read / gbps,
                )
            )
            print(
                f"| {name} | {dtype} | {r['batch']} | {tokens_per_s:.1f} | {per_step * 1e3:.1f} | {r['first']:.1f} | "
                f"{read:.1f} | {read / gbps:.2f} |"
            )
    lines = []
    small, large = min(args.batch_sizes), max(args.batch_sizes)

    def best(worker, dtypes):
        found = [
            (v, f"{k[1]}, {k[2]}") for k, v in table.items() if k[0] == worker and k[2] in dtypes and k[3] == small
        ]
        return max(found, default=None)

    comparisons = [[dtype] for dtype in args.dtypes] + ([args.dtypes] if len(args.dtypes) > 1 else [])
    for dtypes in comparisons:
        ours, hub = best("keras_gpt1", dtypes), best("keras_hub", dtypes)
        if ours and hub:
            which = dtypes[0] if len(dtypes) == 1 else "any weights"
            lines.append(
                f"batch {small}, {which}: best keras_gpt1 ({ours[1]}) {ours[0]:.1f} tok/s vs best KerasHub "
                f"({hub[1]}) {hub[0]:.1f} tok/s = {ours[0] / hub[0]:.2f}x"
            )
    if large != small:
        for dtype in args.dtypes:
            for backend in args.backends:
                pair = [table.get(("keras_gpt1", backend, dtype, b)) for b in (small, large)]
                if None not in pair:
                    # Round by round (the batch sizes alternate), how much the ratio moves with the host.
                    per_round = [
                        large * a / (small * b)
                        for a, b in zip(rounds[(backend, dtype, small)], rounds[(backend, dtype, large)])
                    ]
                    lines.append(
                        f"keras_gpt1 ({backend}, {dtype}): batch {large} / batch {small} tokens/s = "
                        f"{pair[1] / pair[0]:.2f}x (best rounds); round by round: median "
                        f"{np.median(per_round):.2f}x, {min(per_round):.2f}-{max(per_round):.2f}x"
                    )
    for (backend, dtype), rate in streamed.items():
        plain = table.get(("keras_gpt1", backend, dtype, small))
        if plain:
            lines.append(
                f"keras_gpt1 ({backend}, {dtype}): streamed / unstreamed tokens/s at batch {small} = "
                f"{rate / plain:.2f}x ({rate:.1f} against {plain:.1f})"
            )
    print_summary(lines)
    if args.json:
        streams = [
            dict(
                backend=b,
                weights=d,
                batch=small,
                streamed_tokens_per_s=rate,
                ratio=rate / table[("keras_gpt1", b, d, small)],
            )
            for (b, d), rate in streamed.items()
            if ("keras_gpt1", b, d, small) in table
        ]
        settings = dict(
            prompt_length=args.prompt_length,
            new_tokens=args.new_tokens,
            repeats=args.repeats,
            bandwidth_gbps=gbps,
            streaming=streams,
        )
        write_results(args.json, "generate", args.quick, settings, [], records, argv, lines)
    return 0 if all(data is not None for *_, data in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
