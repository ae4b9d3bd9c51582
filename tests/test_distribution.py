"""Distributed training: data and model parallelism give single-device results.

Virtual devices must be configured before the backend starts (JAX reads XLA_FLAGS when its CPU
client is created; TensorFlow fixes its logical devices at start-up), so each backend's scenario
runs once in a subprocess: this file executed as a script. Each scenario only runs under its own
backend in the parent (the JAX one under KERAS_BACKEND=jax, ...), so the 3-backend suite pays
for each once. Quick checks of parsing and errors run in-process.
"""

import json
import os
import subprocess
import sys

import numpy as np

# Tiny, but with 4 heads so a model axis of 4 owns one head per device; dropout 0 so every
# configuration computes the same function.
CONFIG = dict(
    vocabulary_size=96,
    num_layers=1,
    num_heads=4,
    hidden_dim=32,
    intermediate_dim=64,
    max_sequence_length=16,
    dropout=0.0,
)
BATCH = 8
JAX_DEVICES = 8
TF_DEVICES = 4


# === The scenario: `KERAS_BACKEND=... python tests/test_distribution.py OUT_JSON WORKDIR` ===


def _data():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, CONFIG["vocabulary_size"], size=(3 * BATCH, 17)).astype("int32")
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((3 * BATCH, 16), "int32")}
    return x, ids[:, 1:]


def _train(dist_scope, init_weights, workdir, save_preset=None, loss=None):
    """Builds, loads `init_weights` (saving them first if absent), fits 2 epochs of 3 steps.

    Returns per-step running-mean losses, final weights and the verify report. (No `predict`:
    each would cost an XLA compilation, and equal weights already imply equal outputs.)
    """
    import keras

    from keras_gpt1 import GPT1Backbone, GPT1CausalLM

    x, y = _data()
    with dist_scope as dist:
        lm = GPT1CausalLM(GPT1Backbone(**CONFIG))
        if os.path.exists(init_weights):
            lm.load_weights(init_weights)
        else:
            lm.save_weights(init_weights)
        # Plain SGD would expose a gradient mis-scaled across replicas (Adam would hide it);
        # momentum adds per-variable optimizer slots, which must be sharded like their variables.
        lm.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.5, momentum=0.9),
            loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        losses = []
        record = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: losses.append(float(logs["loss"]))
        )
        lm.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, callbacks=[record])
        report = dist.verify(lm)
        optimizer_layouts = {}
        if dist.distribution is not None:
            for v in lm.optimizer.variables:
                if len(v.shape) >= 1:
                    optimizer_layouts[v.path] = [a for a in v.value.sharding.spec]
        if save_preset:
            lm.save_to_preset(save_preset)
        weights = [keras.ops.convert_to_numpy(w) for w in lm.weights]
    return dict(
        losses=losses,
        weights=weights,
        report=report,
        optimizer_layouts=optimizer_layouts,
    )


def _load(preset, dist_scope):
    import keras

    from keras_gpt1 import GPT1CausalLM

    with dist_scope as dist:
        lm = GPT1CausalLM.from_preset(preset)
        report = dist.verify(lm)
        weights = [keras.ops.convert_to_numpy(w) for w in lm.weights]
    return weights, report


def _error(fn):
    try:
        fn()
    except ValueError as e:
        return str(e)
    return None


def _max_diff(a, b):
    return float(max(np.max(np.abs(np.asarray(p) - np.asarray(q))) for p, q in zip(a, b)))


def _scenario(backend, out_path, workdir):
    import keras

    from keras_gpt1 import GPT1Backbone
    from keras_gpt1.distribution import (
        LAYOUT_RULES,
        configure_distribution,
        distribution_scope,
        gpt1_layout_map,
        use_virtual_cpu_devices,
    )

    assert keras.config.backend() == backend
    if backend == "tensorflow":
        use_virtual_cpu_devices(TF_DEVICES)
    init = os.path.join(workdir, "init.weights.h5")
    single_dir = os.path.join(workdir, "single_preset")
    dist_dir = os.path.join(workdir, "distributed_preset")
    result = {"device_count": len(keras.distribution.list_devices())}

    from keras_gpt1.training import NextTokenLoss

    # JAX trains with the project's own loss (what `lm.compile()` and `keras-gpt1 pretrain`
    # use). TensorFlow's main runs use Keras's cross-entropy; NextTokenLoss, which scales its
    # mean by the replica count itself, gets its own pair of runs.
    def loss():
        return NextTokenLoss() if backend == "jax" else None

    single = _train(distribution_scope("none"), init, workdir, save_preset=single_dir, loss=loss())
    runs = {"data": ("data", None)}
    if backend == "jax":
        runs["model_2x4"] = ("model", "2x4")
    # The checkpoint round trips use the most distributed run of the backend.
    checkpoint_run = "model_2x4" if backend == "jax" else "data"
    for name, (mode, mesh) in runs.items():
        scope = distribution_scope(mode, mesh, model_config=CONFIG)
        save = dist_dir if name == checkpoint_run else None
        run = _train(scope, init, workdir, save_preset=save, loss=loss())
        result[name] = dict(
            losses=run["losses"],
            single_losses=single["losses"],
            weight_diff=_max_diff(run["weights"], single["weights"]),
            report=run["report"],
            optimizer_layouts=run["optimizer_layouts"],
        )
        if name == checkpoint_run:
            distributed_weights = run["weights"]

    if backend == "tensorflow":
        from keras_gpt1.distribution import scale_loss_for_replicas, unscale_loss_for_replicas

        with distribution_scope("data") as dist:
            half = dist.strategy.run(lambda: scale_loss_for_replicas(keras.ops.ones(())))
            per_replica = dist.strategy.experimental_local_results(half)
            result["scaled_one"] = [float(v) for v in per_replica]
            result["unscaled_one"] = float(unscale_loss_for_replicas(keras.ops.ones(())))
        result["scaled_one_outside"] = float(scale_loss_for_replicas(keras.ops.ones(())))
        own_single = _train(distribution_scope("none"), init, workdir, loss=NextTokenLoss())
        own_data = _train(distribution_scope("data"), init, workdir, loss=NextTokenLoss())
        result["data_next_token_loss"] = dict(
            losses=own_data["losses"],
            single_losses=own_single["losses"],
            weight_diff=_max_diff(own_data["weights"], own_single["weights"]),
        )

    # Checkpoints: saved under the distribution, loaded without one; and the reverse.
    weights, _ = _load(dist_dir, distribution_scope("none"))
    result["distributed_to_single_diff"] = _max_diff(weights, distributed_weights)
    mode, mesh = runs[checkpoint_run]
    weights, report = _load(single_dir, distribution_scope(mode, mesh))
    result["single_to_distributed_diff"] = _max_diff(weights, single["weights"])
    result["single_to_distributed_report"] = report

    # Errors a user will meet.
    result["errors"] = {
        "mesh_too_big": _error(lambda: configure_distribution("data", "16")),
        "mesh_too_small": _error(lambda: configure_distribution("data", "2")),
    }
    if backend == "tensorflow":
        result["errors"]["model_on_tf"] = _error(lambda: configure_distribution("model", "1x4"))
    if backend == "jax":
        result["default_model_mesh"] = list(configure_distribution("model", model_config=CONFIG).mesh_shape)
        result["errors"]["heads"] = _error(lambda: configure_distribution("model", "1x8", model_config=CONFIG))

        def uneven_variable():
            # No config given, so only the variable-level check can catch hidden 36 over 8.
            with distribution_scope("model", "1x8"):
                GPT1Backbone(**dict(CONFIG, hidden_dim=36, intermediate_dim=72))

        result["errors"]["uneven_variable"] = _error(uneven_variable)

        typo_rules = [
            (r"h_\d+/mlp/c_fc/kernel", axes) if pattern == r"h_\d+/c_fc/kernel" else (pattern, axes)
            for pattern, axes in LAYOUT_RULES
        ]

        def typo_caught_at_creation():
            with distribution_scope("model", "2x4", model_config=CONFIG, rules=typo_rules):
                GPT1Backbone(**CONFIG)

        def typo_caught_by_verify():
            # Keras's own ModelParallel accepts the typo and silently replicates c_fc.
            dist = configure_distribution("model", "2x4", model_config=CONFIG, rules=typo_rules)
            mesh = dist.distribution.device_mesh
            plain = keras.distribution.ModelParallel(
                layout_map=gpt1_layout_map(mesh, typo_rules), batch_dim_name="batch"
            )
            with plain.scope():
                backbone = GPT1Backbone(**CONFIG)
            dist.verify(backbone)

        def wrong_layout_caught_by_verify():
            # `verify` reads the arrays' actual shardings, not just the rules.
            with distribution_scope("model", "2x4", model_config=CONFIG) as dist:
                backbone = GPT1Backbone(**CONFIG)
            dist.rules = [
                (pattern, ("model", None)) if pattern == r"h_\d+/c_fc/kernel" else (pattern, axes)
                for pattern, axes in LAYOUT_RULES
            ]
            dist.verify(backbone)

        result["errors"]["wrong_layout"] = _error(wrong_layout_caught_by_verify)
        result["errors"]["typo_at_creation"] = _error(typo_caught_at_creation)
        result["errors"]["typo_by_verify"] = _error(typo_caught_by_verify)

    with open(out_path, "w") as f:
        json.dump(result, f)


# === Partial batches: `KERAS_BACKEND=jax python tests/test_distribution.py padding OUT WORKDIR` ===

PAD_DEVICES = 2
PAD_BATCH = 2
PAD_TEXTS = ["the quick fox", "a lazy dog", "the dog", "quick brown fox", "lazy fox"]


def _tiny_task_preset(workdir):
    """A tiny LM preset with a small BPE tokenizer (fine-tuning needs one)."""
    from keras_gpt1 import GPT1Backbone, GPT1CausalLM
    from keras_gpt1.tokenizers import train_tokenizer

    corpus = os.path.join(workdir, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("the quick brown fox jumps over the lazy dog\n" * 5)
    tokenizer = train_tokenizer([corpus], num_merges=10)
    preset = os.path.join(workdir, "preset")
    backbone = GPT1Backbone(**dict(CONFIG, vocabulary_size=tokenizer.vocabulary_size()))
    GPT1CausalLM(backbone, tokenizer=tokenizer).save_to_preset(preset)
    return preset


def _write_task_file(path, labels):
    with open(path, "w", encoding="utf-8") as f:
        f.write("text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(PAD_TEXTS, labels)))
    return path


def _padding_scenario(out_path, workdir):
    """JAX, a data axis of 2: 5 examples in batches of 2 (fine-tuning, evaluation), 3 texts
    scored in batches of 2; each result next to the same computation without a distribution."""
    import keras

    from keras_gpt1 import GPT1CausalLM
    from keras_gpt1.distribution import distribution_scope
    from keras_gpt1.generation.score import score
    from keras_gpt1.tasks import GPT1Task
    from keras_gpt1.tasks.data import make_dataset, read_task_file
    from keras_gpt1.workflows.finetuning import evaluate, finetune

    assert keras.config.backend() == "jax"
    preset = _tiny_task_preset(workdir)
    train = _write_task_file(os.path.join(workdir, "train.csv"), "ababa")
    dev = _write_task_file(os.path.join(workdir, "dev.csv"), "aabbb")
    tuned_dir = os.path.join(workdir, "tuned")

    def model_outputs(dataset_kwargs):
        """`model.evaluate` and `model.predict` of the fine-tuned model on the dev file."""
        model = GPT1Task.from_preset(tuned_dir)
        model.compile()  # its default accuracy is weighted: padded rows do not count
        data = read_task_file(dev, "classification", label_names=["a", "b"])
        assert model.preprocessor.sequence_length == sequence_length  # the saved one packs as in training
        dataset = make_dataset(data, model.preprocessor, PAD_BATCH, **dataset_kwargs)
        batches = [len(b[0]["token_ids"]) for b in dataset.as_numpy_iterator()]
        logs = model.evaluate(dataset, verbose=0, return_dict=True)
        predictions = keras.ops.convert_to_numpy(model.predict(dataset, verbose=0))
        return dict(logs=logs, predictions=predictions.tolist(), batches=batches)

    texts = PAD_TEXTS[:3]
    result = {"device_count": len(keras.distribution.list_devices())}
    with distribution_scope("data", str(PAD_DEVICES)) as dist:
        assert dist.num_replicas == PAD_DEVICES
        tuned = finetune(
            "classification",
            train,
            preset=preset,
            output=tuned_dir,
            batch_size=PAD_BATCH,
            epochs=1,
            dropout=0.0,
            learning_rate=1e-3,
            seed=0,
            verbose=0,
        )
        sequence_length = tuned.sequence_length
        result["history"] = tuned.history
        result["steps"] = int(keras.ops.convert_to_numpy(tuned.model.optimizer.iterations))
        result["evaluate"] = evaluate(tuned_dir, dev, batch_size=PAD_BATCH)
        result["model"] = model_outputs({})
        result["odd_batch"] = _error(lambda: evaluate(tuned_dir, dev, batch_size=3))
        lm = GPT1CausalLM.from_preset(preset)
        result["score"] = [r["token_log_likelihoods"].tolist() for r in score(lm, texts, batch_size=2)]
    result["single_evaluate"] = evaluate(tuned_dir, dev, batch_size=PAD_BATCH)
    result["single_model"] = model_outputs({})
    lm = GPT1CausalLM.from_preset(preset)
    result["single_score"] = [r["token_log_likelihoods"].tolist() for r in score(lm, texts, batch_size=2)]
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    if sys.argv[1] == "padding":
        _padding_scenario(sys.argv[2], sys.argv[3])
    else:
        _scenario(os.environ["KERAS_BACKEND"], sys.argv[1], sys.argv[2])
    sys.exit(0)


# === Tests ===

import keras  # noqa: E402
import pytest  # noqa: E402

from keras_gpt1.distribution import (  # noqa: E402
    LAYOUT_RULES,
    MODEL_AXIS,
    check_model_config,
    configure_distribution,
    distribution_scope,
    gpt1_layout_map,
    parse_mesh,
)
from keras_gpt1.cli.distribution import add_distribution_arguments, distribution_from_args  # noqa: E402

BACKEND = keras.config.backend()
RTOL = 1e-5  # float32 reductions re-ordered across shards differ by ~1e-7 relative


def _run_scenario(tmp_path_factory, devices=JAX_DEVICES, mode=()):
    workdir = tmp_path_factory.mktemp("distribution")
    out = workdir / "result.json"
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    if BACKEND == "jax":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
        env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *mode, str(out), str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"scenario failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    if BACKEND not in ("jax", "tensorflow"):
        pytest.skip("distribution scenarios run under the JAX and TensorFlow backends")
    return _run_scenario(tmp_path_factory)


# --- In-process: parsing, rules and errors (cheap; every backend) ---


def test_parse_mesh():
    assert parse_mesh("2x4") == (2, 4)
    assert parse_mesh(" 8 ") == (8,)
    assert parse_mesh("1X8") == (1, 8)
    for bad in ("2x", "0x4", "2x2x2", "two", "-1", ""):
        with pytest.raises(ValueError, match="mesh"):
            parse_mesh(bad)


def test_cli_arguments():
    import argparse

    parser = add_distribution_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--distribute", "model", "--mesh", "2x4"])
    assert (args.distribute, args.mesh, args.cpu_devices) == ("model", "2x4", None)
    assert parser.parse_args([]).distribute == "none"
    # The parser is built before Keras is imported, so the mode is checked where it is used.
    with pytest.raises(ValueError, match="Unknown distribution mode 'pipeline'"):
        with distribution_from_args(parser.parse_args(["--distribute", "pipeline"])):
            pass


def test_mode_and_mesh_errors():
    with pytest.raises(ValueError, match="Unknown distribution mode"):
        configure_distribution("tensor")
    with pytest.raises(ValueError, match="use `mode='model'` with `mesh='2x4'`, or `mesh='8'`"):
        configure_distribution("data", "2x4")
    with pytest.raises(ValueError, match="1x8"):
        configure_distribution("model", "8")
    with pytest.raises(ValueError, match="`mesh='2x4'` needs `mode='data'` or `mode='model'`"):
        configure_distribution("none", "2x4")
    with pytest.raises(ValueError, match="num_heads=12"):
        check_model_config(dict(hidden_dim=768, num_heads=12, intermediate_dim=3072), 8)
    check_model_config(dict(hidden_dim=768, num_heads=12, intermediate_dim=3072), 4)


def test_none_changes_nothing():
    from keras_gpt1 import GPT1Backbone

    with distribution_scope("none") as dist:
        backbone = GPT1Backbone(**CONFIG)
    assert dist.mesh_shape == (1, 1) and dist.verify(backbone) == {}


def test_layout_rules_cover_the_real_variable_paths():
    """Every rule matches the model's paths (with and without a prefix), and every weight matrix
    of the backbone matches exactly one rule: no silent replication."""
    from keras_gpt1 import GPT1Backbone, GPT1CausalLM

    mesh = keras.distribution.DeviceMesh((1, 1), ("batch", MODEL_AXIS), ["cpu:0"])
    layout_map = gpt1_layout_map(mesh)
    lm = GPT1CausalLM(GPT1Backbone(**dict(CONFIG, num_layers=2)))
    paths = {w.path: tuple(w.shape) for w in lm.weights}
    assert "h_0/attn/c_attn/kernel" in paths  # the names the rules are written against
    expected = {
        "embeddings/token_embedding/embeddings": (None, MODEL_AXIS),
        "embeddings/position_embeddings": (None, MODEL_AXIS),
        "h_1/attn/c_attn/kernel": (None, MODEL_AXIS),
        "h_1/attn/c_attn/bias": (MODEL_AXIS,),
        "h_1/attn/c_proj/kernel": (MODEL_AXIS, None),
        "h_1/attn/c_proj/bias": None,
        "h_1/c_fc/kernel": (None, MODEL_AXIS),
        "h_1/c_fc/bias": (MODEL_AXIS,),
        "h_1/c_proj/kernel": (MODEL_AXIS, None),
        "h_1/c_proj/bias": None,
        "h_1/ln_1/gamma": None,
        "h_1/ln_2/beta": None,
    }
    for path, axes in expected.items():
        assert path in paths
        for key in (path, "outer_model/" + path):
            layout = layout_map[key]
            assert (layout.axes if layout else None) == axes, key
    for path, shape in paths.items():
        if len(shape) >= 2:
            assert layout_map[path] is not None, f"{path} would be replicated"
    assert len(LAYOUT_RULES) == 8


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch error only exists on torch")
def test_torch_names_the_alternatives():
    for mode in ("data", "model"):
        with pytest.raises(ValueError) as e:
            configure_distribution(mode)
        message = str(e.value)
        for alternative in (
            "KERAS_BACKEND=jax",
            "KERAS_BACKEND=tensorflow",
            "DistributedDataParallel",
        ):
            assert alternative in message


# --- The scenario (subprocess with virtual devices; JAX or TensorFlow) ---


@pytest.mark.integration
def test_scenario_sees_virtual_devices(scenario):
    assert scenario["device_count"] == (JAX_DEVICES if BACKEND == "jax" else TF_DEVICES)


@pytest.mark.parametrize("mode", ["data", "model_2x4", "data_next_token_loss"])
@pytest.mark.integration
def test_distributed_losses_match_single_device(scenario, mode, request):
    if mode == "model_2x4" and BACKEND != "jax":
        pytest.skip("model parallelism is JAX-only")
    if mode == "data_next_token_loss" and BACKEND == "jax":
        pytest.skip("the JAX runs of the other cases already use NextTokenLoss")
    run = scenario[mode]
    losses, single = np.array(run["losses"]), np.array(run["single_losses"])
    assert len(losses) == 6
    # The comparison means something only if training moved the loss.
    assert single[-1] < single[0] - 0.05
    np.testing.assert_allclose(losses, single, rtol=RTOL)
    assert run["weight_diff"] < 1e-5


@pytest.mark.skipif(BACKEND != "jax", reason="sharded layouts exist on JAX only")
@pytest.mark.integration
def test_variables_are_really_sharded(scenario):
    report = scenario["model_2x4"]["report"]
    # Mesh 2x4: hidden 32 → 8 per device, 3·hidden 96 → 24, intermediate 64 → 16.
    assert report["h_0/attn/c_attn/kernel"] == "sharded (None, 'model') shard (32, 24)"
    assert report["h_0/attn/c_attn/bias"] == "sharded ('model',) shard (24,)"
    assert report["h_0/attn/c_proj/kernel"] == "sharded ('model', None) shard (8, 32)"
    assert report["h_0/c_fc/kernel"] == "sharded (None, 'model') shard (32, 16)"
    assert report["h_0/c_proj/kernel"] == "sharded ('model', None) shard (16, 32)"
    embeddings = report["embeddings/token_embedding/embeddings"]
    assert embeddings == "sharded (None, 'model') shard (96, 8)"
    assert report["embeddings/position_embeddings"] == "sharded (None, 'model') shard (16, 8)"
    assert report["h_0/ln_1/gamma"] == "replicated"
    assert report["h_0/c_proj/bias"] == "replicated"
    assert sum(v.startswith("sharded") for v in report.values()) == 2 + 6 * CONFIG["num_layers"]
    # Optimizer momentum follows its variable's layout.
    layouts = scenario["model_2x4"]["optimizer_layouts"]
    momentum = [p for p in layouts if "h_0_c_fc_kernel" in p or "h_0/c_fc/kernel" in p]
    assert momentum and all(layouts[p] == [None, "model"] for p in momentum), layouts
    # Data parallelism replicates everything.
    assert set(scenario["data"]["report"].values()) == {"replicated"}


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute loss scaling is TensorFlow's")
@pytest.mark.integration
def test_loss_scaling_for_replicas(scenario):
    assert scenario["scaled_one"] == [1 / TF_DEVICES] * TF_DEVICES
    assert scenario["unscaled_one"] == TF_DEVICES
    assert scenario["scaled_one_outside"] == 1.0


def test_loss_scaling_is_identity_without_a_strategy():
    from keras_gpt1.distribution import scale_loss_for_replicas, unscale_loss_for_replicas

    assert float(scale_loss_for_replicas(keras.ops.ones(()) * 3)) == 3.0
    assert float(unscale_loss_for_replicas(keras.ops.ones(()) * 3)) == 3.0


@pytest.mark.skipif(BACKEND != "tensorflow", reason="MirroredStrategy is TensorFlow's")
@pytest.mark.integration
def test_variables_are_mirrored(scenario):
    report = scenario["data"]["report"]
    assert set(report.values()) == {f"mirrored x{TF_DEVICES}"}
    assert len(report) == 2 + 12 * CONFIG["num_layers"]


@pytest.mark.integration
def test_checkpoints_cross_the_distribution_boundary(scenario):
    # Saved under the distribution (after training), loaded on one device: the same values.
    assert scenario["distributed_to_single_diff"] == 0.0
    # Saved on one device, loaded under the distribution: the same values, still distributed.
    assert scenario["single_to_distributed_diff"] == 0.0
    layouts = set(scenario["single_to_distributed_report"].values())
    if BACKEND == "jax":
        assert any(v.startswith("sharded") for v in layouts)
    else:
        assert layouts == {f"mirrored x{TF_DEVICES}"}


@pytest.mark.integration
def test_user_errors(scenario):
    errors = scenario["errors"]
    assert "needs 16 devices" in errors["mesh_too_big"]
    assert "`use_virtual_cpu_devices(N)`" in errors["mesh_too_big"]
    assert "needs 2 devices" in errors["mesh_too_small"]
    if BACKEND == "tensorflow":
        assert "KERAS_BACKEND=jax" in errors["model_on_tf"]
        return
    assert scenario["default_model_mesh"] == [2, 4]
    assert "num_heads=4" in errors["heads"]
    assert "'embeddings/token_embedding/embeddings' of shape (96, 36)" in errors["uneven_variable"]
    assert "36 is not divisible by 8" in errors["uneven_variable"]
    # A LayoutMap key that matches nothing: refused when the variable is created...
    assert "'h_0/c_fc/kernel' (32, 64) matches no layout rule" in errors["typo_at_creation"]
    # ...and, for a model built with Keras's own ModelParallel, caught by `verify`.
    assert "h_0/c_fc/kernel (32, 64) matches no layout rule" in errors["typo_by_verify"]
    assert "mlp/c_fc/kernel' matches no variable" in errors["typo_by_verify"]
    assert errors["wrong_layout"] == (
        "Variables not distributed as intended: h_0/c_fc/kernel is laid out as "
        "(None, 'model'), expected ('model', None)"
    )


# --- Partial last batches under JAX data parallelism (subprocess with 2 virtual devices) ---


@pytest.fixture(scope="module")
def padding_scenario(tmp_path_factory):
    if BACKEND != "jax":
        pytest.skip("keras.distribution splits batches on JAX only (tf.distribute takes partial batches)")
    return _run_scenario(tmp_path_factory, devices=PAD_DEVICES, mode=("padding",))


@pytest.mark.integration
def test_finetuning_pads_the_partial_last_batch(padding_scenario):
    """5 examples in batches of 2 over 2 devices: fine-tuning runs (3 steps an epoch), and the
    fine-tuned model's evaluation equals the single-device one on the same weights."""
    run = padding_scenario
    assert run["device_count"] == PAD_DEVICES
    assert run["steps"] == 3
    assert {"loss", "accuracy"} <= set(run["history"])
    assert all(np.isfinite(v).all() for v in run["history"].values())
    # The GLUE metrics (from predictions, dummy rows dropped): the single-device values.
    assert run["evaluate"] == run["single_evaluate"]
    padded, single = run["model"], run["single_model"]
    assert padded["batches"] == [2, 2, 2] and single["batches"] == [2, 2, 1]
    # `predict` keeps the dummy row (callers drop rows past the data); the real rows match.
    assert len(padded["predictions"]) == 6 and len(single["predictions"]) == 5
    np.testing.assert_allclose(padded["predictions"][:5], single["predictions"], rtol=RTOL, atol=1e-6)
    # `evaluate`: the zero-weight row changes no metric...
    assert padded["logs"]["accuracy"] == pytest.approx(single["logs"]["accuracy"], abs=1e-7)
    logits = np.asarray(single["predictions"], "float64")
    labels = np.array([0, 0, 1, 1, 1])
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    row_loss = -log_probs[np.arange(5), labels]
    assert row_loss.mean() == pytest.approx(single["logs"]["loss"], rel=RTOL)
    # ...nor any batch's loss (averaged over the sample weights, so the last padded batch's loss
    # is its real row's); Keras then averages the batch losses weighted by rows, padding included.
    batch_losses = [row_loss[0:2].mean(), row_loss[2:4].mean(), row_loss[4]]
    assert padded["logs"]["loss"] == pytest.approx(np.mean(batch_losses), rel=RTOL)


@pytest.mark.integration
def test_batch_size_must_split_over_the_data_axis(padding_scenario):
    assert "batch size (3) must be divisible by the 2 data-parallel devices" in padding_scenario["odd_batch"]


@pytest.mark.integration
def test_scoring_pads_rows_to_the_data_axis(padding_scenario):
    """3 texts in batches of 2 over 2 devices (the second batch padded): the single-device scores."""
    padded, single = padding_scenario["score"], padding_scenario["single_score"]
    assert len(padded) == len(single) == 3
    for p, q in zip(padded, single):
        assert len(p) == len(q) > 0
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-5)


def test_make_dataset_pads_with_zero_weight_rows(tmp_path):
    """`pad_final_batch=True` (any backend): rank-3 multiple-choice inputs, real rows unchanged,
    dummy rows one real token with weight 0."""
    from keras_gpt1.tasks.data import make_dataset, read_task_file
    from keras_gpt1.tasks.registry import get_family
    from keras_gpt1.tokenizers import train_tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 5, encoding="utf-8")
    tokenizer = train_tokenizer([str(corpus)], num_merges=10)
    rows = [{"context": "the fox", "choices": ["jumps", "sleeps"], "label": i % 2} for i in range(5)]
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = read_task_file(str(path), "multiple-choice")
    preprocessor = get_family("multiple-choice").make_preprocessor(tokenizer, 12)
    for pack_in_graph in (False, True):
        plain = list(make_dataset(data, preprocessor, 4, pack_in_graph=pack_in_graph).as_numpy_iterator())
        padded = list(
            make_dataset(data, preprocessor, 4, pack_in_graph=pack_in_graph, pad_final_batch=True).as_numpy_iterator()
        )
        assert [len(y) for _, y in plain] == [4, 1]
        assert len(padded) == 2
        for (x, y), (px, py, weights) in zip(plain, padded):
            real = len(y)
            assert px["token_ids"].shape == px["padding_mask"].shape == (4, 2, 12)
            for key in ("token_ids", "padding_mask"):
                np.testing.assert_array_equal(px[key][:real], x[key])
            np.testing.assert_array_equal(py[:real], y)
            np.testing.assert_array_equal(weights, [1.0] * real + [0.0] * (4 - real))
            assert (px["token_ids"][real:] == 0).all() and (py[real:] == 0).all()
            assert (px["padding_mask"][real:] == [1] + [0] * 11).all()
    inputs_only = read_task_file(str(path), "multiple-choice", with_labels=False)
    batches = list(make_dataset(inputs_only, preprocessor, 4, pad_final_batch=True).as_numpy_iterator())
    assert [len(x["token_ids"]) for x in batches] == [4, 4]
