"""Fine-tuning GPT-1 on the paper's four task families (classification, entailment, similarity,
multiple choice) with the auxiliary language-modelling loss.

Models (`keras.ops` only, any backend) are imported here; the packers need TensorFlow
(`keras_gpt1.tasks.packers`) and load on first use. The recipe lives in
`keras_gpt1.tasks.finetune` (`from keras_gpt1.tasks.finetune import finetune, evaluate`).
"""

from keras_gpt1.tasks.metrics import (
    accuracy,
    f1_score,
    matthews_corrcoef,
    pearson_correlation,
    spearman_correlation,
    task_metrics,
)
from keras_gpt1.tasks.models import (
    GPT1Classifier,
    GPT1MultipleChoice,
    GPT1Similarity,
    GPT1TaskModel,
    add_special_token_rows,
    extract_token_states,
    sequence_lm_loss,
)

# Reading files is plain Python; only `make_dataset` needs TensorFlow (imported when called).
from keras_gpt1.tasks.data import TASKS, TaskData, make_dataset, parse_columns, read_task_file

_LAZY = {
    "ClassificationPacker": "keras_gpt1.tasks.packers",
    "PairPacker": "keras_gpt1.tasks.packers",
    "SimilarityPacker": "keras_gpt1.tasks.packers",
    "MultipleChoicePacker": "keras_gpt1.tasks.packers",
    "packer_for_task": "keras_gpt1.tasks.packers",
}


def __getattr__(name):
    # The packers need TensorFlow: they load on first use.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_gpt1.tasks' has no attribute {name!r}")
