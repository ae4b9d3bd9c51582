"""Shared test set-up. The backend comes from KERAS_BACKEND (the Makefile runs all three)."""

import gc
import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.config.backend()
# Tests marked `once` check what does not depend on the Keras backend (file formats, data
# pipelines, the command line, atomic writes, tokenization, the benchmark harness's subprocesses):
# the Makefile runs the suite on every backend, and these run in one backend's run only, PyTorch's
# where it is installed (eager: nothing to compile, the cheapest run), else TensorFlow's.
# `@pytest.mark.once("jax")` names the run for tests that train for many steps (learning checks
# on real text), which compiled JAX runs several times faster than eager PyTorch; any such tests
# sharing a module fixture name the same run, so the fixture is built once.
ONCE_BACKEND = "torch" if importlib.util.find_spec("torch") is not None else "tensorflow"


def once_backend(marker):
    """The run a `once` test belongs to: the backend its marker names, if installed, else
    `ONCE_BACKEND`."""
    if marker.args and importlib.util.find_spec(marker.args[0]) is not None:
        return marker.args[0]
    return ONCE_BACKEND


def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = item.get_closest_marker("once")
        if marker is not None and once_backend(marker) != BACKEND:
            reason = f"backend-independent: runs once, in the {once_backend(marker)} run"
            item.add_marker(pytest.mark.skip(reason=reason))


TINY_CONFIG = dict(
    vocabulary_size=97,
    num_layers=2,
    num_heads=2,
    hidden_dim=32,
    intermediate_dim=64,
    max_sequence_length=24,
    dropout=0.0,
)


def compile_without_xla(patch):
    """Makes the models' `compile()` turn "auto" into no XLA (a `pytest.MonkeyPatch` undoes it).

    On TensorFlow, "auto" means XLA even on a CPU (keras_gpt1/utils/jit.py), and XLA's compile time
    is most of the TensorFlow run's time on the tiny models here. Subprocesses keep the library's
    default, and the JAX run compiles every step with XLA."""
    import keras_gpt1.models.causal_lm
    import keras_gpt1.tasks.base
    from keras_gpt1.utils.jit import resolve_jit_compile

    def without_xla(model, jit_compile="auto", run_eagerly=False):
        resolved = resolve_jit_compile(model, jit_compile, run_eagerly)
        return False if isinstance(jit_compile, str) and jit_compile == "auto" and resolved is True else resolved

    for module in (keras_gpt1.models.causal_lm, keras_gpt1.tasks.base):
        patch.setattr(module, "resolve_jit_compile", without_xla)


@pytest.fixture(autouse=True)
def _tensorflow_steps_without_xla(request, monkeypatch):
    """Tests on TensorFlow compile their steps without XLA (`compile_without_xla`), except those
    marked `xla`: the default itself and results recorded with XLA."""
    if BACKEND == "tensorflow" and not request.node.get_closest_marker("xla"):
        compile_without_xla(monkeypatch)


@pytest.fixture(scope="module", autouse=True)
def _older_objects_out_of_the_collectors_way():
    """Collects the garbage the earlier modules left, then moves every object still alive (the
    imported libraries, caches) out of the cyclic garbage collector's reach (`gc.freeze`).

    A worker process accumulates millions of objects, and a full collection walks them all: Keras
    runs one for every variable `quantize("int8")` replaces, and Python runs them as the heap
    grows. Frozen objects are still freed when nothing refers to them; only a cycle among them
    would outlive the run."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def tiny_config():
    return dict(TINY_CONFIG)


def write_pretraining_data(root, max_bytes, vocabulary_size):
    """`(corpus file, tokenizer directory)` under `root`: `max_bytes` of the built-in corpus
    (Python's docs) and a BPE tokenizer of `vocabulary_size` tokens trained on it, for the tests
    that pretrain (needs TensorFlow, as `pretrain` does)."""
    from keras_gpt1.data.corpus import demo_corpus_lines
    from keras_gpt1.tokenizers import train_tokenizer

    corpus = root / "docs.txt"
    corpus.write_text("\n".join(demo_corpus_lines(max_bytes=max_bytes)) + "\n", encoding="utf-8")
    train_tokenizer([str(corpus)], vocabulary_size=vocabulary_size).save_to_preset(str(root / "tokenizer"))
    return str(corpus), str(root / "tokenizer")


def pretrain_kwargs(data, output, **overrides):
    """`pretrain` keyword arguments for a quick run on `data` (`write_pretraining_data`'s pair)
    into `output`: no TensorBoard, no final sample, silent; `overrides` add to or replace them."""
    corpus, tokenizer = data
    kwargs = dict(corpus=[corpus], tokenizer=tokenizer, output=str(output), preset="gpt1_tiny")
    kwargs.update(tensorboard=False, sample_length=0, verbose=0)
    kwargs.update(overrides)
    return kwargs


def file_tree(directory):
    """Every entry under `directory` (hidden ones included): `{relative path: file bytes, or None
    for a folder}`, to compare a directory before and after a failed write."""
    root = os.fspath(directory)
    found = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(parent, name), root)] = None
        for name in files:
            with open(os.path.join(parent, name), "rb") as f:
                found[os.path.relpath(os.path.join(parent, name), root)] = f.read()
    return found


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def random_inputs(batch, length, vocabulary_size, seed=0, lengths=None):
    """Token ids and a right-padded mask; `lengths` gives each row's number of real tokens."""
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(0, vocabulary_size, size=(batch, length)).astype("int32")
    lengths = [length] * batch if lengths is None else lengths
    padding_mask = (np.arange(length)[None, :] < np.array(lengths)[:, None]).astype("int32")
    return {"token_ids": token_ids * padding_mask, "padding_mask": padding_mask}
