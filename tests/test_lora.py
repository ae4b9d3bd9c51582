"""LoRA on GPT-1: generation with adapters against the same model with the adapters merged into
its kernels (on every engine), the adapter file round trip, and bad input.

The oracle for merged weights is computed here in NumPy (`kernel + A @ B * alpha / rank`), not
taken from Keras's own merge.
"""

import os

import keras
import numpy as np
import pytest

from conftest import BACKEND, TINY_CONFIG, to_numpy
from keras_gpt1 import GPT1Backbone, GPT1CausalLM
from keras_gpt1.generation import generate_ids

VOCAB = TINY_CONFIG["vocabulary_size"]
PROMPTS = [np.array(p, "int32") for p in ([5, 17, 33, 2], [41, 9], [60, 61, 62, 63, 64, 65, 66])]
NEW_TOKENS = 6
ENGINES = ["auto", "keras"] + (["torch"] if BACKEND == "torch" else [])


def sharp_lm(seed=11):
    """Peaked next-token distributions (random GPT-1 init gives nearly flat ones), so that greedy
    tokens depend on the weights."""
    keras.utils.set_random_seed(seed)
    model = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    embedding = model.backbone.token_embedding.embeddings
    embedding.assign(embedding * 7.0)
    return model


def lora_layers(backbone):
    return [layer for layer in backbone._flatten_layers() if getattr(layer, "lora_enabled", False)]


def set_adapters(backbone, seed=0, std=1.0):
    """Non-zero adapters (`B` starts at zero, which would change nothing)."""
    rng = np.random.default_rng(seed)
    for layer in lora_layers(backbone):
        layer.lora_kernel_b.assign(rng.normal(0, std, layer.lora_kernel_b.shape).astype("float32"))


def merged_copy(model, weights_path):
    """The same model without LoRA, each adapted kernel replaced by `kernel + A @ B * scale`."""
    merged = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    merged.load_weights(weights_path)
    by_path = {layer.path: layer for layer in merged.backbone._flatten_layers()}
    for layer in lora_layers(model.backbone):
        a, b = to_numpy(layer.lora_kernel_a), to_numpy(layer.lora_kernel_b)
        kernel = to_numpy(layer._kernel) + a @ b * (layer.lora_alpha / layer.lora_rank)
        by_path[layer.path].kernel.assign(kernel)
    return merged


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """(model with LoRA on c_attn, c_proj and c_fc, the same model merged, the plain model's output)."""
    model = sharp_lm()
    path = str(tmp_path_factory.mktemp("lora") / "base.weights.h5")
    model.save_weights(path)
    plain = generate_ids(model, PROMPTS, max_new_tokens=NEW_TOKENS, return_logits=True)
    model.backbone.enable_lora(2, target_layer_names=["c_attn", "c_proj", "c_fc"])
    set_adapters(model.backbone)
    return model, merged_copy(model, path), plain


@pytest.mark.parametrize("engine", ENGINES)
def test_generate_with_lora_equals_the_merged_model(adapted, engine):
    model, merged, plain = adapted
    got = generate_ids(model, PROMPTS, max_new_tokens=NEW_TOKENS, return_logits=True, engine=engine)
    want = generate_ids(merged, PROMPTS, max_new_tokens=NEW_TOKENS, return_logits=True, engine=engine)
    np.testing.assert_array_equal(got["token_ids"], want["token_ids"])
    new = np.arange(got["logits"].shape[1]) >= min(len(p) for p in PROMPTS)
    np.testing.assert_allclose(got["logits"][:, new], want["logits"][:, new], atol=2e-4, rtol=0)
    # The adapters matter: without them the tokens are others.
    assert (got["token_ids"] != plain["token_ids"]).any()


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch engine's int8 linears")
@pytest.mark.filterwarnings("ignore:Layer .* does not have a `quantize`")
def test_torch_engine_runs_the_adapters_of_int8_layers():
    """Keras's int8 Dense adds the float adapter path `(x @ A) @ B * scale` to its int8 product;
    the PyTorch engine must do the same, not read the int8 kernel alone."""
    import torch

    from keras_gpt1.generation.generate import make_engine
    from keras_gpt1.generation.torch_engine import TorchEngine, _weights_on_cpu

    model = sharp_lm()
    model.quantize("int8")
    model.backbone.enable_lora(2)
    set_adapters(model.backbone)
    if not _weights_on_cpu(model.backbone):
        pytest.skip("fbgemm's int8 linears run on a CPU")
    assert TorchEngine.supports(model)
    engine = make_engine(model, "torch")
    dense = model.backbone.transformer_layers[0].attention.c_attn
    x = torch.tensor(np.random.default_rng(0).normal(size=(3, TINY_CONFIG["hidden_dim"])), dtype=torch.float32)
    with torch.no_grad():
        weight = dense._kernel.value.float() / dense.kernel_scale.value[None, :]
        without = x @ weight + dense.bias.value
        adapter = (x @ dense.lora_kernel_a.value) @ dense.lora_kernel_b.value * (dense.lora_alpha / dense.lora_rank)
        got = engine.blocks[0]["c_attn"](x)
    assert float((got - (without + adapter)).norm() / (without + adapter).norm()) < 0.03
    assert float((got - without).norm() / without.norm()) > 0.1  # the adapters are not dropped
    # Whole generations: the engine follows Keras's own int8 + LoRA layers.
    fast = generate_ids(model, PROMPTS, max_new_tokens=NEW_TOKENS, engine="torch")
    reference = generate_ids(model, PROMPTS, max_new_tokens=NEW_TOKENS, engine="keras")
    agree = [
        (f[p:n] == r[p:n]).mean()
        for f, r, p, n in zip(fast["token_ids"], reference["token_ids"], fast["prompt_lengths"], fast["lengths"])
    ]
    assert np.mean(agree) >= 0.75


def test_enable_lora_trains_only_the_adapters():
    model = sharp_lm()
    model.backbone.enable_lora(4)
    adapted = lora_layers(model.backbone)
    assert [layer.name for layer in adapted] == ["c_attn"] * TINY_CONFIG["num_layers"]
    assert {w.path.split("/")[-1] for w in model.trainable_weights} == {"lora_kernel_a", "lora_kernel_b"}
    frozen = {w.path: to_numpy(w) for w in model.non_trainable_weights}
    b_before = to_numpy(adapted[0].lora_kernel_b)
    x = {"token_ids": np.tile(np.arange(1, 9, dtype="int32"), (4, 1)), "padding_mask": np.ones((4, 8), "int32")}
    y = np.roll(x["token_ids"], -1, axis=1)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(x, y, epochs=2, verbose=0)
    assert not np.allclose(to_numpy(adapted[0].lora_kernel_b), b_before)
    for w in model.non_trainable_weights:
        np.testing.assert_array_equal(to_numpy(w), frozen[w.path])


def test_enable_lora_after_fit_asks_for_compile_again():
    model = sharp_lm()
    x = {"token_ids": np.tile(np.arange(1, 9, dtype="int32"), (2, 1)), "padding_mask": np.ones((2, 8), "int32")}
    y = np.roll(x["token_ids"], -1, axis=1)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(x, y, verbose=0)
    model.backbone.enable_lora(2)
    for _ in range(2):  # refused before any update, so the second try is refused the same way
        with pytest.raises(ValueError, match=r"trainable weights changed after training.*Call `compile\(...\)` again"):
            model.fit(x, y, verbose=0)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(x, y, verbose=0)  # recompiled: trains the adapters


def test_lora_weights_round_trip(tmp_path):
    model = sharp_lm()
    base = str(tmp_path / "base.weights.h5")
    model.save_weights(base)
    model.backbone.enable_lora(3)
    set_adapters(model.backbone)
    path = tmp_path / "adapters.lora.h5"
    model.backbone.save_lora_weights(path)
    assert sorted(os.listdir(tmp_path)) == ["adapters.lora.h5", "base.weights.h5"]  # no temporary file left
    other = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    other.load_weights(base)
    other.backbone.load_lora_weights(path)  # enables LoRA with the file's rank
    assert [layer.lora_rank for layer in lora_layers(other.backbone)] == [3, 3]
    for ours, theirs in zip(lora_layers(model.backbone), lora_layers(other.backbone)):
        np.testing.assert_array_equal(to_numpy(ours.lora_kernel_b), to_numpy(theirs.lora_kernel_b))
    x = {"token_ids": PROMPTS[2][None], "padding_mask": np.ones((1, 7), "int32")}
    np.testing.assert_allclose(to_numpy(other(x)), to_numpy(model(x)), atol=1e-5)


def test_lora_files_that_do_not_fit_name_the_layer_and_shapes(tmp_path):
    model = sharp_lm()
    model.backbone.enable_lora(2)
    path = str(tmp_path / "a.lora.h5")
    model.backbone.save_lora_weights(path)

    wider = GPT1CausalLM(GPT1Backbone(**dict(TINY_CONFIG, hidden_dim=48, num_heads=2, intermediate_dim=96)))
    with pytest.raises(
        ValueError, match=r"layer '.*h_0/attn/c_attn' has lora_kernel_a of shape \(48, 2\), the file \(32, 2\)"
    ):
        wider.backbone.load_lora_weights(path)
    deeper = GPT1CausalLM(GPT1Backbone(**dict(TINY_CONFIG, num_layers=3)))
    deeper.backbone.enable_lora(2)
    with pytest.raises(ValueError, match="does not match this model: it holds adapters for"):
        deeper.backbone.load_lora_weights(path)
    other_rank = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))
    other_rank.backbone.enable_lora(4)
    with pytest.raises(ValueError, match="rank-2 LoRA weights, but LoRA on this backbone has rank 4"):
        other_rank.backbone.load_lora_weights(path)
    with pytest.raises(FileNotFoundError, match="nowhere.lora.h5"):
        model.backbone.load_lora_weights(tmp_path / "nowhere.lora.h5")
    (tmp_path / "text.lora.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="is not a LoRA weights file"):
        model.backbone.load_lora_weights(tmp_path / "text.lora.h5")
    model.save_weights(str(tmp_path / "plain.weights.h5"))  # HDF5, but not adapters
    with pytest.raises(ValueError, match="has no 'lora' group"):
        model.backbone.load_lora_weights(tmp_path / "plain.weights.h5")
    with pytest.raises(ValueError, match=r"must end in `\.lora\.h5`"):
        model.backbone.save_lora_weights(tmp_path / "a.h5")


def test_enable_lora_bad_input():
    model = sharp_lm()
    for rank in (0, -1, 2.5, "4", True, None):
        with pytest.raises(ValueError, match="`rank` must be an integer"):
            model.backbone.enable_lora(rank)
    with pytest.raises(
        ValueError, match=r"No layer of this backbone is named \['q_proj'\]; layers LoRA can adapt: .*c_attn"
    ):
        model.backbone.enable_lora(2, target_layer_names=["q_proj"])
    with pytest.raises(ValueError, match="list of layer names"):
        model.backbone.enable_lora(2, target_layer_names="c_attn")
    assert not lora_layers(model.backbone)  # nothing was half-enabled
    assert all(w.trainable for w in model.backbone.weights)
    model.backbone.enable_lora(2)
    with pytest.raises(ValueError, match="LoRA is already enabled on 2 layer"):
        model.backbone.enable_lora(2)
    fresh = sharp_lm()
    fresh.backbone.transformer_layers[0].c_fc.enable_lora(2)  # by hand, on one layer
    with pytest.raises(ValueError, match="already enabled on 1 layer.*h_0/c_fc"):
        fresh.backbone.enable_lora(2)


# === `finetune --lora-rank` ===

TRAIN_ROWS = "".join(
    f"the {w} fox {'runs' if i % 2 else 'sleeps'},{i % 2}\n"
    for i, w in enumerate(["quick", "brown", "lazy", "red", "old", "big", "sly", "small"] * 3)
)


@pytest.fixture(scope="module")
def small_preset(tmp_path_factory):
    from keras_gpt1.tokenizers import train_tokenizer

    directory = tmp_path_factory.mktemp("lora_preset")
    corpus = directory / "corpus.txt"
    corpus.write_text("the quick brown fox runs and sleeps over the lazy dog\n" * 5, encoding="utf-8")
    tokenizer = train_tokenizer([str(corpus)], num_merges=20)
    keras.utils.set_random_seed(3)
    config = dict(TINY_CONFIG, vocabulary_size=tokenizer.vocabulary_size())
    preset = str(directory / "preset")
    GPT1Backbone(**config).save_to_preset(preset)  # a pretrained backbone and its tokenizer
    tokenizer.save_to_preset(preset)
    (directory / "train.csv").write_text("text,label\n" + TRAIN_ROWS, encoding="utf-8")
    return preset, str(directory / "train.csv")


def test_finetune_with_lora_trains_the_adapters_and_head_and_saves_them_merged(small_preset, tmp_path):
    import json

    from keras_gpt1.tasks import GPT1Task, GPT1TextClassifier
    from keras_gpt1.workflows.finetuning import finetune

    preset, train = small_preset
    out = str(tmp_path / "out")
    result = finetune(
        "classification", train, preset=preset, output=out, lora_rank=2, learning_rate=1e-2,
        epochs=2, batch_size=8, seed=0, verbose=0,
    )  # fmt: skip
    model = result.model
    adapted = lora_layers(model.backbone)
    expected = [v for layer in adapted for v in (layer.lora_kernel_a, layer.lora_kernel_b)] + model.head.weights
    assert {id(w) for w in model.trainable_weights} == {id(w) for w in expected}
    base = GPT1Backbone.from_preset(preset)
    assert len(adapted) == TINY_CONFIG["num_layers"] and all(layer.lora_rank == 2 for layer in adapted)
    assert np.abs(to_numpy(adapted[0].lora_kernel_b)).max() > 0  # the adapters trained
    for ours, original in zip(model.backbone.transformer_layers, base.transformer_layers):
        # The frozen kernels are the pretrained ones.
        for name in ("c_fc", "c_proj"):
            np.testing.assert_array_equal(
                to_numpy(getattr(ours, name).kernel), to_numpy(getattr(original, name).kernel)
            )
        np.testing.assert_array_equal(
            to_numpy(ours.attention.c_attn._kernel), to_numpy(original.attention.c_attn.kernel)
        )
    assert json.load(open(f"{out}/finetune.json"))["recipe"]["lora_rank"] == 2

    # The preset holds the adapted model, adapters merged: it loads as a plain task model.
    loaded = GPT1Task.from_preset(out)
    assert type(loaded) is GPT1TextClassifier and not lora_layers(loaded.backbone)
    assert loaded.preprocessor.sequence_length == model.preprocessor.sequence_length == result.sequence_length
    packed = model.preprocessor(["the red fox runs", "a dog"])
    x = {k: to_numpy(v) for k, v in packed.items()}
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), atol=1e-5)


@pytest.mark.once
@pytest.mark.integration
def test_finetune_lora_cli_then_export_serves_the_adapted_model(small_preset, tmp_path):
    """`keras-gpt1 finetune --lora-rank 2` on this backend, `keras-gpt1 export` (TensorFlow), and
    the SavedModel's answers against the fine-tuned preset loaded here."""
    import subprocess
    import sys

    import tensorflow as tf

    from keras_gpt1.tasks import GPT1TextClassifier

    preset, train = small_preset
    out, exported = str(tmp_path / "out"), str(tmp_path / "exported")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    cli = [sys.executable, "-c", "import sys; from keras_gpt1.cli import main; sys.exit(main(sys.argv[1:]))"]
    finetune_args = [
        "finetune", "--task", "classification", "--train", train, "--model", preset, "--output", out,
        "--lora-rank", "2", "--learning-rate", "1e-2", "--epochs", "2", "--batch-size", "8", "--seed", "0",
    ]  # fmt: skip
    for args, backend in ((finetune_args, BACKEND), (["export", "--model", out, "--output", exported], "tensorflow")):
        proc = subprocess.run(
            cli + args, env=dict(env, KERAS_BACKEND=backend), capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]

    texts = ["the red fox runs", "the old fox sleeps", "a dog"]
    served = tf.saved_model.load(os.path.join(exported, "1")).signatures["serving_default"](text=tf.constant(texts))
    model = GPT1TextClassifier.from_preset(out)
    import json

    # The saved preprocessor packs as in training, to the length the export reads from finetune.json.
    length = json.load(open(os.path.join(out, "finetune.json")))["sequence_length"]
    assert model.preprocessor.sequence_length == length
    packed = model.preprocessor(texts)
    probabilities = keras.ops.softmax(model({k: to_numpy(v) for k, v in packed.items()}), axis=-1)
    np.testing.assert_allclose(served["probabilities"].numpy(), to_numpy(probabilities), atol=1e-5)
    # Not the pretrained model with a fresh head: the adapters changed the backbone.
    assert not np.allclose(to_numpy(GPT1Backbone.from_preset(preset).transformer_layers[0].attention.c_attn.kernel),
                           to_numpy(model.backbone.transformer_layers[0].attention.c_attn.kernel))  # fmt: skip
