"""Training throughput, memory and MFU: keras_gpt1 against KerasHub and transformers.

    python -m tools.bench.benchmark train                       # the performance page's table
    python -m tools.bench.benchmark train --quick               # tiny config smoke run (CI)
    python -m tools.bench.benchmark train --backends tensorflow --policies float32 mixed_bfloat16 \\
        --jit true false --shapes 4x256 --rounds 3
    python -m tools.bench.benchmark train --shapes 8x512 --peers --head-chunk-size 1024 --rematerialize
    python -m tools.bench.benchmark train --shapes 4x256 --levers shipped keras_loss sgd no_dropout \\
        einsum_attention split_qkv         # one lever changed at a time, see LEVERS

Each contender runs its training step loop in its own worker process (`tools.bench.harness`: one
backend per process, and the worker's peak resident memory is its own `ru_maxrss`; on a GPU, its
framework's peak GPU memory too):

- keras_gpt1: `GPT1CausalLM.from_preset("gpt1", load_weights=False, dtype=policy)` compiled with
  the paper's optimizer and schedule (`create_optimizer(WarmupCosine(...))`), `NextTokenLoss` and
  the default perplexity and accuracy metrics, on each requested backend, policy and
  `jit_compile` (with `--head-chunk-size N` / `--rematerialize`, its memory options);
- KerasHub: `GPT2Backbone` + `GPT2CausalLM` with GPT-1's dimensions (vocabulary 40,478, 12
  layers, 12 heads, 768/3072, context 512), AdamW with the same hyperparameters and warmup-cosine
  schedule, sparse cross-entropy from logits and its default accuracy metric, on the same backends
  and policies (its `jit_compile` left at Keras's default);
- transformers: `OpenAIGPTLMHeadModel` (PyTorch eager), `torch.optim.AdamW`, warmup-cosine
  `LambdaLR`, global-norm clipping 1.0, loss from `labels`, in each policy (mixed_bfloat16 under
  `torch.autocast`); "vs transformers" compares within one policy.

All use dropout 0.1 in training mode and the same random token batch. Each process runs
`--warmup` untimed steps (the first compiles; its time is reported as "first step"), then
`--steps` timed steps, each closed by reading the loss back. Contenders run in rounds whose order
alternates (A B C, then C B A, ...), so that background load drifts over all of them alike; the
table shows the median step time over all timed steps of all rounds.

`--levers` runs keras_gpt1 once per lever, each changing one thing from the shipped training
step through the library's public options (`LEVERS` says what), and prints a second table with
each lever's tokens/s against the shipped step's in the same run. With `no_dropout` among them,
KerasHub also runs with dropout 0.

The machine's ceilings (matmul GFLOP/s in fp32 and bf16 through TensorFlow and PyTorch, memory
read GB/s) are measured at the start and at the end of the run (`tools.bench.ceilings`);
model-FLOPs utilisation (MFU) uses nanoGPT's count,

    FLOPs per token = 6 N + 12 L d T      (N: parameters without position embeddings,
                                            L layers, d model width, T sequence length)

divided by the best dense-matmul rate measured in the run (the higher of fp32 and bf16).
"""

import argparse
import os
import resource
import statistics
import sys
import time

from tools.bench import harness
from tools.bench.ceilings import format_ceilings, machine_summary, measure_ceilings_subprocess
from tools.bench.configs import config, config_name, openai_gpt_arguments
from tools.bench.results import write_results

PEAK_LEARNING_RATE, WARMUP_STEPS, TOTAL_STEPS = 2.5e-4, 2000, 100_000
TRAIN_COLUMNS = (
    "contender",
    "backend",
    "policy",
    "jit",
    "batch x seq",
    "tokens/s",
    "step s",
    "first step s",
    "vs KerasHub",
    "vs transformers",
    "MFU",
    "peak RSS GiB",
    "peak GPU GiB",
)

# One change each from the shipped training step, to measure what each is worth: what it changes,
# and the GPT1Backbone options it sets (the loss and optimizer levers change `compile` instead).
LEVERS = {
    "shipped": ("the training step as shipped", {}),
    "keras_loss": ("Keras's SparseCategoricalCrossentropy(from_logits=True) instead of NextTokenLoss", {}),
    "sgd": ("plain SGD instead of AdamW with clipping and the schedule (the gap is the update's cost)", {}),
    "no_dropout": (
        "dropout 0: attention through ops.dot_product_attention, no random numbers drawn",
        {"dropout": 0.0},
    ),
    "einsum_attention": (
        "dropout 0, attention op by op (einsum + softmax, the path dropout takes): fused_attention=False",
        {"dropout": 0.0, "fused_attention": False},
    ),
    "split_qkv": (
        "q, k and v as three matmuls instead of the fused c_attn: fused_qkv_matmul=False",
        {"fused_qkv_matmul": False},
    ),
}


def flops_per_token(cfg, seq_len):
    """nanoGPT's training FLOPs per token: 6 N + 12 L d T (N without position embeddings)."""
    d, L, V, F = cfg["hidden_dim"], cfg["num_layers"], cfg["vocabulary_size"], cfg["intermediate_dim"]
    per_layer = 4 * d * d + 4 * d + 2 * d * F + F + d + 4 * d  # attention, MLP, two LayerNorms
    n = V * d + L * per_layer
    return 6 * n + 12 * L * d * seq_len


# === Workers: each runs in its own process (tools.bench.harness) ===


def _batch(cfg, batch, seq, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg["vocabulary_size"], size=(batch, seq + 1)).astype("int32")
    return ids[:, :-1], ids[:, 1:], np.ones((batch, seq), "int32")


def _jit_arg(jit):
    return {"true": True, "false": False, "auto": "auto"}[jit]


def _train_keras(model, x, y, mask, run):
    """Times `train_on_batch` (the same compiled step as `fit`); the returned loss is a Python
    float, so every step is finished when the clock stops (JAX dispatches asynchronously)."""
    times = []
    for step in range(run.warmup + run.steps):
        start = time.perf_counter()
        loss = model.train_on_batch(x, y, sample_weight=mask, return_dict=True)["loss"]
        times.append(time.perf_counter() - start)
        if step == 0 and not (float(loss) == float(loss)):
            raise RuntimeError(f"loss is {loss} after the first step")
    return times, float(loss)


def backbone_options(lever, rematerialize=False):
    """The GPT1Backbone options keras_gpt1 trains with under `lever`."""
    return dict({"dropout": 0.1, "rematerialize": rematerialize}, **LEVERS[lever][1])


def _keras_gpt1(cfg, run):
    if run.rematerialize:
        # As a user would (and `keras-gpt1 pretrain --rematerialize` does): before JAX starts, so
        # that XLA on a CPU keeps the recomputation apart. A no-op for the other backends.
        from keras_gpt1.layers import keep_rematerialization_on_jax_cpu

        keep_rematerialization_on_jax_cpu()
    import keras

    from keras_gpt1 import GPT1Backbone, GPT1CausalLM
    from keras_gpt1.training import WarmupCosine, create_optimizer

    keras.utils.set_random_seed(0)
    policy = None if run.policy == "float32" else run.policy
    options = backbone_options(run.lever, run.rematerialize)
    if run.quick:
        lm = GPT1CausalLM(GPT1Backbone(**cfg, dtype=policy, **options))
    else:
        lm = GPT1CausalLM.from_preset("gpt1", load_weights=False, dtype=policy, **options)
    if run.lever == "sgd":
        optimizer = keras.optimizers.SGD(PEAK_LEARNING_RATE)
    else:
        optimizer = create_optimizer(WarmupCosine(PEAK_LEARNING_RATE, WARMUP_STEPS, TOTAL_STEPS))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True) if run.lever == "keras_loss" else "auto"
    lm.compile(optimizer=optimizer, loss=loss, jit_compile=_jit_arg(run.jit), head_chunk_size=run.head_chunk_size)
    ids, labels, mask = _batch(cfg, run.batch, run.sequence)
    times, loss = _train_keras(lm, {"token_ids": ids, "padding_mask": mask}, labels, mask, run)
    return dict(times=times, loss=loss, params=lm.count_params())


def _keras_hub(cfg, run):
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(
        **cfg, dropout=0.0 if run.lever == "no_dropout" else 0.1, dtype=None if run.policy == "float32" else run.policy
    )
    lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, TOTAL_STEPS - WARMUP_STEPS, warmup_target=PEAK_LEARNING_RATE, warmup_steps=WARMUP_STEPS
    )
    optimizer = keras.optimizers.AdamW(
        schedule, weight_decay=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-8, global_clipnorm=1.0
    )
    kwargs = {} if run.jit == "auto" else {"jit_compile": _jit_arg(run.jit)}
    lm.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), **kwargs)
    ids, labels, mask = _batch(cfg, run.batch, run.sequence)
    times, loss = _train_keras(lm, {"token_ids": ids, "padding_mask": mask}, labels, mask, run)
    return dict(times=times, loss=loss, params=lm.count_params())


def _transformers(cfg, run):
    import math

    import torch
    from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel

    torch.manual_seed(0)
    model = OpenAIGPTLMHeadModel(OpenAIGPTConfig(**openai_gpt_arguments(cfg))).train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=PEAK_LEARNING_RATE,
        betas=(0.9, 0.999),
        eps=1e-8,
    )

    def lr_lambda(step):
        if step < WARMUP_STEPS:
            return step / WARMUP_STEPS
        return 0.5 * (1 + math.cos(math.pi * (step - WARMUP_STEPS) / (TOTAL_STEPS - WARMUP_STEPS)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where the Keras backends run too
    model.to(device)
    ids, _, _ = _batch(cfg, run.batch, run.sequence)
    ids = torch.tensor(ids, dtype=torch.long, device=device)
    autocast = run.policy == "mixed_bfloat16"
    times = []
    for _ in range(run.warmup + run.steps):
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            loss = model(ids, labels=ids).loss  # the model shifts the labels itself
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss = float(loss)
        times.append(time.perf_counter() - start)
    return dict(times=times, loss=loss, params=sum(p.numel() for p in model.parameters()))


LIBRARIES = {"keras_gpt1": _keras_gpt1, "keras_hub": _keras_hub, "transformers": _transformers}


def peak_gpu_bytes(library):
    """The GPU memory this process's framework held at its peak, or None when it ran on a CPU.
    Only the framework the process already uses is asked (importing another would start it)."""
    if library == "transformers" or os.environ.get("KERAS_BACKEND") == "torch":
        import torch

        return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    if os.environ.get("KERAS_BACKEND") == "jax":
        import jax

        device = jax.devices()[0]
        stats = device.memory_stats() if device.platform == "gpu" else None
        return (stats or {}).get("peak_bytes_in_use")
    return None


def measure(
    library,
    quick,
    policy,
    jit,
    lever,
    batch,
    sequence,
    steps,
    warmup,
    head_chunk_size=None,
    rematerialize=False,
):
    """One contender's training steps, in a worker: step times, last loss, parameters, peak
    memory and the load average around the run."""
    run = argparse.Namespace(**{k: v for k, v in locals().items() if k != "library"})
    load = os.getloadavg()[0]
    result = LIBRARIES[library](config(quick), run)
    result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    result["peak_gpu"] = peak_gpu_bytes(library)
    result["load"] = (load + os.getloadavg()[0]) / 2
    return result


# === Driver ===


def _contender_name(library, lever, args):
    """The table's name for a contender, with keras_gpt1's memory options and the lever spelled out."""
    options = [lever] if lever != "shipped" else []
    if library == "keras_gpt1":
        options += [f"head chunks of {args.head_chunk_size}"] if args.head_chunk_size else []
        options += ["rematerialized"] if args.rematerialize else []
    return ", ".join([library] + options)


def spawn(contender, batch, seq, args):
    """One contender's result from its own worker, or None (the reason on stderr) if it failed."""
    library, backend, policy, jit, lever = contender
    keras_gpt1 = library == "keras_gpt1"
    settings = dict(
        library=library,
        quick=args.quick,
        policy=policy,
        jit=jit,
        lever=lever,
        batch=batch,
        sequence=seq,
        steps=args.steps,
        warmup=args.warmup,
        head_chunk_size=args.head_chunk_size if keras_gpt1 else None,
        rematerialize=args.rematerialize and keras_gpt1,
    )
    label = f"{library} ({backend}, {policy}, jit {jit}, {lever})"
    try:
        return harness.run(measure, settings, backend=backend, timeout=args.timeout, label=label)
    except harness.WorkerError as e:
        sys.stderr.write(f"{e}\n")
        return None


def _contenders(args):
    """(library, backend, policy, jit, lever) tuples; KerasHub takes only the dropout lever."""
    contenders = []
    hub_levers = ["shipped"] + (["no_dropout"] if "no_dropout" in args.levers else [])
    for backend in args.backends:
        for policy in args.policies:
            for jit in args.jit:
                for lever in args.levers:
                    contenders.append(("keras_gpt1", backend, policy, jit, lever))
            if "keras_hub" in args.peers:
                for lever in hub_levers:
                    contenders.append(("keras_hub", backend, policy, "auto", lever))
    if "transformers" in args.peers:
        for policy in args.policies:  # mixed_bfloat16: under torch.autocast
            contenders.append(("transformers", "torch", policy, "eager", "shipped"))
    return contenders


def _gib(nbytes):
    return f"{nbytes / 2**30:.2f}" if nbytes else "-"


def _fmt_ratio(ours, peer):
    return f"{ours / peer:.2f}x" if ours and peer else "-"


def _measure_rounds(contenders, shapes, args):
    """{(contender, shape): [worker results]} over `args.rounds` rounds of alternating order."""
    results = {}
    for round_index in range(args.rounds):
        order = contenders if round_index % 2 == 0 else contenders[::-1]
        for batch, seq in shapes:
            for contender in order:
                data = spawn(contender, batch, seq, args)
                label = " ".join(contender)
                if data is None:
                    print(f"  round {round_index + 1}: {label} {batch}x{seq}: failed", flush=True)
                    continue
                timed = data["times"][args.warmup :]
                print(
                    f"  round {round_index + 1}: {label} {batch}x{seq}: median step "
                    f"{statistics.median(timed):.3f} s, first {data['times'][0]:.1f} s, "
                    f"peak RSS {data['peak_rss'] / 2**30:.2f} GiB, peak GPU {_gib(data.get('peak_gpu'))} GiB, "
                    f"load {data['load']:.1f}",
                    flush=True,
                )
                results.setdefault((contender, (batch, seq)), []).append(data)
    return results


def _table(contenders, shapes, results, cfg, args):
    """(contender, shape, row, KerasHub tokens/s, transformers tokens/s, FLOPs per token) per row."""
    table = []
    for batch, seq in shapes:
        rows = {}
        for contender in contenders:
            runs = results.get((contender, (batch, seq)))
            if not runs:
                rows[contender] = None
                continue
            timed = [t for r in runs for t in r["times"][args.warmup :]]
            step = statistics.median(timed)
            rows[contender] = dict(
                step=step,
                tokens=batch * seq / step,
                first=statistics.median(r["times"][0] for r in runs),
                rss=max(r["peak_rss"] for r in runs),
                load=statistics.mean(r["load"] for r in runs),
                gpu=max((r.get("peak_gpu") or 0 for r in runs), default=0) or None,
            )
        hub_best = {}  # per backend and policy, KerasHub as shipped
        for (library, backend, policy, _, lever), row in rows.items():
            if library == "keras_hub" and lever == "shipped" and row:
                hub_best[(backend, policy)] = row["tokens"]
        hf = {
            policy: row["tokens"] for (library, _, policy, *_), row in rows.items() if library == "transformers" and row
        }
        fpt = flops_per_token(cfg, seq)
        for contender, row in rows.items():
            table.append((contender, (batch, seq), row, hub_best.get(contender[1:3]), hf.get(contender[2]), fpt))
    return table


def _print_table(table, shapes, cfg, peak_gflops, args):
    shape_desc = ", ".join(f"{b} x {s}" for b, s in shapes)
    print(
        f"\nTraining throughput, {config_name(args.quick)} config (vocabulary {cfg['vocabulary_size']}, "
        f"{cfg['num_layers']} layers, width {cfg['hidden_dim']}), batch x sequence {shape_desc}; median of "
        f"{args.steps} timed steps x {args.rounds} round(s) after {args.warmup} warm-up step(s). MFU against "
        f"{peak_gflops:.0f} GFLOP/s, the best matmul rate measured in this run. "
        f'"vs KerasHub": against KerasHub on the same backend and policy; "vs transformers": against '
        f"transformers in the same policy.\n"
    )
    print("| " + " | ".join(TRAIN_COLUMNS) + " |")
    print("|" + "---|" * 2 + "---|" * 3 + "---:|" * (len(TRAIN_COLUMNS) - 5))
    for (library, backend, policy, jit, lever), (batch, seq), row, hub, hf, fpt in table:
        name = _contender_name(library, lever, args)
        head = f"| {name} | {backend} | {policy} | {jit} | {batch} x {seq} |"
        if row is None:
            print(head + " failed |" + " |" * (len(TRAIN_COLUMNS) - 6))
            continue
        mfu = row["tokens"] * fpt / (peak_gflops * 1e9) if peak_gflops else 0.0
        vs_hub = "-" if library == "keras_hub" else _fmt_ratio(row["tokens"], hub)
        vs_hf = "-" if library == "transformers" else _fmt_ratio(row["tokens"], hf)
        print(
            f"{head} {row['tokens']:.1f} | {row['step']:.3f} | {row['first']:.1f} | {vs_hub} | {vs_hf} | "
            f"{100 * mfu:.1f}% | {row['rss'] / 2**30:.2f} | {_gib(row['gpu'])} |"
        )


def _records(table, peak_gflops, args):
    """The table's rows as the result file's records."""
    records = []
    for (library, backend, policy, jit, lever), (batch, seq), row, hub, hf, fpt in table:
        record = dict(
            contender=_contender_name(library, lever, args),
            library=library,
            backend=backend,
            policy=policy,
            jit=jit,
            lever=lever,
            batch=batch,
            sequence=seq,
            row=row,
        )
        if row:
            record.update(
                tokens_per_s=row["tokens"],
                step_s=row["step"],
                first_step_s=row["first"],
                peak_rss_gib=row["rss"] / 2**30,
                peak_gpu_gib=row["gpu"] / 2**30 if row["gpu"] else None,
                vs_keras_hub=None if library == "keras_hub" or not hub else row["tokens"] / hub,
                vs_transformers=None if library == "transformers" or not hf else row["tokens"] / hf,
                mfu=row["tokens"] * fpt / (peak_gflops * 1e9) if peak_gflops else None,
            )
        records.append(record)
    return records


def print_levers(table):
    """Each lever's tokens/s against the shipped step's (same library, backend, policy, jit, shape)."""
    rows = {(contender, shape): row for contender, shape, row, *_ in table}
    print('\nLevers, one at a time ("vs shipped": against the same library\'s shipped step in this run):\n')
    print("| lever | library | backend | policy | batch x seq | tokens/s | vs shipped | what changes |")
    print("|---|---|---|---|---|---:|---:|---|")
    for (library, backend, policy, jit, lever), (batch, seq) in rows:
        if library == "transformers":
            continue
        row = rows[((library, backend, policy, jit, lever), (batch, seq))]
        shipped = rows.get(((library, backend, policy, jit, "shipped"), (batch, seq)))
        tokens = f"{row['tokens']:.1f}" if row else "failed"
        vs = "-" if lever == "shipped" or not row or not shipped else _fmt_ratio(row["tokens"], shipped["tokens"])
        print(
            f"| {lever} | {library} | {backend} | {policy} | {batch} x {seq} | {tokens} | {vs} | {LEVERS[lever][0]} |"
        )


def run_training(args, argv):
    cfg = config(args.quick)
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes]
    contenders = _contenders(args)
    libraries = [
        lib
        for lib, used in (
            ("tensorflow", {"tensorflow", "jax"} & set(args.backends)),
            ("torch", "torch" in args.backends or "transformers" in args.peers),
        )
        if used
    ]
    print(f"machine: {machine_summary()}", flush=True)
    ceilings = [measure_ceilings_subprocess(quick=args.quick, libraries=libraries)]
    print(f"ceilings at start: {format_ceilings(ceilings[0])}", flush=True)
    results = _measure_rounds(contenders, shapes, args)
    ceilings.append(measure_ceilings_subprocess(quick=args.quick, libraries=libraries))
    print(f"ceilings at end:   {format_ceilings(ceilings[-1])}", flush=True)
    measured = [c for c in ceilings if c]
    peak_gflops = max((max(c.get("fp32", 0), c.get("bf16", 0)) for c in measured), default=0.0)

    table = _table(contenders, shapes, results, cfg, args)
    _print_table(table, shapes, cfg, peak_gflops, args)
    if len(args.levers) > 1:
        print_levers(table)
    loads = [row["load"] for _, _, row, *_ in table if row]
    if loads:
        print(f"\nload average during the timed runs: {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores")
    if args.json:
        settings = dict(steps=args.steps, rounds=args.rounds, warmup=args.warmup, peak_gflops=peak_gflops)
        write_results(args.json, "train", args.quick, settings, ceilings, _records(table, peak_gflops, args), argv)
    return 0 if all(row for _, _, row, *_ in table) else 1


def parser():
    train = argparse.ArgumentParser(
        prog="python -m tools.bench.benchmark train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--quick", action="store_true", help="tiny config, 2 timed steps, TensorFlow only: a smoke run")
    train.add_argument("--backends", nargs="+", choices=["tensorflow", "jax", "torch"])
    train.add_argument("--policies", nargs="+", choices=["float32", "mixed_bfloat16"], default=["float32"])
    train.add_argument(
        "--jit",
        nargs="+",
        choices=["auto", "true", "false"],
        default=["auto"],
        help="keras_gpt1 jit_compile settings to measure (KerasHub keeps Keras's default)",
    )
    train.add_argument("--shapes", nargs="+", help="batch x sequence, e.g. 4x256 8x512")
    train.add_argument(
        "--peers", nargs="*", choices=["keras_hub", "transformers"], default=["keras_hub", "transformers"]
    )
    train.add_argument("--steps", type=int, help="timed steps per process")
    train.add_argument("--warmup", type=int, help="untimed steps per process (the first compiles)")
    train.add_argument("--rounds", type=int, help="alternating rounds over all contenders")
    train.add_argument("--timeout", type=int, default=1800, help="seconds per worker process")
    train.add_argument("--json", help="also write the results to this file (tools.bench.perf_page renders it)")
    train.add_argument(
        "--head-chunk-size",
        type=int,
        default=None,
        help="keras_gpt1 trains with compile(head_chunk_size=N): no full logits (less memory)",
    )
    train.add_argument(
        "--rematerialize",
        action="store_true",
        help="keras_gpt1 trains with GPT1Backbone(rematerialize=True): activations recomputed",
    )
    train.add_argument(
        "--levers",
        nargs="+",
        choices=list(LEVERS),
        default=["shipped"],
        help="keras_gpt1 variants, each one change from the shipped step: "
        + "; ".join(f"{name}: {what}" for name, (what, _) in LEVERS.items()),
    )
    return train


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    if args.backends is None:
        args.backends = ["tensorflow"] if args.quick else ["tensorflow", "jax", "torch"]
    if args.shapes is None:
        args.shapes = ["2x16"] if args.quick else ["4x256", "8x512"]
    if args.steps is None:
        args.steps = 2 if args.quick else 4
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    if len(args.levers) > 1 and "shipped" not in args.levers:
        args.levers.insert(0, "shipped")  # what every lever is measured against
    return run_training(args, argv)


if __name__ == "__main__":
    sys.exit(main())
