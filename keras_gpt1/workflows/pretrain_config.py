"""`PretrainConfig`: every option of `pretrain`, checked when the object is made.

A bad value is refused here, before any file is read or written, with a message that names the
Python argument (`` `learning_rate` must be a finite number > 0; got inf.``). The command line
fills a `PretrainConfig` from its flags and words the same messages with flag names.

What can only be checked against the world (files, the preset's context length, the active
`keras.distribution`) is checked by `pretrain` itself, still before training starts.
"""

import dataclasses
import os

import numpy as np

from keras_gpt1.utils.checks import check_integer, check_number
from keras_gpt1.utils.precision import TRAINING_PRECISIONS, check_precision

DEFAULT_OUTPUT = os.path.join("outputs", "gpt1-demo")
DEFAULT_VOCABULARY_SIZE = 2000
DEFAULT_SAMPLE_PROMPT = "the function returns"
# Architecture settings a built-in preset may have overridden.
ARCHITECTURE_KEYS = ("num_layers", "num_heads", "hidden_dim", "intermediate_dim", "max_sequence_length")
# The smallest trained vocabulary: `<unk>` and the three special tokens.
MIN_VOCABULARY_SIZE = 4
# NumPy seeds (which `keras.utils.set_random_seed` sets) must fit 32 unsigned bits.
MAX_SEED = 2**32 - 1


def _is_path(value):
    return isinstance(value, (str, os.PathLike))


def _check_path(name, value):
    if not _is_path(value) or not os.fspath(value):
        raise ValueError(f"`{name}` must be a non-empty path; got {value!r}.")
    return os.fspath(value)


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False; got {value!r}.")
    return bool(value)


def _check_text(name, value, allow_empty=True):
    if not isinstance(value, str) or not (allow_empty or value.strip()):
        raise ValueError(f"`{name}` must be a{'' if allow_empty else ' non-empty'} string; got {value!r}.")
    return value


def _optional(check, name, value, *bounds, **options):
    return None if value is None else check(name, value, *bounds, **options)


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """The options of one `pretrain` run.

    Made from keyword arguments (`PretrainConfig(corpus=["books/*.txt"], steps=1000)`); every
    value is checked and normalised at once: paths become strings, `corpus` a tuple, numbers
    Python numbers. `dataclasses.replace(config, steps=2000)` makes a changed, re-checked copy.

    Attributes:
        corpus: text files or globs (`.txt`, `.jsonl`, `.gz`); None: the built-in demo corpus.
        preset: `"gpt1_tiny"`, `"gpt1"` (architectures, randomly initialised, vocabulary sized
            to the tokenizer), a preset directory or `hf://` handle (its weights are the
            starting point).
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
        weight_decay, global_clipnorm: the paper's 0.01 and 1.0 (`global_clipnorm=None`: no clip).
        gradient_accumulation_steps: micro-batches per update.
        precision: `"auto"` (`mixed_bfloat16` where it was measured faster: a wide model on
            TensorFlow or PyTorch on a CPU with native bfloat16; else float32, see
            `keras_gpt1.utils.precision`), `"float32"` or `"mixed_bfloat16"`.
        dropout: override the preset's dropout rate.
        architecture: overrides of a built-in preset's shape, e.g.
            `{"num_layers": 4, "hidden_dim": 128, "num_heads": 4, "intermediate_dim": 512}`.
        vocabulary_size: tokens of a tokenizer trained here (special tokens included).
        validation_fraction: share of the corpus's windows held out.
        validation_batches: at most this many batches per evaluation (None: all).
        eval_interval: updates between evaluations and checkpoints (default: a sixth of the run,
            at most 1,000).
        keep_checkpoints: checkpoints kept (the newest; None: all).
        seed: fixes initialisation, dropout and data order.
        text_field: text key of `.jsonl` records.
        resume: continue from `output`'s newest checkpoint if any (False: start over, deleting
            the old checkpoints).
        tensorboard: write TensorBoard logs to `output/logs`.
        sample_prompt, sample_length: the sample printed at the end (top-k, seeded by `seed`;
            length 0: none).
        callbacks: extra Keras callbacks for `fit`.
        jit_compile: passed to `compile` (`"auto"`: XLA on TensorFlow and JAX, also on a CPU;
            PyTorch eager; see `keras_gpt1.utils.jit`).
        head_chunk_size: passed to `GPT1CausalLM.compile`: compute the LM head, loss and
            metrics this many tokens at a time, never holding the full logits (less memory).
        rematerialize: recompute each block's activations in the backward pass instead of
            keeping them (`GPT1Backbone(rematerialize=True)`): much less memory, about a quarter
            more compute, the same gradients. Saved in the final preset's config.
        verbose: 0 silent, 1 progress bar, 2 one line per evaluation interval, or "auto".

    Example:
    ```python
    config = PretrainConfig(corpus=["books/*.txt"], preset="gpt1_tiny", steps=1000, output="run1")
    result = pretrain(config)
    ```
    """

    corpus: tuple = None
    preset: str = "gpt1_tiny"
    tokenizer: object = None
    output: str = DEFAULT_OUTPUT
    steps: int = None
    epochs: float = None
    batch_size: int = 32
    sequence_length: int = None
    learning_rate: float = None
    warmup_steps: int = None
    weight_decay: float = 0.01
    global_clipnorm: float = 1.0
    gradient_accumulation_steps: int = 1
    precision: str = "auto"
    dropout: float = None
    architecture: dict = None
    vocabulary_size: int = DEFAULT_VOCABULARY_SIZE
    validation_fraction: float = 0.05
    validation_batches: int = 50
    eval_interval: int = None
    keep_checkpoints: int = 3
    seed: int = 0
    text_field: str = "text"
    resume: bool = True
    tensorboard: bool = True
    sample_prompt: str = DEFAULT_SAMPLE_PROMPT
    sample_length: int = 40
    callbacks: tuple = None
    jit_compile: object = "auto"
    head_chunk_size: int = None
    rematerialize: bool = False
    verbose: object = 1

    def __post_init__(self):
        # Frozen: each checked value is stored with object.__setattr__ (the dataclass idiom).
        for name, value in self._checked().items():
            object.__setattr__(self, name, value)
        self._check_combinations()

    def _checked(self):
        """Every field, checked alone and normalised."""
        return {
            "corpus": self._checked_corpus(),
            "preset": _check_path("preset", self.preset),
            "tokenizer": self._checked_tokenizer(),
            "output": _check_path("output", self.output),
            "steps": _optional(check_integer, "steps", self.steps, 1),
            "epochs": _optional(check_number, "epochs", self.epochs, 0, low_open=True),
            "batch_size": check_integer("batch_size", self.batch_size, 1),
            "sequence_length": _optional(check_integer, "sequence_length", self.sequence_length, 1),
            "learning_rate": _optional(check_number, "learning_rate", self.learning_rate, 0, low_open=True),
            "warmup_steps": _optional(check_integer, "warmup_steps", self.warmup_steps, 0),
            "weight_decay": check_number("weight_decay", self.weight_decay, 0),
            "global_clipnorm": _optional(check_number, "global_clipnorm", self.global_clipnorm, 0, low_open=True),
            "gradient_accumulation_steps": check_integer(
                "gradient_accumulation_steps", self.gradient_accumulation_steps, 1
            ),
            "precision": check_precision(self.precision, TRAINING_PRECISIONS),
            "dropout": _optional(check_number, "dropout", self.dropout, 0, 1, high_open=True),
            "architecture": self._checked_architecture(),
            "vocabulary_size": check_integer("vocabulary_size", self.vocabulary_size, MIN_VOCABULARY_SIZE),
            "validation_fraction": check_number(
                "validation_fraction", self.validation_fraction, 0, 0.5, high_open=True
            ),
            "validation_batches": _optional(check_integer, "validation_batches", self.validation_batches, 1),
            "eval_interval": _optional(check_integer, "eval_interval", self.eval_interval, 1),
            "keep_checkpoints": _optional(check_integer, "keep_checkpoints", self.keep_checkpoints, 1),
            "seed": check_integer("seed", self.seed, 0, MAX_SEED),
            "text_field": _check_text("text_field", self.text_field, allow_empty=False),
            "resume": _check_bool("resume", self.resume),
            "tensorboard": _check_bool("tensorboard", self.tensorboard),
            "sample_prompt": _check_text("sample_prompt", self.sample_prompt),
            "sample_length": check_integer("sample_length", self.sample_length, 0),
            "callbacks": self._checked_callbacks(),
            "jit_compile": self._checked_jit_compile(),
            "head_chunk_size": _optional(check_integer, "head_chunk_size", self.head_chunk_size, 1),
            "rematerialize": _check_bool("rematerialize", self.rematerialize),
            "verbose": self._checked_verbose(),
        }

    def _checked_corpus(self):
        if self.corpus is None:
            return None
        files = [self.corpus] if _is_path(self.corpus) else self.corpus
        if not isinstance(files, (list, tuple)) or not files or not all(_is_path(f) and os.fspath(f) for f in files):
            raise ValueError(
                f"`corpus` must be a file path or glob, or a non-empty list of them (None: the "
                f"built-in demo corpus); got {self.corpus!r}."
            )
        return tuple(os.fspath(f) for f in files)

    def _checked_tokenizer(self):
        if self.tokenizer is None or hasattr(self.tokenizer, "tokenize"):
            return self.tokenizer
        if not _is_path(self.tokenizer) or not os.fspath(self.tokenizer):
            raise ValueError(f"`tokenizer` must be a GPT1Tokenizer or the directory of one; got {self.tokenizer!r}.")
        return os.fspath(self.tokenizer)

    def _checked_architecture(self):
        if self.architecture is None:
            return None
        if not isinstance(self.architecture, dict):
            raise ValueError(
                f"`architecture` must be a dict of some of {list(ARCHITECTURE_KEYS)}; got {self.architecture!r}."
            )
        checked = {}
        for key, value in self.architecture.items():
            if key not in ARCHITECTURE_KEYS:
                raise ValueError(
                    f"Unknown `architecture` setting {key!r}; expected some of {sorted(ARCHITECTURE_KEYS)}."
                )
            if value is not None:
                checked[key] = check_integer(key, value, 1)
        return checked

    def _checked_callbacks(self):
        import keras

        if self.callbacks is None:
            return None
        callbacks = tuple(self.callbacks) if isinstance(self.callbacks, (list, tuple)) else None
        if callbacks is None or not all(isinstance(c, keras.callbacks.Callback) for c in callbacks):
            raise ValueError(f"`callbacks` must be a list of keras.callbacks.Callback; got {self.callbacks!r}.")
        return callbacks

    def _checked_jit_compile(self):
        if self.jit_compile == "auto" or isinstance(self.jit_compile, (bool, np.bool_)):
            return self.jit_compile if self.jit_compile == "auto" else bool(self.jit_compile)
        raise ValueError(f"`jit_compile` must be 'auto', True or False; got {self.jit_compile!r}.")

    def _checked_verbose(self):
        integer = isinstance(self.verbose, (int, np.integer)) and not isinstance(self.verbose, bool)
        if self.verbose == "auto" or (integer and self.verbose in (0, 1, 2)):
            return self.verbose if self.verbose == "auto" else int(self.verbose)
        raise ValueError(f"`verbose` must be 0, 1, 2 or 'auto'; got {self.verbose!r}.")

    def _check_combinations(self):
        """Options that are fine alone but contradict each other."""
        if self.steps is not None and self.epochs is not None:
            raise ValueError("Give either `steps` or `epochs`, not both.")
        if self.batch_size % self.gradient_accumulation_steps:
            raise ValueError(
                f"`batch_size` ({self.batch_size}) must be divisible by `gradient_accumulation_steps` "
                f"({self.gradient_accumulation_steps}): each update averages that many equal micro-batches."
            )
        if self.steps is not None and self.warmup_steps is not None and self.warmup_steps >= self.steps:
            raise ValueError(f"`warmup_steps` ({self.warmup_steps}) must be smaller than `steps` ({self.steps}).")
        architecture = self.architecture or {}
        context = architecture.get("max_sequence_length")
        if context is not None and self.sequence_length is not None and self.sequence_length > context:
            raise ValueError(
                f"`sequence_length` ({self.sequence_length}) is longer than the model's context, "
                f"`max_sequence_length` ({context})."
            )
        heads, width = architecture.get("num_heads"), architecture.get("hidden_dim")
        if heads is not None and width is not None and width % heads:
            raise ValueError(f"`hidden_dim` ({width}) must be divisible by `num_heads` ({heads}).")

    @property
    def micro_batch_size(self):
        """Sequences per micro-batch: `batch_size // gradient_accumulation_steps`."""
        return self.batch_size // self.gradient_accumulation_steps


def as_config(config=None, **kwargs):
    """`config` (a `PretrainConfig`) with `kwargs` replaced, or a new one from `kwargs` alone."""
    if config is None:
        return PretrainConfig(**kwargs)
    if not isinstance(config, PretrainConfig):
        raise TypeError(
            f"pretrain() takes a PretrainConfig or keyword arguments (pretrain(corpus=[...], ...)); "
            f"got {type(config).__name__} {config!r}."
        )
    return dataclasses.replace(config, **kwargs) if kwargs else config
