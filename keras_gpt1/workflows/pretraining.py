"""`pretrain(...)`: language-model pretraining of GPT-1 with `model.fit`, resumable, on any backend.

What a call does, one function per phase, in order (every user error is raised before training
starts):

1. `PretrainConfig` checks every argument alone and against each other (`pretrain_config.py`).
2. `_check_output_and_batch`: `output` is writable and the (micro-)batch splits over the active
   `keras.distribution`.
3. `_resolve_model`: the preset (a `hf://` handle fetched) and the architecture overrides;
   `_sequence_length` checks that `sequence_length` fits the model's context.
4. `_read_corpus`: every corpus file read once (missing, empty, non-UTF-8, bad JSON lines) and
   hashed. Without a corpus the built-in demo corpus (Python's own docs) is written under `output`.
5. `_prepare_checkpoints`: old checkpoints dropped (`resume=False`), interrupted writes cleaned,
   the newest valid checkpoint found.
6. `_get_tokenizer`: the run's own (when resuming), the one given, the preset's, or one trained on
   the corpus; saved into `output` at once, so a resumed run tokenizes identically.
7. `_datasets` and `_plan`: the corpus counted (one streaming pass), checked to fill a window per
   split; the run's length, evaluation interval, warmup and peak learning rate resolved.
8. `_build_model` and `_compile`: a built-in architecture sized to the tokenizer, or a preset
   directory to continue from, compiled with the paper's optimizer (`create_optimizer`), schedule
   (`WarmupCosine`), the next-token loss, perplexity and accuracy.
9. `_start_or_resume`: resumes from the newest checkpoint in `output/checkpoints` if the run's
   settings (`output/run.json`) match; otherwise evaluates the starting validation perplexity.
10. `_fit`: `model.fit`. A Keras "epoch" here is one evaluation interval of `eval_interval`
   updates: at its end come validation, a checkpoint (atomic, the last `keep_checkpoints`
   kept), and TensorBoard logs (`output/logs`). Data epochs are independent of these: the
   pipeline reshuffles each pass over the corpus by itself.
11. `_finish`: the final preset saved into `output` (`GPT1CausalLM.from_preset(output)` loads
   it), the loss curve drawn into `output/loss_curve.png` (when matplotlib is installed) and a
   top-k sample printed with a fixed seed.

Resuming is exact: checkpoints hold the weights, the optimizer state (moments, step, gradient
accumulators), the dropout RNG state and the step; the data stream restarts at the same batch.
Training after a resume follows the uninterrupted trajectory.

`steps`, `eval_interval` and `warmup_steps` count optimizer updates; with
`gradient_accumulation_steps=k` each update averages `k` micro-batches of `batch_size // k`
sequences, so `batch_size` is always the number of sequences per update (the paper: 64).
"""

import contextlib
import dataclasses
import hashlib
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
    STATE_FILE,
    latest_checkpoint,
    restore_checkpoint,
)
from keras_gpt1.training.optimizers import PRETRAINING_LEARNING_RATE, create_optimizer
from keras_gpt1.workflows.pretrain_config import (  # noqa: F401  (the defaults, re-exported)
    DEFAULT_OUTPUT,
    DEFAULT_SAMPLE_PROMPT,
    DEFAULT_VOCABULARY_SIZE,
    PretrainConfig,
    as_config,
)
from keras_gpt1.training.schedules import WarmupCosine
from keras_gpt1.utils import artifacts
from keras_gpt1.utils.files import (
    atomic_write_json,
    ensure_writable_dir,
    read_json,
    remove_stale_temporaries,
    replace_in_dir,
)
from keras_gpt1.utils.locks import OutputInUseError, output_lock
from keras_gpt1.utils.precision import resolve_precision

DEMO_STEPS = 300
DEMO_CORPUS_FILE = os.path.join("corpus", "python_docs.txt")
RUN_FILE = "run.json"
# Settings a resume may change (e.g. a lower learning rate after a divergence); any other change
# means a different run.
ADJUSTABLE_ON_RESUME = ("learning_rate", "warmup_steps", "weight_decay", "global_clipnorm")
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
TOKENIZER_TEXT_LIMIT = 200_000_000


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


# === Tokenizer ===


def _load_tokenizer(source):
    from keras_gpt1.tokenizers import GPT1Tokenizer

    if isinstance(source, GPT1Tokenizer) or hasattr(source, "tokenize"):
        return source
    path = os.fspath(source)
    if os.path.isfile(path):
        # A common slip: the corpus, or one file of a tokenizer, where its folder belongs.
        names = (presets.VOCAB_FILE, presets.MERGES_FILE, presets.TOKENIZER_CONFIG_FILE)
        folder = os.path.dirname(os.path.abspath(path))
        hint = f" Did you mean the directory holding it, {folder!r}?" if os.path.basename(path) in names else ""
        raise ValueError(
            "`tokenizer` must be a tokenizer directory (written by `keras-gpt1 train-tokenizer`) or a "
            f"preset directory; got {path!r}, which is a file.{hint}"
        )
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Tokenizer directory {path!r} does not exist.")
    return GPT1Tokenizer.from_preset(path)


def _train_tokenizer(files, vocabulary_size, text_field, verbose):
    """A `GPT1Tokenizer` of `vocabulary_size` tokens (special tokens included) learned from the
    corpus, read as `keras-gpt1 train-tokenizer` reads it (`.jsonl` and `.gz` corpora: at most
    `TOKENIZER_TEXT_LIMIT` bytes of their text, plenty to learn merges)."""
    from keras_gpt1.tokenizers import train_tokenizer

    _log(verbose, f"Training a {vocabulary_size}-token BPE tokenizer on the corpus...")
    return train_tokenizer(
        files, vocabulary_size=vocabulary_size, text_field=text_field, max_text_bytes=TOKENIZER_TEXT_LIMIT
    )


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
    return ", ".join(
        [f"{name} {settings.pop('k')}" if "k" in settings else name] + [f"{k} {v}" for k, v in settings.items()]
    )


# === The run ===


def _check_same_corpus(previous, current, output):
    """Raises a ValueError naming the corpus file that changed since the run in `output` began."""
    before = {entry[0]: entry[1:] for entry in previous}
    for path, size, digest in current:
        if path in before and before[path][0] != size:
            raise ValueError(
                f"Corpus file {path!r} changed size since the run in {output!r} began, so it cannot be resumed on the same data. Restore the file, or start over with `resume=False`."
            )
        if path in before and len(before[path]) > 1 and before[path][1] != digest:
            raise ValueError(
                f"Corpus file {path!r} changed content since the run in {output!r} began (its SHA-256 differs), so it cannot be resumed on the same data. Restore the file, or start over with `resume=False`."
            )
    if list(before) != [entry[0] for entry in current]:
        raise ValueError(
            f"The corpus files differ from those of the run in {output!r} (before: {list(before)}), so it cannot be resumed. Use the same `corpus`, or start over with `resume=False`."
        )
    # Only the format differs: a run started before content hashes were recorded.


def _fingerprint(**settings):
    """Settings that fix a run's trajectory; a resume must match them exactly."""
    return json.loads(json.dumps(settings))


@contextlib.contextmanager
def _removed_if_refused(output):
    """A refused run (bad corpus, bad preset, Ctrl-C before training) leaves no `output` directory
    behind if it created it. Once `run.json` is written the run has started: its files stay."""
    output = os.path.abspath(output)
    existed = os.path.exists(output)
    try:
        yield
    except OutputInUseError:
        raise  # another run created it a moment ago and is writing it: never remove its files
    except BaseException:
        if not existed and os.path.isdir(output) and not os.path.exists(os.path.join(output, RUN_FILE)):
            shutil.rmtree(output, ignore_errors=True)
        raise


def pretrain(config=None, /, **kwargs):
    """Pretrains (or continues pretraining) a GPT-1 language model; see the module docstring.

    Takes a `PretrainConfig`, keyword arguments (its fields, documented there), or both (the
    keywords replace the config's values). Every argument is checked before any file is touched,
    and the messages name the Python argument.

    Args:
        config: a `PretrainConfig`, or None to make one from `kwargs`.
        **kwargs: `PretrainConfig` fields: `corpus`, `preset`, `steps`, `output`, ...

    Returns:
        A `PretrainResult`.

    Example:
    ```python
    from keras_gpt1.workflows import PretrainConfig, pretrain
    result = pretrain(corpus=["books/*.txt"], preset="gpt1_tiny", steps=1000, output="run1")
    config = PretrainConfig(corpus=["books/*.txt"], steps=1000, output="run2")
    result = pretrain(config)
    print(result.validation_perplexity)
    ```
    """
    config = as_config(config, **kwargs)
    with _removed_if_refused(config.output):
        return _run(config)


def _run(config):
    """The phases in order; each takes what the ones before it found."""
    _check_output_and_batch(config)
    # One run per folder: a second `pretrain` into it is refused while this one holds it.
    with output_lock(config.output, "pretrain"):
        _claim_output(config)
        model = _resolve_model(config)
        sequence_length = _sequence_length(config, model)
        config = _with_demo_corpus(config)
        files, corpus_hashes = _read_corpus(config)
        restart_from = _prepare_checkpoints(config)
        tokenizer = _get_tokenizer(config, model.preset, files, restart_from)
        data, stats = _datasets(config, files, tokenizer, sequence_length)
        plan = _plan(config, stats, model, sequence_length)
        lm = _build_model(config, model, tokenizer)
        _compile(lm, config, plan)
        settings = _settings(config, files, corpus_hashes, model.preset, lm, plan)
        validation = data.validation_dataset(max_batches=config.validation_batches)
        start_micro_step, run_state = _start_or_resume(config, lm, settings, restart_from, validation)
        # Saved once the folder is known to be this run's (never over another run's tokenizer),
        # before the first checkpoint, so a resumed run tokenizes identically.
        tokenizer.save_to_preset(config.output)
        history = _fit(config, lm, data, validation, plan, start_micro_step, restart_from)
        return _finish(config, lm, validation, plan, history, run_state, start_micro_step, restart_from)


# === The phases ===


@dataclasses.dataclass(frozen=True)
class _Model:
    """What the model is built from: the resolved preset, the overrides of its config, the result."""

    preset: str
    overrides: dict
    config: dict


@dataclasses.dataclass(frozen=True)
class _Plan:
    """The run's lengths and peak rate: the config's values, or defaults that need the corpus
    size and the model width."""

    sequence_length: int
    steps: int
    eval_interval: int
    warmup_steps: int
    learning_rate: float

    def epochs(self, accumulation):
        """`(Keras epochs, micro-steps per epoch)`: an epoch is one evaluation interval."""
        per_epoch = self.eval_interval * accumulation
        return math.ceil(self.steps * accumulation / per_epoch), per_epoch


def _check_output_and_batch(config):
    """What the config alone cannot know: whether `output` is writable and whether the micro-batch
    splits evenly over the active `keras.distribution` (a run inside `distribution_scope`)."""
    from keras_gpt1.data import lm_dataset

    lm_dataset.check_data_parallel_batch(config.micro_batch_size, "(micro-)batch size")
    ensure_writable_dir(config.output)


def _same_directory(path, output):
    return isinstance(path, (str, os.PathLike)) and os.path.isdir(path) and os.path.samefile(path, output)


def _claim_output(config):
    """`output` must hold nothing, a pretraining run (`_start_or_resume` compares its settings),
    or the `tokenizer` given; any other model is refused, or with `resume=False` deleted as a
    whole before the run starts (SavedModel exports never are). The `preset` it starts from is
    never its `output`: the final save would overwrite the weights it continues from."""
    if _same_directory(config.preset, config.output):
        raise ValueError(
            f"`output` {config.output!r} is the `preset` directory the run starts from; pick another `output`."
        )
    accepted = [artifacts.RUN]
    if _same_directory(config.tokenizer, config.output):
        if not config.resume:
            raise ValueError(
                f"`output` {config.output!r} is also the `tokenizer` directory, which `resume=False` would "
                "delete; pick another `output`."
            )
        accepted.append(artifacts.TOKENIZER)
    kind, evidence = artifacts.check_output_artifact(config.output, accepted, "`resume=False`", not config.resume)
    if kind is not None and not config.resume:
        with replace_in_dir(config.output, artifacts.MODEL_ENTRIES, "pretraining run"):
            pass  # nothing new: the swap removes every entry of the old model at once
        _log(config.verbose, f"Removed {kind} ({evidence} and the rest of its files) from {config.output} (restart).")


def _resolve_model(config):
    """The preset and the architecture it will have, before any data is read: a preset directory's
    weights fix its shape, so `architecture` overrides only a built-in one."""
    from keras_gpt1.models import preset_io

    # Built-in names are architectures to train from scratch here; a `hf://` handle is fetched
    # (downloaded and converted once) and continued from, like a preset directory.
    preset = preset_io.resolve_preset(config.preset, load_weights=config.preset not in presets.BUILTIN_PRESETS)
    overrides = dict(config.architecture or {})
    if overrides and os.path.isdir(os.fspath(preset)):
        raise ValueError(
            f"Cannot change the `architecture` ({', '.join(sorted(overrides))}) of preset directory "
            f"{preset!r}: its weights fix it. Start from a built-in preset instead."
        )
    if config.dropout is not None:
        overrides["dropout"] = config.dropout
    if config.rematerialize:
        overrides["rematerialize"] = True
    model_config = preset_io.load_backbone_config(preset)
    model_config.update(overrides)
    # The precision it trains in, whatever its preset was saved in ("auto" decides by the CPU, the
    # backend and the model's width: keras_gpt1.utils.precision).
    overrides["dtype"] = model_config["dtype"] = resolve_precision(config.precision, model_config.get("hidden_dim"))
    return _Model(preset=preset, overrides=overrides, config=model_config)


def _sequence_length(config, model):
    """`sequence_length`, defaulting to the model's context and never longer (positions beyond it
    have no embedding)."""
    context = int(model.config["max_sequence_length"])
    sequence_length = config.sequence_length or context
    if sequence_length > context:
        raise ValueError(
            f"`sequence_length` {sequence_length} is longer than the model's context of {context} "
            f"positions (preset {model.preset!r}). Use `sequence_length={context}` or less."
        )
    return sequence_length


def _with_demo_corpus(config):
    """Without a corpus: the built-in demo corpus, written under `output` (and, without a length,
    the demo's `DEMO_STEPS`)."""
    if config.corpus is not None:
        return config
    from keras_gpt1.data.corpus import build_demo_corpus

    corpus = build_demo_corpus(os.path.join(config.output, DEMO_CORPUS_FILE))
    _log(config.verbose, f"Corpus: the built-in Python documentation corpus ({corpus}).")
    steps = DEMO_STEPS if config.steps is None and config.epochs is None else config.steps
    return dataclasses.replace(config, corpus=[corpus], steps=steps)


def _read_corpus(config):
    """The corpus files and the SHA-256 of each, after checking every file by reading it once."""
    from keras_gpt1.data import lm_dataset

    files = lm_dataset.resolve_corpus_files(list(config.corpus))
    # The check reads every file anyway: hashing its text on the way costs no extra I/O and lets a
    # resume see a corpus edited in place (same path, even the same size).
    corpus_hashes = {}
    for path in files:
        digest = hashlib.sha256()
        lm_dataset.check_corpus_file(path, config.text_field, digest=digest)
        corpus_hashes[path] = digest.hexdigest()
    return files, corpus_hashes


def _prepare_checkpoints(config):
    """The checkpoint to resume from (None: start afresh). `resume=False` deletes the old ones; a
    run killed mid-write leaves temporaries (a checkpoint's is gigabytes at 117M), removed here."""
    checkpoints_dir = os.path.join(config.output, CHECKPOINT_DIR)
    if not config.resume and os.path.isdir(checkpoints_dir):
        shutil.rmtree(checkpoints_dir)
    for directory in (checkpoints_dir, config.output):
        for name in remove_stale_temporaries(directory):
            _log(config.verbose, f"Removed {os.path.join(directory, name)}, left by an interrupted write.")
    return latest_checkpoint(checkpoints_dir) if config.resume else None


def _get_tokenizer(config, preset, files, restart_from):
    """The run's own tokenizer when resuming (so the ids never change), else the one given, the
    preset's, or one trained on the corpus (`_run` saves it into `output`)."""
    if restart_from and _has_tokenizer(config.output):
        tokenizer = _load_tokenizer(config.output)
    elif config.tokenizer is not None:
        tokenizer = _load_tokenizer(config.tokenizer)
    elif os.path.isdir(os.fspath(preset)) and _has_tokenizer(preset):
        tokenizer = _load_tokenizer(preset)
    else:
        tokenizer = _train_tokenizer(files, config.vocabulary_size, config.text_field, config.verbose)
    return tokenizer


def _datasets(config, files, tokenizer, sequence_length):
    """The packed training and validation splits, and their counts (one streaming pass): a corpus
    too small for a window per split is refused here, before the model is built."""
    from keras_gpt1.data import lm_dataset

    data = lm_dataset.LMDataset(
        files,
        tokenizer,
        sequence_length,
        config.micro_batch_size,
        seed=config.seed,
        validation_fraction=config.validation_fraction,
        text_field=config.text_field,
        check_files=False,
    )
    stats = data.check_size()
    _log(
        config.verbose,
        f"Corpus: {stats['tokens']:,} tokens -> {stats['train_windows']:,} training and "
        f"{stats['validation_windows']:,} validation sequences of {sequence_length} tokens "
        f"({stats['remainder']} trailing tokens unused).",
    )
    return data, stats


def _plan(config, stats, model, sequence_length):
    """The run's length (`epochs` become updates over this corpus), evaluation interval, warmup
    and peak learning rate (the paper's for GPT-1's width, a higher one for small models)."""
    steps = config.steps
    if steps is None:
        steps = max(1, math.ceil((config.epochs or 1) * stats["train_windows"] / config.batch_size))
    eval_interval = min(config.eval_interval or max(1, min(1000, round(steps / 6))), steps)
    warmup_steps = min(2000, steps // 10) if config.warmup_steps is None else config.warmup_steps
    if warmup_steps >= steps:
        raise ValueError(f"`warmup_steps` ({warmup_steps}) must be smaller than `steps` ({steps}).")
    learning_rate = config.learning_rate
    if learning_rate is None:
        learning_rate = PRETRAINING_LEARNING_RATE if int(model.config["hidden_dim"]) >= 768 else 1e-3
    return _Plan(sequence_length, steps, eval_interval, warmup_steps, learning_rate)


def _build_model(config, model, tokenizer):
    """The `GPT1CausalLM`: a built-in architecture with the tokenizer's vocabulary, or a preset
    directory's weights (whose embedding must cover the tokenizer's text ids)."""
    from keras_gpt1.models import GPT1Backbone, GPT1CausalLM

    keras.utils.set_random_seed(config.seed)
    if os.path.isdir(os.fspath(model.preset)):
        backbone = GPT1Backbone.from_preset(model.preset, **model.overrides)
        # Language-model data is plain text: it never holds the special tokens, which a
        # pretrained GPT-1 has no embedding rows for.
        text_ids = int(tokenizer.base_vocabulary_size)
        if backbone.vocabulary_size < text_ids:
            raise ValueError(
                f"The tokenizer's text has {text_ids} token ids but the preset {model.preset!r} embeds "
                f"only {backbone.vocabulary_size}. Use the preset's own tokenizer."
            )
    else:
        backbone = GPT1Backbone.from_preset(
            model.preset, load_weights=False, vocabulary_size=tokenizer.vocabulary_size(), **model.overrides
        )
    return GPT1CausalLM(backbone, tokenizer=tokenizer)


def _compile(lm, config, plan):
    """The paper's optimizer (Adam, decoupled weight decay, clipping) on a warmup-cosine schedule
    that counts updates, so gradient accumulation does not stretch it."""
    schedule = WarmupCosine(plan.learning_rate, plan.warmup_steps, plan.steps)
    lm.compile(
        optimizer=create_optimizer(
            schedule,
            weight_decay=config.weight_decay,
            global_clipnorm=config.global_clipnorm,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
        ),
        jit_compile=config.jit_compile,
        head_chunk_size=config.head_chunk_size,
    )
    backbone = lm.backbone
    _log(
        config.verbose,
        f"Model: {backbone.num_layers} layers, hidden {backbone.hidden_dim}, vocabulary "
        f"{lm.tokenizer.vocabulary_size()}, {lm.count_params():,} parameters, backend {keras.config.backend()}"
        + ("" if _precision(lm) == "float32" else f", {_precision(lm)}")
        + (
            " (precision auto: this CPU computes bfloat16 natively)"
            if _precision(lm) == "mixed_bfloat16" and config.precision == "auto"
            else ""
        )
        + ".",
    )


def _precision(lm):
    """The precision the model trains in: its dtype policy's name (`keras_gpt1.utils.precision`)."""
    return lm.backbone.dtype_policy.name


def _settings(config, files, corpus_hashes, preset, lm, plan):
    """The run's fingerprint, stored in `run.json`: what a resume must match (or, for
    `ADJUSTABLE_ON_RESUME`, may change)."""
    return _fingerprint(
        corpus=[[os.path.abspath(p), os.path.getsize(p), corpus_hashes[p]] for p in files],
        preset=os.path.abspath(preset) if os.path.isdir(os.fspath(preset)) else preset,
        model=dict(lm.backbone.get_config(), name=None),
        vocabulary_size=lm.tokenizer.vocabulary_size(),
        sequence_length=plan.sequence_length,
        batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        steps=plan.steps,
        learning_rate=plan.learning_rate,
        warmup_steps=plan.warmup_steps,
        weight_decay=config.weight_decay,
        global_clipnorm=config.global_clipnorm,
        precision=_precision(lm),
        eval_interval=plan.eval_interval,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
        text_field=config.text_field,
    )


def _start_or_resume(config, lm, settings, restart_from, validation):
    """`(micro-step to start from, run state)`. A resume restores the checkpoint after checking
    that the run's settings match; a fresh run evaluates the untrained model first, so the
    perplexity before training is on record."""
    run_file = os.path.join(config.output, RUN_FILE)
    if not restart_from:
        previous = read_json(run_file, "run record") if config.resume and os.path.isfile(run_file) else None
        if isinstance(previous, dict) and previous.get("settings"):
            # A run that wrote no checkpoint yet: starting it again is fine, replacing another is not.
            _check_same_settings(config, previous["settings"], settings)
        run_state = {"settings": settings}
        if validation is not None:
            _log(config.verbose, "Evaluating the untrained model...")
            initial = lm.evaluate(validation, verbose=0, return_dict=True)
            # A perplexity can overflow to inf (a continued preset far off the corpus): JSON cannot
            # hold it (`atomic_write_json` refuses), and None reads as "not measured".
            run_state["initial_validation"] = {k: float(v) if math.isfinite(v) else None for k, v in initial.items()}
        atomic_write_json(run_file, run_state)
        _log_initial_perplexity(config, run_state)
        return 0, run_state
    run_state = read_json(run_file, "run record") if os.path.isfile(run_file) else {}
    previous = run_state.get("settings", {})
    changed = _check_same_settings(config, previous, settings)
    start_micro_step = restore_checkpoint(restart_from, lm)["step"]
    accumulation = config.gradient_accumulation_steps
    _log(
        config.verbose,
        f"Resuming from {restart_from} (update {start_micro_step // accumulation} of {settings['steps']}).",
    )
    if changed:
        _log(
            config.verbose,
            f"Changed on resume: {', '.join(f'{k} {previous.get(k)} -> {settings[k]}' for k in changed)}.",
        )
        run_state["settings"] = settings
        atomic_write_json(run_file, run_state)
    _log_initial_perplexity(config, run_state)
    return start_micro_step, run_state


def _check_same_settings(config, previous, settings):
    """The settings that changed since `previous` (all `ADJUSTABLE_ON_RESUME`); a ValueError if any
    other did: the folder holds another run."""
    changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
    fixed = [k for k in changed if k not in ADJUSTABLE_ON_RESUME]
    if "corpus" in fixed:
        _check_same_corpus(previous.get("corpus") or [], settings["corpus"], config.output)
        fixed.remove("corpus")
    if fixed:
        raise ValueError(
            f"{config.output!r} holds a run with different settings ({', '.join(fixed)} differ), so "
            "it cannot be resumed. Use the same settings, another `output`, or `resume=False`."
        )
    return changed


def _log_initial_perplexity(config, run_state):
    initial_ppl = run_state.get("initial_validation", {}).get("perplexity")
    if initial_ppl is not None:
        _log(config.verbose, f"Validation perplexity before training: {initial_ppl:.1f}")


def _fit_callbacks(config, plan, start_micro_step, restart_from):
    """`(callbacks, NaN guard)`: stop on a NaN loss and at the last update, log the learning rate,
    checkpoint every interval, TensorBoard when installed, then the caller's own."""
    accumulation = config.gradient_accumulation_steps
    nan_guard = StopOnNaN(initial_step=start_micro_step)
    # Every checkpoint carries the run's intervals so far, so the loss curve covers the whole run
    # after a resume, and is drawn even when a resume finds nothing left to train (a run killed
    # while its final preset was written).
    intervals = _run_intervals(restart_from) or []

    def state_fn(step, logs):
        logs = {k: float(v) for k, v in logs.items()}
        intervals.append({"update": step // accumulation, **logs})
        return {
            "update": step // accumulation,
            "sequences_consumed": step * config.micro_batch_size,
            "logs": logs,
            "intervals": list(intervals),
        }

    checkpoint = TrainingCheckpoint(
        os.path.join(config.output, CHECKPOINT_DIR),
        save_every="epoch",
        keep=config.keep_checkpoints,
        initial_step=start_micro_step,
        resumed_from=restart_from,
        state_fn=state_fn,
    )
    callbacks = [
        nan_guard,
        StopAtStep(plan.steps * accumulation, initial_step=start_micro_step),
        LearningRateLogger(),
        checkpoint,
    ]
    if config.tensorboard:
        try:
            import tensorboard as _  # noqa: F401  (Keras's callback needs the package's summary ops)

            callbacks.append(keras.callbacks.TensorBoard(os.path.join(config.output, LOG_DIR)))
        except ImportError:
            _log(config.verbose, "TensorBoard logs skipped: the `tensorboard` package is not installed.")
    return callbacks + list(config.callbacks or ()), nan_guard


def _fit(config, lm, data, validation, plan, start_micro_step, restart_from):
    """`model.fit` from `start_micro_step` to the end of the run; this call's history (empty if the
    run had already finished). A NaN loss stops it with a `FloatingPointError`."""
    accumulation = config.gradient_accumulation_steps
    callbacks, nan_guard = _fit_callbacks(config, plan, start_micro_step, restart_from)
    epochs, micro_steps_per_epoch = plan.epochs(accumulation)
    history = {}
    if start_micro_step < plan.steps * accumulation:
        _log(
            config.verbose,
            f"Training {plan.steps} updates of {config.batch_size} x {plan.sequence_length} tokens"
            + (f" ({accumulation} micro-batches of {config.micro_batch_size})" if accumulation > 1 else "")
            + f", peak learning rate {plan.learning_rate:g}, warmup {plan.warmup_steps}; evaluating and "
            f"checkpointing every {plan.eval_interval} updates.",
        )
        fit = lm.fit(
            data.train_dataset(start_batch=start_micro_step),
            epochs=epochs,
            initial_epoch=start_micro_step // micro_steps_per_epoch,
            steps_per_epoch=micro_steps_per_epoch,
            validation_data=validation,
            callbacks=callbacks,
            shuffle=False,  # the pipeline shuffles, reproducibly
            verbose=config.verbose,
        )
        history = {k: [float(x) for x in v] for k, v in fit.history.items()}
    if nan_guard.bad_step is not None:
        _raise_diverged(config, nan_guard)
    return history


def _raise_diverged(config, nan_guard):
    """A `FloatingPointError` saying where the loss diverged and how to resume past it."""
    last_good = latest_checkpoint(os.path.join(config.output, CHECKPOINT_DIR))
    raise FloatingPointError(
        f"The training loss became {nan_guard.bad_value} at update "
        f"{math.ceil(nan_guard.bad_step / config.gradient_accumulation_steps)}; training stopped. "
        + (
            f"The last good checkpoint is {last_good}: rerun with the same settings to resume from "
            "it, with a lower `learning_rate` (or more `warmup_steps`, a smaller `global_clipnorm`)."
            if last_good
            else "No checkpoint was written before it: lower `learning_rate` and start again."
        )
    )


def _finish(config, lm, validation, plan, history, run_state, start_micro_step, restart_from):
    """The final preset, perplexity, loss curve and sample; the `PretrainResult`."""
    accumulation = config.gradient_accumulation_steps
    final_ppl = None
    if history.get("val_perplexity"):
        final_ppl = history["val_perplexity"][-1]
    elif validation is not None:
        final_ppl = float(lm.evaluate(validation, verbose=0, return_dict=True)["perplexity"])
    lm.save_to_preset(config.output)
    initial_ppl = run_state.get("initial_validation", {}).get("perplexity")
    if final_ppl is not None:
        start = f" (from {initial_ppl:.1f} before training)" if initial_ppl is not None else ""
        _log(config.verbose, f"Validation perplexity after {plan.steps} updates: {final_ppl:.1f}{start}")
    _log(config.verbose, f"Preset written to {config.output} (GPT1CausalLM.from_preset({config.output!r})).")
    initial_epoch = start_micro_step // plan.epochs(accumulation)[1]
    _plot_loss_curve(config.output, history, run_state, initial_epoch, plan.eval_interval, plan.steps, config.verbose)
    sample = None
    if config.sample_length:
        sample = sample_text(lm, config.sample_prompt, config.sample_length, seed=config.seed)
        _log(config.verbose, f"Sample ({_sampler_description()}, seed {config.seed}): {sample}")
    return PretrainResult(
        model=lm,
        output=config.output,
        steps=plan.steps,
        initial_validation_perplexity=initial_ppl,
        validation_perplexity=final_ppl,
        history=history,
        resumed_from=(start_micro_step // accumulation) if restart_from else None,
        sample=sample,
    )


def _run_intervals(checkpoint):
    """The run's intervals up to `checkpoint` (`[{"update", "loss", "val_loss", ...}]`, from its
    state), or None for no checkpoint or one written before checkpoints recorded them."""
    if not checkpoint:
        return None
    path = os.path.join(checkpoint, STATE_FILE)
    state = read_json(path, "checkpoint state").get("state") if os.path.isfile(path) else None
    intervals = state.get("intervals") if isinstance(state, dict) else None
    return [dict(i) for i in intervals] if isinstance(intervals, list) else None


def _plot_loss_curve(output, history, run_state, initial_epoch, eval_interval, steps, verbose):
    """`output/loss_curve.png` from the whole run's intervals, as its newest checkpoint records
    them (else this call's); one info line instead without matplotlib."""
    from keras_gpt1.workflows.loss_curve import LOSS_CURVE_FILE, matplotlib_available, write_loss_curve

    intervals = _run_intervals(latest_checkpoint(os.path.join(output, CHECKPOINT_DIR)))
    if intervals and all("loss" in i for i in intervals):
        updates = [i["update"] for i in intervals]
        train_loss = [i["loss"] for i in intervals]
        with_validation = all("val_loss" in i for i in intervals)
        validation_loss = [i["val_loss"] for i in intervals] if with_validation else None
        # From the run's start, unless resumed from a checkpoint older than these records.
        initial_epoch = 0 if updates[0] <= eval_interval else None
    elif history.get("loss"):
        count = len(history["loss"])
        updates = [min((initial_epoch + i + 1) * eval_interval, steps) for i in range(count)]
        train_loss, validation_loss = history["loss"], history.get("val_loss")
    else:
        return
    if not matplotlib_available():
        _log(verbose, "Loss curve skipped: matplotlib is not installed.")
        return
    initial = run_state.get("initial_validation", {}).get("loss") if initial_epoch == 0 else None
    path = write_loss_curve(
        os.path.join(output, LOSS_CURVE_FILE),
        updates,
        train_loss,
        validation_loss,
        initial_validation_loss=initial,
    )
    _log(verbose, f"Loss curve written to {path}.")


def main_verbosity():
    """Progress-bar verbosity for the CLI: a live bar on a terminal, one line per interval otherwise."""
    return 1 if sys.stdout.isatty() else 2
