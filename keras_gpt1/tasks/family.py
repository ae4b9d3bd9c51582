"""`TaskFamily`: what `finetune`, `evaluate`, the CLI and the SavedModel export need to know of a
fine-tuning family, in one record (the built-in ones are listed in `registry.py`)."""

import dataclasses
import importlib


class _ClassOrImportPath:
    """A dataclass field holding a class, or the class's import path (`"package.module.Class"`),
    imported when the field is first read. The built-in records name their task classes by path,
    so that reading a family's name, roles and description (the command line's `--help`) imports
    no Keras."""

    def __set_name__(self, owner, name):
        self._attribute = "_" + name

    def __get__(self, instance, owner=None):
        if instance is None:
            raise AttributeError(self._attribute)  # no default: dataclasses asks the class first
        value = getattr(instance, self._attribute)
        if isinstance(value, str):
            module, _, name = value.rpartition(".")
            value = getattr(importlib.import_module(module), name)
            object.__setattr__(instance, self._attribute, value)
        return value

    def __set__(self, instance, value):
        object.__setattr__(instance, self._attribute, value)


@dataclasses.dataclass(frozen=True)
class TaskFamily:
    """One of the paper's fine-tuning families.

    Attributes:
        name: the name used by `finetune(task=...)`, `--task` and `finetune.json`.
        description: one line for `--help`.
        roles: the text columns an example is read from, in segment order. A role named
            `"choices"` holds a list of candidates per example.
        task_class: the KerasHub task class (a `GPT1Task`), or its import path
            (`"keras_gpt1.tasks.similarity.GPT1Similarity"`), imported when first read.
        preprocessor_kwargs: arguments of `task_class.preprocessor_cls` beyond the tokenizer and
            length (e.g. `num_segments=2` for entailment).
        serving_inputs: `(name, rank)` of each string input of the SavedModel's
            `serving_default`, in the order the preprocessor takes them (rank 1: `[batch]`,
            rank 2: `[batch, k]`).
        metrics: `metrics(labels, outputs, regression) -> dict` over a whole evaluation set.
        labels: `"classes"` (named classes), `"index"` (the right candidate's 0-based index) or
            `"classes or score"` (classes, or a number with `regression=True`).
    """

    name: str
    description: str
    roles: tuple
    task_class: type = _ClassOrImportPath()
    serving_inputs: tuple
    metrics: object
    labels: str = "classes"
    preprocessor_kwargs: dict = dataclasses.field(default_factory=dict)

    @property
    def takes_regression(self):
        return self.labels == "classes or score"

    def model_kwargs(self, num_classes, regression=False):
        """The head arguments for `num_classes` classes (None: no classes, e.g. regression)."""
        if self.labels == "index":
            return {}
        if regression:
            if not self.takes_regression:
                raise ValueError(f"`regression` applies to similarity, not {self.name}.")
            return {"num_classes": None}
        return {"num_classes": num_classes}

    def make_preprocessor(self, tokenizer, sequence_length=None):
        return self.task_class.preprocessor_cls(tokenizer, sequence_length=sequence_length, **self.preprocessor_kwargs)

    def model_inputs(self, texts):
        """Role → list of strings (as `TaskData.texts`) → what the preprocessor takes."""
        columns = tuple(texts[role] for role in self.roles)
        return columns[0] if len(columns) == 1 else columns

    def packed_length(self, tokenizer, texts):
        """The longest packed sequence of `texts` untruncated: the original code's choice of
        context length (eager, the tokenizer's fast path)."""
        total = None
        for role in self.roles:
            values = texts[role]
            if role == "choices":
                flat = [c for row in values for c in row]
                lengths = _lengths(tokenizer, flat)
                k = len(values[0]) if values else 0
                lengths = [max(lengths[i * k : (i + 1) * k]) for i in range(len(values))]
            else:
                lengths = _lengths(tokenizer, values)
            total = lengths if total is None else [a + b for a, b in zip(total, lengths)]
        return max(total or [0]) + len(self.roles) + 1


def _lengths(tokenizer, strings):
    if not strings:
        return []
    return [int(n) for n in tokenizer(list(strings)).row_lengths().numpy()]
