"""Fine-tuning GPT-1 on the paper's four task families, as KerasHub tasks.

| family | task class | preprocessor | module |
|---|---|---|---|
| classification, entailment | `GPT1TextClassifier` | `GPT1TextClassifierPreprocessor` | `text_classifier.py` |
| similarity | `GPT1Similarity` | `GPT1SimilarityPreprocessor` | `similarity.py` |
| multiple-choice | `GPT1MultipleChoice` | `GPT1MultipleChoicePreprocessor` | `multiple_choice.py` |

`registry.py` lists the families by name (`get_family("entailment")`), for `finetune`,
`evaluate`, the CLI and the export. The models use `keras.ops` only; the preprocessors need
TensorFlow. The recipe lives in `keras_gpt1.workflows.finetuning` (`finetune`, `evaluate`).

The names from modules that need Keras are imported on first use (PEP 562), so that the registry
can be read without Keras: the command line reads it while it builds its parser, before Keras is
loaded. `import keras_gpt1` imports the task classes, which registers them with Keras.
"""

import importlib

from keras_gpt1.tasks.family import TaskFamily
from keras_gpt1.tasks.metrics import accuracy, f1_score, matthews_corrcoef, pearson_correlation, spearman_correlation
from keras_gpt1.tasks.registry import FAMILIES, get_family, register_family, task_metrics

_NAMES_BY_MODULE = {
    "base": ("GPT1Task", "add_special_token_rows", "extract_token_states", "sequence_lm_loss"),
    "data": ("TaskData", "make_dataset", "parse_columns", "read_task_file"),
    "multiple_choice": ("GPT1MultipleChoice", "GPT1MultipleChoicePreprocessor"),
    "similarity": ("GPT1Similarity", "GPT1SimilarityPreprocessor"),
    "text_classifier": ("GPT1TextClassifier", "GPT1TextClassifierPreprocessor"),
}
_MODULE_OF = {name: module for module, names in _NAMES_BY_MODULE.items() for name in names}


def __getattr__(name):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_gpt1.tasks' has no attribute {name!r}")
    return getattr(importlib.import_module(f"keras_gpt1.tasks.{module}"), name)


def __dir__():
    return sorted({*globals(), *_MODULE_OF})
