"""Deterministic inputs for checking the fine-tuning task models against recorded "before" values.

A test helper (no tests here). The fixtures under `tests/fixtures/` were recorded with it from the
task models of `keras_gpt1/tasks/models.py` as of commit ddd34d0 (`GPT1Classifier`,
`GPT1Similarity`, `GPT1MultipleChoice`), before their replacement:

- `task_logits_before.npz`: the old models' outputs (TensorFlow, float32) for fixed backbone and
  head weights and fixed inputs; every weight and input is stored with them.
- `finetune_before.json`: `finetune(...)` on `write_task_files` + `make_tiny_preset`, per backend.

Only APIs meant to outlive the task-model refactor are used: `train_tokenizer`, `GPT1Backbone`,
`GPT1CausalLM` and (by the callers) `keras_gpt1.workflows.finetuning.finetune`.

Example:
```python
files = write_task_files(tmp_path / "data")
preset = make_tiny_preset(tmp_path / "preset")
train, validation, extra = files["similarity-regression"]
result = finetune("similarity", train, validation, preset=preset, seed=0, epochs=2,
                  batch_size=4, verbose=0, **extra)
```
"""

import csv
import json
import os
import random

import numpy as np

# The tiny preset's backbone. `vocabulary_size` is that of the tokenizer `make_tiny_preset`
# trains (base vocabulary + the 3 fine-tuning tokens `_start_`, `_delimiter_`, `_classify_`),
# so the preset already has embedding rows for the special tokens and `finetune` adds none.
TINY_TASK_CONFIG = {
    "vocabulary_size": 151,  # make_tiny_preset checks it against the tokenizer it trains
    "num_layers": 2,
    "num_heads": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
    "max_sequence_length": 32,
    "dropout": 0.0,
}
# More than the corpus supports (training stops once no pair occurs twice): every word is one token.
TINY_NUM_MERGES = 120

# === Deterministic weights ===


def set_weights_from_seed(variables, seed):
    """Assigns every variable of `variables` (a list of Keras variables, or anything with
    `.weights`) a draw of `np.random.default_rng(seed).normal(0, 0.02, shape)` (float32), in
    sorted order of `variable.path`; LayerNorm gammas (paths ending in "gamma") get 1 + the draw.

    Independent of Keras's random state and of the variables' creation order.
    """
    if hasattr(variables, "weights"):
        variables = variables.weights
    variables = sorted(variables, key=lambda v: v.path)
    paths = [v.path for v in variables]
    if len(set(paths)) != len(paths):
        raise ValueError(f"Variable paths are not unique: {paths}")
    rng = np.random.default_rng(seed)
    for variable in variables:
        value = rng.normal(0.0, 0.02, tuple(variable.shape)).astype("float32")
        if variable.path.endswith("gamma"):
            value = (1.0 + value).astype("float32")
        variable.assign(value)
    return variables


# === Task files ===

ANIMALS = ["cat", "dog", "fox", "bird", "fish", "horse"]
COLOURS = ["red", "blue", "green", "brown", "white", "black"]
PLACES = ["house", "garden", "river", "field", "forest", "park"]
VERBS = ["sees", "likes", "finds", "follows", "watches", "chases"]
GOOD = ["good", "happy", "great", "nice"]
BAD = ["bad", "sad", "awful", "poor"]
FILLER = ["the", "a", "in", "near", "is", "was", "very", "not", "and", "day"]
VOCABULARY = ANIMALS + COLOURS + PLACES + VERBS + GOOD + BAD + FILLER

NUM_TRAIN, NUM_VALIDATION = 24, 12
FAMILIES = ("classification", "entailment", "similarity", "similarity-regression", "multiple-choice")


def _phrase(rng, animal=None):
    """`the <colour> <animal> <verb> the <place>`: five or six words."""
    animal = animal or rng.choice(ANIMALS)
    return f"the {rng.choice(COLOURS)} {animal} {rng.choice(VERBS)} the {rng.choice(PLACES)}"


def _classification_row(rng, i):
    label = ["negative", "positive"][i % 2]
    word = rng.choice(GOOD if label == "positive" else BAD)
    return {"text": f"{_phrase(rng)} on a {word} day", "label": label}


def _entailment_row(rng, i):
    # entailment: the hypothesis names the premise's animal; contradiction: it denies it;
    # neutral: another animal.
    label = ["entailment", "neutral", "contradiction"][i % 3]
    animal = rng.choice(ANIMALS)
    premise = _phrase(rng, animal)
    if label == "entailment":
        hypothesis = f"a {animal} is in the {rng.choice(PLACES)}"
    elif label == "contradiction":
        hypothesis = f"a {animal} is not in the {rng.choice(PLACES)}"
    else:
        other = rng.choice([a for a in ANIMALS if a != animal])
        hypothesis = f"a {other} is in the {rng.choice(PLACES)}"
    return {"premise": premise, "hypothesis": hypothesis, "label": label}


def _similarity_row(rng, i):
    # 1: both sentences are about the same animal.
    label = i % 2
    animal = rng.choice(ANIMALS)
    other = animal if label else rng.choice([a for a in ANIMALS if a != animal])
    return {"first": _phrase(rng, animal), "second": _phrase(rng, other), "label": str(label)}


def _regression_row(rng, i):
    # Score in [0, 5]: 2.5 for the same animal, plus 2.5 for the same colour.
    animal = rng.choice(ANIMALS)
    colour = rng.choice(COLOURS)
    same_animal, same_colour = i % 2 == 1, (i // 2) % 2 == 1
    other_animal = animal if same_animal else rng.choice([a for a in ANIMALS if a != animal])
    other_colour = colour if same_colour else rng.choice([c for c in COLOURS if c != colour])
    first = f"the {colour} {animal} {rng.choice(VERBS)} the {rng.choice(PLACES)}"
    second = f"the {other_colour} {other_animal} {rng.choice(VERBS)} the {rng.choice(PLACES)}"
    return {"first": first, "second": second, "label": f"{2.5 * same_animal + 2.5 * same_colour:.1f}"}


def _multiple_choice_row(rng, i):
    # The right ending names the context's place; the other two name other places.
    place = rng.choice(PLACES)
    context = f"the {rng.choice(COLOURS)} {rng.choice(ANIMALS)} {rng.choice(VERBS)} the {place}"
    others = rng.sample([p for p in PLACES if p != place], 2)
    label = i % 3
    endings = [f"it was {'very ' if j % 2 else ''}near the {p}" for j, p in enumerate(others)]
    endings.insert(label, f"it was in the {place}")
    return {"context": context, "choices": endings, "label": label}


_ROWS = {
    "classification": (_classification_row, ["text", "label"]),
    "entailment": (_entailment_row, ["premise", "hypothesis", "label"]),
    "similarity": (_similarity_row, ["first", "second", "label"]),
    "similarity-regression": (_regression_row, ["first", "second", "label"]),
    "multiple-choice": (_multiple_choice_row, None),  # JSONL
}


def task_rows(family):
    """`(train_rows, validation_rows)` of one family: 24 and 12 rows from `random.Random(0)`."""
    make, _ = _ROWS[family]
    rng = random.Random(0)
    # Classes alternate with `i`, so every class is in both splits.
    rows = [make(rng, i) for i in range(NUM_TRAIN + NUM_VALIDATION)]
    return rows[:NUM_TRAIN], rows[NUM_TRAIN:]


def _write_rows(path, rows, fields):
    if fields is None:
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    else:
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)


def write_task_files(directory):
    """Writes train and validation files (24 and 12 rows) for each family into `directory`.

    Returns `{family: (train_path, validation_path, extra_kwargs)}`; the `finetune` task is the
    family name without "-regression", and `extra_kwargs` is `{"regression": True}` for
    "similarity-regression", else `{}`.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    files = {}
    for family in FAMILIES:
        _, fields = _ROWS[family]
        suffix = ".jsonl" if fields is None else ".csv"
        paths = []
        for split, rows in zip(("train", "validation"), task_rows(family)):
            path = os.path.join(directory, f"{family}_{split}{suffix}")
            _write_rows(path, rows, fields)
            paths.append(path)
        extra = {"regression": True} if family.endswith("-regression") else {}
        files[family] = (paths[0], paths[1], extra)
    return files


def task_name(family):
    """The `finetune` task of a family: "similarity-regression" -> "similarity"."""
    return family.removesuffix("-regression")


# === Tiny preset ===


def tokenizer_corpus():
    """The tokenizer's training text: every vocabulary word and the task files' sentence frames."""
    lines = [
        " ".join(VOCABULARY),
        " ".join(reversed(VOCABULARY)),
        "it was in the " + " ".join(PLACES),
        "a cat is not in the house and it was very near the river on a good day",
    ]
    return "\n".join(lines * 4) + "\n"


def make_tiny_preset(directory):
    """Trains a BPE tokenizer on `tokenizer_corpus()`, builds `GPT1Backbone(**TINY_TASK_CONFIG)`
    with weights from `set_weights_from_seed(backbone.weights, 0)`, and saves
    `GPT1CausalLM(backbone, tokenizer=tokenizer)` as a preset; returns the preset path.

    The backbone's `vocabulary_size` is `tokenizer.vocabulary_size()`, which counts the three
    fine-tuning tokens: `finetune` then adds no embedding rows (no Keras RNG in the embedding).
    """
    from keras_gpt1.models import GPT1Backbone, GPT1CausalLM
    from keras_gpt1.tokenizers import train_tokenizer

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    corpus = os.path.join(directory, "corpus.txt")
    with open(corpus, "w", encoding="utf-8", newline="\n") as f:
        f.write(tokenizer_corpus())
    tokenizer = train_tokenizer([corpus], num_merges=TINY_NUM_MERGES)
    if tokenizer.vocabulary_size() != TINY_TASK_CONFIG["vocabulary_size"]:
        raise AssertionError(
            f"The tiny tokenizer has {tokenizer.vocabulary_size()} ids, TINY_TASK_CONFIG says "
            f"{TINY_TASK_CONFIG['vocabulary_size']}: the recorded fixtures no longer apply."
        )
    backbone = GPT1Backbone(**TINY_TASK_CONFIG)
    set_weights_from_seed(backbone.weights, 0)
    preset = os.path.join(directory, "preset")
    GPT1CausalLM(backbone, tokenizer=tokenizer).save_to_preset(preset)
    return preset
