"""Export to a TensorFlow Serving SavedModel: raw text in, answers out, from any Keras backend.

`export_saved_model` writes `OUTPUT/<version>/saved_model.pb` + `variables/`, with signatures
that tokenize inside the graph (see `keras_gpt1.export.saved_model` for the signature tables and
the rules for bad input). The graph is traced under the TensorFlow backend: from JAX or PyTorch
the export runs `keras-gpt1 export` in a subprocess with `KERAS_BACKEND=tensorflow` (a preset
directory is the same files on every backend), so the call is the same everywhere.

Example:
```python
from keras_gpt1.export import export_saved_model
path = export_saved_model("my_preset", "/tmp/gpt1_serving", version=1)   # "/tmp/gpt1_serving/1"
```
"""

import errno
import os
import subprocess
import sys
import tempfile

from keras_gpt1 import presets

DEFAULT_MAX_NEW_TOKENS = 32
# Weights the exported graph computes with: `int8` is Keras's `quantize("int8")` (int8 weights with
# per-channel scales, activations quantized per row). None keeps the preset's own.
EXPORT_DTYPES = ("float32", "bfloat16", "int8")
_ERROR_PREFIX = "keras-gpt1 export: error: "


def check_export_dtype(dtype):
    """`dtype` if it is None or one of `EXPORT_DTYPES`, else a ValueError naming the choices."""
    if dtype is None or (isinstance(dtype, str) and dtype in EXPORT_DTYPES):
        return dtype
    raise ValueError(
        f"Unknown export dtype {dtype!r}: choose one of {', '.join(EXPORT_DTYPES)} (or leave it out to keep "
        "the preset's own weights)."
    )


def export_saved_model(
    model,
    output_dir,
    version=1,
    max_length=None,
    max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
    task=None,
    overwrite=False,
    dtype=None,
):
    """Exports a preset (or a model) as a TF Serving SavedModel; returns `output_dir/<version>`.

    Args:
        model: a preset directory holding a causal LM or a task model and its tokenizer, or a
            `GPT1CausalLM` / task model object (saved to a temporary preset first when the
            backend is not TensorFlow).
        output_dir: the model base path TF Serving watches; the export goes in `<version>/`.
        version: positive integer version directory.
        max_length: longest sequence the signatures build (prompt + new tokens for a causal LM,
            the packed length for a task model). Default: the packed length recorded in the
            directory's `finetune.json` (written by `keras-gpt1 finetune`), else the task
            preprocessor's, else the model's context, which is also the maximum.
        max_new_tokens: tokens `serving_default` generates; the `generate` signature takes any
            value per request, clamped to `[1, max_length - 1]`.
        task: for a `GPT1TextClassifier`, `"classification"` (input `text`) or `"entailment"`
            (inputs `text_a`, `text_b`); default: the task in `finetune.json`, else what its
            preprocessor takes (a pair: entailment). Other models imply their task. Class names recorded in
            `finetune.json` add a `label_name` output.
        overwrite: replace an existing version directory.
        dtype: the weights the graph computes with (causal LMs): `"float32"`, `"bfloat16"` or
            `"int8"` (Keras's `quantize("int8")`); default: the preset's own.

    Example:
    ```python
    export_saved_model("sst2_preset", "/models/sst2", version=3)
    ```
    """
    import keras

    options = (version, max_length, max_new_tokens, task, overwrite, check_export_dtype(dtype))
    if keras.config.backend() == "tensorflow":
        from keras_gpt1.export.saved_model import export_in_process

        return export_in_process(model, output_dir, *options)
    if isinstance(model, (str, os.PathLike)):
        return _export_in_subprocess(os.fspath(model), output_dir, *options)
    with tempfile.TemporaryDirectory(prefix="keras_gpt1_export_") as preset_dir:
        if not hasattr(model, "save_to_preset"):
            raise ValueError(f"Cannot export a {type(model).__name__}: pass a GPT-1 model or a preset directory.")
        model.save_to_preset(preset_dir)
        return _export_in_subprocess(preset_dir, output_dir, *options)


def export_command(
    model_dir,
    output_dir,
    version=1,
    max_length=None,
    max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
    task=None,
    overwrite=False,
    dtype=None,
):
    """The `keras-gpt1 export` command line for these arguments (a list of strings)."""
    command = ["export", "--model", os.fspath(model_dir), "--output", os.fspath(output_dir), "--version", str(version)]
    if max_length is not None:
        command += ["--max-length", str(max_length)]
    command += ["--max-new-tokens", str(max_new_tokens)]
    if task is not None:
        command += ["--task", task]
    if overwrite:
        command.append("--overwrite")
    if dtype is not None:
        command += ["--dtype", dtype]
    return command


def _export_in_subprocess(model_dir, output_dir, version, max_length, max_new_tokens, task, overwrite, dtype):
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"Model directory {model_dir!r} does not exist (expected a preset).")
    if not os.path.isfile(os.path.join(model_dir, presets.CONFIG_FILE)):
        raise FileNotFoundError(f"{model_dir!r} is not a preset: it has no {presets.CONFIG_FILE}.")
    argv = export_command(model_dir, output_dir, version, max_length, max_new_tokens, task, overwrite, dtype)
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = subprocess.run(
        [sys.executable, "-m", "keras_gpt1.cli", *argv], env=env, capture_output=True, text=True, errors="replace"
    )
    if result.returncode != 0:
        for line in result.stderr.splitlines():
            if line.startswith(_ERROR_PREFIX):
                message = line[len(_ERROR_PREFIX) :]
                if result.returncode == 1:  # the command line's status for a full disk
                    from keras_gpt1.utils.files import DiskFullError

                    raise DiskFullError(errno.ENOSPC, message)
                raise ValueError(message)
        raise RuntimeError(
            "The export subprocess (KERAS_BACKEND=tensorflow) failed with exit code "
            f"{result.returncode}:\n{result.stderr[-4000:]}"
        )
    return os.path.join(os.path.abspath(os.fspath(output_dir)), str(version))


__all__ = ["export_saved_model", "export_command", "check_export_dtype", "DEFAULT_MAX_NEW_TOKENS", "EXPORT_DTYPES"]
