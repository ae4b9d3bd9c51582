"""Training's precision and compilation defaults by CPU capability, on both branches.

The capability (native bfloat16) is stubbed, so each rule is checked on a CPU that has it and on
one that does not, whatever CPU runs the tests.
"""

import pytest
from conftest import BACKEND, TINY_CONFIG, pretrain_kwargs, write_pretraining_data

from keras_gpt1.utils import cpu_features, precision
from keras_gpt1.utils.precision import INFERENCE_PRECISIONS, PRECISIONS, TRAINING_PRECISIONS, resolve_precision

# The precision rule sets `jit_compile` too: the tests that check it are marked `xla` (tests/conftest.py
# turns XLA off elsewhere); the others check dtypes, which XLA does not change.

WIDE = precision.MIN_BFLOAT16_HIDDEN_DIM


@pytest.fixture
def native_bfloat16(monkeypatch):
    """Sets the stubbed capability: `native_bfloat16(True)` or `(False)`."""
    monkeypatch.setattr(precision, "accelerator_present", lambda: False)

    def set_capability(value):
        monkeypatch.setenv(cpu_features.OVERRIDE_ENV, "1" if value else "0")

    return set_capability


# --- detection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, native, amx",
    [
        ("fpu sse2 avx2 fma", False, False),  # AVX2 only
        ("avx2 avx512f avx512_bf16", True, False),  # e.g. AMD Zen 4, Intel Cooper Lake
        ("avx2 avx512f avx512_bf16 amx_bf16 amx_tile", True, True),  # e.g. Intel Sapphire Rapids
        ("avx2 amx_bf16", True, True),
    ],
)
def test_detection_reads_the_cpu_flags(tmp_path, monkeypatch, flags, native, amx):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    monkeypatch.delenv(cpu_features.OVERRIDE_ENV, raising=False)
    monkeypatch.setattr(cpu_features, "CPUINFO", str(cpuinfo))
    assert cpu_features.has_native_bfloat16() is native
    assert cpu_features.has_amx() is amx


def test_detection_without_cpuinfo_keeps_the_avx2_choices(tmp_path, monkeypatch):
    monkeypatch.delenv(cpu_features.OVERRIDE_ENV, raising=False)
    monkeypatch.setattr(cpu_features, "CPUINFO", str(tmp_path / "no-such-file"))
    assert cpu_features.has_native_bfloat16() is False


@pytest.mark.parametrize("value, native", [("1", True), ("true", True), ("0", False), ("no", False)])
def test_detection_override(monkeypatch, value, native):
    monkeypatch.setenv(cpu_features.OVERRIDE_ENV, value)
    assert cpu_features.has_native_bfloat16() is native


@pytest.mark.parametrize("value", ["2", "maybe", "bf16"])
def test_detection_override_refuses_other_values(monkeypatch, value):
    monkeypatch.setenv(cpu_features.OVERRIDE_ENV, value)
    with pytest.raises(ValueError, match=cpu_features.OVERRIDE_ENV):
        cpu_features.has_native_bfloat16()


# --- precision="auto" -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_by_capability_backend_and_width(native_bfloat16, backend, native):
    native_bfloat16(native)
    # The measured rule (docs/pretraining.md): TensorFlow's and PyTorch's CPU matmuls use the
    # bfloat16 units, XLA's (all of JAX's) do not.
    expected = "mixed_bfloat16" if native and backend in ("tensorflow", "torch") else "float32"
    assert resolve_precision("auto", hidden_dim=WIDE, backend=backend) == expected
    assert resolve_precision("auto", hidden_dim=768, backend=backend) == expected
    # Too small for bfloat16 to pay: float32 on every CPU (the demo's model).
    assert resolve_precision("auto", hidden_dim=WIDE - 1, backend=backend) == "float32"
    assert resolve_precision("auto", hidden_dim=64, backend=backend) == "float32"


def test_auto_precision_leaves_accelerators_alone(native_bfloat16, monkeypatch):
    native_bfloat16(True)
    monkeypatch.setattr(precision, "accelerator_present", lambda: True)
    assert resolve_precision("auto", hidden_dim=768, backend="tensorflow") == "float32"


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("explicit", ["float32", "mixed_bfloat16"])
def test_explicit_precision_is_never_changed(native_bfloat16, native, explicit):
    native_bfloat16(native)
    for backend in ("tensorflow", "jax", "torch"):
        for width in (32, 768):
            assert resolve_precision(explicit, hidden_dim=width, backend=backend) == explicit


@pytest.mark.parametrize("bad", ["bfloat16", "int8", "mixed_float16", "Auto", "", None, 16, True])
def test_bad_precision_names_the_argument(bad):
    with pytest.raises(ValueError, match="`precision` must be one of 'auto', 'float32', 'mixed_bfloat16'; got"):
        resolve_precision(bad)


@pytest.mark.parametrize("native", [True, False])
def test_one_vocabulary_two_documented_subsets(native_bfloat16, native):
    """Training and inference take subsets of the one vocabulary, and the one function resolves
    every value of each, on both kinds of CPU, to a value of the vocabulary that is not "auto"."""
    native_bfloat16(native)
    assert set(TRAINING_PRECISIONS) | set(INFERENCE_PRECISIONS) == set(PRECISIONS)
    assert set(TRAINING_PRECISIONS) & set(INFERENCE_PRECISIONS) == {"float32"}
    for choices in (TRAINING_PRECISIONS, INFERENCE_PRECISIONS):
        for value in choices:
            resolved = resolve_precision(value, hidden_dim=768, backend="torch", choices=choices)
            assert resolved in choices and resolved != "auto"
    with pytest.raises(ValueError, match="`precision` must be one of 'float32', 'bfloat16', 'int8'; got 'auto'"):
        resolve_precision("auto", choices=INFERENCE_PRECISIONS)  # inference has no measured rule: no "auto"


# --- jit_compile="auto" -----------------------------------------------------------------------


@pytest.mark.xla
@pytest.mark.skipif(BACKEND != "tensorflow", reason="the XLA choice is TensorFlow's (JAX always compiles, torch never)")
@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_jit_auto_on_tensorflow_by_capability_and_policy(native_bfloat16, native, dtype):
    from keras_gpt1 import GPT1Backbone, GPT1CausalLM
    from keras_gpt1.utils.jit import resolve_jit_compile

    native_bfloat16(native)
    lm = GPT1CausalLM(GPT1Backbone(**TINY_CONFIG, dtype=dtype))
    # XLA's CPU matmuls skip the bfloat16 units: off for bfloat16 compute on a native CPU only.
    expected = "auto" if native and dtype == "mixed_bfloat16" else True
    assert resolve_jit_compile(lm, "auto") == expected
    lm.compile(optimizer="adam")
    assert lm.jit_compile is (expected is True)
    assert resolve_jit_compile(lm, False) is False  # an explicit choice stays


# --- through pretrain and finetune ------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_pretraining_data(tmp_path_factory.mktemp("precision_data"), max_bytes=20_000, vocabulary_size=200)


def _pretrain(corpus, output, **kwargs):
    from keras_gpt1.workflows import pretrain

    architecture = dict(num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=16)
    return pretrain(
        **pretrain_kwargs(
            corpus,
            output,
            architecture=architecture,
            sequence_length=16,
            batch_size=4,
            steps=2,
            validation_batches=1,
            **kwargs,
        )
    )


@pytest.mark.xla
@pytest.mark.parametrize("native", [True, False])
def test_pretrain_auto_follows_the_rule(corpus, tmp_path, native_bfloat16, monkeypatch, native):
    native_bfloat16(native)
    monkeypatch.setattr(precision, "MIN_BFLOAT16_HIDDEN_DIM", 16)  # the rule's width, on a tiny model
    lm = _pretrain(corpus, tmp_path / "run").model
    mixed = native and BACKEND in precision.BFLOAT16_BACKENDS
    assert lm.backbone.dtype_policy.name == ("mixed_bfloat16" if mixed else "float32")
    if BACKEND == "tensorflow":
        assert lm.jit_compile is (not mixed)
    monkeypatch.setattr(precision, "MIN_BFLOAT16_HIDDEN_DIM", 17)  # now too small: float32
    lm = _pretrain(corpus, tmp_path / "run-small").model
    assert lm.backbone.dtype_policy.name == "float32"


def test_pretrain_precision_bad_values(corpus, tmp_path):
    for bad in ("bf16", None, 1):
        with pytest.raises(ValueError, match="`precision` must be one of"):
            _pretrain(corpus, tmp_path / "bad", precision=bad)
    for bad in ("bfloat16", "int8"):  # inference's precisions: training needs float32 variables
        with pytest.raises(ValueError, match="`precision` must be one of 'auto', 'float32', 'mixed_bfloat16'"):
            _pretrain(corpus, tmp_path / "bad", precision=bad)
    with pytest.raises(TypeError, match="mixed_precision"):  # one name: `precision="mixed_bfloat16"`
        _pretrain(corpus, tmp_path / "bad", mixed_precision=True)
    assert not (tmp_path / "bad").exists()  # a refused run leaves no output behind


def test_cli_precision_flags(corpus, tmp_path, capsys):
    from keras_gpt1.cli import main

    path, tokenizer = corpus
    common = ["pretrain", "--corpus", path, "--tokenizer", tokenizer, "--output", str(tmp_path / "cli")]
    with pytest.raises(SystemExit):  # the old spelling and the new one: argparse refuses the pair
        main(common + ["--mixed-bfloat16", "--precision", "float32"])
    assert "argument --precision: not allowed with argument --mixed-bfloat16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(common + ["--precision", "bfloat16"])
    assert "invalid choice: 'bfloat16'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            [
                "finetune",
                "--task",
                "classification",
                "--train",
                path,
                "--model",
                "x",
                "--output",
                "y",
                "--precision",
                "fp16",
            ]
        )
    assert "invalid choice: 'fp16'" in capsys.readouterr().err


def test_pretrain_trains_in_the_resolved_precision_whatever_the_preset_was_saved_in(corpus, tmp_path, native_bfloat16):
    """The one rule, as `finetune` applies it too: a preset saved in mixed_bfloat16, continued with
    "auto" on a CPU without native bfloat16, trains in float32."""
    from keras_gpt1.workflows import pretrain

    native_bfloat16(False)
    assert (
        _pretrain(corpus, tmp_path / "mixed", precision="mixed_bfloat16").model.backbone.dtype_policy.name
        == "mixed_bfloat16"
    )
    kwargs = dict(preset=str(tmp_path / "mixed"), sequence_length=16, batch_size=4, steps=2, validation_batches=1)
    lm = pretrain(**pretrain_kwargs(corpus, tmp_path / "continued", **kwargs)).model
    assert lm.backbone.dtype_policy.name == "float32"


@pytest.mark.parametrize("native", [True, False])
def test_finetune_auto_follows_the_rule(tmp_path, native_bfloat16, monkeypatch, native):
    from keras_gpt1 import GPT1Backbone, GPT1CausalLM
    from keras_gpt1.workflows.finetuning import finetune
    from keras_gpt1.tokenizers import train_tokenizer

    native_bfloat16(native)
    monkeypatch.setattr(precision, "MIN_BFLOAT16_HIDDEN_DIM", TINY_CONFIG["hidden_dim"])
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 5, encoding="utf-8")
    tokenizer = train_tokenizer([str(corpus)], num_merges=10)
    preset = tmp_path / "preset"
    # Saved in mixed_bfloat16: "auto" on a CPU without native bfloat16 still trains in float32.
    backbone = GPT1Backbone(**dict(TINY_CONFIG, vocabulary_size=tokenizer.vocabulary_size()), dtype="mixed_bfloat16")
    GPT1CausalLM(backbone, tokenizer=tokenizer).save_to_preset(str(preset))
    train = tmp_path / "train.csv"
    train.write_text(
        "text,label\n" + "".join(f"the {w} fox,{i % 2}\n" for i, w in enumerate("quick brown lazy dog".split()))
    )
    result = finetune(
        "classification", str(train), preset=str(preset), batch_size=4, epochs=1, sequence_length=8, verbose=0
    )
    mixed = native and BACKEND in precision.BFLOAT16_BACKENDS
    assert result.model.backbone.dtype_policy.name == ("mixed_bfloat16" if mixed else "float32")
    result = finetune(
        "classification",
        str(train),
        preset=str(preset),
        batch_size=4,
        epochs=1,
        sequence_length=8,
        verbose=0,
        precision="float32",
    )
    assert result.model.backbone.dtype_policy.name == "float32"
    with pytest.raises(ValueError, match="`precision` must be one of"):
        finetune("classification", str(train), preset=str(preset), precision="half")
