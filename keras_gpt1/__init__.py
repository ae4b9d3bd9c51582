"""keras_gpt1: GPT-1 for Keras 3 on TensorFlow, JAX and PyTorch.

The public API is listed here; modules that need TensorFlow (tokenizer, export) are imported
lazily so that model code runs on any backend.

**Eager for library users, deferred for the `keras-gpt1` command.** `import keras_gpt1` imports
the public API at once because importing it has effects users rely on: the version check
(`utils/compat.py`, one clear ImportError for an older Keras or keras-hub), the registration of
the task classes with Keras and of the `"gpt1"` preset with KerasHub, so that
`keras_hub.models.TextClassifier.from_preset("gpt1", num_classes=2)` works right after it.
A package made lazy everywhere (PEP 562 for every name) would lose those effects until some name
happened to be read. Python imports this package before any module of it, though, so the command
line's `main` would otherwise run after Keras and TensorFlow are loaded: `--help` would wait for
them, and TensorFlow's start-up lines would be printed before `main` could silence them. So when
the process is the installed `keras-gpt1` script, and only then, the import is deferred:
`keras_gpt1.cli.main` builds its parser without Keras, sets TensorFlow's logging and calls
`_import_public_api` before running a subcommand, which then sees the same package a library user
does. `python -m keras_gpt1.cli` imports eagerly (its program name is the module's path), so it
answers more slowly and prints TensorFlow's start-up lines.

Example:
```python
import keras_gpt1

keras_gpt1.GPT1CausalLM  # imported with the package: the API is eager outside the command line
```
"""

import os
import sys

__version__ = "0.1.0"

# The program names the `keras-gpt1` console script runs under: its own on POSIX, its launcher's
# (`keras-gpt1.exe`, `keras-gpt1-script.py`) on Windows.
_COMMAND_NAMES = ("keras-gpt1", "keras-gpt1.exe", "keras-gpt1-script.py", "keras-gpt1-script.pyw")


def _started_as_the_command():
    """Whether this process is the installed `keras-gpt1` script (see the module's docstring)."""
    argv = getattr(sys, "argv", None) or [""]
    return os.path.basename(argv[0]) in _COMMAND_NAMES


def _import_public_api():
    """Imports the public API into this module; importing it twice does nothing more."""
    global BUILTIN_PRESETS, GPT1Attention, GPT1Backbone, GPT1Block, GPT1CausalLM, GPT1Embedding
    global GPT1MultipleChoice, GPT1Similarity, GPT1TextClassifier, compat

    # First: an older Keras or keras-hub than keras_gpt1 supports is named here, in one ImportError.
    from keras_gpt1.utils import compat  # isort: skip

    from keras_gpt1.layers import GPT1Attention, GPT1Block, GPT1Embedding
    from keras_gpt1.models import GPT1Backbone, GPT1CausalLM
    from keras_gpt1.presets import BUILTIN_PRESETS

    # The fine-tuning tasks are registered with Keras here, so that KerasHub's auto classes
    # (`keras_hub.models.TextClassifier.from_preset`) find them as soon as keras_gpt1 is imported.
    from keras_gpt1.tasks import GPT1MultipleChoice, GPT1Similarity, GPT1TextClassifier

    # Registers the `"gpt1"` preset with KerasHub's auto classes (see keras_gpt1/hub.py).
    from keras_gpt1 import hub  # noqa: F401  (isort: skip)


if not _started_as_the_command():
    _import_public_api()


def __getattr__(name):
    # TensorFlow-backed pieces load on first use.
    if name in ("GPT1Tokenizer", "train_tokenizer"):
        from keras_gpt1 import tokenizers

        return getattr(tokenizers, name)
    if name == "GPT1CausalLMPreprocessor":
        from keras_gpt1 import models

        return models.GPT1CausalLMPreprocessor
    raise AttributeError(f"module 'keras_gpt1' has no attribute {name!r}")
