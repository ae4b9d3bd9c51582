"""keras_gpt1: GPT-1 for Keras 3 on TensorFlow, JAX and PyTorch.

The public API is listed here; modules that need TensorFlow (tokenizer, export) are imported
lazily so that model code runs on any backend.
"""

# First: an older Keras or keras-hub than keras_gpt1 supports is named here, in one ImportError.
from keras_gpt1.utils import compat  # noqa: F401  (isort: skip)
from keras_gpt1.layers import GPT1Attention, GPT1Block, GPT1Embedding
from keras_gpt1.models import GPT1Backbone, GPT1CausalLM
from keras_gpt1.presets import BUILTIN_PRESETS

# The fine-tuning tasks are registered with Keras here, so that KerasHub's auto classes
# (`keras_hub.models.TextClassifier.from_preset`) find them as soon as keras_gpt1 is imported.
from keras_gpt1.tasks import GPT1MultipleChoice, GPT1Similarity, GPT1TextClassifier

# Registers the `"gpt1"` / `hf://` resolver with `models.preset_io` (see keras_gpt1/hub.py).
from keras_gpt1 import hub  # noqa: E402,F401  (isort: skip)

__version__ = "0.1.0"


def __getattr__(name):
    # TensorFlow-backed pieces load on first use.
    if name in ("GPT1Tokenizer", "train_tokenizer"):
        from keras_gpt1 import tokenizers

        return getattr(tokenizers, name)
    if name == "GPT1CausalLMPreprocessor":
        from keras_gpt1 import models

        return models.GPT1CausalLMPreprocessor
    raise AttributeError(f"module 'keras_gpt1' has no attribute {name!r}")
