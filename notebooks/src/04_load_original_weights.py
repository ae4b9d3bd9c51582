# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
# ---

# %% [markdown]
# # Load the original GPT-1 weights: convert to a preset, check parity
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/keras-gpt1/keras_gpt1/blob/main/notebooks/04_load_original_weights.ipynb) [![Open In Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)](https://kaggle.com/kernels/welcome?src=https://github.com/keras-gpt1/keras_gpt1/blob/main/notebooks/04_load_original_weights.ipynb)
#
# The 117M GPT-1 that OpenAI released in 2018 exists in two layouts, and `keras_gpt1.convert` reads
# both into a preset directory (weights + tokenizer) that every backend loads:
#
# | source | files | converter |
# |---|---|---|
# | Hugging Face port, [`openai-community/openai-gpt`](https://huggingface.co/openai-community/openai-gpt) | `config.json`, `model.safetensors` (or `pytorch_model.bin`), `vocab.json`, `merges.txt` | `convert_hf_to_preset` |
# | the original release, [`openai/finetune-transformer-lm`](https://github.com/openai/finetune-transformer-lm) `model/` | `params_shapes.json`, `params_0.npy` … `params_9.npy`, `encoder_bpe_40000.json`, `vocab_40000.bpe` | `convert_openai_to_preset` |
#
# The **parity check** runs the converted model and the reference implementation
# (`transformers.OpenAIGPTLMHeadModel`, PyTorch) on the same token ids and compares the logits. It
# needs PyTorch and `transformers`, which Colab and Kaggle have; without them it is skipped.
#
# With a network the notebook downloads the real files (about 480 MB per layout; on Kaggle, turn
# on *Settings → Internet*, which needs a phone-verified account). Without one (as in CI) it builds
# a small stand-in checkpoint in both layouts (a random GPT-1 and a tokenizer trained on Python's
# docs, written by `keras_gpt1.convert`'s own writers) and runs exactly the same conversion and
# checks.
#
# Backend: PyTorch by default, the reference's own framework (JAX and TensorFlow work too; see
# the last section).

# %%
# Pick the Keras backend here, before anything imports Keras: "jax", "tensorflow" or "torch".
# (A KERAS_BACKEND already set in the environment wins: the test suite runs this notebook that way.)
import importlib.util
import os

os.environ["KERAS_BACKEND"] = os.environ.get("KERAS_BACKEND", "torch")
if os.environ["KERAS_BACKEND"] == "torch" and importlib.util.find_spec("torch") is None:
    os.environ["KERAS_BACKEND"] = "tensorflow"  # no PyTorch here (Colab and Kaggle have it)
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
# The parity check's reference runs on PyTorch. Colab and Kaggle have it, so nothing installs it
# here (elsewhere: `pip install torch`, a CUDA build of several GB on Linux). With PyTorch there,
# transformers is added if missing.
if importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is None:
    # %pip install -q transformers

# %%
import keras
import numpy as np

import keras_gpt1
from keras_gpt1 import GPT1CausalLM
from keras_gpt1.hub import hub_reachable

# The reference implementation for the parity check: transformers on PyTorch.
PARITY_CHECK = all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))
versions = f"keras_gpt1 {keras_gpt1.__version__} | Keras {keras.__version__} | backend {keras.config.backend()}"
if PARITY_CHECK:
    import torch
    import transformers

    transformers.logging.disable_progress_bar()
    versions += f" | transformers {transformers.__version__} | torch {torch.__version__}"
print(versions)

# %% [markdown]
# ## 1. The checkpoint files

# %%
WORK_DIR = "gpt1_convert_notebook"
ONLINE = hub_reachable()  # False without a network, or with HF_HUB_OFFLINE=1 (as in CI)
DOWNLOAD = ONLINE  # the real 117M GPT-1 in both layouts; set False for the stand-in
if not ONLINE:
    print("No network: using the offline stand-in (a small random GPT-1 written here in both layouts); "
          "with a network this notebook downloads OpenAI's GPT-1.")

HF_REPO = "openai-community/openai-gpt"
HF_FILES = ["config.json", "model.safetensors", "vocab.json", "merges.txt"]
ORIGINAL_URL = "https://raw.githubusercontent.com/openai/finetune-transformer-lm/master/model/"
ORIGINAL_FILES = ["params_shapes.json", *[f"params_{i}.npy" for i in range(10)],
                  "encoder_bpe_40000.json", "vocab_40000.bpe"]
hf_dir, original_dir = f"{WORK_DIR}/hf", f"{WORK_DIR}/original"

print("Hugging Face:", ", ".join(f"https://huggingface.co/{HF_REPO}/resolve/main/{name}" for name in HF_FILES[:1]), "...")
print("original    :", ORIGINAL_URL + ORIGINAL_FILES[0], "...")

# %%
if DOWNLOAD:
    import urllib.request

    from huggingface_hub import hf_hub_download

    for name in HF_FILES:
        hf_hub_download(HF_REPO, name, local_dir=hf_dir)
    os.makedirs(original_dir, exist_ok=True)
    for name in ORIGINAL_FILES:  # or: git clone https://github.com/openai/finetune-transformer-lm
        urllib.request.urlretrieve(ORIGINAL_URL + name, os.path.join(original_dir, name))
    NUM_HEADS = 12  # the original layout stores no head count; GPT-1 has 12
else:
    # A small stand-in with the same files: a tokenizer trained on Python's docs and a random
    # 2-layer GPT-1, written in the Hugging Face layout (config.json, model.safetensors, vocab.json,
    # merges.txt) and in the original one (the same weights in ten .npy shards).
    from keras_gpt1 import GPT1Backbone
    from keras_gpt1.convert import save_hf_checkpoint, write_openai_checkpoint
    from keras_gpt1.data import build_demo_corpus
    from keras_gpt1.tokenizers import train_bpe

    corpus = build_demo_corpus(f"{WORK_DIR}/corpus.txt", max_bytes=200_000)
    vocabulary, merges = train_bpe([corpus], num_merges=400)
    NUM_HEADS = 2
    backbone = GPT1Backbone.from_preset("gpt1_tiny", vocabulary_size=len(vocabulary), num_heads=NUM_HEADS)
    rng = np.random.default_rng(0)
    for weight in backbone.weights:  # non-zero biases and gains, so a misplaced one would show
        noise = 0.1 * rng.standard_normal(weight.shape)
        weight.assign((keras.ops.convert_to_numpy(weight) + noise).astype("float32"))
    save_hf_checkpoint(backbone, hf_dir, vocabulary_files=(vocabulary, merges))
    write_openai_checkpoint(backbone, original_dir, vocabulary=vocabulary, merges=merges)

for directory in (hf_dir, original_dir):
    print(directory, sorted(os.listdir(directory)))

# %% [markdown]
# ## 2. Convert to presets
#
# Each converter checks every tensor's name and shape before building the model, and converts the
# vocabulary files into the preset's tokenizer (the original layout keeps its `text_standardize`
# character replacements). Command line: `keras-gpt1 convert --model DIR --output PRESET`, for
# either layout.

# %%
from keras_gpt1.convert import convert_hf_to_preset, convert_openai_to_preset

backbone, tokenizer = convert_hf_to_preset(hf_dir, f"{WORK_DIR}/preset_from_hf", overwrite=True)
print(f"from HF      : {backbone.num_layers} layers, hidden {backbone.hidden_dim}, "
      f"{backbone.vocabulary_size} embedding rows, tokenizer of {tokenizer.vocabulary_size()} ids")

backbone, tokenizer = convert_openai_to_preset(original_dir, f"{WORK_DIR}/preset_from_original",
                                               num_heads=NUM_HEADS, overwrite=True)
print(f"from original: {backbone.num_layers} layers, hidden {backbone.hidden_dim}, "
      f"{backbone.vocabulary_size} embedding rows, tokenizer of {tokenizer.vocabulary_size()} ids")
print(sorted(os.listdir(f"{WORK_DIR}/preset_from_hf")))

# %% [markdown]
# ## 3. Parity check against `transformers`
#
# The same texts go through the converted model (on this notebook's Keras backend) and through
# `OpenAIGPTLMHeadModel` (PyTorch), batched with right padding; the logits at every real position
# must agree to 1e-4. The token ids are checked against Hugging Face's tokenizer first. This needs
# PyTorch; without it the check is skipped (the library's own tests run it).

# %%
texts = [
    "The function returns a list of strings.",
    "An exception is raised when the argument is not an integer, and the default value is used otherwise.",
    "Hello, world!",
]

def parity(preset_dir):
    lm = GPT1CausalLM.from_preset(preset_dir)
    ids = [lm.tokenizer(text).numpy().tolist() for text in texts]
    assert ids == [hf_tokenizer(text)["input_ids"] for text in texts], "token ids differ from transformers"
    length = max(map(len, ids))
    token_ids = np.array([row + [0] * (length - len(row)) for row in ids], dtype="int32")
    padding_mask = (np.arange(length)[None] < np.array([len(row) for row in ids])[:, None]).astype("int32")
    ours = keras.ops.convert_to_numpy(lm.predict({"token_ids": token_ids, "padding_mask": padding_mask}, verbose=0))
    with torch.no_grad():
        theirs = reference(torch.tensor(token_ids, dtype=torch.long),
                           attention_mask=torch.tensor(padding_mask)).logits.numpy()
    real = padding_mask.astype(bool)  # padded positions are never read
    difference = np.abs(ours[real] - theirs[real]).max()
    print(f"{preset_dir}: logits {ours.shape}, largest |difference| {difference:.2e} "
          f"(logits up to {np.abs(theirs[real]).max():.1f})")
    assert difference < 1e-4, "the converted model does not match transformers"

if PARITY_CHECK:
    reference = transformers.OpenAIGPTLMHeadModel.from_pretrained(hf_dir).eval()
    hf_tokenizer = transformers.OpenAIGPTTokenizer.from_pretrained(hf_dir)
    parity(f"{WORK_DIR}/preset_from_hf")
    parity(f"{WORK_DIR}/preset_from_original")
else:
    print("Parity check with transformers skipped: it needs PyTorch (Colab and Kaggle have it).")

# %% [markdown]
# ## 4. Use the converted model
#
# The preset is an ordinary `GPT1CausalLM` (generation, scoring, `model.fit`, export). With the real
# weights (`DOWNLOAD = True`) the continuation below is GPT-1's own; the stand-in's is noise.
# Going the other way, `convert_preset_to_hf` writes a directory `transformers` loads: read back,
# it holds exactly the weights of the checkpoint the preset came from.

# %%
from keras_gpt1.convert import convert_preset_to_hf, load_hf_checkpoint

lm = GPT1CausalLM.from_preset(f"{WORK_DIR}/preset_from_hf")
print(lm.generate("the function returns", max_new_tokens=12, sampler="greedy"))

convert_preset_to_hf(f"{WORK_DIR}/preset_from_hf", f"{WORK_DIR}/hf_again", overwrite=True)
first, _ = load_hf_checkpoint(hf_dir)
again, _ = load_hf_checkpoint(f"{WORK_DIR}/hf_again")
same = all(np.array_equal(a, b) for a, b in zip(first.get_weights(), again.get_weights()))
if PARITY_CHECK:  # and transformers reads the same tensors from both directories
    again = transformers.OpenAIGPTLMHeadModel.from_pretrained(f"{WORK_DIR}/hf_again").state_dict().values()
    same = same and all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), again))
print("preset -> Hugging Face round trip gives identical weights:", same)
assert same

# %% [markdown]
# ## Scaling up on a GPU/TPU runtime
#
# Conversion itself runs on a CPU in seconds (the 117M model's weights are read with NumPy); what
# needs an accelerator is using the model:
#
# | setting | here | with the real weights |
# |---|---|---|
# | `DOWNLOAD` | `False` (stand-in) | `True`: ~480 MB per layout; the converted preset is the 117M GPT-1 |
# | `NUM_HEADS` | 2 | 12 (the original layout cannot store it) |
# | precision | float32 | `GPT1CausalLM.from_preset(dir, dtype="mixed_bfloat16")` on a GPU / TPU |
# | next steps | | fine-tune with `finetune(task, train, dev, preset=dir)` at the paper's settings (notebook 2), export with `export_saved_model(dir, ...)` (notebook 3) |
#
# The parity check should also pass on the real model (a largest difference around 1e-5 in
# float32). `GPT1CausalLM.from_preset("gpt1")` does the Hugging Face download and conversion in
# one call and caches the result (notebooks 1–3 use it).
#
# **Runtime.** Colab: *Runtime → Change runtime type*; Kaggle: *Settings → Accelerator*, and
# *Settings → Internet* on for the downloads (it needs a phone-verified account). Backend: keep
# `torch` where the parity check should run (Colab's and Kaggle's GPU and CPU runtimes have
# PyTorch; on a TPU runtime it runs on the CPU only); to use the converted model, `jax` on a GPU or
# TPU, and `tensorflow` for a SavedModel export (notebook 3).
