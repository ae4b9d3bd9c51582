"""Peak memory and time of `keras-gpt1 convert` on GPT-1's 117M shapes, per Keras backend.

A randomly initialised `transformers` `OpenAIGPTLMHeadModel` with OpenAIGPTConfig's defaults
(the 117M model: 116,534,784 float32 parameters, 466 MB) is saved with `save_pretrained` into a
temporary directory (`--format bin` writes `pytorch_model.bin` with `torch.save` instead; or pass
`--checkpoint DIR`). Each backend and direction then runs in a fresh subprocess that

1. imports keras_gpt1 and its converter, and warms up on a tiny model: builds `gpt1_tiny`,
   saves it as a preset and converts a tiny Hugging Face checkpoint both ways (so that every
   library the conversion touches -- safetensors, h5py, KerasHub's saver -- is loaded);
2. reads its resident memory (`VmRSS`): the **baseline**;
3. converts the 117M checkpoint (`convert_hf_to_preset`, or for `to-hf` `convert_preset_to_hf`
   of a preset converted beforehand), timing the call;
4. reads its peak resident memory (`ru_maxrss`) and reports

       copies = (ru_maxrss − baseline) / weight bytes

   i.e. how many copies of the weights the conversion held at its peak on top of the warmed-up
   process. `ru_maxrss` covers the whole process life; the baseline's own peak is printed too,
   to show that it was lower.

Each measurement is a worker of `tools.bench.harness`.

Usage (from the repository root):
    python -m tools.bench.convert_memory                    # both directions, three backends
    python -m tools.bench.convert_memory --backends jax --directions from-hf
    python -m tools.bench.convert_memory --format bin       # from pytorch_model.bin
    python -m tools.bench.convert_memory --quick            # tiny shapes: a smoke run
"""

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

from tools.bench import harness
from tools.bench.ceilings import machine_summary

FULL = {}  # OpenAIGPTConfig's defaults are GPT-1's 117M shapes.
TINY = dict(vocab_size=1000, n_embd=64, n_layer=2, n_head=2, n_positions=64)
WARM_UP = dict(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=8)


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status (this tool needs Linux)")


def write_checkpoint(directory, shapes, fmt="safetensors"):
    """A random `OpenAIGPTLMHeadModel` saved in `directory`; returns its weight bytes."""
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(**shapes))
    model.save_pretrained(directory)
    if fmt == "bin":  # transformers 5 writes safetensors only: write the pickle by hand
        os.remove(os.path.join(directory, "model.safetensors"))
        torch.save(model.state_dict(), os.path.join(directory, "pytorch_model.bin"))
    return sum(p.numel() * p.element_size() for p in model.parameters())


def measure(direction, checkpoint, preset):
    """One conversion in a worker (KERAS_BACKEND set by the driver): its memory and time."""
    import keras

    from keras_gpt1.convert import convert_hf_to_preset, convert_preset_to_hf
    from keras_gpt1.models import GPT1Backbone

    scratch = tempfile.mkdtemp(prefix="convert-memory-")
    try:
        GPT1Backbone.from_preset("gpt1_tiny", load_weights=False).save_to_preset(os.path.join(scratch, "tiny"))
        write_checkpoint(os.path.join(scratch, "warm_hf"), WARM_UP)
        convert_hf_to_preset(os.path.join(scratch, "warm_hf"), os.path.join(scratch, "warm_preset"))
        convert_preset_to_hf(os.path.join(scratch, "warm_preset"), os.path.join(scratch, "warm_hf_again"))
        baseline = _rss_bytes()
        baseline_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        start = time.perf_counter()
        if direction == "from-hf":
            convert_hf_to_preset(checkpoint, os.path.join(scratch, "preset"))
        else:
            convert_preset_to_hf(preset, os.path.join(scratch, "hf"))
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dict(backend=keras.backend.backend(), direction=direction, baseline=baseline,
                baseline_peak=baseline_peak, peak=peak, seconds=seconds)  # fmt: skip


def convert_to_preset(checkpoint, preset):
    """The preset that `to-hf` converts back, made in a worker of its own."""
    from keras_gpt1.convert import convert_hf_to_preset

    convert_hf_to_preset(checkpoint, preset)
    return {}


def spawn(backend, direction, checkpoint, preset, timeout):
    """One measurement from its own worker, or None (the reason on stderr) if it failed."""
    settings = dict(direction=direction, checkpoint=checkpoint, preset=preset)
    try:
        return harness.run(measure, settings, backend=backend, timeout=timeout, label=f"{backend} {direction}")
    except harness.WorkerError as e:
        sys.stderr.write(f"{e}\n")
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.convert_memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--directions", nargs="+", choices=["from-hf", "to-hf"], default=["from-hf", "to-hf"])
    parser.add_argument("--format", choices=["safetensors", "bin"], default="safetensors")
    parser.add_argument("--checkpoint", help="an OpenAIGPTLMHeadModel directory (default: a random 117M one)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes instead of 117M (smoke run)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per worker process")
    args = parser.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="convert-memory-")
    try:
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = os.path.join(scratch, "hf")
            weight_bytes = write_checkpoint(checkpoint, TINY if args.quick else FULL, args.format)
        else:
            config = json.load(open(os.path.join(checkpoint, "config.json")))
            d, n, v, p = (config.get(k, default) for k, default in
                          (("n_embd", 768), ("n_layer", 12), ("vocab_size", 40478), ("n_positions", 512)))  # fmt: skip
            weight_bytes = 4 * ((v + p) * d + n * (12 * d * d + 13 * d))
        preset = os.path.join(scratch, "preset")
        if "to-hf" in args.directions:  # the preset converted back, made in a process of its own
            harness.run(convert_to_preset, dict(checkpoint=checkpoint, preset=preset))
        print(f"machine: {machine_summary()}")
        print(f"checkpoint: {checkpoint} ({args.format}), weights {weight_bytes / 1e6:.0f} MB")
        print("| backend | direction | baseline RSS | baseline's own peak | peak RSS | copies of the weights | time |")
        print("|---|---|---|---|---|---|---|")
        for backend in args.backends:
            for direction in args.directions:
                r = spawn(backend, direction, checkpoint, preset, args.timeout)
                if r is None:
                    continue
                copies = (r["peak"] - r["baseline"]) / weight_bytes
                mib = 2**20
                print(f"| {backend} | {direction} | {r['baseline'] / mib:.0f} MiB | {r['baseline_peak'] / mib:.0f} MiB "
                      f"| {r['peak'] / mib:.0f} MiB | {copies:.2f} | {r['seconds']:.1f} s |", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
