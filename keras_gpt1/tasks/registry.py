"""The fine-tuning families, by name: what `finetune`, `evaluate`, the CLI and the export read.

Each family's preprocessor and KerasHub task class live in one module (`similarity.py`); its
`TaskFamily` record is written here and names the task class by its import path, so that this
module imports no Keras: the command line reads the families while it builds its parser, before
Keras is loaded (`keras-gpt1 finetune --help`). To add a fifth family, write its module the way
`similarity.py` is written and add its record to `_BUILT_IN` (or, from outside the library, call
`register_family`).
"""

from keras_gpt1.tasks.family import TaskFamily
from keras_gpt1.tasks.metrics import choice_metrics, class_metrics

CLASSIFICATION = TaskFamily(
    name="classification",
    description="one text per example (s text e), softmax over the classes",
    roles=("text",),
    task_class="keras_gpt1.tasks.text_classifier.GPT1TextClassifier",
    serving_inputs=(("text", 1),),
    metrics=class_metrics,
    preprocessor_kwargs={"num_segments": 1},
)

ENTAILMENT = TaskFamily(
    name="entailment",
    description="a premise and a hypothesis (s premise $ hypothesis e), softmax over the classes",
    roles=("premise", "hypothesis"),
    task_class="keras_gpt1.tasks.text_classifier.GPT1TextClassifier",
    serving_inputs=(("text_a", 1), ("text_b", 1)),
    metrics=class_metrics,
    preprocessor_kwargs={"num_segments": 2},
)

SIMILARITY = TaskFamily(
    name="similarity",
    description="a pair in both orders (s a $ b e, s b $ a e) summed; classes, or a score with regression",
    roles=("first", "second"),
    task_class="keras_gpt1.tasks.similarity.GPT1Similarity",
    serving_inputs=(("text_a", 1), ("text_b", 1)),
    metrics=class_metrics,
    labels="classes or score",
)

MULTIPLE_CHOICE = TaskFamily(
    name="multiple-choice",
    description="a context and k candidates (s context $ answer e each), softmax across them",
    roles=("context", "choices"),
    task_class="keras_gpt1.tasks.multiple_choice.GPT1MultipleChoice",
    serving_inputs=(("context", 1), ("candidates", 2)),
    metrics=choice_metrics,
    labels="index",
)

_BUILT_IN = (CLASSIFICATION, ENTAILMENT, SIMILARITY, MULTIPLE_CHOICE)
FAMILIES = {family.name: family for family in _BUILT_IN}


def register_family(family):
    """Adds a `TaskFamily` (its name must be new); returns it.

    Example:
    ```python
    register_family(TaskFamily(name="ranking", roles=("query", "document"), ...))
    ```
    """
    if family.name in FAMILIES:
        raise ValueError(f"A task family named {family.name!r} is already registered.")
    FAMILIES[family.name] = family
    return family


def task_names():
    return tuple(FAMILIES)


def get_family(name):
    """The `TaskFamily` called `name`, or a ValueError listing the known ones."""
    family = FAMILIES.get(name)
    if family is None:
        raise ValueError(f"Unknown task {name!r}; expected one of {', '.join(FAMILIES)}.")
    return family


def family_of(task, name=None):
    """The family a task model serves: `name` if given (checked against the model's class),
    else the one its class and preprocessor imply (`GPT1TextClassifier`: entailment if its
    preprocessor takes pairs, else classification)."""
    if name is not None:
        family = get_family(name)
        if not isinstance(task, family.task_class):
            raise ValueError(
                f"A {type(task).__name__} does not serve the {name!r} task ({family.task_class.__name__} does); "
                f"this model serves {family_of(task).name!r}: leave the task out."
            )
        wanted = family.preprocessor_kwargs.get("num_segments")
        takes = getattr(getattr(task, "preprocessor", None), "num_segments", None)
        if wanted is not None and takes is not None and wanted != takes:
            raise ValueError(
                f"This {type(task).__name__} serves the {family_of(task).name!r} task: its preprocessor takes "
                f"{takes} text(s) per example, and the {name!r} task {wanted}. Leave the task out (or name "
                f"{family_of(task).name!r})."
            )
        return family
    candidates = [f for f in FAMILIES.values() if type(task) is f.task_class]
    if not candidates:
        raise ValueError(f"{type(task).__name__} is not a registered GPT-1 task.")
    segments = getattr(getattr(task, "preprocessor", None), "num_segments", None)
    for family in candidates:
        if family.preprocessor_kwargs.get("num_segments") in (None, segments):
            return family
    return candidates[0]


def task_metrics(task, y_true, predictions, regression=False):
    """The GLUE metrics of a task family, from labels and model outputs (logits or scores).

    - classification / entailment / similarity with classes: `accuracy`, `f1` (binary: of class 1;
      more classes: macro) and `mcc`.
    - similarity regression (`regression=True`): `pearson`, `spearman`, `mse`.
    - multiple-choice: `accuracy`.

    Example:
    ```python
    task_metrics("classification", [0, 1], np.array([[2.0, 1.0], [0.0, 3.0]]))
    # {'accuracy': 1.0, 'f1': 1.0, 'mcc': 1.0}
    ```
    """
    return get_family(task).metrics(y_true, predictions, regression=regression)
