"""The decode loop's while-loop: the hand-made per-backend dispatch against `keras.ops.while_loop`.

Runs `DecodeLoop.run` (prefill and the whole greedy loop, compiled as `generate_ids` compiles it:
inside `jax.jit`, inside `tf.function(jit_compile=True)`, eager on PyTorch) with each while-loop,
batch 1, a 32-token prompt and 64 new tokens, random weights, in the tiny configuration and with
GPT-1's 117M dimensions. The two variants are timed alternately in one process (median of
`--repeats` calls each) and must produce the same tokens. `--compare-programs` instead checks
whether the two compile to the same program (JAX: the StableHLO text; TensorFlow: the traced
graph's ops and its loop functions). One backend per process:

    KERAS_BACKEND=jax python -m tools.bench.while_loop --repeats 5
    KERAS_BACKEND=tensorflow python -m tools.bench.while_loop --compare-programs
"""

import argparse
import json
import time

import keras
import numpy as np

from keras_gpt1 import GPT1Backbone, GPT1CausalLM
from keras_gpt1.generation import decode_loop
from keras_gpt1.generation.compile_cache import compiled
from keras_gpt1.generation.generate import make_engine
from keras_gpt1.generation.samplers import Greedy
from tools.bench.configs import FULL, TINY

CONFIGS = {"tiny": TINY, "117M": FULL}


def hand_made_while(cond, body, state):
    """A per-backend while-loop dispatch written by hand: the alternative to `keras.ops.while_loop`."""
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        return jax.lax.while_loop(cond, body, state)
    if backend == "tensorflow":
        import tensorflow as tf

        (state,) = tf.while_loop(lambda s: cond(s), lambda s: (body(s),), (state,))
        return state
    while bool(cond(state)):
        state = body(state)
    return state


VARIANTS = {
    "hand_made": hand_made_while,
    "keras_ops": lambda cond, body, state: keras.ops.while_loop(cond, body, state),
}


def measure(config_name, prompt_length, new_tokens, repeats):
    from keras import ops

    keras.utils.set_random_seed(0)
    lm = GPT1CausalLM(GPT1Backbone(**CONFIGS[config_name]), dropout=0.0)
    vocab = lm.backbone.vocabulary_size
    prompt = np.random.default_rng(0).integers(1, vocab, size=(1, prompt_length)).astype("int32")
    total = prompt_length + new_tokens
    max_length = -(-total // 64) * 64
    tokens = np.zeros((1, max_length), "int32")
    tokens[:, :prompt_length] = prompt
    engine = make_engine(lm)
    prefill = prompt_length if engine.name == "torch" else -(-prompt_length // 16) * 16
    loop = decode_loop.DecodeLoop(engine, Greedy(), 1, max_length, prefill, False, False, vocab)
    torch = keras.config.backend() == "torch"
    args = (
        ops.convert_to_tensor(tokens),
        ops.convert_to_tensor(np.array([prompt_length], "int32")),
        prompt_length if torch else ops.convert_to_tensor(np.int32(prompt_length)),
        ops.convert_to_tensor(np.array([total], "int32")),
        0 if torch else ops.convert_to_tensor(np.int32(0)),
        None,
    )
    functions, outputs = {}, {}
    for name, variant in VARIANTS.items():
        decode_loop_while = decode_loop._while
        decode_loop._while = variant
        try:  # traced (and compiled) with this variant on the first call
            functions[name] = compiled(lm, ("bench_while", name), lambda: {"run": loop.run})["run"]
            outputs[name] = ops.convert_to_numpy(functions[name](*args)["token_ids"])
        finally:
            decode_loop._while = decode_loop_while
    np.testing.assert_array_equal(outputs["hand_made"], outputs["keras_ops"])
    times = {name: [] for name in VARIANTS}
    for _ in range(repeats):
        for name in VARIANTS:  # alternating
            start = time.perf_counter()
            ops.convert_to_numpy(functions[name](*args)["token_ids"])
            times[name].append(time.perf_counter() - start)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    return dict(
        backend=keras.config.backend(),
        config=config_name,
        batch=1,
        prompt_length=prompt_length,
        new_tokens=new_tokens,
        repeats=repeats,
        seconds=medians,
        all_seconds=times,
        keras_ops_over_hand_made=medians["keras_ops"] / medians["hand_made"],
    )


def compare_programs(config_name="tiny"):
    """Whether both variants trace to the same compiled program (JAX or TensorFlow)."""
    import re

    keras.utils.set_random_seed(0)
    lm = GPT1CausalLM(GPT1Backbone(**CONFIGS[config_name]), dropout=0.0)
    vocab = lm.backbone.vocabulary_size
    loop = decode_loop.DecodeLoop(make_engine(lm), Greedy(), 1, 128, 32, False, False, vocab)
    args = (np.zeros((1, 128), "int32"), np.array([32], "int32"), np.int32(32), np.array([96], "int32"), np.int32(0))
    programs = {}
    for name, variant in VARIANTS.items():
        decode_loop_while = decode_loop._while
        decode_loop._while = variant
        try:
            if keras.config.backend() == "jax":
                import jax

                variables = lm.variables

                def pure(values, *a):
                    with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                        return loop.run(*a, None)

                text = jax.jit(pure).lower([v.value for v in variables], *args).as_text()
                programs[name] = re.sub(r"loc\(.*?\)|#loc\d*", "", text)  # source locations differ
            else:
                import tensorflow as tf

                traced = tf.function(lambda *a: loop.run(*a, None), jit_compile=True)
                graph = traced.get_concrete_function(*[tf.constant(a) for a in args]).graph.as_graph_def()
                loops = sorted(sorted(node.op for node in f.node_def) for f in graph.library.function)
                programs[name] = (sorted(node.op for node in graph.node), loops)
        finally:
            decode_loop._while = decode_loop_while
    return dict(
        backend=keras.config.backend(), config=config_name, same_program=programs["hand_made"] == programs["keras_ops"]
    )


def main():
    parser = argparse.ArgumentParser(prog="python -m tools.bench.while_loop", description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "117M"], choices=sorted(CONFIGS))
    parser.add_argument("--prompt-length", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare-programs", action="store_true", help="compare the compiled programs, time nothing")
    args = parser.parse_args()
    if args.compare_programs:
        print(json.dumps(compare_programs()))
        return
    for name in args.configs:
        print(json.dumps(measure(name, args.prompt_length, args.new_tokens, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
