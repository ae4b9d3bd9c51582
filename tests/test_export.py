"""SavedModel export for TF Serving: raw-text signatures, checked the way a server would use them.

The server binary cannot run here, so the contract is checked from outside this process:

- every backend trains a tiny LM, saves a preset, exports it with one command (a TensorFlow
  subprocess when the backend is JAX or PyTorch), and a *fresh* Python process where `keras` and
  `keras_gpt1` cannot even be imported loads it with `tf.saved_model.load` and calls its
  signatures; the answers must equal the Keras model's on this backend (identical greedy tokens,
  scores within 1e-5), and bad input (empty, very long, invalid UTF-8, out-of-range
  `max_new_tokens`, an empty batch) must get an answer;
- once: the op set of the graphs and the four task families (`GPT1TextClassifier` for
  classification and entailment, `GPT1Similarity`, `GPT1MultipleChoice`), whose answers must
  equal `model.predict` on the real preprocessors' output (tensorflow-text trimmer) (TensorFlow
  run); TF's
  `saved_model_cli show/run`, the TF1 session path TF Serving uses (JAX run); a tf-keras
  (Keras 2) program (PyTorch run).
"""

import contextlib
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from conftest import BACKEND, to_numpy

# Exports run in subprocesses (the graph is always traced under TensorFlow) and are loaded in
# fresh processes.
pytestmark = pytest.mark.integration
from keras_gpt1 import GPT1Backbone, GPT1CausalLM

tf = pytest.importorskip("tensorflow")

CORPUS = [
    "the cat sat on the mat .",
    "the dog sat on the log .",
    "a cat and a dog met on the mat .",
    "the bird sang a song on the log .",
] * 20
CONTEXT = 32
DEFAULT_NEW = 6
PROMPTS = ["the cat sat", "a dog", "the bird sang a song on the"]
LONG = " ".join(["the cat sat on the mat ."] * 12)  # ~84 tokens, far past the context
ONLY_TF = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="once (TensorFlow run): the exported graph is the same from every backend"
)


def once_in(backend):
    # Checks of the exported graph that need one run only, spread over the three runs to even
    # out their time; any backend's export will do, since the graph does not depend on it.
    return pytest.mark.skipif(BACKEND != backend, reason=f"once, in the {backend} run (same graph on every backend)")


# Ops the exported graphs may contain: core TensorFlow ops linked by every TF Serving build.
# tensorflow-text ops are deliberately absent: the `tensorflow/serving` images embed
# tensorflow-text 2.12 and lack newer ops (`TFText>RoundRobinTrim`, tensorflow/serving#2267),
# so the export uses core ops only. The int8 graph (Keras's `quantize("int8")`) adds `Abs`,
# `Round` (quantizing activations), `BatchMatMulV3` (int8 x int8 -> int32) and `IdentityN`.
ALLOWED_OPS = {
    "Abs", "AddV2", "All", "Any", "ArgMax", "Assert", "AssignVariableOp", "BatchMatMulV2",
    "BatchMatMulV3", "BiasAdd", "Bitcast",
    "BitwiseAnd", "BitwiseOr", "BroadcastTo", "Cast", "ConcatV2", "Const", "Cumsum", "DecodeRaw",
    "DenseBincount", "DisableCopyOnRead", "DynamicStitch", "Einsum", "EnsureShape", "Equal", "Exp", "ExpandDims",
    "Fill", "FloorMod", "GatherV2", "Greater", "GreaterEqual", "HashTableV2", "Identity", "IdentityN", "If",
    "Less", "LessEqual", "LogSoftmax", "LogicalAnd", "LogicalNot", "LogicalOr",
    "LookupTableFindV2", "LookupTableImportV2", "LowerBound", "MatMul", "Max", "Maximum", "Mean",
    "MergeV2Checkpoints", "Min", "Minimum", "Mul", "Neg", "NoOp", "NotEqual", "OnesLike", "Pack", "Pad",
    "PartitionedCall", "Placeholder", "Pow", "Prod", "RaggedGather", "RaggedRange",
    "RaggedTensorToTensor", "Range", "ReadVariableOp", "RealDiv", "ReduceJoin", "Reshape",
    "RestoreV2", "RightShift", "Roll", "Round", "Rsqrt", "SaveV2", "Select", "SelectV2", "Shape",
    "ShardedFilename", "Size", "Slice", "Softmax", "Split", "Sqrt", "SquaredDifference", "Squeeze",
    "StatefulPartitionedCall", "StatelessIf", "StaticRegexFullMatch", "StaticRegexReplace",
    "StopGradient", "StridedSlice", "StringJoin", "StringLength", "StringLower", "Sub", "Substr",
    "Sum", "Tanh", "TensorStridedSliceUpdate", "Tile", "Transpose", "UnicodeDecode", "UnicodeEncode", "Unique",
    "UnsortedSegmentJoin", "UnsortedSegmentMin", "UnsortedSegmentSum", "Unpack", "VarHandleOp",
    "VarIsInitializedOp", "Where", "While", "ZerosLike",
}  # fmt: skip

# Runs in a fresh interpreter: `python fresh.py REQUESTS.pkl RESULTS.pkl`, where each request is
# `key: (export_dir, signature, inputs)`. `keras`, `keras_gpt1`, `tf_keras` and `keras_hub` are
# made unimportable before TensorFlow is imported (a `None` entry in `sys.modules` makes `import`
# and `find_spec` both fail, as if the package were not installed). `tensorflow_text` is not
# imported: the graphs use none of its ops, and importing it imports Keras (its Keras layers).
FRESH_SCRIPT = textwrap.dedent(
    """
    import pickle, sys
    BLOCKED = ("keras", "keras_gpt1", "tf_keras", "keras_hub")
    for name in BLOCKED:
        sys.modules[name] = None
    import tensorflow as tf

    requests_path, results_path = sys.argv[1:3]
    with open(requests_path, "rb") as f:
        requests = pickle.load(f)
    loaded, results = {}, {}
    for key, (export_dir, signature, inputs) in requests.items():
        if export_dir not in loaded:
            loaded[export_dir] = tf.saved_model.load(export_dir)
        function = loaded[export_dir].signatures[signature]
        try:
            out = function(**{k: tf.constant(v) for k, v in inputs.items()})
            results[key] = {k: v.numpy() for k, v in out.items()}
        except tf.errors.InvalidArgumentError as e:
            results[key] = {"error": e.message}
    leaked = sorted(
        name for name, module in sys.modules.items()
        if module is not None and name.split(".")[0] in BLOCKED
    )
    signatures = {d: sorted(m.signatures) for d, m in loaded.items()}
    results["__process__"] = {"signatures": signatures, "leaked_modules": leaked}
    with open(results_path, "wb") as f:
        pickle.dump(results, f)
    """
)


def _clean_env():
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "PYTHONPATH")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def run_fresh(requests, tmp_path):
    """Runs `{key: (export_dir, signature, inputs)}` in a fresh process; returns `{key: outputs}`
    (or `{"error": message}` for a request the graph rejected)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    script, requests_path, results_path = (tmp_path / n for n in ("fresh.py", "requests.pkl", "results.pkl"))
    script.write_text(FRESH_SCRIPT)
    requests = {k: (str(d), signature, inputs) for k, (d, signature, inputs) in requests.items()}
    requests_path.write_bytes(pickle.dumps(requests))
    proc = subprocess.run(
        [sys.executable, str(script), str(requests_path), str(results_path)],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = pickle.loads(results_path.read_bytes())
    assert results["__process__"]["leaked_modules"] == []
    return results


def _strings(values):
    """A `tf.string`-ready array (bytes kept as given, so invalid UTF-8 reaches the graph)."""
    encoded = [[_bytes(v) for v in row] if isinstance(row, (list, tuple)) else _bytes(row) for row in values]
    return np.array(encoded, dtype=object) if encoded else np.zeros([0], "S1")


def _bytes(value):
    return value.encode("utf-8") if isinstance(value, str) else value


def _cli(argv):
    from keras_gpt1.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own errors (a bad choice)
            code = e.code
    return code, out.getvalue(), err.getvalue()


# === Fixtures: a tiny LM trained on this backend, exported, served by a fresh process ===


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from keras_gpt1.tokenizers import train_tokenizer

    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    return train_tokenizer([str(path)], vocabulary_size=120)


@pytest.fixture(scope="module")
def lm_preset(tokenizer, tmp_path_factory):
    """A preset of a causal LM trained for a few steps on the current backend."""
    keras.utils.set_random_seed(5)
    config = dict(vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2, hidden_dim=32,
                  intermediate_dim=64, max_sequence_length=CONTEXT, dropout=0.1)  # fmt: skip
    lm = GPT1CausalLM(GPT1Backbone(**config), tokenizer=tokenizer)
    ids = np.concatenate([to_numpy(tokenizer(line)) for line in CORPUS]).astype("int32")
    windows = ids[: 16 * 17].reshape(16, 17)
    before = to_numpy(lm.backbone.token_embedding.embeddings).copy()
    lm.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = {"token_ids": windows[:, :-1], "padding_mask": np.ones((16, 16), "int32")}
    lm.fit(x, windows[:, 1:], batch_size=8, epochs=1, verbose=0)
    assert not np.allclose(to_numpy(lm.backbone.token_embedding.embeddings), before)
    preset = tmp_path_factory.mktemp("lm_preset")
    lm.save_to_preset(str(preset))
    return preset


@pytest.fixture(scope="module")
def reference_lm(lm_preset):
    return GPT1CausalLM.from_preset(str(lm_preset), dropout=0.0)


@pytest.fixture(scope="module")
def lm_export(lm_preset, tmp_path_factory):
    """One command on this backend (a TensorFlow subprocess unless it is TensorFlow): the CLI on
    a preset, or (PyTorch run) the Python API on the model object, saved to a temporary preset."""
    out = tmp_path_factory.mktemp("lm_serving")
    if BACKEND == "torch":
        from keras_gpt1.export import export_saved_model

        lm = GPT1CausalLM.from_preset(str(lm_preset))
        path = export_saved_model(lm, str(out), version=3, max_new_tokens=DEFAULT_NEW)
        assert path == str(out / "3")
    else:
        code, stdout, stderr = _cli(
            [
                "export",
                "--model",
                str(lm_preset),
                "--output",
                str(out),
                "--version",
                "3",
                "--max-new-tokens",
                str(DEFAULT_NEW),
            ]
        )
        assert code == 0, stderr
        assert "serving_default(text: string[None])" in stdout
    assert (out / "3" / "saved_model.pb").is_file() and (out / "3" / "variables").is_dir()
    assert [p.name for p in out.iterdir()] == ["3"]  # no staging directory left behind
    return out / "3"


@pytest.fixture(scope="module")
def dtype_exports(lm_preset, tmp_path_factory):
    """`{dtype: export_dir}` of `export --precision bfloat16|int8` (TensorFlow run only: the graph
    does not depend on the backend that trained the model)."""
    if BACKEND != "tensorflow":
        return {}
    exports = {}
    for dtype in ("bfloat16", "int8"):
        out = tmp_path_factory.mktemp(f"lm_{dtype}")
        code, _, stderr = _cli(["export", "--model", str(lm_preset), "--output", str(out), "--precision", dtype])
        assert code == 0, stderr
        exports[dtype] = out / "1"
    return exports


def _library_lm(lm_preset, dtype):
    """The preset as `keras-gpt1 generate --precision bfloat16|int8` loads it."""
    lm = GPT1CausalLM.from_preset(str(lm_preset), dropout=0.0, **({"dtype": dtype} if dtype == "bfloat16" else {}))
    if dtype == "int8":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lm.quantize("int8")
    return lm


@pytest.fixture(scope="module")
def served(lm_export, task_exports, dtype_exports, tokenizer, tmp_path_factory):
    """All requests, for the LM and (TensorFlow run) the task models, in one fresh process."""

    def _generate(texts, new):
        return (lm_export, "generate", {"text": _strings(texts), "max_new_tokens": np.int32(new)})

    ids = np.array([[5, 6, 7, 8], [9, 10, 0, 0]], "int32")
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], "int32")
    requests = {
        "greedy": _generate(PROMPTS, 5),
        "default": (lm_export, "serving_default", {"text": _strings(PROMPTS)}),
        "bad_batch": _generate(["", LONG, b"the \xff\xfecat \xc3", "the cat", " \t\n"], 4),
        "the_cat": _generate(["the cat"], 4),
        "new_negative": _generate(["the cat sat"], -3),
        "new_zero": _generate(["the cat sat"], 0),
        "new_huge": _generate(["the cat sat"], 10**9),
        "long_huge": _generate([LONG, "the cat sat"], 10**9),
        "empty_batch": _generate([], 4),
        "empty_score": (lm_export, "score", {"text": _strings([])}),
        "score": (lm_export, "score", {"text": _strings(["the cat sat on the mat .", "a dog", "", "cat", LONG])}),
        "logits": (lm_export, "token_ids", {"token_ids": ids, "padding_mask": mask}),
        "bad_ids": (lm_export, "token_ids", {"token_ids": ids + 1000, "padding_mask": mask}),
        "too_long": (lm_export, "token_ids", {"token_ids": np.ones((1, CONTEXT + 1), "int32"), "padding_mask": np.ones((1, CONTEXT + 1), "int32")}),
    }  # fmt: skip
    requests.update(_wrong_rank_requests(lm_export, ids, mask))
    for dtype, path in dtype_exports.items():
        requests[f"{dtype}/greedy"] = (path, "generate", {"text": _strings(PROMPTS), "max_new_tokens": np.int32(5)})
        requests[f"{dtype}/logits"] = (path, "token_ids", {"token_ids": ids, "padding_mask": mask})
    for task, (_, path) in task_exports.items():
        requests[task] = (path, "serving_default", {k: _strings(v) for k, v in TASK_INPUTS[task].items()})
        empty = {k: np.zeros([0, 2] if k == "candidates" else [0], "S1") for k in TASK_INPUTS[task]}
        requests[f"{task}/empty"] = (path, "serving_default", empty)
    if "multiple-choice" in task_exports:
        path = task_exports["multiple-choice"][1]
        context = _strings(TASK_INPUTS["multiple-choice"]["context"])
        for key, candidates in [
            ("no_candidates", np.zeros([2, 0], "S1")),
            ("more_rows", _strings([["a"], ["b"], ["c"]])),
            ("fewer_rows", _strings([["a", "b"]])),
        ]:
            requests[f"multiple-choice/{key}"] = (
                path,
                "serving_default",
                {"context": context, "candidates": candidates},
            )
    return run_fresh(requests, tmp_path_factory.mktemp("fresh"))


def _wrong_rank_requests(lm_export, ids, mask):
    """`{"rank/<input>/<rank>": request}`: one input of each LM signature at a rank other than
    its own, the others as they should be."""
    text = _strings(["the cat"])
    return {
        "rank/token_ids/3": (lm_export, "token_ids", {"token_ids": ids[None], "padding_mask": mask}),
        "rank/token_ids/1": (lm_export, "token_ids", {"token_ids": ids[0], "padding_mask": mask}),
        "rank/padding_mask/3": (lm_export, "token_ids", {"token_ids": ids, "padding_mask": mask[None]}),
        "rank/text/2": (lm_export, "serving_default", {"text": text[None]}),
        "rank/text/0": (lm_export, "score", {"text": text[0]}),
        "rank/max_new_tokens/1": (lm_export, "generate", {"text": text, "max_new_tokens": np.array([4], "int32")}),
    }


def _rows(out):
    return [row[:n].tolist() for row, n in zip(out["token_ids"], out["lengths"])]


def _ids(tokenizer, text):
    return to_numpy(tokenizer(text)).astype("int32").tolist()


# === Causal LM: the exported signatures answer as the Keras model does ===


def test_signature_table(lm_export, tokenizer):
    from keras_gpt1.export.saved_model import signature_summary

    summary = signature_summary(lm_export)
    assert sorted(summary) == ["generate", "score", "serving_default", "token_ids"]
    generation = {
        "completion": ("string", (None,)), "lengths": ("int32", (None,)),
        "prompt_lengths": ("int32", (None,)), "text": ("string", (None,)),
        "max_new_tokens": ("int32", (None,)),
        "token_ids": ("int32", (None, None)),
    }  # fmt: skip
    assert summary["serving_default"] == {"inputs": {"text": ("string", (None,))}, "outputs": generation}
    assert summary["generate"]["inputs"] == {"max_new_tokens": ("int32", ()), "text": ("string", (None,))}
    assert summary["generate"]["outputs"] == generation
    assert summary["score"]["outputs"] == {
        "log_likelihood": ("float32", (None,)), "num_scored_tokens": ("int32", (None,)),
        "perplexity": ("float32", (None,)),
    }  # fmt: skip
    assert summary["token_ids"]["outputs"] == {"logits": ("float32", (None, None, tokenizer.vocabulary_size()))}


def test_fresh_process_needs_no_keras(served, lm_export):
    signatures = served["__process__"]["signatures"][str(lm_export)]
    assert signatures == ["generate", "score", "serving_default", "token_ids"]


def test_greedy_generation_matches_keras(served, reference_lm, tokenizer):
    out = served["greedy"]
    prompts = [_ids(tokenizer, p) for p in PROMPTS]
    assert out["prompt_lengths"].tolist() == [len(p) for p in prompts]
    assert _rows(out) == reference_lm.generate(prompts, max_new_tokens=5)
    expected_text = reference_lm.generate(PROMPTS, max_new_tokens=5)
    assert [t.decode() for t in out["text"]] == expected_text
    for row, n, completion in zip(_rows(out), out["prompt_lengths"], out["completion"]):
        assert completion == tokenizer.detokenize(np.array(row[n:], "int32")).numpy()
    default = served["default"]
    assert _rows(default) == reference_lm.generate(prompts, max_new_tokens=DEFAULT_NEW)


def test_score_and_logits_match_keras(served, reference_lm):
    out = served["score"]
    expected = reference_lm.score(["the cat sat on the mat .", "a dog"])
    np.testing.assert_allclose(out["log_likelihood"][:2], [e["log_likelihood"] for e in expected], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["perplexity"][:2], [e["perplexity"] for e in expected], rtol=1e-5, atol=1e-5)
    assert out["num_scored_tokens"][:2].tolist() == [e["num_scored_tokens"] for e in expected]
    # Fewer than two tokens: nothing to score (documented NaN perplexity); long texts: the context.
    assert out["num_scored_tokens"][2:].tolist() == [0, 0, CONTEXT - 1]
    assert np.isnan(out["perplexity"][2:4]).all() and out["log_likelihood"][2:4].tolist() == [0.0, 0.0]
    assert np.isfinite(out["perplexity"][4])

    ids = np.array([[5, 6, 7, 8], [9, 10, 0, 0]], "int32")
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], "int32")
    logits = to_numpy(reference_lm.predict({"token_ids": ids, "padding_mask": mask}, verbose=0))
    np.testing.assert_allclose(served["logits"]["logits"], logits, atol=1e-5)


def test_bad_input_gets_an_answer(served, reference_lm, tokenizer):
    out = served["bad_batch"]
    # Empty and whitespace-only prompts: an empty answer, not an error.
    for row in (0, 4):
        assert out["text"][row] == b"" and out["completion"][row] == b""
        assert out["lengths"][row] == 0 and out["prompt_lengths"][row] == 0
        assert not out["token_ids"][row].any()
    # A prompt longer than the context is kept whole, with no room for new tokens (the library's
    # rule, where `generate` raises a ValueError): it answers with its own text.
    whole = _ids(tokenizer, LONG)
    assert out["prompt_lengths"][1] == out["lengths"][1] == len(whole) > CONTEXT
    assert _rows(out)[1] == whole and out["completion"][1] == b"" and out["max_new_tokens"][1] == 0
    assert out["text"][1] == tokenizer.detokenize(np.array(whole, "int32")).numpy()
    # Invalid UTF-8 bytes are dropped by the tokenizer; rows do not disturb each other.
    assert _rows(out)[2] == _rows(out)[3] == _rows(served["the_cat"])[0]
    assert out["text"][2] == out["text"][3] == served["the_cat"]["text"][0]


def test_max_new_tokens_is_clamped(served, reference_lm, tokenizer):
    prompt = _ids(tokenizer, "the cat sat")
    for key in ("new_negative", "new_zero"):
        out = served[key]
        assert out["lengths"].tolist() == [len(prompt) + 1]
        assert _rows(out) == [reference_lm.generate(prompt, max_new_tokens=1)]
    # A huge request is capped to what fits after the whole prompt, and the cap is reported.
    huge = served["new_huge"]
    assert huge["prompt_lengths"].tolist() == [len(prompt)] and huge["lengths"].tolist() == [CONTEXT]
    assert huge["max_new_tokens"].tolist() == [CONTEXT - len(prompt)]
    assert _rows(huge) == [reference_lm.generate(prompt, max_new_tokens=CONTEXT - len(prompt))]
    # The library caps by the same rule (with a warning): the same tokens.
    with pytest.warns(UserWarning, match="does not fit"):
        assert _rows(huge) == [reference_lm.generate(prompt, max_new_tokens=10**9)]
    # Rows are capped independently: a prompt with no room generates nothing, the other all that fits.
    long_huge = served["long_huge"]
    assert long_huge["prompt_lengths"].tolist() == [len(_ids(tokenizer, LONG)), len(prompt)]
    assert long_huge["max_new_tokens"].tolist() == [0, CONTEXT - len(prompt)]
    assert _rows(long_huge) == [_ids(tokenizer, LONG), _rows(huge)[0]]
    assert served["bad_batch"]["max_new_tokens"].tolist() == [0, 0, 4, 4, 0]
    empty = served["empty_batch"]
    assert empty["text"].shape == (0,) and empty["token_ids"].shape[0] == 0
    assert served["empty_score"]["perplexity"].shape == (0,)


def test_token_ids_signature_rejects_bad_ids(served, tokenizer):
    assert f"token ids must be < {tokenizer.vocabulary_size()}" in served["bad_ids"]["error"]
    assert f"at most {CONTEXT} tokens" in served["too_long"]["error"]


def test_inputs_of_the_wrong_rank_are_refused_naming_the_input_and_its_shape(served):
    """Not "Incompatible shapes: [3] vs. [2]" from an internal node: InvalidArgument naming the
    input and the shape (so the rank) its signature declares."""
    expected = {0: "[]", 1: "[?]", 2: "[?,?]"}
    keys = [key for key in served if key.startswith("rank/")]
    assert len(keys) == 6
    for key in keys:
        _, name, _ = key.split("/")
        error = served[key].get("error")
        assert error is not None, key  # never an answer
        declared = {"token_ids": 2, "padding_mask": 2, "text": 1, "max_new_tokens": 0}[name]
        assert f"{name}_must_have_shape" in error and f"expected shape {expected[declared]}" in error, (key, error)
        assert "Incompatible shapes" not in error


# === export --precision bfloat16 / int8 (once): the library's own 16- and 8-bit answers ===


@ONLY_TF
@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_dtype_export_matches_the_library_in_that_dtype(dtype, dtype_exports, served, lm_preset, tokenizer):
    lm = _library_lm(lm_preset, dtype)
    prompts = [_ids(tokenizer, p) for p in PROMPTS]
    assert _rows(served[f"{dtype}/greedy"]) == lm.generate(prompts, max_new_tokens=5)
    assert [t.decode() for t in served[f"{dtype}/greedy"]["text"]] == lm.generate(PROMPTS, max_new_tokens=5)
    ids = np.array([[5, 6, 7, 8], [9, 10, 0, 0]], "int32")
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], "int32")
    expected = to_numpy(keras.ops.cast(lm.predict({"token_ids": ids, "padding_mask": mask}, verbose=0), "float32"))
    got = served[f"{dtype}/logits"]["logits"]
    assert got.dtype == np.float32 and got.shape == expected.shape
    # Same weights and maths, only the kernels differ (XLA against TensorFlow's graph kernels):
    # within a few bfloat16 roundings of the logits' size.
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], expected[real], atol=0.02 * np.abs(expected[real]).max() + 1e-5)
    # The weights are stored in that dtype (the point of the export: fewer bytes read per token).
    stored = tf.train.load_checkpoint(str(dtype_exports[dtype] / "variables" / "variables")).get_variable_to_dtype_map()
    kinds = {tf.as_dtype(d).name for d in stored.values()}
    assert ("bfloat16" in kinds and "float32" not in kinds) if dtype == "bfloat16" else ("int8" in kinds)


@ONLY_TF
def test_export_dtype_errors(lm_preset, task_exports, tmp_path):
    from keras_gpt1.export import export_saved_model

    for bad in ("float16", "int4", "bf16", "BFLOAT16", ""):
        code, _, err = _cli(["export", "--model", str(lm_preset), "--output", str(tmp_path / "o"), "--precision", bad])
        assert code == 2 and "--precision: invalid choice" in err, err
    for bad in ("float16", "int4", "Int8", 16, ["int8"]):
        with pytest.raises(ValueError, match=r"Unknown export dtype .*float32, bfloat16, int8"):
            export_saved_model(str(lm_preset), str(tmp_path / "o"), dtype=bad)
    classifier, _ = task_exports["classification"]
    with pytest.raises(ValueError, match="`dtype='int8'` applies to causal LMs"):  # the Python argument
        export_saved_model(classifier, str(tmp_path / "o"), dtype="int8")
    quantized = tmp_path / "int8_preset"
    _library_lm(lm_preset, "int8").save_to_preset(str(quantized))
    for other in ("bfloat16", "float32"):
        code, _, err = _cli(
            ["export", "--model", str(quantized), "--output", str(tmp_path / "o"), "--precision", other]
        )
        assert code == 2 and f"already quantized (int8): it cannot be exported with --precision {other}" in err, err
    assert not (tmp_path / "o").exists()


# === Once: graph contents, TF's own tools, tf-keras, errors ===


@ONLY_TF
def test_graph_uses_only_core_ops_tf_serving_links(lm_export, task_exports, dtype_exports):
    from tensorflow.python.framework import op_def_registry

    from keras_gpt1.export.saved_model import graph_op_types

    ops = set(graph_op_types(lm_export))
    # The loop, the tokenizer, the attention, the KV cache writes.
    assert {"While", "HashTableV2", "UnicodeDecode", "BatchMatMulV2", "TensorStridedSliceUpdate"} <= ops
    assert "Einsum" not in ops  # the attention's einsums are traced as batched matmuls
    for _, path in task_exports.values():
        ops.update(graph_op_types(path))
    int8_ops = set(graph_op_types(dtype_exports["int8"]))
    assert {"BatchMatMulV3", "Round"} <= int8_ops  # int8 products, activations quantized in-graph
    ops.update(int8_ops, graph_op_types(dtype_exports["bfloat16"]))
    assert ops <= ALLOWED_OPS, f"ops outside the allow-list: {sorted(ops - ALLOWED_OPS)}"
    assert not {op for op in ops if op.startswith("Xla") or "PyFunc" in op or ">" in op}
    # Registered by TensorFlow itself (this process has not loaded tensorflow-text's kernels).
    assert all(op_def_registry.get(op) is not None for op in ops)


SAVED_MODEL_CLI = textwrap.dedent(
    """
    import json, sys
    import tensorflow_text  # first, as a server links its ops
    from absl import flags
    from tensorflow.python.tools import saved_model_cli

    # Each command is parsed as `saved_model_cli.main()` parses it (absl flags, then argparse);
    # both run in this one process, so TensorFlow starts once.
    parser = saved_model_cli.create_parser()
    for argv in map(json.loads, sys.argv[1:]):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["saved_model_cli", *argv])
        parser.parse_args(argv).func()
    """
)


def _saved_model_cli(commands, tmp_path):
    # TF's own saved_model_cli module. `run` opens a TF1 session on the exported MetaGraph and
    # feeds tensors by name, as TF Serving's loader does; `tf.saved_model.load` alone would not
    # catch a graph that only the TF2 loader can restore.
    proc = subprocess.run(
        [sys.executable, "-c", SAVED_MODEL_CLI, *map(json.dumps, commands)],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@once_in("jax")
def test_saved_model_cli_show_and_run(lm_export, served, tmp_path):
    outdir = tmp_path / "outputs"
    exprs = "text=[b'the cat sat', b'a dog', b'the bird sang a song on the'];max_new_tokens=5"
    shown = _saved_model_cli(
        [["show", "--dir", str(lm_export), "--all"],
         ["run", "--dir", str(lm_export), "--tag_set", "serve", "--signature_def", "generate",
          "--input_exprs", exprs, "--outdir", str(outdir)]],
        tmp_path,
    )  # fmt: skip
    for fragment in ("signature_def['generate']", "inputs['max_new_tokens'] tensor_info", "dtype: DT_STRING",
                     "outputs['completion'] tensor_info", "signature_def['score']"):  # fmt: skip
        assert fragment in shown
    for key in ("token_ids", "lengths", "text", "completion"):
        np.testing.assert_array_equal(np.load(outdir / f"{key}.npy", allow_pickle=True), served["greedy"][key])


TF_KERAS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    import tf_keras

    class GPT1Serving(tf_keras.layers.Layer):
        \"\"\"One signature of the exported SavedModel as a tf-keras layer.\"\"\"

        def __init__(self, export_dir, signature="serving_default", output_key="completion", **kwargs):
            super().__init__(trainable=False, **kwargs)
            self.loaded = tf.saved_model.load(export_dir)  # owns the variables and tables
            self.signature_name, self.output_key = signature, output_key

        def call(self, text):
            return self.loaded.signatures[self.signature_name](text=text)[self.output_key]

    text = tf_keras.Input(shape=(), dtype=tf.string, name="text")
    completion = GPT1Serving(sys.argv[1])(text)
    perplexity = GPT1Serving(sys.argv[1], "score", "perplexity")(text)
    model = tf_keras.Model(text, {"completion": completion, "perplexity": perplexity})
    out = model.predict(tf.constant(["the cat sat", "a dog"]), verbose=0)
    completions = [c.decode() for c in out["completion"]]
    print(json.dumps([tf_keras.__version__, completions, out["perplexity"].tolist()]))
    """
)


@once_in("torch")
def test_tf_keras_program_uses_the_export(lm_export, served, reference_lm, tmp_path):
    pytest.importorskip("tf_keras")
    script = tmp_path / "legacy.py"
    script.write_text(TF_KERAS_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(lm_export)],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    version, completions, perplexities = json.loads(proc.stdout.strip().splitlines()[-1])
    assert version.startswith("2.")  # Keras 2
    assert completions == [c.decode() for c in served["default"]["completion"][:2]]
    expected = [r["perplexity"] for r in reference_lm.score(["the cat sat", "a dog"])]
    np.testing.assert_allclose(perplexities, expected, rtol=1e-5)


@ONLY_TF
def test_export_errors(lm_preset, tmp_path):
    code, _, err = _cli(["export", "--model", str(tmp_path / "missing"), "--output", str(tmp_path / "o")])
    assert code == 2 and "does not exist" in err
    no_tokenizer = tmp_path / "no_tokenizer"
    GPT1CausalLM.from_preset(str(lm_preset)).backbone.save_to_preset(str(no_tokenizer))
    code, _, err = _cli(["export", "--model", str(no_tokenizer), "--output", str(tmp_path / "o")])
    assert code == 2 and "no tokenizer" in err
    (tmp_path / "o" / "1").mkdir(parents=True)
    code, _, err = _cli(["export", "--model", str(lm_preset), "--output", str(tmp_path / "o")])
    assert code == 2 and "already exists: pick another --version, or pass --overwrite." in err
    code, _, err = _cli(["export", "--model", str(lm_preset), "--output", str(tmp_path / "o"), "--version", "0"])
    assert code == 2 and "--version must be an integer" in err


def test_export_is_readable_by_other_users(lm_export):
    """Modes follow the umask (tempfile's staging directory alone would be 0700)."""
    mask = os.umask(0)
    os.umask(mask)
    for root, dirs, files in os.walk(lm_export):
        assert os.stat(root).st_mode & 0o777 == 0o777 & ~mask, root
        for name in files:
            assert os.stat(os.path.join(root, name)).st_mode & 0o777 == 0o666 & ~mask, name


@ONLY_TF
def test_disk_full_during_export_leaves_no_partial_version(lm_preset, tmp_path, monkeypatch):
    import errno

    from keras_gpt1.export import saved_model

    def full(module, signatures, directory):
        with open(os.path.join(directory, "saved_model.pb"), "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(saved_model, "save_serving_module", full)
    code, _, err = _cli(["export", "--model", str(lm_preset), "--output", str(tmp_path / "o")])
    assert code == 1 and "No space left on the device while writing SavedModel" in err
    assert "o/1'" in err and "needs about" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # no partial version, and the folder it made is gone


@once_in("torch")  # TensorFlow exports in-process (test_export_errors); JAX and PyTorch alike
def test_subprocess_export_reports_user_errors(lm_preset, tmp_path):
    from keras_gpt1.export import export_saved_model

    no_tokenizer = tmp_path / "no_tokenizer"
    GPT1CausalLM.from_preset(str(lm_preset)).backbone.save_to_preset(str(no_tokenizer))
    # The TensorFlow worker's error comes back as data, raised here as the same class.
    with pytest.raises(ValueError, match="has no tokenizer"):
        export_saved_model(str(no_tokenizer), str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_saved_model(str(tmp_path / "missing"), str(tmp_path / "out"))


@ONLY_TF
def test_the_worker_raises_what_the_export_in_this_process_raises(lm_preset, tmp_path):
    """The worker that exports from JAX and PyTorch, started from here: an error comes back as
    the class and message the same export raises in this process (Python's words: the command
    line rewords them as flags), and a folder this process holds is refused to it as to any
    other writer, naming this process."""
    from keras_gpt1.export import ExportOptions
    from keras_gpt1.export.saved_model import export_in_process
    from keras_gpt1.export.worker import export_in_worker
    from keras_gpt1.utils.locks import OutputInUseError, output_lock

    (tmp_path / "taken" / "2").mkdir(parents=True)
    raised = []
    for export in (export_in_process, export_in_worker):
        with pytest.raises(ValueError) as caught:
            export(str(lm_preset), str(tmp_path / "taken"), ExportOptions(version=2))
        raised.append((type(caught.value), str(caught.value)))
    assert raised[0] == raised[1] and "already exists: pick another `version`, or pass `overwrite=True`" in raised[1][1]
    with output_lock(tmp_path / "held", "export"):
        with pytest.raises(OutputInUseError, match=f"in use by pid {os.getpid()} ") as caught:
            export_in_worker(str(lm_preset), str(tmp_path / "held"), ExportOptions())
    assert caught.value.holder["pid"] == os.getpid()
    assert not (tmp_path / "held").exists()


# === Task models (once): packed in the graph, answers equal to `predict` on the real preprocessors ===

CLASSIFIER_LENGTH = 20  # the classifier's finetune.json packed length (the others: CONTEXT)
LABEL_NAMES = ["negative", "neutral", "positive"]
TASK_INPUTS = {
    "classification": {"text": ["the cat sat on the mat .", "", LONG, b"a \xffdog"]},
    "entailment": {"text_a": ["the cat sat", "", LONG, LONG], "text_b": ["a cat sat", "a dog", "", LONG]},
    "similarity": {"text_a": ["the cat sat", LONG, ""], "text_b": ["a cat sat", "the dog", ""]},
    "multiple-choice": {
        "context": ["the cat sat on the", LONG],
        "candidates": [["mat .", "log .", ""], ["a song", LONG, "the dog"]],
    },
}


def _task_models(tokenizer):
    from keras_gpt1.tasks import (
        GPT1MultipleChoice,
        GPT1MultipleChoicePreprocessor,
        GPT1Similarity,
        GPT1SimilarityPreprocessor,
        GPT1TextClassifier,
        GPT1TextClassifierPreprocessor,
    )

    def backbone():
        return GPT1Backbone(vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=32,
                            intermediate_dim=64, max_sequence_length=CONTEXT, dropout=0.0)  # fmt: skip

    keras.utils.set_random_seed(9)
    # The classifier's preprocessor takes one text (as `finetune` builds it); the entailment
    # one takes either, so its export needs `task="entailment"` (see `task_exports`).
    single, either = (GPT1TextClassifierPreprocessor(tokenizer, num_segments=n) for n in (1, None))
    return {
        "classification": GPT1TextClassifier(backbone(), num_classes=3, preprocessor=single),
        "entailment": GPT1TextClassifier(backbone(), num_classes=3, preprocessor=either),
        "similarity": GPT1Similarity(backbone(), num_classes=None, preprocessor=GPT1SimilarityPreprocessor(tokenizer)),
        "multiple-choice": GPT1MultipleChoice(backbone(), preprocessor=GPT1MultipleChoicePreprocessor(tokenizer)),
    }


@pytest.fixture(scope="module")
def task_exports(tokenizer, tmp_path_factory):
    """`{task: (model, export_dir)}`; empty except in the TensorFlow run (the task signatures are
    built by the same code whatever backend trained the model, which the LM checks)."""
    if BACKEND != "tensorflow":
        return {}
    from keras_gpt1.export import export_saved_model
    from keras_gpt1.presets import FINETUNE_FILE

    exports = {}
    for task, model in _task_models(tokenizer).items():
        preset = tmp_path_factory.mktemp(f"{task}_preset")
        model.save_to_preset(str(preset))  # exported from the preset, as the CLI does
        task_arg = "entailment" if task == "entailment" else None
        if task == "classification":
            # As `keras-gpt1 finetune` leaves it: the record gives classes and packed length.
            record = {"task": task, "sequence_length": CLASSIFIER_LENGTH, "label_names": LABEL_NAMES}
            (preset / FINETUNE_FILE).write_text(json.dumps(record))
        exports[task] = (model, export_saved_model(str(preset), tmp_path_factory.mktemp(task), task=task_arg))
    return exports


def _expected_task_output(task, model, tokenizer):
    from keras_gpt1.tasks.registry import get_family

    length = CLASSIFIER_LENGTH if task == "classification" else CONTEXT
    preprocessor = get_family(task).make_preprocessor(tokenizer, length)
    inputs = {k: _strings(v) for k, v in TASK_INPUTS[task].items()}
    args = list(inputs.values())
    packed = preprocessor(args[0] if len(args) == 1 else tuple(args))
    return to_numpy(model.predict(packed, verbose=0))


@ONLY_TF
@pytest.mark.parametrize("task", list(TASK_INPUTS))
def test_task_signatures_match_keras(task, task_exports, served, tokenizer):
    from keras_gpt1.export.saved_model import signature_summary

    model, path = task_exports[task]
    expected = _expected_task_output(task, model, tokenizer)
    out = served[task]
    summary = signature_summary(path)["serving_default"]
    assert sorted(summary["inputs"]) == sorted(TASK_INPUTS[task])
    if task == "similarity":  # regression: one score per pair
        assert sorted(out) == ["score"]
        np.testing.assert_allclose(out["score"], expected, atol=1e-5)
    else:
        names = ["label", "label_name", "probabilities"] if task == "classification" else ["label", "probabilities"]
        assert sorted(out) == names
        probabilities = to_numpy(keras.ops.softmax(expected, axis=-1))
        np.testing.assert_allclose(out["probabilities"], probabilities, atol=1e-5)
        assert out["label"].tolist() == expected.argmax(-1).tolist()
        if task == "classification":
            assert [n.decode() for n in out["label_name"]] == [LABEL_NAMES[i] for i in out["label"]]
    empty = served[f"{task}/empty"]
    assert all(v.shape[0] == 0 for v in empty.values())
    if task == "multiple-choice":
        # No candidates: an empty answer per row; a candidates batch other than the context's:
        # InvalidArgument naming the inputs, not an internal error.
        none = served["multiple-choice/no_candidates"]
        assert none["probabilities"].shape == (2, 0) and none["label"].tolist() == [-1, -1]
        for key in ("more_rows", "fewer_rows"):
            assert "`candidates` must have one row per `context` text" in served[f"multiple-choice/{key}"]["error"]


@ONLY_TF
def test_export_task_that_is_not_the_models_is_refused_naming_its_task(tokenizer, lm_preset, tmp_path):
    """`--task` on a causal LM, or a task the model was not built or fine-tuned for: one line
    naming what the model is; before anything is traced or written."""
    from keras_gpt1.presets import FINETUNE_FILE

    models = _task_models(tokenizer)
    presets = {}
    for task in ("classification", "entailment"):
        presets[task] = tmp_path / f"{task}_preset"
        models[task].save_to_preset(str(presets[task]))
    # The entailment model's preprocessor takes one text or two: its finetune.json decides.
    (presets["entailment"] / FINETUNE_FILE).write_text(json.dumps({"task": "entailment"}))
    cases = [
        (lm_preset, "entailment", "causal language model"),
        (lm_preset, "classification", "causal language model"),
        (presets["classification"], "entailment", "serves the 'classification' task"),
        (presets["classification"], "similarity", "this model serves 'classification'"),
        (presets["entailment"], "classification", "fine-tuned for the 'entailment' task"),
    ]
    for preset, task, names in cases:
        out = tmp_path / f"out_{task}"
        argv = ["export", "--model", str(preset), "--output", str(out), "--task", task]
        if task == "similarity":  # not a --task choice: the Python API
            from keras_gpt1.export import export_saved_model

            with pytest.raises(ValueError, match=names):
                export_saved_model(str(preset), str(out), task=task)
        else:
            code, _, err = _cli(argv)
            assert code == 2 and err.count("\n") == 1 and names in err, err
            assert f"--task {task}" in err or "leave --task out" in err or "Leave the task out" in err, err
        assert not out.exists() or not os.listdir(out)


@ONLY_TF
def test_task_export_reads_the_family_from_the_model(tokenizer):
    """Without `task`, a classifier whose preprocessor takes pairs (as `finetune` builds it for
    entailment) serves entailment's two inputs; a `task` the model does not serve is refused."""
    from keras_gpt1.export.saved_model import build_serving_module
    from keras_gpt1.tasks import GPT1TextClassifier
    from keras_gpt1.tasks.registry import get_family

    backbone = GPT1Backbone(vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=32,
                            intermediate_dim=64, max_sequence_length=CONTEXT)  # fmt: skip
    preprocessor = get_family("entailment").make_preprocessor(tokenizer)
    pairs = GPT1TextClassifier(backbone, num_classes=2, preprocessor=preprocessor)
    _, signatures = build_serving_module(pairs)
    assert [spec.name for spec in signatures["serving_default"].input_signature] == ["text_a", "text_b"]
    refused = r"A GPT1TextClassifier does not serve the 'similarity' task \(GPT1Similarity does\)"
    with pytest.raises(ValueError, match=refused):
        build_serving_module(pairs, task="similarity")


# === Core-TF replacements: same results as what they replace ===


def test_round_robin_trim_equals_tensorflow_text():
    tensorflow_text = pytest.importorskip("tensorflow_text")
    from keras_gpt1.export.saved_model import round_robin_lengths

    rng = np.random.default_rng(0)
    for segments in (1, 2, 3):
        lengths = rng.integers(0, 12, size=(64, segments)).astype("int32")
        for budget in (1, 5, 8, 13, 40):
            ragged = [tf.RaggedTensor.from_row_lengths(tf.zeros([int(lengths[:, i].sum())], tf.int32), lengths[:, i])
                      for i in range(segments)]  # fmt: skip
            trimmed = tensorflow_text.RoundRobinTrimmer(max_seq_length=budget).trim(ragged)
            expected = np.stack([t.row_lengths().numpy() for t in trimmed], axis=1)
            np.testing.assert_array_equal(round_robin_lengths(lengths, budget).numpy(), expected)


def test_dynamic_update_slice_equals_slice_update():
    from keras_gpt1.export.saved_model import dynamic_update_slice

    rng = np.random.default_rng(1)
    cache = rng.normal(size=(2, 7, 3, 4)).astype("float32")
    update = rng.normal(size=(2, 2, 3, 4)).astype("float32")
    for start in (0, 3, 5, 6):  # 6: clamped to 5 so that the update fits, as XLA does
        expected = cache.copy()
        expected[:, min(start, 5) : min(start, 5) + 2] = update
        got = dynamic_update_slice(tf.constant(cache), (0, start, 0, 0), tf.constant(update)).numpy()
        np.testing.assert_array_equal(got, expected)


def test_batch_matmul_attention_equals_keras():
    from keras.src.backend.tensorflow import nn

    from keras_gpt1.export.saved_model import batch_matmul_attention

    rng = np.random.default_rng(2)
    # One query per row takes `one_query_attention` (a decode step); longer queries the general
    # path. Several batch sizes, head counts and key lengths, with and without a mask.
    cases = [
        (1, 2, 3, 7, "float32", True, 1e-6),
        (1, 1, 1, 1, "float32", True, 1e-6),
        (1, 3, 12, 5, "float32", False, 1e-6),
        (1, 2, 4, 33, "float32", True, 1e-6),
        (5, 2, 3, 7, "float32", True, 1e-6),
        (5, 1, 2, 5, "float32", False, 1e-6),
        (1, 2, 3, 7, "bfloat16", True, 1e-2),
        (1, 2, 3, 9, "float16", True, 1e-2),
    ]
    for query_length, batch, heads, keys, dtype, masked, tolerance in cases:
        query, key, value = (
            tf.cast(rng.normal(size=(batch, n, heads, 4)).astype("float32"), dtype) for n in (query_length, keys, keys)
        )
        mask = None
        if masked:
            visible = rng.random((batch, 1, query_length, keys)) < 0.7
            visible[..., 0] = True  # every query sees at least one key
            mask = tf.constant(visible)
        expected = nn.dot_product_attention(query, key, value, mask=mask)
        got = batch_matmul_attention(query, key, value, mask=mask)
        assert got.dtype == expected.dtype and got.shape == expected.shape, (query_length, batch, heads, keys)
        np.testing.assert_allclose(tf.cast(got, tf.float32), tf.cast(expected, tf.float32), atol=tolerance)


# === The export's decode step and token table ===


@ONLY_TF
@pytest.mark.parametrize("variant", ["float32", "lora", "bfloat16", "int8", "int8 batch 1", "int8 lora"])
def test_serving_engine_step_equals_the_keras_layers(variant, lm_preset):
    """The lean decode step (float32, bfloat16, LoRA merged, int8 with float32 products above one
    row and int8 products at one row) gives the Keras layers' logits and cache, read through the
    transposed token table; an int8 model with LoRA adapters decodes through the Keras layers."""
    from keras_gpt1.export.decode_step import ServingEngine, make_serving_engine
    from keras_gpt1.export.token_table import TransposedTokenTable
    from keras_gpt1.generation.keras_engine import KerasEngine

    lm = _library_lm(lm_preset, {"lora": "float32", "int8 lora": "int8", "int8 batch 1": "int8"}.get(variant, variant))
    if variant.endswith("lora"):
        lm.backbone.enable_lora(2, target_layer_names=["c_attn", "c_proj", "c_fc"])
        rng = np.random.default_rng(3)
        for v in lm.backbone.trainable_variables:  # adapters start as a no-op: make them count
            if "lora" in v.path:
                v.assign(rng.normal(scale=0.2, size=v.shape).astype("float32"))
    token_table = TransposedTokenTable(lm)
    engine = make_serving_engine(lm, token_table)
    assert type(engine) is (KerasEngine if variant == "int8 lora" else ServingEngine)
    int8 = variant.startswith("int8")
    assert token_table.table.dtype == (tf.int8 if int8 else tf.bfloat16 if variant == "bfloat16" else tf.float32)
    embedding = lm.backbone.token_embedding

    reference = KerasEngine(lm)
    rows = 1 if variant.endswith("batch 1") else 2
    prompt = tf.constant([[5, 6, 7, 8, 9], [9, 10, 11, 3, 4]][:rows], tf.int32)
    _, cache = reference.prefill(prompt, 5, 9)
    next_ids = tf.constant([12, 13][:rows], tf.int32)
    expected_logits, expected_cache = reference.step(next_ids, cache, 5)
    swapped = "quantized_call" if int8 else "call"
    with token_table.tracing():
        assert swapped in embedding.__dict__
        logits, new_cache = tf.function(engine.step, autograph=False)(next_ids, cache, tf.constant(5))
    assert swapped not in embedding.__dict__  # the caller's layer is left as it was
    # bfloat16: within about one rounding step of bfloat16 (2**-7 near 1): TensorFlow may round a
    # product's partial sums in another order for a `[batch, in]` than a `[batch, 1, in]` input.
    tolerance = 1e-2 if variant == "bfloat16" else 1e-4
    np.testing.assert_allclose(tf.cast(logits, tf.float32), expected_logits, atol=tolerance)
    for (k, v), (ek, ev) in zip(new_cache, expected_cache):
        np.testing.assert_allclose(tf.cast(k, tf.float32), tf.cast(ek, tf.float32), atol=tolerance)
        np.testing.assert_allclose(tf.cast(v, tf.float32), tf.cast(ev, tf.float32), atol=tolerance)


@ONLY_TF
@pytest.mark.parametrize("inputs", [16, 1024, 1025, 3072])
def test_int8_matmul_equals_the_int32_product(inputs):
    """float32 products over chunks of 1024 inputs give TensorFlow's int32 product bit for bit,
    at the extremes too: 1024 products of -128 * -128 sum to 2**24, the largest such sum."""
    from keras_gpt1.export.int8_products import EXACT_INPUTS, int8_matmul

    assert EXACT_INPUTS == 1024
    rng = np.random.default_rng(inputs)
    cases = [
        (rng.integers(-128, 128, (5, inputs)), rng.integers(-128, 128, (inputs, 7))),
        (np.full((1, inputs), -128), np.full((inputs, 3), -128)),  # every partial sum at its largest
        (np.full((2, inputs), 127), np.full((inputs, 2), -128)),
        (rng.choice([-128, 127], (3, inputs)), rng.choice([-128, 127], (inputs, 4))),
    ]
    for rows, kernel in cases:
        rows, kernel = tf.constant(rows, tf.int8), tf.constant(kernel, tf.int8)
        expected = tf.linalg.matmul(rows, kernel, output_type=tf.int32)
        got = tf.function(int8_matmul, autograph=False)(rows, kernel)
        assert got.dtype == tf.int32
        np.testing.assert_array_equal(got.numpy(), expected.numpy())


@ONLY_TF
def test_exact_int8_layers_compute_the_keras_int8_calls_while_tracing():
    """Inside `exact_int8_layers`, plain int8 Dense layers give Keras's own outputs bit for bit
    (ranks 2 and 3, with and without bias, an activation, a width of two chunks); layers quantized
    otherwise keep Keras's call; leaving the block restores every layer."""
    from keras_gpt1.export.int8_products import exact_int8_layers

    def dense(units, inputs, **kwargs):
        layer = keras.layers.Dense(units, kernel_initializer=keras.initializers.RandomNormal(seed=units), **kwargs)
        layer.build((None, inputs))
        return layer

    plain = [dense(6, 1100), dense(5, 16, use_bias=False), dense(4, 16, activation="relu")]
    for layer in plain:
        layer.quantize("int8")
    lora = dense(3, 16)
    lora.quantize("int8")
    lora.enable_lora(2)
    weights_only = dense(3, 16)
    weights_only.quantize("int8", config=keras.quantizers.Int8QuantizationConfig(activation_quantizer=None))
    branches = keras.Input((16,))  # plain[0] (1100 inputs) is a block of its own
    model = keras.Model(branches, [layer(branches) for layer in plain[1:] + [lora, weights_only]])
    rng = np.random.default_rng(0)
    inputs = {id(plain[0]): [tf.constant(rng.normal(size=(3, 1100)) * 4, tf.float32)]}
    for layer in plain[1:] + [lora, weights_only]:
        inputs[id(layer)] = [tf.constant(rng.normal(size=shape) * 4, tf.float32) for shape in ((3, 16), (2, 4, 16))]

    def outputs(layers):
        return [layer(x) for layer in layers for x in inputs[id(layer)]]

    everything = plain + [lora, weights_only]
    expected = outputs(everything)
    with exact_int8_layers(model), exact_int8_layers(plain[0]):
        assert all("_int8_call" in layer.__dict__ for layer in plain)
        assert "_int8_call" not in lora.__dict__ and "_int8_call" not in weights_only.__dict__
        with exact_int8_layers(model):  # nested: restores what it found
            pass
        assert all("_int8_call" in layer.__dict__ for layer in plain)
        got = tf.function(lambda: outputs(everything), autograph=False)()
        traced = tf.function(lambda: outputs(plain), autograph=False).get_concrete_function().graph
        assert "BatchMatMulV3" not in {op.type for op in traced.get_operations()}  # no int8 product left
    assert not any("_int8_call" in layer.__dict__ for layer in everything)
    for e, g in zip(expected, got):
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_array_equal(g.numpy(), e.numpy())


def _token_table_for(layer):
    from types import SimpleNamespace

    from keras_gpt1.export.token_table import TransposedTokenTable

    return TransposedTokenTable(SimpleNamespace(backbone=SimpleNamespace(token_embedding=layer)))


@ONLY_TF
@pytest.mark.parametrize("dtype, hidden", [("float32", 16), ("bfloat16", 16), ("int8", 16), ("int8", 1100)])
def test_transposed_token_table_computes_the_layers_outputs(dtype, hidden):
    """Lookups and logits read through the transposed table are the Keras layer's: int8 bit for
    bit, through float32 products over one chunk of inputs (16) or two (1100)."""
    layer = keras.layers.ReversibleEmbedding(
        50,
        hidden,
        tie_weights=True,
        embeddings_initializer=keras.initializers.RandomNormal(seed=1),
        dtype="bfloat16" if dtype == "bfloat16" else "float32",
    )
    layer.build()
    if dtype == "int8":
        layer.quantize("int8")
    token_table = _token_table_for(layer)
    assert token_table.table.shape == (hidden, 50)
    assert token_table.table.dtype == {"bfloat16": tf.bfloat16, "int8": tf.int8}.get(dtype, tf.float32)
    rng = np.random.default_rng(0)
    ids = [tf.constant([3, 49, 0]), tf.constant([[1, 4, 49], [0, 7, 7]])]
    states = [tf.cast(rng.normal(size=shape) * 3, layer.compute_dtype) for shape in ((3, hidden), (2, 4, hidden))]

    def outputs():
        return [layer(x) for x in ids] + [layer(h, reverse=True) for h in states]

    expected = outputs()
    with token_table.tracing():
        got = tf.function(outputs, autograph=False)()
    for e, g in zip(expected, got):
        assert g.dtype == e.dtype and g.shape == e.shape
        if dtype == "int8":
            np.testing.assert_array_equal(g.numpy(), e.numpy())
        else:
            np.testing.assert_allclose(tf.cast(g, tf.float32), tf.cast(e, tf.float32), rtol=1e-5, atol=1e-5)


@ONLY_TF
def test_transposed_token_table_leaves_other_tables_to_keras():
    """Tables whose maths the transposed one does not reproduce keep the Keras layer's call."""

    class OwnCall(keras.layers.ReversibleEmbedding):
        def call(self, inputs, reverse=False):
            return super().call(inputs, reverse=reverse) * 2

    def int8_with_lora():
        layer = keras.layers.ReversibleEmbedding(50, 8)
        layer.build()
        layer.quantize("int8")
        layer.enable_lora(2)
        return layer

    def int8_weights_only():
        layer = keras.layers.ReversibleEmbedding(50, 8)
        layer.build()
        layer.quantize("int8", config=keras.quantizers.Int8QuantizationConfig(activation_quantizer=None))
        return layer

    cases = {
        "untied": lambda: keras.layers.ReversibleEmbedding(50, 8, tie_weights=False),
        "int8 weights only": int8_weights_only,
        "soft-capped": lambda: keras.layers.ReversibleEmbedding(50, 8, logit_soft_cap=30.0),
        "reverse dtype": lambda: keras.layers.ReversibleEmbedding(50, 8, reverse_dtype="float32"),
        "own call": lambda: OwnCall(50, 8),
        "int8 with LoRA": int8_with_lora,
    }
    for name, make in cases.items():
        layer = make()
        if not layer.built:
            layer.build()
        token_table = _token_table_for(layer)
        assert token_table.table is None and not token_table.replaced, name
        with token_table.tracing():
            assert "call" not in layer.__dict__ and "quantized_call" not in layer.__dict__, name


def test_export_stores_the_token_table_once(lm_export, lm_preset):
    """The causal LM's export holds its token table `[hidden, vocabulary]` only, equal to the
    model's embedding transposed, and every other variable once."""
    checkpoint = str(lm_export / "variables" / "variables")
    exported = GPT1CausalLM.from_preset(str(lm_preset))  # as exported: dropout's seed states too
    backbone = exported.backbone
    vocabulary, hidden = backbone.vocabulary_size, backbone.hidden_dim
    shapes = [tuple(shape) for name, shape in tf.train.list_variables(checkpoint) if "/.ATTRIBUTES/" in name]
    assert (vocabulary, hidden) not in shapes
    assert shapes.count((hidden, vocabulary)) == 1
    stored = sum(int(np.prod(s)) for s in shapes if s)
    assert stored == sum(int(np.prod(v.shape)) for v in exported.variables)
    reader = tf.train.load_checkpoint(checkpoint)
    (name,) = [n for n, shape in tf.train.list_variables(checkpoint) if tuple(shape) == (hidden, vocabulary)]
    np.testing.assert_array_equal(reader.get_tensor(name), to_numpy(backbone.token_embedding.embeddings).T)


@ONLY_TF
def test_int8_export_stores_its_token_table_once(dtype_exports, lm_preset):
    """The int8 export holds the int8 token table `[hidden, vocabulary]` only, equal to the
    quantized model's int8 values transposed (the scales stay as they are)."""
    lm = _library_lm(lm_preset, "int8")
    embedding = lm.backbone.token_embedding
    checkpoint = str(dtype_exports["int8"] / "variables" / "variables")
    reader = tf.train.load_checkpoint(checkpoint)
    tables = [n for n, shape in tf.train.list_variables(checkpoint) if len(shape) == 2 and embedding.input_dim in shape]
    assert len(tables) == 1 and tuple(reader.get_variable_to_shape_map()[tables[0]]) == (
        embedding.output_dim,
        embedding.input_dim,
    )
    assert reader.get_variable_to_dtype_map()[tables[0]] == tf.int8
    np.testing.assert_array_equal(reader.get_tensor(tables[0]), to_numpy(embedding._embeddings).T)
