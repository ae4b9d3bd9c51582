"""The machine's ceilings, measured now: dense matmul GFLOP/s (fp32, bf16) and memory read GB/s.

Performance figures on a shared CPU drift from run to run, so every benchmark here reports its
throughput next to ceilings measured in the same run (model-FLOPs utilisation against the matmul
ceiling; bytes moved against the read bandwidth). The other benchmarks import this module:

    from tools.bench.ceilings import measure_ceilings, machine_summary
    c = measure_ceilings()            # {"tf_fp32": GFLOP/s, "tf_bf16": ..., "read_gbps": ...}

Each matmul figure is the best of a few `n x n @ n x n` products timed after a warm-up: the
TensorFlow kernels (oneDNN) are what the TensorFlow backend runs; the PyTorch figures are what the
PyTorch backend and `transformers` run (numbers differ per library on the same machine). The
bfloat16 figures are only fast where the CPU has native bf16 instructions (AVX512_BF16 or AMX);
without them the kernels convert and run slower than fp32, which is itself worth knowing.
Memory reads: numpy's sum over a large float32 array (one core).

On a machine with a CUDA GPU (seen through PyTorch) the same figures are measured on the GPU too
(`gpu_fp32`, `gpu_bf16`: a large matmul; `gpu_read_gbps`: a device-to-device copy, bytes read),
and `fp32`, `bf16` and `read_gbps` are the GPU's: that is where the models run there.

For a one-line summary, from the repository root: `python -m tools.bench.ceilings [--quick]`.
"""

import os
import platform
import subprocess
import sys
import time

import numpy as np

from tools.bench import harness

# The ceilings' keys and how tables label them.
MATMUL_LABELS = {
    "tf_fp32": "TF fp32",
    "tf_bf16": "TF bf16",
    "torch_fp32": "torch fp32",
    "torch_bf16": "torch bf16",
    "gpu_fp32": "GPU fp32",
    "gpu_bf16": "GPU bf16",
}


def cpu_flags():
    """The CPU's model name and its vector-extension flags that matter for matmuls."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return model, [f for f in wanted if f in flags]


def gpu_names():
    """The CUDA GPUs' names as `nvidia-smi` lists them ([] without one), read without starting a
    framework (the harness's driver process imports none)."""
    try:
        proc = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()] if proc.returncode == 0 else []


def machine_summary():
    """One line describing the machine and its load now (load average over 1 minute)."""
    model, flags = cpu_flags()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpus = gpu_names()
    return (
        f"{model}, {os.cpu_count()} cores, flags: {' '.join(flags) or 'none of avx2/avx512/amx'}; "
        + (f"GPU: {', '.join(gpus)}; " if gpus else "")
        + f"load average {load:.1f}"
    )


def machine_record():
    """The machine as a JSON-able dict, for result files (`tools.bench.perf_page` renders it)."""
    import datetime

    model, flags = cpu_flags()
    return dict(
        cpu=model,
        cores=os.cpu_count(),
        flags=flags,
        avx2="avx2" in flags,
        bf16=any(f in flags for f in ("avx512_bf16", "amx_bf16")),
        amx="amx_tile" in flags,
        gpus=gpu_names(),
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    )


def _best_seconds(fn, repeats, budget):
    fn()  # warm-up: kernel selection, allocation
    best, spent = float("inf"), 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
        if spent > budget:
            break
    return best


def tf_matmul_gflops(dtype="float32", n=1024, repeats=5, budget=5.0):
    """Best GFLOP/s of TensorFlow's `n x n` matmul in `dtype` (`float32` or `bfloat16`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[:1, :1], "float32")))
    # Reading back one element forces completion without timing a large copy.
    return 2 * n**3 / _best_seconds(lambda: matmul(a, b).numpy(), repeats, budget) / 1e9


def torch_matmul_gflops(dtype="float32", n=1024, repeats=5, budget=5.0):
    """Best GFLOP/s of PyTorch's `n x n` matmul in `dtype`."""
    import torch

    a = torch.randn(n, n).to(getattr(torch, dtype))
    b = torch.randn(n, n).to(getattr(torch, dtype))
    return 2 * n**3 / _best_seconds(lambda: a @ b, repeats, budget) / 1e9


def gpu_ceilings(repeats=5):
    """A CUDA GPU's matmul GFLOP/s (fp32, bf16), device-copy read GB/s and name; {} without one."""
    try:
        import torch
    except ImportError:
        return {}
    if not torch.cuda.is_available():
        return {}
    out, n = {}, 8192

    def timed(fn):
        def run():
            fn()
            torch.cuda.synchronize()

        return _best_seconds(run, repeats, budget=5.0)

    for key, dtype in (("gpu_fp32", torch.float32), ("gpu_bf16", torch.bfloat16)):
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        out[key] = 2 * n**3 / timed(lambda: a @ b) / 1e9
    source = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    out["gpu_read_gbps"] = source.numel() / timed(lambda: target.copy_(source)) / 1e9
    out["gpu_name"] = torch.cuda.get_device_name(0)
    return out


def read_bandwidth_gbps(gigabytes=1.0, repeats=3):
    """Memory read GB/s: best of `repeats` numpy sums over a `gigabytes` float32 array."""
    data = np.ones(int(gigabytes * 1e9 / 4), dtype=np.float32)
    best = _best_seconds(data.sum, repeats, budget=10.0)
    return data.nbytes / best / 1e9


def measure_ceilings(quick=False, libraries=("tensorflow", "torch")):
    """Measures the ceilings in this process; returns a dict of floats.

    Keys: `tf_fp32`, `tf_bf16`, `torch_fp32`, `torch_bf16` (GFLOP/s, for the libraries asked
    for), `fp32` / `bf16` (the best of those), `read_gbps`; with a CUDA GPU also `gpu_fp32`,
    `gpu_bf16`, `gpu_read_gbps` and `gpu_name`, and then `fp32`, `bf16`, `read_gbps` are the GPU's.
    """
    n = 256 if quick else 1024
    repeats = 2 if quick else 5
    out = {}
    if "tensorflow" in libraries:
        try:
            out["tf_fp32"] = tf_matmul_gflops("float32", n, repeats)
            out["tf_bf16"] = tf_matmul_gflops("bfloat16", n, repeats)
        except ImportError:  # e.g. a GPU machine with JAX and PyTorch only
            pass
    if "torch" in libraries:
        out["torch_fp32"] = torch_matmul_gflops("float32", n, repeats)
        # Without native bf16 PyTorch's CPU bf16 matmul is very slow: a small size suffices.
        out["torch_bf16"] = torch_matmul_gflops("bfloat16", min(n, 512), repeats, budget=2.0)
    for kind in ("fp32", "bf16"):
        values = [v for k, v in out.items() if k.endswith(kind)]
        if values:
            out[kind] = max(values)
    out["read_gbps"] = read_bandwidth_gbps(0.1 if quick else 1.0, repeats)
    gpu = {} if quick else gpu_ceilings(repeats)
    if gpu:
        out.update(gpu, fp32=gpu["gpu_fp32"], bf16=gpu["gpu_bf16"], read_gbps=gpu["gpu_read_gbps"])
    return out


def measure_ceilings_subprocess(quick=False, libraries=("tensorflow", "torch"), timeout=300):
    """`measure_ceilings` in a fresh worker process, so that the caller imports no framework (and
    its own memory peak stays clean). Returns the dict, or None (with the reason on stderr) if the
    measurement failed: a run goes on without its ceilings."""
    try:
        return harness.run(measure_ceilings, dict(quick=quick, libraries=list(libraries)), timeout=timeout)
    except harness.WorkerError as e:
        sys.stderr.write(f"ceilings not measured: {e}\n")
        return None


def format_ceilings(c):
    """A short human-readable line for a `measure_ceilings` dict."""
    if not c:
        return "ceilings: not measured"
    parts = [
        f"{label} {c[key]:.0f}" if c[key] >= 10 else f"{label} {c[key]:.1f}"
        for key, label in MATMUL_LABELS.items()
        if key in c and not key.startswith("gpu_")
    ]
    if "gpu_fp32" in c:
        parts.append(f"{c['gpu_name']} fp32 {c['gpu_fp32']:.0f}, bf16 {c['gpu_bf16']:.0f}")
    return f"matmul GFLOP/s: {', '.join(parts)}; memory read {c['read_gbps']:.1f} GB/s"


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="Measures the machine's matmul and memory ceilings.")
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds, rough figures")
    parser.add_argument("--libraries", nargs="+", default=["tensorflow", "torch"], choices=["tensorflow", "torch"])
    args = parser.parse_args(argv)
    print(machine_summary())
    print(format_ceilings(measure_ceilings(quick=args.quick, libraries=args.libraries)))


if __name__ == "__main__":
    main()
