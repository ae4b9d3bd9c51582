# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
# ---

# %% [markdown]
# # Export a SavedModel for TensorFlow Serving: raw strings in, text out
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/keras-gpt1/keras_gpt1/blob/main/notebooks/03_export_and_serve.ipynb) [![Open In Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)](https://kaggle.com/kernels/welcome?src=https://github.com/keras-gpt1/keras_gpt1/blob/main/notebooks/03_export_and_serve.ipynb)
#
# `export_saved_model` writes a GPT-1 preset as a TensorFlow SavedModel whose signatures take
# **raw strings**: the tokenizer runs inside the graph, so a client sends text and gets text back.
# This notebook exports a model, inspects the signatures, calls them with strings, checks the
# export generates what the library generates, and shows the TF Serving REST request.
#
# With a network (Colab; Kaggle with *Settings → Internet* on, which needs a phone-verified
# account) the model is OpenAI's GPT-1 (`from_preset("gpt1")`, a 480 MB download the first time).
# Without one (as in CI) it is an offline stand-in, and the notebook says so: notebook 1's tiny
# model if that notebook ran in this directory, else a tiny model pretrained here.
#
# The export traces the model under TensorFlow. From JAX or PyTorch, `export_saved_model` runs the
# same export in a TensorFlow subprocess, so the call below works from every backend; TensorFlow is
# the default here only because it exports in-process.

# %%
# Pick the Keras backend here, before anything imports Keras: "jax", "tensorflow" or "torch".
# (A KERAS_BACKEND already set in the environment wins: the test suite runs this notebook that way.)
import os

os.environ["KERAS_BACKEND"] = os.environ.get("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow start-up

# KERAS_GPT1_NOTEBOOK_QUICK=1 shrinks every setting below so the notebook runs in about a minute
# on two CPU cores (the test suite executes it that way). Leave it unset to use the settings shown.
QUICK = os.environ.get("KERAS_GPT1_NOTEBOOK_QUICK") == "1"
print("backend:", os.environ["KERAS_BACKEND"], "| quick settings:", QUICK)

# %%
# Colab / Kaggle: install keras_gpt1 from GitHub. Skipped when it is already importable (a local
# checkout, CI). Every package the runtime already has is pinned at its version, so pip can only
# add what is missing and the runtime's own TensorFlow / Keras / JAX / PyTorch builds (GPU or TPU)
# are kept, also on the TPU runtime, where keras-hub is missing and its newest release would want
# a newer Keras (docs/install.md).
import importlib.metadata
import importlib.util

if importlib.util.find_spec("keras_gpt1") is None:
    installed = {}
    for dist in importlib.metadata.distributions():  # in import order: the first of a name is used
        if dist.metadata["Name"]:
            installed.setdefault(dist.metadata["Name"], dist.version)
    with open("runtime-pins.txt", "w") as f:
        f.writelines(f"{name}=={version}\n" for name, version in sorted(installed.items()))
    # %pip install -q -c runtime-pins.txt "keras-gpt1 @ git+https://github.com/keras-gpt1/keras_gpt1"

# %%
import json
import os

import keras
import numpy as np
import tensorflow as tf
from IPython.display import Markdown, display

import keras_gpt1
from keras_gpt1 import GPT1CausalLM
from keras_gpt1.hub import hub_reachable

print(f"keras_gpt1 {keras_gpt1.__version__} | Keras {keras.__version__} | backend {keras.config.backend()} | "
      f"TensorFlow {tf.__version__}")

# %% [markdown]
# ## 1. A model to export
#
# Any preset with a tokenizer works: `"gpt1"` (OpenAI's GPT-1, downloaded and converted once), a
# causal LM directory (from `pretrain`, notebook 1, or a converted checkpoint, notebook 4) or a
# fine-tuned task model (notebook 2). Offline, notebook 1's preset is used if that notebook ran in
# this directory; otherwise a tiny model is pretrained here in one call.

# %%
WORK_DIR = "gpt1_serving_notebook"
ONLINE = hub_reachable()                  # False without a network, or with HF_HUB_OFFLINE=1 (as in CI)
PRESET_DIR = "gpt1" if ONLINE else "gpt1_notebook/preset"  # OpenAI's GPT-1; offline, notebook 1's output
EXPORT_BASE = f"{WORK_DIR}/serving/gpt1"  # the model base path TF Serving watches
MAX_LENGTH = 64                           # prompt + generated tokens in one request
MAX_NEW_TOKENS = 16                       # what serving_default generates

if not ONLINE:
    print("No network: using the offline stand-in (a tiny model from notebook 1 or pretrained here); "
          "with a network this notebook exports OpenAI's GPT-1.")
if not ONLINE and not os.path.isdir(PRESET_DIR):
    from keras_gpt1.data import build_demo_corpus
    from keras_gpt1.workflows import pretrain

    corpus = build_demo_corpus(f"{WORK_DIR}/corpus.txt", max_bytes=200_000 if QUICK else 1_500_000)
    PRESET_DIR = pretrain(
        corpus=[corpus], preset="gpt1_tiny", output=f"{WORK_DIR}/pretrained",
        steps=30 if QUICK else 600, batch_size=16 if QUICK else 32, sequence_length=64,
        vocabulary_size=1000 if QUICK else 2000, learning_rate=2e-3,
        tensorboard=False, sample_length=0, resume=False, verbose=2,
    ).output
lm = GPT1CausalLM.from_preset(PRESET_DIR)
print(f"{PRESET_DIR}: {lm.count_params():,} parameters, vocabulary {lm.tokenizer.vocabulary_size()}")

# %% [markdown]
# ## 2. Export
#
# TF Serving serves `BASE/<version>/`; a new version directory is picked up while the server runs.
# The version is written beside its final place and renamed in, so a server never loads half a
# model. (Command line: `keras-gpt1 export --model PRESET --output BASE --version 1`.)

# %%
from keras_gpt1.export import export_saved_model

export_dir = export_saved_model(PRESET_DIR, EXPORT_BASE, version=1, max_length=MAX_LENGTH,
                                max_new_tokens=MAX_NEW_TOKENS, overwrite=True)
for directory, _, names in sorted(os.walk(export_dir)):
    for name in sorted(names):
        path = os.path.join(directory, name)
        print(f"{os.path.getsize(path):>10,}  {os.path.relpath(path, EXPORT_BASE)}")

# %% [markdown]
# ## 3. Inspect the signatures
#
# `signature_summary` reads them from `saved_model.pb` (the same as
# `saved_model_cli show --dir EXPORT_DIR --all`). `None` is a dimension of any size: every signature
# takes a batch of strings.

# %%
from keras_gpt1.export.saved_model import graph_op_types, signature_summary

def describe(tensors):
    return "<br>".join(f"`{name}`: {dtype} {list(shape)}" for name, (dtype, shape) in tensors.items())

rows = ["| signature | inputs | outputs |", "|---|---|---|"]
for name, signature in signature_summary(export_dir).items():
    rows.append(f"| `{name}` | {describe(signature['inputs'])} | {describe(signature['outputs'])} |")
display(Markdown("\n".join(rows)))

# The graph holds core TensorFlow ops only, all of which the tensorflow/serving binaries link:
# no Python, no XLA-only op, no custom op library.
op_types = graph_op_types(export_dir)
print(len(op_types), "op types, e.g.", ", ".join(op_types[:8]), "...")
assert not {"PyFunc", "EagerPyFunc", "XlaDynamicUpdateSlice"} & set(op_types)

# %% [markdown]
# ## 4. Call it with raw strings
#
# Any TensorFlow program can load the export; the model's Python code is not needed. Bad text never
# fails a request: an empty string gives an empty answer and invalid UTF-8 bytes are dropped.

# %%
served = tf.saved_model.load(export_dir)
print(sorted(served.signatures))

prompts = ["the function returns", "an exception is raised when"]
out = served.signatures["serving_default"](text=tf.constant(prompts))
for prompt, completion, n in zip(prompts, out["completion"].numpy(), out["lengths"].numpy()):
    print(f"{prompt!r} -> {completion.decode()!r} ({n} tokens in all)")

out = served.signatures["generate"](text=tf.constant(["the value of"]), max_new_tokens=tf.constant(6))
print("generate, 6 new tokens:", out["text"].numpy()[0].decode())

out = served.signatures["score"](text=tf.constant(["the function returns a list of strings .", "", b"bad \xff bytes"]))
print("score perplexity:", out["perplexity"].numpy(), "scored tokens:", out["num_scored_tokens"].numpy())

# %% [markdown]
# The export generates exactly what the library's own `generate` does (greedy decoding, same
# tokenizer, same weights):

# %%
library = lm.generate(prompts, max_new_tokens=MAX_NEW_TOKENS, sampler="greedy")
exported = [t.decode() for t in served.signatures["serving_default"](text=tf.constant(prompts))["text"].numpy()]
for a, b in zip(library, exported):
    print(f"library : {a}\nexported: {b}\n")
assert library == exported

# %% [markdown]
# ## 5. Serve it with TF Serving and call the REST API
#
# Start the server with Docker (`tensorflow/serving:latest-gpu` and `--gpus all` on a GPU machine):
#
# ```bash
# docker run --rm -p 8501:8501 \
#   --mount type=bind,source="$PWD/gpt1_serving_notebook/serving/gpt1",target=/models/gpt1 \
#   -e MODEL_NAME=gpt1 tensorflow/serving
# ```
#
# The REST endpoint is `POST http://localhost:8501/v1/models/gpt1:predict` (a version:
# `/v1/models/gpt1/versions/1:predict`; the signatures and their tensors:
# `GET /v1/models/gpt1/metadata`). The body names a signature and gives its inputs, either row by
# row (`instances`, answered with `predictions`) or by input name (`inputs`, answered with
# `outputs`; needed for `generate`, whose `max_new_tokens` is one scalar for the whole batch).

# %%
bodies = {
    "serving_default": {"signature_name": "serving_default", "instances": [{"text": p} for p in prompts]},
    "generate": {"signature_name": "generate", "inputs": {"text": prompts, "max_new_tokens": 8}},
    "score": {"signature_name": "score", "inputs": {"text": ["the function returns a list of strings ."]}},
}
body = json.dumps(bodies["generate"])
print("curl -s -X POST http://localhost:8501/v1/models/gpt1:predict \\\n"
      f"     -H 'Content-Type: application/json' -d '{body}'")

# %% [markdown]
# No server runs here, so the next cell does what TF Serving does with each body: feed its inputs to
# the named signature and return the outputs as JSON (strings as UTF-8 text). Set the environment
# variable `TF_SERVING_URL` (e.g. `http://localhost:8501/v1/models/gpt1`) to send the requests to a
# real server instead.

# %%
import urllib.request

def to_json(array):
    if array.dtype == object:  # tf.string tensors: bytes
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array).tolist()
    return array.tolist()

def local_predict(request):
    # TF Serving's handling of a predict request, in-process.
    signature = served.signatures[request.get("signature_name", "serving_default")]
    if "instances" in request:
        columns = {k: [row[k] for row in request["instances"]] for k in request["instances"][0]}
    else:
        columns = request["inputs"]
    specs = signature.structured_input_signature[1]
    outputs = signature(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in columns.items()})
    as_json = {k: to_json(v.numpy()) for k, v in outputs.items()}
    if "instances" in request:
        return {"predictions": [dict(zip(as_json, row)) for row in zip(*as_json.values())]}
    return {"outputs": as_json}

def server_predict(url, request):
    http = urllib.request.Request(f"{url}:predict", data=json.dumps(request).encode(),
                                  headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(http, timeout=60) as response:
        return json.load(response)

url = os.environ.get("TF_SERVING_URL")
for name, request in bodies.items():
    response = server_predict(url, request) if url else local_predict(request)
    print(f"{name}: {json.dumps(response)[:400]}\n")

# %% [markdown]
# ## Scaling up on a GPU/TPU runtime
#
# Exporting needs no accelerator (it traces a graph), but serving a real model does:
#
# | setting | here | a real deployment |
# |---|---|---|
# | `PRESET_DIR` | `"gpt1"` (offline: a tiny pretrained model) | `"gpt1"`, a converted checkpoint (notebook 4) or your fine-tuned task preset (notebook 2: `finetune(..., output=DIR)`; its signatures return `probabilities` and `label`) |
# | `MAX_LENGTH` | 64 | up to 512 (GPT-1's context): the longest prompt + completion served |
# | `MAX_NEW_TOKENS` | 16 | what `serving_default` generates; `generate` takes it per request |
# | server image | `tensorflow/serving` (CPU) | `tensorflow/serving:latest-gpu` with `--gpus all`, and `--enable_batching` to batch concurrent requests |
# | versions | `1` | export each new model as the next `--version`; TF Serving switches to it without a restart |
#
# TPUs are not served by TF Serving; the SavedModel also loads in any TensorFlow program (as in
# section 4), on CPU or GPU.
#
# **Runtime and backend.** Colab: *Runtime → Change runtime type*; Kaggle: *Settings →
# Accelerator*, and *Settings → Internet* on for GPT-1's weights (it needs a phone-verified
# account). Keep `tensorflow` in the first cell for the export: a SavedModel is TensorFlow's
# format, traced in-process (from `jax` or `torch`, `export_saved_model` runs the export in a
# TensorFlow subprocess). To train or generate with the model before exporting, `jax` is the
# backend for a GPU or TPU; on a TPU runtime PyTorch runs on the CPU only.
