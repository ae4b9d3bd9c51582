"""Where the exported decode step's time goes: the SavedModel's decode step (`ServingEngine`,
117M, random weights) timed in a TensorFlow graph loop, whole and with one part at a time
replaced by a no-op (attention, LayerNorm, the cache write, GELU), and its weight products
alone. The differences say what each part costs per step; `docs/export.md` ("What limits batch
1") quotes them. A diagnostic for work on the serving graph, not a benchmark against a peer:
`python -m tools.bench.benchmark serve` is that.

Usage (from the repository root):
    python -m tools.bench.profile_serving_step                 # batch 1, 20 steps at cache position 40
    python -m tools.bench.profile_serving_step --batch 8 --quick
"""

import argparse
import contextlib
import os
import time

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_gpt1.export.decode_step as decode_step  # noqa: E402
from keras_gpt1 import GPT1Backbone, GPT1CausalLM  # noqa: E402
from keras_gpt1.export.tensors import backend_value  # noqa: E402
from keras_gpt1.export.token_table import TransposedTokenTable  # noqa: E402

CONFIGS = {
    "117M": dict(vocabulary_size=40478, num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072),
    "tiny": dict(vocabulary_size=1000, num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=256),
}


@contextlib.contextmanager
def replaced(owner, name, value):
    """`owner.name` is `value` inside the block."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def ms_per_step(make_loop, args, steps, repeats):
    loop = make_loop()
    np.asarray(loop(*args))  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(loop(*args))
        times.append(time.perf_counter() - start)
    return 1000 * min(times) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.profile_serving_step",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--position", type=int, default=40, help="cache position of the first timed step")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny config, 2 repeats: a smoke run")
    args = parser.parse_args(argv)
    tf.get_logger().setLevel("ERROR")  # each variant traces the loop anew, on purpose
    config = CONFIGS["tiny" if args.quick else "117M"]
    repeats = 2 if args.quick else args.repeats
    lm = GPT1CausalLM(GPT1Backbone(**config, max_sequence_length=512, dropout=0.0))
    engine = decode_step.make_serving_engine(lm, TransposedTokenTable(lm))
    assert isinstance(engine, decode_step.ServingEngine)
    batch, length, first = args.batch, args.position + args.steps + 1, args.position
    cache = lm.backbone.empty_cache(batch, length)
    ids = tf.fill([batch], 5)

    def step_loop():
        def body(i, ids, cache):
            logits, cache = engine.step(ids, cache, i)
            return i + 1, tf.cast(tf.argmax(logits, -1), tf.int32), cache

        end = first + args.steps
        return tf.function(
            lambda ids, cache: tf.while_loop(lambda i, *_: i < end, body, (first, ids, cache))[1], autograph=False
        )

    def products_loop():
        kernels = [
            backend_value(layer.kernel)
            for block in engine.blocks
            for layer in (block["c_attn"], block["attn_proj"], block["c_fc"], block["c_proj"])
        ]

        def body(i, x):
            total = tf.reduce_sum(tf.matmul(x, engine.token_table.table)[:, :1])
            for kernel in kernels:  # each product reads its whole kernel; its rows feed the sum
                total += tf.reduce_sum(tf.matmul(tf.ones([batch, kernel.shape[0]]), kernel)[:, :1])
            return i + 1, x + 0 * total  # keeps every product live

        x = tf.ones([batch, config["hidden_dim"]])
        fn = tf.function(lambda x: tf.while_loop(lambda i, _: i < args.steps, body, (0, x))[1], autograph=False)
        return lambda: fn(x)

    no_ops = {
        "attention": (decode_step, "one_query_attention", lambda query, key, value, mask, scale: query),
        "LayerNorm": (decode_step, "_layer_norm", lambda layer, x: x),
        "cache write": (tf.raw_ops, "TensorStridedSliceUpdate", lambda input, begin, end, strides, value: input),
        "GELU": (tf.nn, "gelu", lambda x, approximate: x),
    }
    print(
        f"config {'tiny' if args.quick else '117M'}, batch {batch}, {args.steps} steps from position {first}, "
        f"best of {repeats}"
    )
    whole = ms_per_step(step_loop, (ids, cache), args.steps, repeats)
    print(f"whole step: {whole:.2f} ms")
    for part, (owner, name, stub) in no_ops.items():
        with replaced(owner, name, stub):
            without = ms_per_step(step_loop, (ids, cache), args.steps, repeats)
        print(f"{part}: {whole - without:.2f} ms (step without it {without:.2f} ms)")
    products = ms_per_step(products_loop, (), args.steps, repeats)
    print(f"weight products alone: {products:.2f} ms ({products / whole:.0%} of the step)")


if __name__ == "__main__":
    main()
