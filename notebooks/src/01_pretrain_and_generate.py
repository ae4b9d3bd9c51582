# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
# ---

# %% [markdown]
# # Pretrain a tiny GPT-1 on real text, then generate
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/keras-gpt1/keras_gpt1/blob/main/notebooks/01_pretrain_and_generate.ipynb) [![Open In Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)](https://kaggle.com/kernels/welcome?src=https://github.com/keras-gpt1/keras_gpt1/blob/main/notebooks/01_pretrain_and_generate.ipynb)
#
# The library's main job, top to bottom, in a few minutes on a CPU:
#
# 1. **Corpus**: Python's own documentation, which ships with Python (nothing to download).
# 2. **Tokenizer**: learn GPT-1 BPE merges on that corpus with `train_tokenizer`.
# 3. **Data**: pack the token stream into next-token batches with `LMDataset` (tf.data).
# 4. **Training**: a tiny GPT-1 trained with `model.fit`, the paper's optimizer (Adam with decoupled
#    weight decay, gradient clipping) and warmup-cosine schedule.
# 5. **Curves**: training and validation loss and perplexity (matplotlib).
# 6. **Generation** with two samplers (greedy and nucleus / top-p), and scoring text.
# 7. **Saving** the model and tokenizer as a preset, and reloading it.
# 8. **GPT-1 itself**: with a network, OpenAI's pretrained GPT-1 (`GPT1CausalLM.from_preset("gpt1")`,
#    a 480 MB download the first time) continues and scores the same texts. Without one, the
#    notebook says so and the tiny model stands alone.
#
# The first code cell picks the Keras backend: the same code runs on JAX, TensorFlow and PyTorch.
# The last section says which runtime and backend to pick on Colab and Kaggle (on Kaggle, turn on
# *Settings → Internet* for GPT-1's weights) and which settings to raise on a GPU or TPU.

# %%
# Pick the Keras backend here, before anything imports Keras: "jax", "tensorflow" or "torch".
# (A KERAS_BACKEND already set in the environment wins: the test suite runs this notebook that way.)
import os

os.environ["KERAS_BACKEND"] = os.environ.get("KERAS_BACKEND", "jax")
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
import keras
import matplotlib.pyplot as plt
import numpy as np

import keras_gpt1
from keras_gpt1 import GPT1Backbone, GPT1CausalLM
from keras_gpt1.hub import hub_reachable

print(f"keras_gpt1 {keras_gpt1.__version__} | Keras {keras.__version__} | backend {keras.config.backend()}")

# %% [markdown]
# ## Settings
#
# Small enough for a CPU. The model is the built-in `gpt1_tiny` architecture (2 layers, hidden 64,
# context 128) with its vocabulary sized to the tokenizer.

# %%
WORK_DIR = "gpt1_notebook"
CORPUS_BYTES = 300_000 if QUICK else 1_500_000  # UTF-8 bytes of text taken from the corpus
VOCABULARY_SIZE = 1000 if QUICK else 2000       # BPE tokens, special tokens included
SEQUENCE_LENGTH = 64                            # tokens per training sequence
BATCH_SIZE = 16 if QUICK else 32                # sequences per update
STEPS = 45 if QUICK else 600                    # optimizer updates
EVAL_INTERVAL = 15 if QUICK else 100            # updates between validation runs
PEAK_LEARNING_RATE = 2e-3                       # the paper: 2.5e-4, for the 117M model
SEED = 0
ONLINE = hub_reachable()  # False without a network, or with HF_HUB_OFFLINE=1 (as in CI)
if not ONLINE:
    print("No network: using the offline stand-in (the tiny model pretrained here, alone); "
          "with a network section 8 also loads OpenAI's GPT-1.")

keras.utils.set_random_seed(SEED)
os.makedirs(WORK_DIR, exist_ok=True)

# %% [markdown]
# ## 1. Real text: the built-in corpus
#
# `build_demo_corpus` writes the Python Language Reference and the standard library's docstrings
# (English prose, one paragraph a line) to a file. To use your own text instead, pass any UTF-8
# `.txt` files (one document or paragraph a line) or `.jsonl` files to the next steps.

# %%
from keras_gpt1.data import build_demo_corpus

corpus = build_demo_corpus(f"{WORK_DIR}/python_docs_{CORPUS_BYTES}.txt", max_bytes=CORPUS_BYTES)
with open(corpus, encoding="utf-8") as f:
    paragraphs = f.read().splitlines()
print(f"{corpus}: {len(paragraphs):,} paragraphs, {os.path.getsize(corpus):,} bytes")
for paragraph in paragraphs[200:203]:
    print("-", paragraph[:150])

# %% [markdown]
# ## 2. Train the tokenizer
#
# GPT-1's tokenizer lowercases, splits on whitespace and punctuation, then applies byte-pair merges
# (`</w>` marks the end of a word). `train_tokenizer` learns the merges with Hugging Face
# `tokenizers` and returns a `GPT1Tokenizer`, a Keras preprocessing layer that also runs inside
# `tf.data` and in an exported SavedModel. The three special tokens of fine-tuning (`_start_`,
# `_delimiter_`, `_classify_`) are appended to the vocabulary.

# %%
from keras_gpt1.tokenizers import train_tokenizer

tokenizer = train_tokenizer([corpus], vocabulary_size=VOCABULARY_SIZE, output_dir=f"{WORK_DIR}/tokenizer")
print(f"{tokenizer.vocabulary_size()} tokens; special token ids {tokenizer.special_token_ids}")

ids = tokenizer("The function returns a list of strings.")
print(ids.numpy().tolist())
print([tokenizer.id_to_token(int(i)) for i in ids.numpy()])
print(tokenizer.detokenize(ids).numpy().decode())

# %% [markdown]
# ## 3. Pack the corpus into next-token batches
#
# `LMDataset` tokenizes the files in the tf.data graph, concatenates the tokens into one stream and
# cuts it into windows of `SEQUENCE_LENGTH + 1` tokens: the inputs are a window's first
# `SEQUENCE_LENGTH` tokens and the labels the same window shifted by one. Every 20th window is held
# out for validation. Training batches are `(inputs, labels, padding_mask)`; the mask doubles as the
# loss weight.

# %%
from keras_gpt1.data import LMDataset

data = LMDataset(corpus, tokenizer, sequence_length=SEQUENCE_LENGTH, batch_size=BATCH_SIZE, seed=SEED)
stats = data.count()
print(f"{stats['tokens']:,} tokens -> {stats['train_windows']:,} training and "
      f"{stats['validation_windows']:,} validation sequences")
print(f"{STEPS} updates of {BATCH_SIZE} sequences = {STEPS * BATCH_SIZE / stats['train_windows']:.1f} passes over the corpus")

inputs, labels, weights = next(iter(data.train_dataset()))
print({name: tuple(value.shape) for name, value in inputs.items()}, "labels", tuple(labels.shape))

# %% [markdown]
# ## 4. A tiny GPT-1, trained with `model.fit`
#
# `GPT1CausalLM.compile()` defaults to the pretraining loss (next-token cross-entropy) and metrics
# (perplexity, next-token accuracy); the optimizer is the paper's (`create_optimizer`), here with
# the warmup-cosine schedule over the whole run. A Keras "epoch" below is one evaluation interval.

# %%
from keras_gpt1.training import WarmupCosine, create_optimizer

backbone = GPT1Backbone.from_preset("gpt1_tiny", vocabulary_size=tokenizer.vocabulary_size())
lm = GPT1CausalLM(backbone, tokenizer=tokenizer)
schedule = WarmupCosine(PEAK_LEARNING_RATE, warmup_steps=STEPS // 10, total_steps=STEPS)
lm.compile(optimizer=create_optimizer(schedule))
lm.summary()

# %%
validation = data.validation_dataset(max_batches=10)
before = lm.evaluate(validation, verbose=0, return_dict=True)
print(f"validation perplexity before training: {before['perplexity']:.0f} "
      f"(a uniform guess scores {tokenizer.vocabulary_size()})")

history = lm.fit(
    data.train_dataset(),
    steps_per_epoch=EVAL_INTERVAL,
    epochs=STEPS // EVAL_INTERVAL,
    validation_data=validation,
    verbose=2,
)

# %% [markdown]
# ## 5. Loss and perplexity
#
# Training values are averages over each interval; validation values are measured at its end (the
# first point is the untrained model). Perplexity is `exp(loss)`: the number of equally likely
# tokens the model is choosing among.

# %%
logs = history.history
updates = [EVAL_INTERVAL * (i + 1) for i in range(len(logs["loss"]))]
val_updates = [0] + updates

fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=(11, 4))
ax_loss.plot(updates, logs["loss"], "o-", label="training")
ax_loss.plot(val_updates, [before["loss"]] + logs["val_loss"], "s-", label="validation")
ax_loss.set(xlabel="optimizer updates", ylabel="next-token cross-entropy (nats)", title="Loss")
ax_ppl.plot(updates, logs["perplexity"], "o-", label="training")
ax_ppl.plot(val_updates, [before["perplexity"]] + logs["val_perplexity"], "s-", label="validation")
ax_ppl.set(xlabel="optimizer updates", ylabel="perplexity", title="Perplexity", yscale="log")
for ax in (ax_loss, ax_ppl):
    ax.grid(alpha=0.3)
    ax.legend()
plt.tight_layout()
plt.show()

print(f"validation perplexity: {before['perplexity']:.0f} -> {logs['val_perplexity'][-1]:.0f}")
assert logs["val_perplexity"][-1] < before["perplexity"], "training did not lower the perplexity"


# %% [markdown]
# ## 6. Generate with two samplers
#
# `generate` takes text (the model's tokenizer encodes it) and decodes with a KV cache, compiled on
# JAX and TensorFlow. **Greedy** always takes the most likely token (deterministic, prone to loops);
# **top-p** (nucleus) samples among the most likely tokens holding 90 % of the probability, with a
# `seed` for reproducibility. Other samplers: `"random"` (`temperature=`), `"top_k"` (`k=`),
# `"beam"` (`num_beams=`). Output text is lowercased and split into tokens, as GPT-1 reads it.

# %%
prompts = ["the function returns", "an exception is raised when"]
greedy = lm.generate(prompts, max_new_tokens=24, sampler="greedy")
nucleus = lm.generate(prompts, max_new_tokens=24, sampler="top_p", p=0.9, temperature=0.8, seed=SEED)
for prompt, g, n in zip(prompts, greedy, nucleus):
    print(f"prompt : {prompt}\ngreedy : {g}\ntop-p  : {n}\n")

# %% [markdown]
# `score` gives each text's per-token log-likelihood and perplexity in one forward pass. Below, the
# same words in two orders (same first word, so the same tokens are scored): once the model has
# learned some English, the real order gets by far the lower perplexity (with the default settings,
# about 30 against a few hundred; the quick settings stop too early to tell them apart).

# %%
for text in ["the function returns a list of strings .", "the strings of list a returns function ."]:
    print(f"perplexity {lm.score(text)['perplexity']:8.1f}   {text}")

# %% [markdown]
# ## 7. Save and reload
#
# A preset directory holds `config.json`, the weights and the tokenizer; it loads on every backend
# and is what `keras-gpt1 finetune`, `generate` and `export` take.

# %%
preset_dir = f"{WORK_DIR}/preset"
lm.save_to_preset(preset_dir)
print(sorted(os.listdir(preset_dir)))

reloaded = GPT1CausalLM.from_preset(preset_dir)
assert all(np.array_equal(a, b) for a, b in zip(lm.get_weights(), reloaded.get_weights()))
assert reloaded.tokenizer.get_vocabulary() == tokenizer.get_vocabulary()
print(f"reloaded: the same {reloaded.count_params():,} weights and {reloaded.tokenizer.vocabulary_size()} tokens")

# %% [markdown]
# ## 8. OpenAI's GPT-1 on the same texts
#
# `GPT1CausalLM.from_preset("gpt1")` is the 117M model OpenAI released: the first call downloads
# the Hugging Face port (`openai-community/openai-gpt`, about 480 MB), converts it and caches the
# preset, so later calls load from disk. It was pretrained on BooksCorpus (fiction) for 100 epochs
# of 64 × 512-token batches, where the tiny model above saw a few hundred small batches of Python's
# docs. Greedy and top-p as in section 6, then the same two word orders scored.

# %%
if ONLINE:
    gpt1 = GPT1CausalLM.from_preset("gpt1")
    print(f"GPT-1: {gpt1.count_params():,} parameters, {gpt1.tokenizer.vocabulary_size():,} tokens")
    greedy = gpt1.generate(prompts, max_new_tokens=24, sampler="greedy")
    nucleus = gpt1.generate(prompts, max_new_tokens=24, sampler="top_p", p=0.9, temperature=0.8, seed=SEED)
    for prompt, g, n in zip(prompts, greedy, nucleus):
        print(f"prompt : {prompt}\ngreedy : {g}\ntop-p  : {n}\n")
    for text in ["the function returns a list of strings .", "the strings of list a returns function ."]:
        print(f"perplexity {gpt1.score(text)['perplexity']:8.1f}   {text}")
else:
    print("Skipped: OpenAI's GPT-1 needs a network (see the settings cell).")

# %% [markdown]
# ## Scaling up on a GPU/TPU runtime
#
# Switch the runtime (Colab: *Runtime → Change runtime type*; Kaggle: *Settings → Accelerator*,
# and *Settings → Internet* on for GPT-1's weights, which needs a phone-verified account). Keep the
# first cell's backend, `jax`, on a GPU or TPU: it trains and generates fastest there (the
# library's docs/pretraining.md and docs/generation.md); on a TPU runtime PyTorch runs on the CPU
# only. On a CPU runtime all three work. Then raise the settings:
#
# | setting | CPU (this notebook) | GPU / TPU |
# |---|---|---|
# | `CORPUS_BYTES` | 1.5 MB (nearly all of the demo corpus) | your own text files instead: tens of MB to GBs |
# | `VOCABULARY_SIZE` | 2,000 | 8,000–40,478 (GPT-1: 40,000 merges) |
# | model | `gpt1_tiny` (2 × 64) | `GPT1Backbone.from_preset("gpt1_tiny", num_layers=6, hidden_dim=384, num_heads=6, intermediate_dim=1536, max_sequence_length=512, vocabulary_size=...)`, up to `"gpt1"` (117M) |
# | `SEQUENCE_LENGTH` | 64 | 512 (GPT-1's context) |
# | `BATCH_SIZE` | 32 | 64 (the paper's); if memory runs short, batches of 64 / k with `create_optimizer(..., gradient_accumulation_steps=k)` |
# | `STEPS`, `EVAL_INTERVAL` | 600, 100 | 10,000+ and 1,000 |
# | `PEAK_LEARNING_RATE` | 2e-3 | 2.5e-4 for hidden size 768 (the paper), with `warmup_steps=2000` |
# | precision | float32 | `from_preset(..., dtype="mixed_bfloat16")` on a TPU or an A100 / L4-class GPU (a T4 has no bfloat16 units: keep float32) |
#
# For long runs, `keras_gpt1.workflows.pretrain(corpus=[...], preset="gpt1", steps=..., output=...)`
# (or `keras-gpt1 pretrain` on the command line) does all of the above in one call, and adds
# checkpoints that resume exactly, TensorBoard logs and a final preset. Multi-device training:
# build, compile and fit inside `keras_gpt1.distribution.distribution_scope("data")`.
