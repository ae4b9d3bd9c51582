"""Fine-tuning GPT-1 on the paper's four task families, as KerasHub tasks.

| family | task class | preprocessor | module |
|---|---|---|---|
| classification, entailment | `GPT1TextClassifier` | `GPT1TextClassifierPreprocessor` | `text_classifier.py` |
| similarity | `GPT1Similarity` | `GPT1SimilarityPreprocessor` | `similarity.py` |
| multiple-choice | `GPT1MultipleChoice` | `GPT1MultipleChoicePreprocessor` | `multiple_choice.py` |

`registry.py` lists the families by name (`get_family("entailment")`), for `finetune`,
`evaluate`, the CLI and the export. The models use `keras.ops` only; the preprocessors need
TensorFlow. The recipe lives in `keras_gpt1.workflows.finetuning` (`finetune`, `evaluate`).
"""

from keras_gpt1.tasks.base import GPT1Task, add_special_token_rows, extract_token_states, sequence_lm_loss
from keras_gpt1.tasks.data import TaskData, make_dataset, parse_columns, read_task_file
from keras_gpt1.tasks.family import TaskFamily
from keras_gpt1.tasks.metrics import accuracy, f1_score, matthews_corrcoef, pearson_correlation, spearman_correlation
from keras_gpt1.tasks.multiple_choice import GPT1MultipleChoice, GPT1MultipleChoicePreprocessor
from keras_gpt1.tasks.registry import FAMILIES, get_family, register_family, task_metrics
from keras_gpt1.tasks.similarity import GPT1Similarity, GPT1SimilarityPreprocessor
from keras_gpt1.tasks.text_classifier import GPT1TextClassifier, GPT1TextClassifierPreprocessor
