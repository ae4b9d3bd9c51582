"""`pretrain(...)`: language-model pretraining of GPT-1 with `model.fit`, resumable, on any backend.

What a call does, in order (every user error is raised before training starts):

1. Checks the arguments, that `output` is writable, that `sequence_length` fits the model's
   context, and reads every corpus file once (missing, empty, non-UTF-8, bad JSON lines).
   Without a corpus it writes the built-in demo corpus (Python's own docs) under `output`.
2. Gets a tokenizer: the run's own (when resuming), the one given, the preset's, or trains one on
   the corpus; it is saved into `output` at once, so a resumed run tokenizes identically.
3. Counts the corpus (one streaming pass) and checks it fills at least one window per split.
4. Builds the model (a built-in architecture sized to the tokenizer, or a preset directory to
   continue from), compiles it with the paper's optimizer (`create_optimizer`) and schedule
   (`WarmupCosine`), the next-token loss, perplexity and accuracy.
5. Resumes from the newest checkpoint in `output/checkpoints` if there is one and the run's
   settings (`output/run.json`) match; otherwise evaluates the starting validation perplexity.
6. Trains with `model.fit`. A Keras "epoch" here is one evaluation interval of `eval_interval`
   updates: at its end come validation, a checkpoint (atomic, the last `keep_checkpoints`
   kept), and TensorBoard logs (`output/logs`). Data epochs are independent of these: the
   pipeline reshuffles each pass over the corpus by itself.
7. Saves the final preset into `output` (`GPT1CausalLM.from_preset(output)` loads it), draws
   the loss curve into `output/loss_curve.png` (when matplotlib is installed) and prints a
   top-k sample with a fixed seed.

Resuming is exact: checkpoints hold the weights, the optimizer state (moments, step, gradient
accumulators), the dropout RNG state and the step; the data stream restarts at the same batch.
Training after a resume follows the uninterrupted trajectory.

`steps`, `eval_interval` and `warmup_steps` count optimizer updates; with
`gradient_accumulation_steps=k` each update averages `k` micro-batches of `batch_size // k`
sequences, so `batch_size` is always the number of sequences per update (the paper: 64).
"""

import dataclasses
import functools
import hashlib
import inspect
import json
import math
import os
import shutil
import sys

import keras

from keras_gpt1 import presets
from keras_gpt1.training.callbacks import (
    LearningRateLogger,
    StopAtStep,
    StopOnNaN,
    TrainingCheckpoint,
    latest_checkpoint,
    restore_checkpoint,
)
from keras_gpt1.training.optimizers import PRETRAINING_LEARNING_RATE, create_optimizer
from keras_gpt1.training.schedules import WarmupCosine
from keras_gpt1.utils.checks import check_integer, check_number
from keras_gpt1.utils.files import atomic_write_json, ensure_writable_dir, remove_stale_temporaries

DEFAULT_OUTPUT = os.path.join("outputs", "gpt1-demo")
DEMO_STEPS = 300
DEMO_CORPUS_FILE = os.path.join("corpus", "python_docs.txt")
RUN_FILE = "run.json"
# Settings a resume may change (e.g. a lower learning rate after a divergence); any other change
# means a different run.
ADJUSTABLE_ON_RESUME = ("learning_rate", "warmup_steps", "weight_decay", "global_clipnorm")
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
DEFAULT_VOCABULARY_SIZE = 2000
TOKENIZER_TEXT_LIMIT = 200_000_000
DEFAULT_SAMPLE_PROMPT = "the function returns"


@dataclasses.dataclass
class PretrainResult:
    """What `pretrain` returns.

    Attributes:
        model: the trained `GPT1CausalLM` (with its tokenizer).
        output: the run directory, also a preset directory.
        steps: optimizer updates done in total (including before a resume).
        initial_validation_perplexity: before any training (None without validation).
        validation_perplexity: after training (None without validation).
        history: `{metric: [value per evaluation interval]}` of this call's `fit`.
        resumed_from: the update count restored from a checkpoint, or None.
        sample: the top-k sample printed at the end (None if `sample_length` is 0).
    """

    model: object
    output: str
    steps: int
    initial_validation_perplexity: float = None
    validation_perplexity: float = None
    history: dict = None
    resumed_from: int = None
    sample: str = None


def _log(verbose, message):
    if verbose:
        print(message, flush=True)


def _model_config(preset, overrides):
    from keras_gpt1.models import preset_io

    config = preset_io.load_backbone_config(preset)
    config.update(overrides)
    return config


# === Tokenizer ===


def _load_tokenizer(source):
    from keras_gpt1.tokenizers import GPT1Tokenizer

    if isinstance(source, GPT1Tokenizer) or hasattr(source, "tokenize"):
        return source
    path = os.fspath(source)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Tokenizer directory {path!r} does not exist.")
    return GPT1Tokenizer.from_preset(path)


def _train_tokenizer(files, vocabulary_size, text_field, verbose):
    """A `GPT1Tokenizer` of `vocabulary_size` tokens (special tokens included) learned from the
    corpus, read as `keras-gpt1 train-tokenizer` reads it (`.jsonl` and `.gz` corpora: at most
    `TOKENIZER_TEXT_LIMIT` bytes of their text, plenty to learn merges)."""
    from keras_gpt1.tokenizers import train_tokenizer

    _log(verbose, f"Training a {vocabulary_size}-token BPE tokenizer on the corpus...")
    return train_tokenizer(files, vocabulary_size=vocabulary_size, text_field=text_field, max_text_bytes=TOKENIZER_TEXT_LIMIT)


def _has_tokenizer(directory):
    return os.path.isfile(os.path.join(directory, presets.TOKENIZER_CONFIG_FILE))


# === Sampling ===

# The final sample. A small, briefly trained model's greedy text soon loops ("the the the ...");
# sampling among its 40 likeliest tokens, slightly sharpened, reads like the corpus instead.
SAMPLER_SETTINGS = {"sampler": "top_k", "k": 40, "temperature": 0.8}


def sample_text(lm, prompt, max_new_tokens, seed=0):
    """A top-k continuation of the string `prompt` (`SAMPLER_SETTINGS`), reproducible by `seed`."""
    from keras_gpt1.generation import generate

    return generate(lm, prompt, max_new_tokens=max_new_tokens, seed=seed, **SAMPLER_SETTINGS)


def _sampler_description():
    settings = dict(SAMPLER_SETTINGS)
    name = settings.pop("sampler").replace("_", "-")
    return ", ".join([f"{name} {settings.pop('k')}" if "k" in settings else name]
                     + [f"{k} {v}" for k, v in settings.items()])


# === The run ===


def _check_same_corpus(previous, current, output):
    """Raises a ValueError naming the corpus file that changed since the run in `output` began."""
    before = {entry[0]: entry[1:] for entry in previous}
    for path, size, digest in current:
        if path in before and before[path][0] != size:
            raise ValueError(f"Corpus file {path!r} changed size since the run in {output!r} began, so it cannot be resumed on the same data. Restore the file, or start over with --restart.")
        if path in before and len(before[path]) > 1 and before[path][1] != digest:
            raise ValueError(f"Corpus file {path!r} changed content since the run in {output!r} began (its SHA-256 differs), so it cannot be resumed on the same data. Restore the file, or start over with --restart.")
    if list(before) != [entry[0] for entry in current]:
        raise ValueError(f"The corpus files differ from those of the run in {output!r} (before: {list(before)}), so it cannot be resumed. Use the same --corpus, or start over with --restart.")
    # Only the format differs: a run started before content hashes were recorded.


def _fingerprint(**settings):
    """Settings that fix a run's trajectory; a resume must match them exactly."""
    return json.loads(json.dumps(settings))


def _remove_new_output_on_refusal(function):
    """A refused run (bad corpus, bad flag, Ctrl-C before training) leaves no `output` directory
    behind if it created it. Once `run.json` is written the run has started: its files stay."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        bound = inspect.signature(function).bind(*args, **kwargs)
        bound.apply_defaults()
        output = os.path.abspath(os.fspath(bound.arguments["output"]))
        existed = os.path.exists(output)
        try:
            return function(*args, **kwargs)
        except BaseException:
            if not existed and os.path.isdir(output) and not os.path.exists(os.path.join(output, RUN_FILE)):
                shutil.rmtree(output, ignore_errors=True)
            raise

    return wrapper


@_remove_new_output_on_refusal
def pretrain(
    corpus=None,
    preset="gpt1_tiny",
    tokenizer=None,
    output=DEFAULT_OUTPUT,
    steps=None,
    epochs=None,
    batch_size=32,
    sequence_length=None,
    learning_rate=None,
    warmup_steps=None,
    weight_decay=0.01,
    global_clipnorm=1.0,
    gradient_accumulation_steps=1,
    mixed_precision=False,
    dropout=None,
    architecture=None,
    vocabulary_size=DEFAULT_VOCABULARY_SIZE,
    validation_fraction=0.05,
    validation_batches=50,
    eval_interval=None,
    keep_checkpoints=3,
    seed=0,
    text_field="text",
    resume=True,
    tensorboard=True,
    sample_prompt=DEFAULT_SAMPLE_PROMPT,
    sample_length=40,
    callbacks=None,
    jit_compile="auto",
    head_chunk_size=None,
    rematerialize=False,
    verbose=1,
):
    """Pretrains (or continues pretraining) a GPT-1 language model; see the module docstring.

    Args:
        corpus: text files or globs (`.txt`, `.jsonl`, `.gz`); None: the built-in demo corpus.
        preset: `"gpt1_tiny"`, `"gpt1"` (architectures, randomly initialised, vocabulary sized
            to the tokenizer) or a preset directory (its weights are the starting point).
        tokenizer: a `GPT1Tokenizer` or a directory holding one; None: the preset's, else one
            trained on the corpus with `vocabulary_size` tokens.
        output: the run directory: checkpoints, logs, then the final preset.
        steps / epochs: length of training in optimizer updates, or in passes over the corpus
            (default: 300 updates on the demo corpus, 1 epoch of yours).
        batch_size: sequences per update (split into `gradient_accumulation_steps` micro-batches).
        sequence_length: tokens per sequence (default: the model's context).
        learning_rate: peak of the warmup-cosine schedule (default 2.5e-4, the paper's, for
            models of hidden size >= 768; 1e-3 for smaller ones).
        warmup_steps: linear warmup updates (default: 10 % of the run, at most 2,000).
        weight_decay, global_clipnorm: the paper's 0.01 and 1.0.
        gradient_accumulation_steps: micro-batches per update.
        mixed_precision: train with the `mixed_bfloat16` policy.
        dropout: override the preset's dropout rate.
        architecture: overrides of a built-in preset's shape, e.g.
            `{"num_layers": 4, "hidden_dim": 128, "num_heads": 4, "intermediate_dim": 512}`.
        vocabulary_size: tokens of a tokenizer trained here (special tokens included).
        validation_fraction: share of the corpus's windows held out.
        validation_batches: at most this many batches per evaluation.
        eval_interval: updates between evaluations and checkpoints (default: a sixth of the run,
            at most 1,000).
        keep_checkpoints: checkpoints kept (the newest).
        seed: fixes initialisation, dropout and data order.
        text_field: text key of `.jsonl` records.
        resume: continue from `output`'s newest checkpoint if any (False: start over, deleting
            the old checkpoints).
        tensorboard: write TensorBoard logs to `output/logs`.
        sample_prompt, sample_length: the sample printed at the end (`SAMPLER_SETTINGS`, seeded by
            `seed`; length 0: none).
        callbacks: extra Keras callbacks for `fit`.
        jit_compile: passed to `compile` (`"auto"`: XLA on TensorFlow and JAX, also on a CPU;
            PyTorch eager; see `keras_gpt1.utils.jit`).
        head_chunk_size: passed to `GPT1CausalLM.compile`: compute the LM head, loss and
            metrics this many tokens at a time, never holding the full logits (less memory).
        rematerialize: recompute each block's activations in the backward pass instead of
            keeping them (`GPT1Backbone(rematerialize=True)`): much less memory, about a quarter
            more compute, the same gradients. Saved in the final preset's config.
        verbose: 0 silent, 1 progress bar, 2 one line per evaluation interval.

    Returns:
        A `PretrainResult`.

    Example:
    ```python
    from keras_gpt1.training import pretrain
    result = pretrain(corpus=["books/*.txt"], preset="gpt1_tiny", steps=1000, output="run1")
    print(result.validation_perplexity)
    ```
    """
    # --- 1. arguments, output, model size, corpus: fail before any work ---
    batch_size = check_integer("batch_size", batch_size, 1)
    accumulation = check_integer("gradient_accumulation_steps", gradient_accumulation_steps, 1)
    vocabulary_size = check_integer("vocabulary_size", vocabulary_size, 4)  # <unk> + 3 special tokens
    if steps is not None:
        steps = check_integer("steps", steps, 1)
    if sequence_length is not None:
        sequence_length = check_integer("sequence_length", sequence_length, 1)
    if eval_interval is not None:
        eval_interval = check_integer("eval_interval", eval_interval, 1)
    if warmup_steps is not None:
        warmup_steps = check_integer("warmup_steps", warmup_steps, 0)
    if steps is not None and epochs is not None:
        raise ValueError("Give either `steps` or `epochs`, not both.")
    if epochs is not None:
        epochs = check_number("epochs", epochs, 0, low_open=True)
    if batch_size % accumulation:
        raise ValueError(
            f"`batch_size` ({batch_size}) must be divisible by `gradient_accumulation_steps` "
            f"({accumulation}): each update averages that many equal micro-batches."
        )
    if learning_rate is not None:
        learning_rate = check_number("learning_rate", learning_rate, 0, low_open=True)
    weight_decay = check_number("weight_decay", weight_decay, 0)
    if global_clipnorm is not None:
        global_clipnorm = check_number("global_clipnorm", global_clipnorm, 0, low_open=True)
    validation_fraction = check_number("validation_fraction", validation_fraction, 0, 0.5, high_open=True)
    if keep_checkpoints is not None:
        keep_checkpoints = check_integer("keep_checkpoints", keep_checkpoints, 1)
    micro_batch = batch_size // accumulation
    from keras_gpt1.data import lm_dataset

    lm_dataset.check_data_parallel_batch(micro_batch, "(micro-)batch size")
    output = os.fspath(output)
    ensure_writable_dir(output)

    overrides = {}
    allowed = {"num_layers", "num_heads", "hidden_dim", "intermediate_dim", "max_sequence_length"}
    for key, value in (architecture or {}).items():
        if key not in allowed:
            raise ValueError(f"Unknown architecture setting {key!r}; expected some of {sorted(allowed)}.")
        if value is not None:
            overrides[key] = check_integer(key, value, 1)
    from keras_gpt1.models import preset_io

    # Built-in names are architectures to train from scratch here; a `hf://` handle is fetched
    # (downloaded and converted once) and continued from, like a preset directory.
    preset = preset_io.resolve_preset(preset, load_weights=preset not in presets.BUILTIN_PRESETS)
    if overrides and os.path.isdir(os.fspath(preset)):
        raise ValueError(
            f"Cannot change the architecture ({', '.join(sorted(overrides))}) of preset directory "
            f"{preset!r}: its weights fix it. Start from a built-in preset instead."
        )
    if dropout is not None:
        overrides["dropout"] = check_number("dropout", dropout, 0, 1, high_open=True)
    if mixed_precision:
        overrides["dtype"] = "mixed_bfloat16"
    if rematerialize:
        overrides["rematerialize"] = True
    config = _model_config(preset, overrides)
    context = int(config["max_sequence_length"])
    sequence_length = sequence_length or context
    if sequence_length > context:
        raise ValueError(
            f"`sequence_length` {sequence_length} is longer than the model's context of {context} "
            f"positions (preset {preset!r}). Use --sequence-length {context} or less."
        )

    from keras_gpt1.data.corpus import build_demo_corpus

    if corpus is None:
        corpus = [build_demo_corpus(os.path.join(output, DEMO_CORPUS_FILE))]
        _log(verbose, f"Corpus: the built-in Python documentation corpus ({corpus[0]}).")
        if steps is None and epochs is None:
            steps = DEMO_STEPS
    files = lm_dataset.resolve_corpus_files(corpus)
    # The check reads every file anyway: hashing its text on the way costs no extra I/O and lets a
    # resume see a corpus edited in place (same path, even the same size).
    corpus_hashes = {}
    for path in files:
        digest = hashlib.sha256()
        lm_dataset.check_corpus_file(path, text_field, digest=digest)
        corpus_hashes[path] = digest.hexdigest()

    checkpoints_dir = os.path.join(output, CHECKPOINT_DIR)
    if not resume and os.path.isdir(checkpoints_dir):
        shutil.rmtree(checkpoints_dir)
    # A run killed mid-write leaves its temporaries (a checkpoint's is gigabytes at 117M).
    for directory in (checkpoints_dir, output):
        for name in remove_stale_temporaries(directory):
            _log(verbose, f"Removed {os.path.join(directory, name)}, left by an interrupted write.")
    restart_from = latest_checkpoint(checkpoints_dir) if resume else None

    # --- 2. tokenizer ---
    if restart_from and _has_tokenizer(output):
        tokenizer = _load_tokenizer(output)
    elif tokenizer is not None:
        tokenizer = _load_tokenizer(tokenizer)
    elif os.path.isdir(os.fspath(preset)) and _has_tokenizer(preset):
        tokenizer = _load_tokenizer(preset)
    else:
        tokenizer = _train_tokenizer(files, vocabulary_size, text_field, verbose)
    tokenizer.save_to_preset(output)

    # --- 3. data ---
    data = lm_dataset.LMDataset(
        files,
        tokenizer,
        sequence_length,
        micro_batch,
        seed=seed,
        validation_fraction=validation_fraction,
        text_field=text_field,
        check_files=False,
    )
    stats = data.check_size()
    _log(
        verbose,
        f"Corpus: {stats['tokens']:,} tokens -> {stats['train_windows']:,} training and "
        f"{stats['validation_windows']:,} validation sequences of {sequence_length} tokens "
        f"({stats['remainder']} trailing tokens unused).",
    )
    if steps is None:
        steps = max(1, math.ceil((epochs or 1) * stats["train_windows"] / batch_size))
    eval_interval = min(eval_interval or max(1, min(1000, round(steps / 6))), steps)
    warmup_steps = min(2000, steps // 10) if warmup_steps is None else warmup_steps
    if warmup_steps >= steps:
        raise ValueError(f"`warmup_steps` ({warmup_steps}) must be smaller than `steps` ({steps}).")

    # --- 4. model ---
    from keras_gpt1.models import GPT1Backbone, GPT1CausalLM

    keras.utils.set_random_seed(seed)
    vocab = tokenizer.vocabulary_size()
    if os.path.isdir(os.fspath(preset)):
        backbone = GPT1Backbone.from_preset(preset, **overrides)
        # Language-model data is plain text: it never holds the special tokens, which a
        # pretrained GPT-1 has no embedding rows for.
        text_ids = int(tokenizer.base_vocabulary_size)
        if backbone.vocabulary_size < text_ids:
            raise ValueError(
                f"The tokenizer's text has {text_ids} token ids but the preset {preset!r} embeds only "
                f"{backbone.vocabulary_size}. Use the preset's own tokenizer."
            )
    else:
        backbone = GPT1Backbone.from_preset(preset, load_weights=False, vocabulary_size=vocab, **overrides)
    lm = GPT1CausalLM(backbone, tokenizer=tokenizer)
    if learning_rate is None:
        learning_rate = PRETRAINING_LEARNING_RATE if backbone.hidden_dim >= 768 else 1e-3
    schedule = WarmupCosine(learning_rate, warmup_steps, steps)
    lm.compile(
        optimizer=create_optimizer(
            schedule,
            weight_decay=weight_decay,
            global_clipnorm=global_clipnorm,
            gradient_accumulation_steps=accumulation,
        ),
        jit_compile=jit_compile,
        head_chunk_size=head_chunk_size,
    )
    _log(
        verbose,
        f"Model: {backbone.num_layers} layers, hidden {backbone.hidden_dim}, vocabulary {vocab}, "
        f"{lm.count_params():,} parameters, backend {keras.config.backend()}"
        + (", mixed_bfloat16" if mixed_precision else "")
        + ".",
    )

    # --- 5. resume or start ---
    settings = _fingerprint(
        corpus=[[os.path.abspath(p), os.path.getsize(p), corpus_hashes[p]] for p in files],
        preset=os.path.abspath(preset) if os.path.isdir(os.fspath(preset)) else preset,
        model=dict(backbone.get_config(), name=None),
        vocabulary_size=vocab,
        sequence_length=sequence_length,
        batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        steps=steps,
        learning_rate=learning_rate,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        global_clipnorm=global_clipnorm,
        mixed_precision=bool(mixed_precision),
        eval_interval=eval_interval,
        validation_fraction=validation_fraction,
        seed=seed,
        text_field=text_field,
    )
    run_file = os.path.join(output, RUN_FILE)
    validation = data.validation_dataset(max_batches=validation_batches)
    start_micro_step, run_state = 0, {}
    if restart_from:
        if os.path.isfile(run_file):
            with open(run_file, encoding="utf-8") as f:
                run_state = json.load(f)
        previous = run_state.get("settings", {})
        changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
        fixed = [k for k in changed if k not in ADJUSTABLE_ON_RESUME]
        if "corpus" in fixed:
            _check_same_corpus(previous.get("corpus") or [], settings["corpus"], output)
            fixed.remove("corpus")
        if fixed:
            raise ValueError(
                f"{output!r} holds a run with different settings ({', '.join(fixed)} differ), so it "
                "cannot be resumed. Use the same settings, another --output, or --restart."
            )
        start_micro_step = restore_checkpoint(restart_from, lm)["step"]
        _log(verbose, f"Resuming from {restart_from} (update {start_micro_step // accumulation} of {steps}).")
        if changed:
            _log(verbose, f"Changed on resume: {', '.join(f'{k} {previous.get(k)} -> {settings[k]}' for k in changed)}.")
            run_state["settings"] = settings
            atomic_write_json(run_file, run_state)
    else:
        run_state = {"settings": settings}
        if validation is not None:
            _log(verbose, "Evaluating the untrained model...")
            run_state["initial_validation"] = lm.evaluate(validation, verbose=0, return_dict=True)
        atomic_write_json(run_file, run_state)
    initial_ppl = run_state.get("initial_validation", {}).get("perplexity")
    if initial_ppl is not None:
        _log(verbose, f"Validation perplexity before training: {initial_ppl:.1f}")

    # --- 6. fit ---
    total_micro_steps = steps * accumulation
    micro_steps_per_epoch = eval_interval * accumulation
    epochs_total = math.ceil(total_micro_steps / micro_steps_per_epoch)
    initial_epoch = start_micro_step // micro_steps_per_epoch
    nan_guard = StopOnNaN(initial_step=start_micro_step)
    checkpoint = TrainingCheckpoint(
        checkpoints_dir,
        save_every="epoch",
        keep=keep_checkpoints,
        initial_step=start_micro_step,
        resumed_from=restart_from,
        state_fn=lambda step, logs: {
            "update": step // accumulation,
            "sequences_consumed": step * micro_batch,
            "logs": {k: float(v) for k, v in logs.items()},
        },
    )
    fit_callbacks = [
        nan_guard,
        StopAtStep(total_micro_steps, initial_step=start_micro_step),
        LearningRateLogger(),
        checkpoint,
    ]
    if tensorboard:
        try:
            import tensorboard as _  # noqa: F401  (Keras's callback needs the package's summary ops)

            fit_callbacks.append(keras.callbacks.TensorBoard(os.path.join(output, LOG_DIR)))
        except ImportError:
            _log(verbose, "TensorBoard logs skipped: the `tensorboard` package is not installed.")
    fit_callbacks += list(callbacks or [])

    history = {}
    if start_micro_step < total_micro_steps:
        _log(
            verbose,
            f"Training {steps} updates of {batch_size} x {sequence_length} tokens"
            + (f" ({accumulation} micro-batches of {micro_batch})" if accumulation > 1 else "")
            + f", peak learning rate {learning_rate:g}, warmup {warmup_steps}; evaluating and "
            f"checkpointing every {eval_interval} updates.",
        )
        fit = lm.fit(
            data.train_dataset(start_batch=start_micro_step),
            epochs=epochs_total,
            initial_epoch=initial_epoch,
            steps_per_epoch=micro_steps_per_epoch,
            validation_data=validation,
            callbacks=fit_callbacks,
            shuffle=False,  # the pipeline shuffles, reproducibly
            verbose=verbose if verbose in (0, 1, 2) else "auto",
        )
        history = {k: [float(x) for x in v] for k, v in fit.history.items()}
    if nan_guard.bad_step is not None:
        last_good = latest_checkpoint(checkpoints_dir)
        raise FloatingPointError(
            f"The training loss became {nan_guard.bad_value} at update "
            f"{math.ceil(nan_guard.bad_step / accumulation)}; training stopped. "
            + (
                f"The last good checkpoint is {last_good}: rerun the same command to resume from it, "
                "adding a lower --learning-rate (or more --warmup-steps, a smaller --clipnorm)."
                if last_good
                else "No checkpoint was written before it: lower --learning-rate and start again."
            )
        )

    # --- 7. final preset, perplexity, sample ---
    final_ppl = None
    if "val_perplexity" in history and history["val_perplexity"]:
        final_ppl = history["val_perplexity"][-1]
    elif validation is not None:
        final_ppl = float(lm.evaluate(validation, verbose=0, return_dict=True)["perplexity"])
    lm.save_to_preset(output)
    if final_ppl is not None:
        start = f" (from {initial_ppl:.1f} before training)" if initial_ppl is not None else ""
        _log(verbose, f"Validation perplexity after {steps} updates: {final_ppl:.1f}{start}")
    _log(verbose, f"Preset written to {output} (GPT1CausalLM.from_preset({output!r})).")
    _plot_loss_curve(output, history, run_state, initial_epoch, eval_interval, steps, verbose)
    sample = None
    if sample_length:
        sample = sample_text(lm, sample_prompt, sample_length, seed=seed)
        _log(verbose, f"Sample ({_sampler_description()}, seed {seed}): {sample}")
    return PretrainResult(
        model=lm,
        output=output,
        steps=steps,
        initial_validation_perplexity=initial_ppl,
        validation_perplexity=final_ppl,
        history=history,
        resumed_from=(start_micro_step // accumulation) if restart_from else None,
        sample=sample,
    )


def _plot_loss_curve(output, history, run_state, initial_epoch, eval_interval, steps, verbose):
    """`output/loss_curve.png` from this call's intervals; one info line instead without matplotlib."""
    from keras_gpt1.training.loss_curve import LOSS_CURVE_FILE, matplotlib_available, write_loss_curve

    if not history.get("loss"):
        return
    if not matplotlib_available():
        _log(verbose, "Loss curve skipped: matplotlib is not installed.")
        return
    count = len(history["loss"])
    updates = [min((initial_epoch + i + 1) * eval_interval, steps) for i in range(count)]
    initial = run_state.get("initial_validation", {}).get("loss") if initial_epoch == 0 else None
    path = write_loss_curve(
        os.path.join(output, LOSS_CURVE_FILE),
        updates,
        history["loss"],
        history.get("val_loss"),
        initial_validation_loss=initial,
    )
    _log(verbose, f"Loss curve written to {path}.")


def main_verbosity():
    """Progress-bar verbosity for the CLI: a live bar on a terminal, one line per interval otherwise."""
    return 1 if sys.stdout.isatty() else 2
