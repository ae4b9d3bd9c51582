"""Export to a TensorFlow Serving SavedModel: raw text in, answers out, from any Keras backend.

`export_saved_model` writes `OUTPUT/<version>/saved_model.pb` + `variables/`, with signatures
that tokenize inside the graph (see `keras_gpt1.export.saved_model` for the signature tables and
the rules for bad input). The graph is traced under the TensorFlow backend: from JAX or PyTorch
the export goes to a small worker process running `KERAS_BACKEND=tensorflow`
(`keras_gpt1.export.worker`: one JSON request in, one JSON response out), and a model object
reaches it as a preset directory, the same files on every backend. So the call is the same
everywhere, and so are its errors.

Example:
```python
from keras_gpt1.export import export_saved_model
path = export_saved_model("my_preset", "/tmp/gpt1_serving", version=1)   # "/tmp/gpt1_serving/1"
```
"""

import contextlib
import dataclasses
import difflib
import os
import tempfile

from keras_gpt1.utils.checks import check_integer
from keras_gpt1.utils.generation_defaults import DEFAULT_MAX_NEW_TOKENS
from keras_gpt1.utils.precision import INFERENCE_PRECISIONS

# Weights the exported graph computes with, inference's precisions (`keras_gpt1.utils.precision`):
# `int8` is Keras's `quantize("int8")` (int8 weights with per-channel scales, activations quantized
# per row). None keeps the preset's own.
EXPORT_DTYPES = INFERENCE_PRECISIONS


def check_export_dtype(dtype):
    """`dtype` if it is None or one of `EXPORT_DTYPES`, else a ValueError naming the choices."""
    if dtype is None or (isinstance(dtype, str) and dtype in EXPORT_DTYPES):
        return dtype
    raise ValueError(
        f"Unknown export dtype {dtype!r}: choose one of {', '.join(EXPORT_DTYPES)} (or leave it out to keep "
        "the preset's own weights)."
    )


def check_dtype_applies(dtype, what):
    """Refuses an export `dtype` for a model that is not a causal LM (`what` says what it is)."""
    if dtype is not None:
        raise ValueError(
            f"`dtype={dtype!r}` applies to causal LMs; this is {what}. Leave `dtype` out to export it in its "
            "own weights."
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """How to export: the keyword options of `export_saved_model`, checked once, when made.

    The same object drives the export in this process (TensorFlow) and in the worker (JAX,
    PyTorch), which receives it as JSON (`to_json` / `from_json`).

    Attributes:
        version: positive integer version directory.
        max_length: longest sequence the signatures build (prompt + new tokens for a causal LM,
            the packed length for a task model). Default: the packed length recorded in the
            directory's `finetune.json` (written by `keras-gpt1 finetune`), else the task
            preprocessor's, else the model's context, which is also the maximum.
        max_new_tokens: tokens `serving_default` generates; the `generate` signature takes any
            value per request, clamped to `[1, max_length - 1]`.
        task: for a `GPT1TextClassifier`, `"classification"` (input `text`) or `"entailment"`
            (inputs `text_a`, `text_b`); default: the task in `finetune.json`, else what its
            preprocessor takes (a pair: entailment). Other models imply their task. Class names
            recorded in `finetune.json` add a `label_name` output.
        overwrite: replace an existing version directory.
        dtype: the weights the graph computes with (causal LMs): `"float32"`, `"bfloat16"` or
            `"int8"` (Keras's `quantize("int8")`); default: the preset's own.

    Example:
    ```python
    options = ExportOptions(version=2, dtype="int8")
    ExportOptions.from_keywords(options, version=3)  # a copy, checked again: version=0 would be refused
    ```
    """

    version: int = 1
    max_length: int | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    task: str | None = None
    overwrite: bool = False
    dtype: str | None = None

    def __post_init__(self):
        # Plain Python values (a NumPy integer becomes an int), so the options travel as JSON.
        def normal(name, value):
            object.__setattr__(self, name, value)

        normal("version", check_integer("version", self.version, 1, 2**63 - 1))
        if self.max_length is not None:  # its upper bound is the model's context: checked on tracing
            normal("max_length", check_integer("max_length", self.max_length, 2))
        normal("max_new_tokens", check_integer("max_new_tokens", self.max_new_tokens, 1, 1 << 30))
        if self.task is not None and not isinstance(self.task, str):
            raise ValueError(f"`task` must be a task name (a string) or None; got {self.task!r}.")
        if not isinstance(self.overwrite, bool):
            raise ValueError(f"`overwrite` must be True or False; got {self.overwrite!r}.")
        check_export_dtype(self.dtype)

    @classmethod
    def from_keywords(cls, options=None, /, **keywords):
        """`options` (default: the defaults) with `keywords` replacing its fields; a keyword that
        is no option is a TypeError naming it and the options."""
        names = [field.name for field in dataclasses.fields(cls)]
        for name in keywords:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean `{close[0]}`?)" if close else ""
                raise TypeError(f"Unknown export option `{name}`{hint}: the options are {', '.join(names)}.")
        if options is None:
            return cls(**keywords)
        if not isinstance(options, cls):
            raise TypeError(
                f"`options` must be an ExportOptions; got a {type(options).__name__}. Pass single options by "
                "keyword (`version=2`)."
            )
        return dataclasses.replace(options, **keywords) if keywords else options

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data):
        if not isinstance(data, dict):
            raise ValueError(f"Export options must be a JSON object; got {data!r}.")
        return cls.from_keywords(**data)


def is_preset_path(model):
    """Whether `model` names a preset (a directory, `"gpt1"`, a `hf://` handle) rather than being a model."""
    return isinstance(model, (str, os.PathLike))


@contextlib.contextmanager
def preset_of(model, dtype=None):
    """`model` as a preset directory: a path (or a name such as `"gpt1"`) as it is, a model
    object saved to a temporary preset, removed when the block ends. The export's one save:
    what the TensorFlow graph is traced from when the model's own variables cannot be (another
    backend, or a `dtype` to reload it in)."""
    if is_preset_path(model):
        yield os.fspath(model)
        return
    if not hasattr(model, "save_to_preset"):
        raise ValueError(f"Cannot export a {type(model).__name__}: pass a GPT-1 model or a preset directory.")
    from keras_gpt1.models import GPT1CausalLM

    if not isinstance(model, GPT1CausalLM):  # refused before the save, not after
        check_dtype_applies(dtype, f"a {type(model).__name__}")
    with tempfile.TemporaryDirectory(prefix="keras_gpt1_export_") as preset_dir:
        model.save_to_preset(preset_dir)
        yield preset_dir


def export_saved_model(model, output_dir, options=None, **keywords):
    """Exports a preset (or a model) as a TF Serving SavedModel; returns `output_dir/<version>`.

    Args:
        model: a preset directory holding a causal LM or a task model and its tokenizer (or
            `"gpt1"`, a `hf://` handle), or a `GPT1CausalLM` / task model object (saved to a
            temporary preset first when the backend is not TensorFlow).
        output_dir: the model base path TF Serving watches; the export goes in `<version>/`.
        options: an `ExportOptions`; or leave it out and pass its fields as keywords
            (`version`, `max_length`, `max_new_tokens`, `task`, `overwrite`, `dtype`), which
            also replace those of `options`. A keyword that is no option is a TypeError naming it.

    Example:
    ```python
    export_saved_model("sst2_preset", "/models/sst2", version=3)
    export_saved_model("my_preset", "/models/lm", ExportOptions(dtype="int8", max_new_tokens=64))
    ```
    """
    import keras

    options = ExportOptions.from_keywords(options, **keywords)
    if keras.config.backend() == "tensorflow":
        from keras_gpt1.export.saved_model import export_in_process

        return export_in_process(model, output_dir, options)
    from keras_gpt1.export.worker import export_in_worker

    with preset_of(model, options.dtype) as preset_dir:
        return export_in_worker(preset_dir, output_dir, options)


__all__ = [
    "export_saved_model",
    "ExportOptions",
    "check_export_dtype",
    "DEFAULT_MAX_NEW_TOKENS",
    "EXPORT_DTYPES",
]
