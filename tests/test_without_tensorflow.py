"""The models on JAX or PyTorch where TensorFlow is not installed (many GPU images are so).

TensorFlow carries the tokenizer, the preprocessor and the export; the backbone, the causal LM,
its training step and generation from token ids use `keras.ops` only, and must import and run
without it, as KerasHub's models do. Text input then asks for TensorFlow by name.

The subprocess test hides TensorFlow behind a package on `sys.path` that raises
`ModuleNotFoundError`, as a missing install does; it runs on the JAX and PyTorch backends.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import BACKEND

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import sys

    import numpy as np

    import keras_gpt1
    from keras_gpt1 import GPT1Backbone, GPT1CausalLM
    from keras_gpt1.generation import generate_ids
    from keras_gpt1.training import WarmupCosine, create_optimizer

    assert sys.modules.get("tensorflow") is None, "TensorFlow was imported"
    lm = GPT1CausalLM(GPT1Backbone(vocabulary_size=32, num_layers=1, num_heads=2, hidden_dim=8,
                                   intermediate_dim=16, max_sequence_length=16))
    assert lm.preprocessor is None and lm.tokenizer is None
    lm.compile(optimizer=create_optimizer(WarmupCosine(1e-3, 2, 10)))
    ids = np.random.default_rng(0).integers(0, 32, (2, 9)).astype("int32")
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((2, 8), "int32")}
    loss = lm.train_on_batch(x, ids[:, 1:], return_dict=True)["loss"]
    assert np.isfinite(loss), loss
    out = generate_ids(lm, list(ids[:, :4]), max_new_tokens=3)
    assert list(out["lengths"]) == [7, 7], out
    assert callable(keras_gpt1.train_tokenizer)  # the Rust BPE trainer needs no TensorFlow
    for name in ("GPT1Tokenizer", "GPT1CausalLMPreprocessor"):
        try:
            getattr(keras_gpt1, name)
        except ModuleNotFoundError as error:
            assert error.name == "tensorflow", (name, error)
        else:
            raise AssertionError(f"keras_gpt1.{name} without TensorFlow")
    try:
        keras_gpt1.models.GPT1CausalLMPreprocessor
    except ModuleNotFoundError as error:
        assert error.name == "tensorflow", error
    else:
        raise AssertionError("keras_gpt1.models.GPT1CausalLMPreprocessor without TensorFlow")
    print("OK")
    """
)


@pytest.mark.integration
@pytest.mark.skipif(BACKEND == "tensorflow", reason="the TensorFlow backend needs TensorFlow")
def test_models_train_and_generate_without_tensorflow(tmp_path):
    for module in ("tensorflow", "tensorflow_text"):
        (tmp_path / module).mkdir()
        (tmp_path / module / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{module}'\", name='{module}')\n"
        )
    path = os.pathsep.join([str(tmp_path), ROOT, os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=path, KERAS_BACKEND=BACKEND),
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]


def test_a_tokenizer_without_tensorflow_is_refused_by_name(monkeypatch):
    """Where the preprocessor could not be imported, a tokenizer is refused with what to install,
    not a `NoneType` error from deep inside."""
    from keras_gpt1 import GPT1Backbone, GPT1CausalLM, GPT1Tokenizer

    tokenizer = GPT1Tokenizer({"<unk>": 0, "a": 1, "b</w>": 2, "ab</w>": 3}, ["a b</w>"])
    backbone = GPT1Backbone(
        vocabulary_size=8, num_layers=1, num_heads=1, hidden_dim=4, intermediate_dim=8, max_sequence_length=8
    )
    monkeypatch.setattr(GPT1CausalLM, "preprocessor_cls", None)
    with pytest.raises(ImportError, match="needs TensorFlow.*pip install tensorflow tensorflow-text"):
        GPT1CausalLM(backbone, tokenizer=tokenizer)
    lm = GPT1CausalLM(backbone)
    with pytest.raises(ImportError, match="needs TensorFlow"):
        lm.tokenizer = tokenizer
    np.testing.assert_equal(lm.preprocessor, None)
