# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
# ---

# %% [markdown]
# # Fine-tune GPT-1: classification and multiple choice, with the auxiliary LM loss
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/keras-gpt1/keras_gpt1/blob/main/notebooks/02_finetune_tasks.ipynb) [![Open In Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)](https://kaggle.com/kernels/welcome?src=https://github.com/keras-gpt1/keras_gpt1/blob/main/notebooks/02_finetune_tasks.ipynb)
#
# GPT-1's second stage: a pretrained model gets a linear head on the final state of an extract token
# and is trained on a labelled task, while still predicting the next token of its input:
#
#     loss = task_loss + λ · lm_loss          (the paper: λ = 0.5)
#
# This notebook pretrains a tiny model on Python's documentation (as notebook 1 does, in one call),
# builds two small tasks from *held-out* text of the same corpus, fine-tunes each with λ = 0 and
# λ = 0.5, and compares them:
#
# - **Classification** (like CoLA, grammatical acceptability): is a sentence in its original word
#   order, or scrambled? Packed as `_start_ sentence _classify_`.
# - **Multiple choice** (in the format of the Story Cloze Test and RACE): which of three endings
#   continues the start of a sentence: its real ending, the same words scrambled, or the ending of
#   another sentence? Each candidate is packed as `_start_ context _delimiter_ ending _classify_`;
#   the model scores each and takes a softmax across them.
#
# The first code cell picks the Keras backend; the last section says how to scale up.

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
# checkout, CI). Its requirements are ranges and pip upgrades only what is missing or too old,
# so the runtime's own TensorFlow / Keras / JAX / PyTorch builds (GPU or TPU) are kept.
import importlib.util

if importlib.util.find_spec("keras_gpt1") is None:
    # %pip install -q --upgrade-strategy only-if-needed "keras-gpt1 @ git+https://github.com/keras-gpt1/keras_gpt1"

# %%
import csv
import json
import random
import re

import keras
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

import keras_gpt1

print(f"keras_gpt1 {keras_gpt1.__version__} | Keras {keras.__version__} | backend {keras.config.backend()}")

# %% [markdown]
# ## Settings

# %%
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
os.makedirs(WORK_DIR, exist_ok=True)

# %% [markdown]
# ## 1. Pretrain a tiny GPT-1
#
# `pretrain` is the engine of `keras-gpt1 pretrain`: it trains a tokenizer on the corpus, packs the
# text, trains with `model.fit` (the paper's optimizer and warmup-cosine schedule), checkpoints, and
# saves a preset directory (weights + tokenizer) that fine-tuning starts from.

# %%
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
tokenizer = result.model.tokenizer

# %% [markdown]
# ## 2. Two tasks from held-out text
#
# Sentences come from the part of the corpus that pretraining did not see. Task files are plain
# CSV / JSONL: `finetune` reads them by column (`text`, `label` for classification; `context`,
# `choices`, `label` for multiple choice), and checks every row.

# %%
from keras_gpt1.data.corpus import demo_corpus_lines

with open(pretrain_corpus, encoding="utf-8") as f:
    seen = sum(1 for _ in f)
needed = 2 * (TRAIN_EXAMPLES + VALIDATION_EXAMPLES)
sentences = []
for paragraph in list(demo_corpus_lines(max_bytes=PRETRAIN_BYTES + TASK_BYTES))[seen:]:
    for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
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
        f.writelines(json.dumps(row) + "\n" for row in rows)

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
    print(f"\n{task}: {train_file}")
    with open(train_file, encoding="utf-8") as f:
        print("".join(f.readlines()[:3]).rstrip())

# %% [markdown]
# ## 3. Fine-tune with λ = 0 and λ = 0.5
#
# `finetune` is the paper's recipe as one function (the engine of `keras-gpt1 finetune`): it reads
# and packs the files, adds the start / delimiter / extract embeddings the pretrained vocabulary
# lacks, builds `GPT1Classifier` or `GPT1MultipleChoice`, trains with `model.fit` (Adam with weight
# decay, warmup then linear decay) and returns the validation metrics. `fit` logs `task_loss` and
# `lm_loss` separately; with λ = 0 the LM term is skipped entirely. Each run starts from the same
# pretrained weights and seed.

# %%
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
              + ", ".join(f"{k} {v:.3f}" for k, v in run.metrics.items()))

# %% [markdown]
# ## 4. Metrics
#
# Classification reports accuracy, F1 of the `acceptable` class and Matthews correlation (CoLA's
# metric); multiple choice reports accuracy. Chance: 50 % for classification, 33 % for multiple
# choice.

# %%
rows = ["| task | λ | accuracy | F1 | MCC | final task loss | final LM loss |", "|---|---|---|---|---|---|---|"]
for (task, lm_weight), run in runs.items():
    m, h = run.metrics, run.history
    task_loss = h.get("task_loss", h["loss"])[-1]
    lm_loss = f"{h['lm_loss'][-1]:.3f}" if "lm_loss" in h else "(off)"
    f1 = f"{m['f1']:.3f}" if "f1" in m else "–"
    mcc = f"{m['mcc']:.3f}" if "mcc" in m else "–"
    rows.append(f"| {task} | {lm_weight} | {m['accuracy']:.3f} | {f1} | {mcc} | {task_loss:.3f} | {lm_loss} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## 5. λ = 0 against λ = 0.5
#
# Left: validation accuracy of each task with and without the auxiliary loss. Right: the task loss
# during training. In the paper the auxiliary objective helped the larger datasets (NLI, QQP) and
# not the smaller ones. Here the model is tiny and barely pretrained, so its LM loss (see the table)
# is several times the task loss, and λ = 0.5 can slow the task's learning: compare the curves. With
# a few thousand examples, differences of a point or two are within run-to-run noise (change `SEED`
# to see it).

# %%
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
plt.show()

# %% [markdown]
# ## 6. Use a fine-tuned model
#
# The packers turn raw text into the model's inputs (`ClassificationPacker`,
# `MultipleChoicePacker`; `PairPacker` and `SimilarityPacker` for entailment and similarity).
# `finetune(..., output=DIR)` also saves the model as a preset, which `keras-gpt1 evaluate`,
# `GPT1TaskModel.from_preset` and `keras-gpt1 export` take.

# %%
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
print(f"\n{context} ...")
for ending, p in zip(endings, keras.ops.convert_to_numpy(keras.ops.softmax(scores))):
    print(f"  {p:.2f}  {ending}")

# %% [markdown]
# ## Scaling up on a GPU/TPU runtime
#
# This is a demonstration of the mechanics; GPT-1's results need its pretrained weights and real
# task data. On a GPU / TPU runtime:
#
# | setting | CPU (this notebook) | GPU / TPU |
# |---|---|---|
# | `PRETRAINED` | a tiny model pretrained here | the original GPT-1 converted to a preset (notebook 4: `convert_hf_to_preset`), or your own `pretrain(...)` run |
# | data | generated from held-out docs | real task files, e.g. GLUE's CoLA / SST-2 TSVs (`columns={"text": "sentence"}`), RTE / MNLI (`"entailment"`), STS-B (`"similarity"`, `regression=True`), Story Cloze / RACE (`"multiple-choice"`) |
# | `TRAIN_EXAMPLES` | 2,000 | the full training sets |
# | `LEARNING_RATE` | 1e-3 | 6.25e-5 (the paper's; `finetune`'s default) |
# | `EPOCHS`, `BATCH_SIZE` | 3, 32 | 3, 32 (the paper's) |
# | `LM_WEIGHTS` | 0 and 0.5 | 0.5 (the paper's; `finetune`'s default) |
# | `SEQUENCE_LENGTH` | 48 | `None`: the longest packed training example (`finetune`'s default), at most 512 |
#
# `finetune(..., dropout=0.1, warmup_fraction=0.002, weight_decay=0.01)` are the paper's other
# settings and the defaults. From the command line: `keras-gpt1 finetune` and `keras-gpt1 evaluate`.
