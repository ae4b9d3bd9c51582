"""Writes the notebooks in `notebooks/` from the cell sources below (outputs stripped).

The notebooks are generated so that they can be reviewed as code and so that the four share
their first cells (backend choice, install). Edit this file, then run

    python tools/make_notebooks.py            # rewrite notebooks/*.ipynb
    python tools/make_notebooks.py --check    # exit 1 if a notebook is out of date (CI test)
    python tools/make_notebooks.py --readme   # print the README's table of notebooks

`tests/test_notebooks.py` executes every notebook and checks the files match this script.
"""

import argparse
import os
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
# Placeholder GitHub location used by the install cell and the Colab / Kaggle badges.
REPOSITORY = "keras-gpt1/keras_gpt1"
BRANCH = "main"


def colab_url(filename):
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/notebooks/{filename}"


def kaggle_url(filename):
    return f"https://kaggle.com/kernels/welcome?src=https://github.com/{REPOSITORY}/blob/{BRANCH}/notebooks/{filename}"


def badges(filename):
    return (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(filename)}) "
        f"[![Open In Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)]({kaggle_url(filename)})"
    )


def backend_cell(default="jax", why=""):
    return f'''\
# Pick the Keras backend here, before anything imports Keras: "jax", "tensorflow" or "torch".
# (A KERAS_BACKEND already set in the environment wins: the test suite runs this notebook that way.){why}
import os

os.environ["KERAS_BACKEND"] = os.environ.get("KERAS_BACKEND", "{default}")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow start-up

# KERAS_GPT1_NOTEBOOK_QUICK=1 shrinks every setting below so the notebook runs in about a minute
# on two CPU cores (the test suite executes it that way). Leave it unset to use the settings shown.
QUICK = os.environ.get("KERAS_GPT1_NOTEBOOK_QUICK") == "1"
print("backend:", os.environ["KERAS_BACKEND"], "| quick settings:", QUICK)'''


def install_cell(also=()):
    """The install cell; `also`: other packages the notebook needs, installed only if missing."""
    lines = [
        "# Colab / Kaggle: install keras_gpt1 from GitHub. Skipped when it is already importable (a local",
        "# checkout, CI). Its requirements are ranges and pip upgrades only what is missing or too old,",
        "# so the runtime's own TensorFlow / Keras / JAX / PyTorch builds (GPU or TPU) are kept.",
        "import importlib.util",
        "",
        'if importlib.util.find_spec("keras_gpt1") is None:',
        f'    %pip install -q --upgrade-strategy only-if-needed "keras-gpt1 @ git+https://github.com/{REPOSITORY}"',
    ]
    for module, requirement in also:
        lines += [f'if importlib.util.find_spec("{module}") is None:', f"    %pip install -q {requirement}"]
    return "\n".join(lines)


# =============================================================================================
# 01: pretrain and generate
# =============================================================================================

NB1 = "01_pretrain_and_generate.ipynb"


def notebook_1():
    return [
        new_markdown_cell(f"""\
# Pretrain a tiny GPT-1 on real text, then generate

{badges(NB1)}

The library's main job, top to bottom, in a few minutes on a CPU:

1. **Corpus**: Python's own documentation, which ships with Python (nothing to download).
2. **Tokenizer**: learn GPT-1 BPE merges on that corpus with `train_tokenizer`.
3. **Data**: pack the token stream into next-token batches with `LMDataset` (tf.data).
4. **Training**: a tiny GPT-1 trained with `model.fit`, the paper's optimizer (Adam with decoupled
   weight decay, gradient clipping) and warmup-cosine schedule.
5. **Curves**: training and validation loss and perplexity (matplotlib).
6. **Generation** with two samplers (greedy and nucleus / top-p), and scoring text.

The first code cell picks the Keras backend: the same code runs on JAX, TensorFlow and PyTorch.
The last section says which settings to change on a GPU or TPU runtime."""),
        new_code_cell(backend_cell("jax")),
        new_code_cell(install_cell()),
        new_code_cell("""\
import keras
import matplotlib.pyplot as plt
import numpy as np

import keras_gpt1
from keras_gpt1 import GPT1Backbone, GPT1CausalLM

print(f"keras_gpt1 {keras_gpt1.__version__} | Keras {keras.__version__} | backend {keras.config.backend()}")"""),
        new_markdown_cell("""\
## Settings

Small enough for a CPU. The model is the built-in `gpt1_tiny` architecture (2 layers, hidden 64,
context 128) with its vocabulary sized to the tokenizer."""),
        new_code_cell("""\
WORK_DIR = "gpt1_notebook"
CORPUS_BYTES = 300_000 if QUICK else 1_500_000  # UTF-8 bytes of text taken from the corpus
VOCABULARY_SIZE = 1000 if QUICK else 2000       # BPE tokens, special tokens included
SEQUENCE_LENGTH = 64                            # tokens per training sequence
BATCH_SIZE = 16 if QUICK else 32                # sequences per update
STEPS = 45 if QUICK else 600                    # optimizer updates
EVAL_INTERVAL = 15 if QUICK else 100            # updates between validation runs
PEAK_LEARNING_RATE = 2e-3                       # the paper: 2.5e-4, for the 117M model
SEED = 0

keras.utils.set_random_seed(SEED)
os.makedirs(WORK_DIR, exist_ok=True)"""),
        new_markdown_cell("""\
## 1. Real text: the built-in corpus

`build_demo_corpus` writes the Python Language Reference and the standard library's docstrings
(English prose, one paragraph a line) to a file. To use your own text instead, pass any UTF-8
`.txt` files (one document or paragraph a line) or `.jsonl` files to the next steps."""),
        new_code_cell("""\
from keras_gpt1.data import build_demo_corpus

corpus = build_demo_corpus(f"{WORK_DIR}/python_docs_{CORPUS_BYTES}.txt", max_bytes=CORPUS_BYTES)
with open(corpus, encoding="utf-8") as f:
    paragraphs = f.read().splitlines()
print(f"{corpus}: {len(paragraphs):,} paragraphs, {os.path.getsize(corpus):,} bytes")
for paragraph in paragraphs[200:203]:
    print("-", paragraph[:150])"""),
        new_markdown_cell("""\
## 2. Train the tokenizer

GPT-1's tokenizer lowercases, splits on whitespace and punctuation, then applies byte-pair merges
(`</w>` marks the end of a word). `train_tokenizer` learns the merges with Hugging Face
`tokenizers` and returns a `GPT1Tokenizer`, a Keras preprocessing layer that also runs inside
`tf.data` and in an exported SavedModel. The three special tokens of fine-tuning (`_start_`,
`_delimiter_`, `_classify_`) are appended to the vocabulary."""),
        new_code_cell("""\
from keras_gpt1.tokenizers import train_tokenizer

tokenizer = train_tokenizer([corpus], vocabulary_size=VOCABULARY_SIZE, output_dir=f"{WORK_DIR}/tokenizer")
print(f"{tokenizer.vocabulary_size()} tokens; special token ids {tokenizer.special_token_ids}")

ids = tokenizer("The function returns a list of strings.")
print(ids.numpy().tolist())
print([tokenizer.id_to_token(int(i)) for i in ids.numpy()])
print(tokenizer.detokenize(ids).numpy().decode())"""),
        new_markdown_cell("""\
## 3. Pack the corpus into next-token batches

`LMDataset` tokenizes the files in the tf.data graph, concatenates the tokens into one stream and
cuts it into windows of `SEQUENCE_LENGTH + 1` tokens: the inputs are a window's first
`SEQUENCE_LENGTH` tokens and the labels the same window shifted by one. Every 20th window is held
out for validation. Training batches are `(inputs, labels, padding_mask)`; the mask doubles as the
loss weight."""),
        new_code_cell("""\
from keras_gpt1.data import LMDataset

data = LMDataset(corpus, tokenizer, sequence_length=SEQUENCE_LENGTH, batch_size=BATCH_SIZE, seed=SEED)
stats = data.count()
print(f"{stats['tokens']:,} tokens -> {stats['train_windows']:,} training and "
      f"{stats['validation_windows']:,} validation sequences")
print(f"{STEPS} updates of {BATCH_SIZE} sequences = {STEPS * BATCH_SIZE / stats['train_windows']:.1f} passes over the corpus")

inputs, labels, weights = next(iter(data.train_dataset()))
print({name: tuple(value.shape) for name, value in inputs.items()}, "labels", tuple(labels.shape))"""),
        new_markdown_cell("""\
## 4. A tiny GPT-1, trained with `model.fit`

`GPT1CausalLM.compile()` defaults to the pretraining loss (next-token cross-entropy) and metrics
(perplexity, next-token accuracy); the optimizer is the paper's (`create_optimizer`), here with
the warmup-cosine schedule over the whole run. A Keras "epoch" below is one evaluation interval."""),
        new_code_cell("""\
from keras_gpt1.training import WarmupCosine, create_optimizer

backbone = GPT1Backbone.from_preset("gpt1_tiny", vocabulary_size=tokenizer.vocabulary_size())
lm = GPT1CausalLM(backbone, tokenizer=tokenizer)
schedule = WarmupCosine(PEAK_LEARNING_RATE, warmup_steps=STEPS // 10, total_steps=STEPS)
lm.compile(optimizer=create_optimizer(schedule))
lm.summary()"""),
        new_code_cell("""\
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
)"""),
        new_markdown_cell("""\
## 5. Loss and perplexity

Training values are averages over each interval; validation values are measured at its end (the
first point is the untrained model). Perplexity is `exp(loss)`: the number of equally likely
tokens the model is choosing among."""),
        new_code_cell("""\
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
"""),
        new_markdown_cell("""\
## 6. Generate with two samplers

`generate` takes text (the model's tokenizer encodes it) and decodes with a KV cache, compiled on
JAX and TensorFlow. **Greedy** always takes the most likely token (deterministic, prone to loops);
**top-p** (nucleus) samples among the most likely tokens holding 90 % of the probability, with a
`seed` for reproducibility. Other samplers: `"random"` (`temperature=`), `"top_k"` (`k=`),
`"beam"` (`num_beams=`). Output text is lowercased and split into tokens, as GPT-1 reads it."""),
        new_code_cell("""\
prompts = ["the function returns", "an exception is raised when"]
greedy = lm.generate(prompts, max_new_tokens=24, sampler="greedy")
nucleus = lm.generate(prompts, max_new_tokens=24, sampler="top_p", p=0.9, temperature=0.8, seed=SEED)
for prompt, g, n in zip(prompts, greedy, nucleus):
    print(f"prompt : {prompt}\\ngreedy : {g}\\ntop-p  : {n}\\n")"""),
        new_markdown_cell("""\
`score` gives each text's per-token log-likelihood and perplexity in one forward pass. Below, the
same words in two orders (same first word, so the same tokens are scored): once the model has
learned some English, the real order gets by far the lower perplexity (with the default settings,
about 30 against a few hundred; the quick settings stop too early to tell them apart)."""),
        new_code_cell("""\
for text in ["the function returns a list of strings .", "the strings of list a returns function ."]:
    print(f"perplexity {lm.score(text)['perplexity']:8.1f}   {text}")"""),
        new_markdown_cell("""\
## 7. Save and reload

A preset directory holds `config.json`, the weights and the tokenizer; it loads on every backend
and is what `keras-gpt1 finetune`, `generate` and `export` take."""),
        new_code_cell("""\
preset_dir = f"{WORK_DIR}/preset"
lm.save_to_preset(preset_dir)
print(sorted(os.listdir(preset_dir)))

reloaded = GPT1CausalLM.from_preset(preset_dir)
assert all(np.array_equal(a, b) for a, b in zip(lm.get_weights(), reloaded.get_weights()))
assert reloaded.tokenizer.get_vocabulary() == tokenizer.get_vocabulary()
print(f"reloaded: the same {reloaded.count_params():,} weights and {reloaded.tokenizer.vocabulary_size()} tokens")"""),
        new_markdown_cell("""\
## Scaling up on a GPU/TPU runtime

Switch the runtime (Colab: *Runtime → Change runtime type*; Kaggle: *Settings → Accelerator*),
keep the backend of the first cell (`jax` suits TPUs; all three use a GPU), and raise the settings:

| setting | CPU (this notebook) | GPU / TPU |
|---|---|---|
| `CORPUS_BYTES` | 1.5 MB (nearly all of the demo corpus) | your own text files instead: tens of MB to GBs |
| `VOCABULARY_SIZE` | 2,000 | 8,000–40,478 (GPT-1: 40,000 merges) |
| model | `gpt1_tiny` (2 × 64) | `GPT1Backbone.from_preset("gpt1_tiny", num_layers=6, hidden_dim=384, num_heads=6, intermediate_dim=1536, max_sequence_length=512, vocabulary_size=...)`, up to `"gpt1"` (117M) |
| `SEQUENCE_LENGTH` | 64 | 512 (GPT-1's context) |
| `BATCH_SIZE` | 32 | 64 (the paper's); if memory runs short, batches of 64 / k with `create_optimizer(..., gradient_accumulation_steps=k)` |
| `STEPS`, `EVAL_INTERVAL` | 600, 100 | 10,000+ and 1,000 |
| `PEAK_LEARNING_RATE` | 2e-3 | 2.5e-4 for hidden size 768 (the paper), with `warmup_steps=2000` |
| precision | float32 | `from_preset(..., dtype="mixed_bfloat16")` on a TPU or an A100 / L4-class GPU (a T4 has no bfloat16 units: keep float32) |

For long runs, `keras_gpt1.training.pretrain(corpus=[...], preset="gpt1", steps=..., output=...)`
(or `keras-gpt1 pretrain` on the command line) does all of the above in one call, and adds
checkpoints that resume exactly, TensorBoard logs and a final preset. Multi-device training:
build, compile and fit inside `keras_gpt1.distribution.distribution_scope("data")`."""),
    ]


# =============================================================================================
# 02: fine-tune on tasks
# =============================================================================================

NB2 = "02_finetune_tasks.ipynb"


def notebook_2():
    return [
        new_markdown_cell(f"""\
# Fine-tune GPT-1: classification and multiple choice, with the auxiliary LM loss

{badges(NB2)}

GPT-1's second stage: a pretrained model gets a linear head on the final state of an extract token
and is trained on a labelled task, while still predicting the next token of its input:

    loss = task_loss + λ · lm_loss          (the paper: λ = 0.5)

This notebook pretrains a tiny model on Python's documentation (as notebook 1 does, in one call),
builds two small tasks from *held-out* text of the same corpus, fine-tunes each with λ = 0 and
λ = 0.5, and compares them:

- **Classification** (like CoLA, grammatical acceptability): is a sentence in its original word
  order, or scrambled? Packed as `_start_ sentence _classify_`.
- **Multiple choice** (in the format of the Story Cloze Test and RACE): which of three endings
  continues the start of a sentence: its real ending, the same words scrambled, or the ending of
  another sentence? Each candidate is packed as `_start_ context _delimiter_ ending _classify_`;
  the model scores each and takes a softmax across them.

The first code cell picks the Keras backend; the last section says how to scale up."""),
        new_code_cell(backend_cell("jax")),
        new_code_cell(install_cell()),
        new_code_cell("""\
import csv
import json
import random
import re

import keras
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

import keras_gpt1

print(f"keras_gpt1 {keras_gpt1.__version__} | Keras {keras.__version__} | backend {keras.config.backend()}")"""),
        new_markdown_cell("## Settings"),
        new_code_cell("""\
WORK_DIR = "gpt1_finetune_notebook"
PRETRAIN_BYTES = 300_000 if QUICK else 800_000    # corpus text for pretraining (of ~1.6 MB)
TASK_BYTES = 150_000 if QUICK else 800_000        # the held-out text after it, for the tasks
PRETRAIN_STEPS = 30 if QUICK else 600
TRAIN_EXAMPLES = 128 if QUICK else 2000           # per task
VALIDATION_EXAMPLES = 64 if QUICK else 500
SEQUENCE_LENGTH = 48                              # packed tokens; longer examples are trimmed
EPOCHS = 2 if QUICK else 3                        # the paper: 3
BATCH_SIZE = 16 if QUICK else 32                  # the paper: 32
LEARNING_RATE = 1e-3                              # the paper: 6.25e-5, for the 117M model
LM_WEIGHTS = (0.0, 0.5)                           # λ values compared
SEED = 0

keras.utils.set_random_seed(SEED)
os.makedirs(WORK_DIR, exist_ok=True)"""),
        new_markdown_cell("""\
## 1. Pretrain a tiny GPT-1

`pretrain` is the engine of `keras-gpt1 pretrain`: it trains a tokenizer on the corpus, packs the
text, trains with `model.fit` (the paper's optimizer and warmup-cosine schedule), checkpoints, and
saves a preset directory (weights + tokenizer) that fine-tuning starts from."""),
        new_code_cell("""\
from keras_gpt1.data import build_demo_corpus
from keras_gpt1.training import pretrain

pretrain_corpus = build_demo_corpus(f"{WORK_DIR}/pretrain_text.txt", max_bytes=PRETRAIN_BYTES)
result = pretrain(
    corpus=[pretrain_corpus],
    preset="gpt1_tiny",
    output=f"{WORK_DIR}/pretrained",
    steps=PRETRAIN_STEPS,
    eval_interval=PRETRAIN_STEPS // 3,
    batch_size=32,
    sequence_length=64,
    vocabulary_size=1000 if QUICK else 2000,
    learning_rate=2e-3,
    tensorboard=False,
    sample_length=0,
    resume=False,
    verbose=2,
)
PRETRAINED = result.output
tokenizer = result.model.tokenizer"""),
        new_markdown_cell("""\
## 2. Two tasks from held-out text

Sentences come from the part of the corpus that pretraining did not see. Task files are plain
CSV / JSONL: `finetune` reads them by column (`text`, `label` for classification; `context`,
`choices`, `label` for multiple choice), and checks every row."""),
        new_code_cell("""\
from keras_gpt1.data.corpus import demo_corpus_lines

with open(pretrain_corpus, encoding="utf-8") as f:
    seen = sum(1 for _ in f)
needed = 2 * (TRAIN_EXAMPLES + VALIDATION_EXAMPLES)
sentences = []
for paragraph in list(demo_corpus_lines(max_bytes=PRETRAIN_BYTES + TASK_BYTES))[seen:]:
    for sentence in re.split(r"(?<=[.!?])\\s+", paragraph):
        words = sentence.split()
        if 8 <= len(words) <= 20 and sum(c.isalpha() or c == " " for c in sentence) > 0.9 * len(sentence):
            sentences.append(words)
rng = random.Random(SEED)
rng.shuffle(sentences)
assert len(sentences) >= needed, f"only {len(sentences)} sentences"
print(f"{len(sentences):,} held-out sentences available, {needed:,} used")

def scrambled(words):
    shuffled = list(words)
    while shuffled == words:
        rng.shuffle(shuffled)
    return shuffled

def classification_rows(pool):
    # Half in their original order, half scrambled.
    return [
        {"text": " ".join(w if i % 2 else scrambled(w)), "label": "acceptable" if i % 2 else "scrambled"}
        for i, w in enumerate(pool)
    ]

def multiple_choice_rows(pool):
    # The real ending, the same words scrambled, and another sentence's ending, in random order.
    rows = []
    for i, words in enumerate(pool):
        cut = len(words) // 2
        other = pool[(i + 1) % len(pool)]
        endings = [words[cut:], scrambled(words[cut:]), other[len(other) // 2:]]
        order = rng.sample(range(3), 3)
        rows.append({
            "context": " ".join(words[:cut]),
            "choices": [" ".join(endings[j]) for j in order],
            "label": order.index(0),
        })
    return rows

def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\\n" for row in rows)

n, m = TRAIN_EXAMPLES, VALIDATION_EXAMPLES
cls_pool, mc_pool = sentences[: n + m], sentences[n + m : 2 * (n + m)]
files = {
    "classification": (f"{WORK_DIR}/acceptability_train.csv", f"{WORK_DIR}/acceptability_dev.csv"),
    "multiple-choice": (f"{WORK_DIR}/endings_train.jsonl", f"{WORK_DIR}/endings_dev.jsonl"),
}
write_csv(files["classification"][0], classification_rows(cls_pool[:n]))
write_csv(files["classification"][1], classification_rows(cls_pool[n:]))
write_jsonl(files["multiple-choice"][0], multiple_choice_rows(mc_pool[:n]))
write_jsonl(files["multiple-choice"][1], multiple_choice_rows(mc_pool[n:]))

for task, (train_file, _) in files.items():
    print(f"\\n{task}: {train_file}")
    with open(train_file, encoding="utf-8") as f:
        print("".join(f.readlines()[:3]).rstrip())"""),
        new_markdown_cell("""\
## 3. Fine-tune with λ = 0 and λ = 0.5

`finetune` is the paper's recipe as one function (the engine of `keras-gpt1 finetune`): it reads
and packs the files, adds the start / delimiter / extract embeddings the pretrained vocabulary
lacks, builds `GPT1Classifier` or `GPT1MultipleChoice`, trains with `model.fit` (Adam with weight
decay, warmup then linear decay) and returns the validation metrics. `fit` logs `task_loss` and
`lm_loss` separately; with λ = 0 the LM term is skipped entirely. Each run starts from the same
pretrained weights and seed."""),
        new_code_cell("""\
from keras_gpt1.tasks.finetune import finetune

label_names = {"classification": ["scrambled", "acceptable"], "multiple-choice": None}
runs = {}
for task, (train_file, dev_file) in files.items():
    for lm_weight in LM_WEIGHTS:
        run = finetune(
            task,
            train_file,
            dev_file,
            preset=PRETRAINED,
            label_names=label_names[task],
            lm_weight=lm_weight,
            learning_rate=LEARNING_RATE,
            batch_size=BATCH_SIZE,
            epochs=EPOCHS,
            sequence_length=SEQUENCE_LENGTH,
            seed=SEED,
            verbose=2,
        )
        runs[task, lm_weight] = run
        print(f"{task:15s} λ={lm_weight}: {type(run.model).__name__}, validation "
              + ", ".join(f"{k} {v:.3f}" for k, v in run.metrics.items()))"""),
        new_markdown_cell("""\
## 4. Metrics

Classification reports accuracy, F1 of the `acceptable` class and Matthews correlation (CoLA's
metric); multiple choice reports accuracy. Chance: 50 % for classification, 33 % for multiple
choice."""),
        new_code_cell("""\
rows = ["| task | λ | accuracy | F1 | MCC | final task loss | final LM loss |", "|---|---|---|---|---|---|---|"]
for (task, lm_weight), run in runs.items():
    m, h = run.metrics, run.history
    task_loss = h.get("task_loss", h["loss"])[-1]
    lm_loss = f"{h['lm_loss'][-1]:.3f}" if "lm_loss" in h else "(off)"
    f1 = f"{m['f1']:.3f}" if "f1" in m else "–"
    mcc = f"{m['mcc']:.3f}" if "mcc" in m else "–"
    rows.append(f"| {task} | {lm_weight} | {m['accuracy']:.3f} | {f1} | {mcc} | {task_loss:.3f} | {lm_loss} |")
display(Markdown("\\n".join(rows)))"""),
        new_markdown_cell("""\
## 5. λ = 0 against λ = 0.5

Left: validation accuracy of each task with and without the auxiliary loss. Right: the task loss
during training. In the paper the auxiliary objective helped the larger datasets (NLI, QQP) and
not the smaller ones. Here the model is tiny and barely pretrained, so its LM loss (see the table)
is several times the task loss, and λ = 0.5 can slow the task's learning: compare the curves. With
a few thousand examples, differences of a point or two are within run-to-run noise (change `SEED`
to see it)."""),
        new_code_cell("""\
tasks = list(files)
fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
width = 0.35
for j, lm_weight in enumerate(LM_WEIGHTS):
    accuracies = [runs[task, lm_weight].metrics["accuracy"] for task in tasks]
    positions = np.arange(len(tasks)) + (j - 0.5) * width
    bars = ax_acc.bar(positions, accuracies, width, label=f"λ = {lm_weight}")
    ax_acc.bar_label(bars, fmt="%.2f")
    for task, style in zip(tasks, ("-", "--")):
        h = runs[task, lm_weight].history
        losses = h.get("task_loss", h["loss"])
        ax_loss.plot(range(1, len(losses) + 1), losses, style, marker="o", label=f"{task}, λ = {lm_weight}")
chance = {"classification": 1 / 2, "multiple-choice": 1 / 3}
for x, task in enumerate(tasks):
    ax_acc.hlines(chance[task], x - 0.4, x + 0.4, color="gray", linestyle=":", label="chance" if x == 0 else None)
ax_acc.set(xticks=range(len(tasks)), xticklabels=tasks, ylim=(0, 1), ylabel="validation accuracy",
           title="Validation accuracy")
ax_acc.legend(loc="lower right")
ax_loss.set(xlabel="epoch", ylabel="training task loss", title="Task loss while fine-tuning")
ax_loss.legend(fontsize=8)
plt.tight_layout()
plt.show()"""),
        new_markdown_cell("""\
## 6. Use a fine-tuned model

The packers turn raw text into the model's inputs (`ClassificationPacker`,
`MultipleChoicePacker`; `PairPacker` and `SimilarityPacker` for entailment and similarity).
`finetune(..., output=DIR)` also saves the model as a preset, which `keras-gpt1 evaluate`,
`GPT1TaskModel.from_preset` and `keras-gpt1 export` take."""),
        new_code_cell("""\
from keras_gpt1.tasks import ClassificationPacker, MultipleChoicePacker

run = runs["classification", 0.5]
packer = ClassificationPacker(tokenizer, sequence_length=run.sequence_length)
texts = ["the function returns a list of strings .", "the strings of list a returns function ."]
probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(run.model.predict(packer(texts), verbose=0)))
for text, p in zip(texts, probabilities):
    print(f"P(acceptable) = {p[run.label_names.index('acceptable')]:.2f}   {text}")

run = runs["multiple-choice", 0.5]
packer = MultipleChoicePacker(tokenizer, sequence_length=run.sequence_length)
context = "if the argument is omitted ,"
endings = ["the default value is used .", "value the used default is .", "the file is closed ."]
scores = keras.ops.convert_to_numpy(run.model.predict(packer(([context], [endings])), verbose=0))[0]
print(f"\\n{context} ...")
for ending, p in zip(endings, keras.ops.convert_to_numpy(keras.ops.softmax(scores))):
    print(f"  {p:.2f}  {ending}")"""),
        new_markdown_cell("""\
## Scaling up on a GPU/TPU runtime

This is a demonstration of the mechanics; GPT-1's results need its pretrained weights and real
task data. On a GPU / TPU runtime:

| setting | CPU (this notebook) | GPU / TPU |
|---|---|---|
| `PRETRAINED` | a tiny model pretrained here | the original GPT-1 converted to a preset (notebook 4: `convert_hf_to_preset`), or your own `pretrain(...)` run |
| data | generated from held-out docs | real task files, e.g. GLUE's CoLA / SST-2 TSVs (`columns={"text": "sentence"}`), RTE / MNLI (`"entailment"`), STS-B (`"similarity"`, `regression=True`), Story Cloze / RACE (`"multiple-choice"`) |
| `TRAIN_EXAMPLES` | 2,000 | the full training sets |
| `LEARNING_RATE` | 1e-3 | 6.25e-5 (the paper's; `finetune`'s default) |
| `EPOCHS`, `BATCH_SIZE` | 3, 32 | 3, 32 (the paper's) |
| `LM_WEIGHTS` | 0 and 0.5 | 0.5 (the paper's; `finetune`'s default) |
| `SEQUENCE_LENGTH` | 48 | `None`: the longest packed training example (`finetune`'s default), at most 512 |

`finetune(..., dropout=0.1, warmup_fraction=0.002, weight_decay=0.01)` are the paper's other
settings and the defaults. From the command line: `keras-gpt1 finetune` and `keras-gpt1 evaluate`."""),
    ]


# =============================================================================================
# 03: export and serve
# =============================================================================================

NB3 = "03_export_and_serve.ipynb"


def notebook_3():
    return [
        new_markdown_cell(f"""\
# Export a SavedModel for TensorFlow Serving: raw strings in, text out

{badges(NB3)}

`export_saved_model` writes a GPT-1 preset as a TensorFlow SavedModel whose signatures take
**raw strings**: the tokenizer runs inside the graph, so a client sends text and gets text back.
This notebook exports a small model, inspects the signatures, calls them with strings, checks the
export generates what the library generates, and shows the TF Serving REST request.

The export traces the model under TensorFlow. From JAX or PyTorch, `export_saved_model` runs the
same export in a TensorFlow subprocess, so the call below works from every backend; TensorFlow is
the default here only because it exports in-process."""),
        new_code_cell(backend_cell("tensorflow")),
        new_code_cell(install_cell()),
        new_code_cell("""\
import json
import os

import keras
import numpy as np
import tensorflow as tf
from IPython.display import Markdown, display

import keras_gpt1
from keras_gpt1 import GPT1CausalLM

print(f"keras_gpt1 {keras_gpt1.__version__} | Keras {keras.__version__} | backend {keras.config.backend()} | "
      f"TensorFlow {tf.__version__}")"""),
        new_markdown_cell("""\
## 1. A model to export

Any preset directory with a tokenizer works: a causal LM (from `pretrain`, notebook 1, or a
converted GPT-1, notebook 4) or a fine-tuned task model. If notebook 1 ran in this directory its
preset is used; otherwise a tiny model is pretrained here in one call."""),
        new_code_cell("""\
WORK_DIR = "gpt1_serving_notebook"
PRESET_DIR = "gpt1_notebook/preset"      # notebook 1's output, if present
EXPORT_BASE = f"{WORK_DIR}/serving/gpt1"  # the model base path TF Serving watches
MAX_LENGTH = 64                           # prompt + generated tokens in one request
MAX_NEW_TOKENS = 16                       # what serving_default generates

if not os.path.isdir(PRESET_DIR):
    from keras_gpt1.data import build_demo_corpus
    from keras_gpt1.training import pretrain

    corpus = build_demo_corpus(f"{WORK_DIR}/corpus.txt", max_bytes=200_000 if QUICK else 1_500_000)
    PRESET_DIR = pretrain(
        corpus=[corpus], preset="gpt1_tiny", output=f"{WORK_DIR}/pretrained",
        steps=30 if QUICK else 600, batch_size=16 if QUICK else 32, sequence_length=64,
        vocabulary_size=1000 if QUICK else 2000, learning_rate=2e-3,
        tensorboard=False, sample_length=0, resume=False, verbose=2,
    ).output
lm = GPT1CausalLM.from_preset(PRESET_DIR)
print(f"{PRESET_DIR}: {lm.count_params():,} parameters, vocabulary {lm.tokenizer.vocabulary_size()}")"""),
        new_markdown_cell("""\
## 2. Export

TF Serving serves `BASE/<version>/`; a new version directory is picked up while the server runs.
The version is written beside its final place and renamed in, so a server never loads half a
model. (Command line: `keras-gpt1 export --model PRESET --output BASE --version 1`.)"""),
        new_code_cell("""\
from keras_gpt1.export import export_saved_model

export_dir = export_saved_model(PRESET_DIR, EXPORT_BASE, version=1, max_length=MAX_LENGTH,
                                max_new_tokens=MAX_NEW_TOKENS, overwrite=True)
for directory, _, names in sorted(os.walk(export_dir)):
    for name in sorted(names):
        path = os.path.join(directory, name)
        print(f"{os.path.getsize(path):>10,}  {os.path.relpath(path, EXPORT_BASE)}")"""),
        new_markdown_cell("""\
## 3. Inspect the signatures

`signature_summary` reads them from `saved_model.pb` (the same as
`saved_model_cli show --dir EXPORT_DIR --all`). `None` is a dimension of any size: every signature
takes a batch of strings."""),
        new_code_cell("""\
from keras_gpt1.export.saved_model import graph_op_types, signature_summary

def describe(tensors):
    return "<br>".join(f"`{name}`: {dtype} {list(shape)}" for name, (dtype, shape) in tensors.items())

rows = ["| signature | inputs | outputs |", "|---|---|---|"]
for name, signature in signature_summary(export_dir).items():
    rows.append(f"| `{name}` | {describe(signature['inputs'])} | {describe(signature['outputs'])} |")
display(Markdown("\\n".join(rows)))

# The graph holds core TensorFlow ops only, all of which the tensorflow/serving binaries link:
# no Python, no XLA-only op, no custom op library.
op_types = graph_op_types(export_dir)
print(len(op_types), "op types, e.g.", ", ".join(op_types[:8]), "...")
assert not {"PyFunc", "EagerPyFunc", "XlaDynamicUpdateSlice"} & set(op_types)"""),
        new_markdown_cell("""\
## 4. Call it with raw strings

Any TensorFlow program can load the export; the model's Python code is not needed. Bad text never
fails a request: an empty string gives an empty answer and invalid UTF-8 bytes are dropped."""),
        new_code_cell("""\
served = tf.saved_model.load(export_dir)
print(sorted(served.signatures))

prompts = ["the function returns", "an exception is raised when"]
out = served.signatures["serving_default"](text=tf.constant(prompts))
for prompt, completion, n in zip(prompts, out["completion"].numpy(), out["lengths"].numpy()):
    print(f"{prompt!r} -> {completion.decode()!r} ({n} tokens in all)")

out = served.signatures["generate"](text=tf.constant(["the value of"]), max_new_tokens=tf.constant(6))
print("generate, 6 new tokens:", out["text"].numpy()[0].decode())

out = served.signatures["score"](text=tf.constant(["the function returns a list of strings .", "", b"bad \\xff bytes"]))
print("score perplexity:", out["perplexity"].numpy(), "scored tokens:", out["num_scored_tokens"].numpy())"""),
        new_markdown_cell("""\
The export generates exactly what the library's own `generate` does (greedy decoding, same
tokenizer, same weights):"""),
        new_code_cell("""\
library = lm.generate(prompts, max_new_tokens=MAX_NEW_TOKENS, sampler="greedy")
exported = [t.decode() for t in served.signatures["serving_default"](text=tf.constant(prompts))["text"].numpy()]
for a, b in zip(library, exported):
    print(f"library : {a}\\nexported: {b}\\n")
assert library == exported"""),
        new_markdown_cell(f"""\
## 5. Serve it with TF Serving and call the REST API

Start the server with Docker (`tensorflow/serving:latest-gpu` and `--gpus all` on a GPU machine):

```bash
docker run --rm -p 8501:8501 \\
  --mount type=bind,source="$PWD/gpt1_serving_notebook/serving/gpt1",target=/models/gpt1 \\
  -e MODEL_NAME=gpt1 tensorflow/serving
```

The REST endpoint is `POST http://localhost:8501/v1/models/gpt1:predict` (a version:
`/v1/models/gpt1/versions/1:predict`; the signatures and their tensors:
`GET /v1/models/gpt1/metadata`). The body names a signature and gives its inputs, either row by
row (`instances`, answered with `predictions`) or by input name (`inputs`, answered with
`outputs`; needed for `generate`, whose `max_new_tokens` is one scalar for the whole batch)."""),
        new_code_cell("""\
bodies = {
    "serving_default": {"signature_name": "serving_default", "instances": [{"text": p} for p in prompts]},
    "generate": {"signature_name": "generate", "inputs": {"text": prompts, "max_new_tokens": 8}},
    "score": {"signature_name": "score", "inputs": {"text": ["the function returns a list of strings ."]}},
}
body = json.dumps(bodies["generate"])
print("curl -s -X POST http://localhost:8501/v1/models/gpt1:predict \\\\\\n"
      f"     -H 'Content-Type: application/json' -d '{body}'")"""),
        new_markdown_cell("""\
No server runs here, so the next cell does what TF Serving does with each body: feed its inputs to
the named signature and return the outputs as JSON (strings as UTF-8 text). Set the environment
variable `TF_SERVING_URL` (e.g. `http://localhost:8501/v1/models/gpt1`) to send the requests to a
real server instead."""),
        new_code_cell("""\
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
    print(f"{name}: {json.dumps(response)[:400]}\\n")"""),
        new_markdown_cell("""\
## Scaling up on a GPU/TPU runtime

Exporting needs no accelerator (it traces a graph), but serving a real model does:

| setting | here | a real deployment |
|---|---|---|
| `PRESET_DIR` | a tiny pretrained model | the converted 117M GPT-1 (notebook 4) or your fine-tuned task preset (notebook 2: `finetune(..., output=DIR)`; its signatures return `probabilities` and `label`) |
| `MAX_LENGTH` | 64 | up to 512 (GPT-1's context): the longest prompt + completion served |
| `MAX_NEW_TOKENS` | 16 | what `serving_default` generates; `generate` takes it per request |
| server image | `tensorflow/serving` (CPU) | `tensorflow/serving:latest-gpu` with `--gpus all`, and `--enable_batching` to batch concurrent requests |
| versions | `1` | export each new model as the next `--version`; TF Serving switches to it without a restart |

TPUs are not served by TF Serving; the SavedModel also loads in any TensorFlow program (as in
section 4), on CPU or GPU."""),
    ]


# =============================================================================================
# 04: load the original weights
# =============================================================================================

NB4 = "04_load_original_weights.ipynb"
HF_REPO = "openai-community/openai-gpt"
ORIGINAL_REPO = "https://github.com/openai/finetune-transformer-lm"


def notebook_4():
    return [
        new_markdown_cell(f"""\
# Load the original GPT-1 weights: convert to a preset, check parity

{badges(NB4)}

The 117M GPT-1 that OpenAI released in 2018 exists in two layouts, and `keras_gpt1.convert` reads
both into a preset directory (weights + tokenizer) that every backend loads:

| source | files | converter |
|---|---|---|
| Hugging Face port, [`{HF_REPO}`](https://huggingface.co/{HF_REPO}) | `config.json`, `model.safetensors` (or `pytorch_model.bin`), `vocab.json`, `merges.txt` | `convert_hf_to_preset` |
| the original release, [`openai/finetune-transformer-lm`]({ORIGINAL_REPO}) `model/` | `params_shapes.json`, `params_0.npy` … `params_9.npy`, `encoder_bpe_40000.json`, `vocab_40000.bpe` | `convert_openai_to_preset` |

The **parity check** runs the converted model and the reference implementation
(`transformers.OpenAIGPTLMHeadModel`, PyTorch) on the same token ids and compares the logits.

Where there is a network, set `DOWNLOAD = True` below to fetch the real files (about 480 MB per
layout). Without one (as in CI), the notebook builds a small stand-in checkpoint in both layouts
(a randomly initialised `OpenAIGPTLMHeadModel` and a tokenizer trained on Python's docs) and runs
exactly the same conversion and checks."""),
        new_code_cell(backend_cell("torch")),
        new_code_cell(install_cell(also=[("torch", "torch"), ("transformers", "transformers")])),
        new_code_cell("""\
import keras
import numpy as np
import torch
import transformers

transformers.logging.disable_progress_bar()

import keras_gpt1
from keras_gpt1 import GPT1CausalLM

print(f"keras_gpt1 {keras_gpt1.__version__} | Keras {keras.__version__} | backend {keras.config.backend()} | "
      f"transformers {transformers.__version__} | torch {torch.__version__}")"""),
        new_markdown_cell("## 1. The checkpoint files"),
        new_code_cell(f"""\
WORK_DIR = "gpt1_convert_notebook"
DOWNLOAD = False  # True where there is a network: fetch the real 117M GPT-1 in both layouts

HF_REPO = "{HF_REPO}"
HF_FILES = ["config.json", "model.safetensors", "vocab.json", "merges.txt"]
ORIGINAL_URL = "{ORIGINAL_REPO.replace("github.com", "raw.githubusercontent.com")}/master/model/"
ORIGINAL_FILES = ["params_shapes.json", *[f"params_{{i}}.npy" for i in range(10)],
                  "encoder_bpe_40000.json", "vocab_40000.bpe"]
hf_dir, original_dir = f"{{WORK_DIR}}/hf", f"{{WORK_DIR}}/original"

print("Hugging Face:", ", ".join(f"https://huggingface.co/{{HF_REPO}}/resolve/main/{{name}}" for name in HF_FILES[:1]), "...")
print("original    :", ORIGINAL_URL + ORIGINAL_FILES[0], "...")"""),
        new_code_cell("""\
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
    # A small stand-in with the same files: a tokenizer trained on Python's docs, a random
    # OpenAIGPTLMHeadModel saved by transformers, and the same weights in the original layout.
    from keras_gpt1 import GPT1Backbone
    from keras_gpt1.convert import write_openai_checkpoint
    from keras_gpt1.data import build_demo_corpus
    from keras_gpt1.tokenizers import train_bpe

    corpus = build_demo_corpus(f"{WORK_DIR}/corpus.txt", max_bytes=200_000)
    vocabulary, merges = train_bpe([corpus], num_merges=400, output_dir=hf_dir)  # vocab.json, merges.txt
    NUM_HEADS = 2
    torch.manual_seed(0)
    config = transformers.OpenAIGPTConfig(vocab_size=len(vocabulary), n_positions=128, n_embd=64,
                                          n_layer=2, n_head=NUM_HEADS)
    reference = transformers.OpenAIGPTLMHeadModel(config)
    with torch.no_grad():  # non-zero biases and gains, so a misplaced one would show
        for name, parameter in reference.named_parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    reference.save_pretrained(hf_dir)  # config.json + model.safetensors

    # The original layout is the same weights, flattened into ten .npy shards.
    from keras_gpt1.convert import load_hf_checkpoint

    backbone, _ = load_hf_checkpoint(hf_dir)
    write_openai_checkpoint(backbone, original_dir, vocabulary=vocabulary, merges=merges)

for directory in (hf_dir, original_dir):
    print(directory, sorted(os.listdir(directory)))"""),
        new_markdown_cell("""\
## 2. Convert to presets

Each converter checks every tensor's name and shape before building the model, and converts the
vocabulary files into the preset's tokenizer (the original layout keeps its `text_standardize`
character replacements). Command line: `keras-gpt1 convert --from-hf DIR --output PRESET` and
`keras-gpt1 convert --from-openai DIR --output PRESET`."""),
        new_code_cell("""\
from keras_gpt1.convert import convert_hf_to_preset, convert_openai_to_preset

backbone, tokenizer = convert_hf_to_preset(hf_dir, f"{WORK_DIR}/preset_from_hf", overwrite=True)
print(f"from HF      : {backbone.num_layers} layers, hidden {backbone.hidden_dim}, "
      f"{backbone.vocabulary_size} embedding rows, tokenizer of {tokenizer.vocabulary_size()} ids")

backbone, tokenizer = convert_openai_to_preset(original_dir, f"{WORK_DIR}/preset_from_original",
                                               num_heads=NUM_HEADS, overwrite=True)
print(f"from original: {backbone.num_layers} layers, hidden {backbone.hidden_dim}, "
      f"{backbone.vocabulary_size} embedding rows, tokenizer of {tokenizer.vocabulary_size()} ids")
print(sorted(os.listdir(f"{WORK_DIR}/preset_from_hf")))"""),
        new_markdown_cell("""\
## 3. Parity check against `transformers`

The same texts go through the converted model (on this notebook's Keras backend) and through
`OpenAIGPTLMHeadModel` (PyTorch), batched with right padding; the logits at every real position
must agree to 1e-4. The token ids are checked against Hugging Face's tokenizer first."""),
        new_code_cell("""\
texts = [
    "The function returns a list of strings.",
    "An exception is raised when the argument is not an integer, and the default value is used otherwise.",
    "Hello, world!",
]
reference = transformers.OpenAIGPTLMHeadModel.from_pretrained(hf_dir).eval()
hf_tokenizer = transformers.OpenAIGPTTokenizer.from_pretrained(hf_dir)

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

parity(f"{WORK_DIR}/preset_from_hf")
parity(f"{WORK_DIR}/preset_from_original")"""),
        new_markdown_cell("""\
## 4. Use the converted model

The preset is an ordinary `GPT1CausalLM` (generation, scoring, `model.fit`, export). With the real
weights (`DOWNLOAD = True`) the continuation below is GPT-1's own; the stand-in's is noise.
Going the other way, `convert_preset_to_hf` writes a directory `transformers` loads."""),
        new_code_cell("""\
from keras_gpt1.convert import convert_preset_to_hf

lm = GPT1CausalLM.from_preset(f"{WORK_DIR}/preset_from_hf")
print(lm.generate("the function returns", max_new_tokens=12, sampler="greedy"))

convert_preset_to_hf(f"{WORK_DIR}/preset_from_hf", f"{WORK_DIR}/hf_again", overwrite=True)
again = transformers.OpenAIGPTLMHeadModel.from_pretrained(f"{WORK_DIR}/hf_again")
same = all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), again.state_dict().values()))
print("preset -> Hugging Face round trip gives identical weights:", same)
assert same"""),
        new_markdown_cell("""\
## Scaling up on a GPU/TPU runtime

Conversion itself runs on a CPU in seconds (the 117M model's weights are read with NumPy); what
needs an accelerator is using the model:

| setting | here | with the real weights |
|---|---|---|
| `DOWNLOAD` | `False` (stand-in) | `True`: ~480 MB per layout; the converted preset is the 117M GPT-1 |
| `NUM_HEADS` | 2 | 12 (the original layout cannot store it) |
| precision | float32 | `GPT1CausalLM.from_preset(dir, dtype="mixed_bfloat16")` on a GPU / TPU |
| next steps | | fine-tune with `finetune(task, train, dev, preset=dir)` at the paper's settings (notebook 2), export with `export_saved_model(dir, ...)` (notebook 3) |

The parity check should also pass on the real model (a largest difference around 1e-5 in
float32); run it once after converting."""),
    ]


NOTEBOOKS = {
    NB1: notebook_1,
    NB2: notebook_2,
    NB3: notebook_3,
    NB4: notebook_4,
}
# One line each for the README's table.
SUMMARIES = {
    NB1: "build the demo corpus, train a BPE tokenizer, pretrain a tiny GPT-1 with `model.fit`, plot "
    "loss and perplexity, generate (greedy and top-p), score text",
    NB2: "fine-tune classification (real vs scrambled sentences, like CoLA) and multiple choice "
    "(three candidate endings, like Story Cloze / RACE) with `finetune` and the auxiliary LM loss; "
    "metrics table; λ = 0 vs λ = 0.5 plot",
    NB3: "export a SavedModel, inspect its signatures, call it with raw strings, check it generates "
    "what the library does, TF Serving REST requests",
    NB4: "convert the original OpenAI release and the Hugging Face port to presets (the files to "
    "download; offline, a stand-in in both layouts), logit parity with `transformers`",
}


def readme_table():
    rows = ["| notebook | what it shows | open in |", "|---|---|---|"]
    for name, summary in SUMMARIES.items():
        rows.append(f"| [`{name[:-6]}`](notebooks/{name}) | {summary} | {badges(name)} |")
    return "\n".join(rows)


def build(name):
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    stem = name.split("_")[0]
    for index, cell in enumerate(NOTEBOOKS[name]()):
        # Stable ids keep regenerated files identical (nbformat would draw random ones).
        cell["id"] = f"nb{stem}-cell{index:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check the notebooks are up to date")
    parser.add_argument("--readme", action="store_true", help="print the README's notebook table")
    args = parser.parse_args(argv)
    if args.readme:
        print(readme_table())
        return 0
    stale = []
    for name in NOTEBOOKS:
        path = os.path.join(NOTEBOOK_DIR, name)
        text = build(name)
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            os.makedirs(NOTEBOOK_DIR, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {os.path.relpath(path, ROOT)}")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run `python tools/make_notebooks.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
