"""Task data: CSV / TSV / JSONL files → checked examples → `tf.data` pipelines. Needs TensorFlow
(for `make_dataset`; reading and checking files is plain Python).

Every row is checked when the file is read, so a bad row stops the run with an error naming the
file and line (a missing column, an empty text, a label outside the declared classes, a
multiple-choice row with the wrong number of candidates); no row is ever skipped silently. Rows
with no field at all (blank lines) are not records and are ignored. Inputs longer than the context
are not an error: the preprocessors trim the segments round robin (see `keras_gpt1.tasks.base`).

Each task reads these *roles*, by default from columns of the same name; `columns` maps a role
to another column name (`{"text": "sentence"}`):

| task | roles |
|---|---|
| classification | `text`, `label` |
| entailment | `premise`, `hypothesis`, `label` |
| similarity | `first`, `second`, `label` (a class, or a number for regression) |
| multiple-choice | `context`, `choices`, `label` (0-based index of the right candidate) |

`choices` is either one column holding a list (JSONL) or several columns, one candidate each
(`{"choices": ["ending0", "ending1"]}`, on the command line `choices=ending0,ending1`).

A label is one scalar: a string or a number. A JSONL list, object, `null` or bool is refused, as is
a NaN or infinite number (also spelled `nan` or `inf` in a CSV). Class names are compared in one
canonical spelling, so that `1`, `1.0`, `01`, `+1`, `1e0` and JSON's `1` are all the class `"1"`
(and `0.50` and `.5` the class `"0.5"`); any other text is a class name as written, stripped of
surrounding spaces. Regression scores must be finite numbers.

File formats come from the suffix: `.csv` (header row, RFC 4180 quoting), `.tsv` (header row,
tab-separated, no quoting, as the GLUE files), `.jsonl` / `.ndjson` / `.json` (one JSON object a
line).
"""

import csv
import dataclasses
import json
import math
import os
import re

import numpy as np

from keras_gpt1.tasks.registry import get_family
from keras_gpt1.utils.files import require_file

LABEL = "label"
_CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


def check_task(task):
    """`task` if it names a registered family, else a ValueError listing them."""
    return get_family(task).name


def default_columns(task):
    """The role → column mapping of a task when the user gives none."""
    return {role: role for role in (*get_family(task).roles, LABEL)}


def parse_columns(specs, task):
    """Column mapping from `role=column` strings (the CLI's `--columns`), over the defaults.

    Example:
    ```python
    parse_columns(["text=sentence"], "classification")   # {'text': 'sentence', 'label': 'label'}
    parse_columns(["choices=e0,e1"], "multiple-choice")["choices"]   # ['e0', 'e1']
    ```
    """
    columns = default_columns(task)
    for spec in specs or ():
        role, sep, column = str(spec).partition("=")
        role, column = role.strip(), column.strip()
        if not sep or not role or not column:
            raise ValueError(f"Bad column mapping {spec!r}: expected ROLE=COLUMN, e.g. text=sentence.")
        if role not in columns:
            raise ValueError(f"Unknown role {role!r} for task {task}; its roles are {', '.join(columns)}.")
        names = [c.strip() for c in column.split(",")]
        if role == "choices" and len(names) > 1:
            columns[role] = names
        elif len(names) > 1 or not names[0]:
            raise ValueError(f"Bad column mapping {spec!r}: only `choices` takes several columns.")
        else:
            columns[role] = names[0]
    return columns


def _merge_columns(task, columns):
    merged = default_columns(task)
    for role, column in (columns or {}).items():
        if role not in merged:
            raise ValueError(f"Unknown role {role!r} for task {task}; its roles are {', '.join(merged)}.")
        merged[role] = list(column) if isinstance(column, (list, tuple)) else column
    return merged


@dataclasses.dataclass
class TaskData:
    """The checked examples of one file.

    Attributes:
        task: the task name.
        path: the file read.
        texts: role → list of strings (for `choices`: a list of candidate lists).
        labels: class indices (int32), regression scores (float32), or answer indices (int32);
            None if the file was read without labels.
        label_names: the declared classes, in index order (None for regression and
            multiple choice).
        lines: the line where each example starts.
    """

    task: str
    path: str
    texts: dict
    labels: object
    label_names: object
    lines: list

    def __len__(self):
        return len(self.lines)

    @property
    def num_choices(self):
        choices = self.texts.get("choices")
        return len(choices[0]) if choices else None


# === Reading rows ===


def _file_format(path):
    suffix = os.path.splitext(path)[1].lower()
    if suffix in _CSV_SUFFIXES:
        return suffix
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    raise ValueError(
        f"Cannot tell the format of {path!r} from its suffix: use .csv, .tsv or .jsonl (one JSON object a line)."
    )


class _RepeatedKey(Exception):
    pass


def _unique_keys(pairs):
    """A JSON object as a dict, refusing a repeated key (`json` would keep the last silently)."""
    row = {}
    for key, value in pairs:
        if key in row:
            raise _RepeatedKey(key)
        row[key] = value
    return row


def _read_rows(path):
    """Yields `(line_number, row_dict)`; raises naming the file and line on malformed rows."""
    fmt = _file_format(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            if fmt == "jsonl":
                for number, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line, object_pairs_hook=_unique_keys)
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}:{number}: invalid JSON ({e.msg}, column {e.colno}).") from None
                    except _RepeatedKey as e:
                        raise ValueError(f"{path}:{number}: the key {e.args[0]!r} appears more than once.") from None
                    if not isinstance(row, dict):
                        raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}.")
                    yield number, row
                return
            delimiter = _CSV_SUFFIXES[fmt]
            quoting = csv.QUOTE_NONE if fmt == ".tsv" else csv.QUOTE_MINIMAL
            reader = csv.reader(f, delimiter=delimiter, quoting=quoting, strict=True)
            header, previous_end = None, 0
            try:
                for fields in reader:
                    start, previous_end = previous_end + 1, reader.line_num
                    if not fields:
                        continue
                    if header is None:
                        header = [name.strip() for name in fields]
                        repeated = sorted({name for name in header if header.count(name) > 1})
                        if repeated:  # a dict of the row would silently keep only the last
                            raise ValueError(
                                f"{path}:{start}: the header names column(s) {repeated} more than "
                                "once; rename the duplicates."
                            )
                        continue
                    if len(fields) != len(header):
                        raise ValueError(
                            f"{path}:{start}: {len(fields)} fields, but the header (line 1) has "
                            f"{len(header)}: {header}."
                        )
                    yield start, dict(zip(header, fields))
            except csv.Error as e:
                raise ValueError(f"{path}:{reader.line_num}: malformed {fmt[1:].upper()} ({e}).") from None
            if header is None:
                raise ValueError(f"{path} is empty: expected a header row naming the columns.")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e}).") from None


def _text(path, number, row, role, column):
    if column not in row:
        raise ValueError(
            f"{path}:{number}: missing column {column!r} (the {role!r} of the task); "
            f"the row has {sorted(row)}. Map the {role!r} role to a column with `columns`."
        )
    value = row[column]
    if not isinstance(value, str):
        raise ValueError(f"{path}:{number}: column {column!r} must be text, got {json.dumps(value)}.")
    if not value.strip():
        raise ValueError(f"{path}:{number}: column {column!r} (the {role!r}) is empty.")
    return value


def _choices(path, number, row, column):
    if isinstance(column, list):
        return [_text(path, number, row, "choices", c) for c in column]
    if column not in row:
        raise ValueError(
            f"{path}:{number}: missing column {column!r} (the candidates); the row has "
            f"{sorted(row)}. Map the 'choices' role to a column (or one column per candidate) with `columns`."
        )
    value = row[column]
    if not isinstance(value, list):
        raise ValueError(
            f"{path}:{number}: column {column!r} must hold a list of candidate texts (JSONL), "
            "or name one column per candidate: choices=COL1,COL2,..."
        )
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{path}:{number}: candidate {i} in column {column!r} is empty or not text.")
    return list(value)


# A label spelled as a decimal number: `1`, `-2`, `01`, `1.0`, `.5`, `1e0` (not `1_000`, `0x1`,
# `nan` or `inf`, which Python's float() would also read).
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def _number(value):
    """`value` (a JSON number or a string) as an int or float if it spells a finite number, None
    if it is text; a ValueError if it spells a number that is not finite."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = value
    else:
        text = value.strip()
        if text.lower() in _NON_FINITE:
            raise ValueError("NaN or infinite")
        if not _NUMBER.fullmatch(text):
            return None
        try:  # exact for integers of any length (within Python's digit limit)
            number = int(text) if _INTEGER.fullmatch(text) else float(text)
        except ValueError:
            return None
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError("NaN or infinite")
    return number


def _label_key(value, where="label"):
    """The class name of a label: a string, or a number in one canonical spelling, so that every
    spelling of one value is one class (`1`, `1.0`, `01`, `1e0` and JSON's `1` are all `"1"`;
    `0.50` and `.5` are `"0.5"`). A list, an object, `null`, a bool or a NaN/infinite number is
    refused: a label is one scalar value. `where` prefixes the message (the file and line)."""
    if isinstance(value, np.generic):  # declared from Python as NumPy scalars
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        kind = "null" if value is None else f"a bool ({json.dumps(value)})" if isinstance(value, bool) else None
        shown = kind or f"a {type(value).__name__} ({json.dumps(value, default=repr)[:60]})"
        raise ValueError(f"{where} must be a string or a number; got {shown}.")
    try:
        number = _number(value)
    except ValueError:
        raise ValueError(
            f"{where} {value!r} is a number that is not finite; a label is a class name or a finite number."
        ) from None
    if number is None:
        return value.strip()
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    return str(number) if isinstance(number, int) else repr(number)


def _sorted_label_names(keys):
    try:
        return sorted(keys, key=lambda k: (0, int(k)))
    except ValueError:
        return sorted(keys)


def read_task_file(path, task, columns=None, label_names=None, regression=False, num_choices=None, with_labels=True):
    """Reads and checks one task file.

    Args:
        path: a `.csv`, `.tsv` or `.jsonl` file.
        task: `"classification"`, `"entailment"`, `"similarity"` or `"multiple-choice"`.
        columns: role → column name (or, for `choices`, a list of columns); defaults to the roles.
        label_names: the declared classes, in index order. None: the sorted distinct labels of
            this file (numerically when all are integers). A label outside them is an error.
        regression: similarity only: labels are numbers (STS-B scores).
        num_choices: multiple choice: the number of candidates every row must have (None: that
            of the first row).
        with_labels: False to read inputs only (prediction).

    Returns:
        A `TaskData`.

    Example:
    ```python
    data = read_task_file("train.tsv", "classification", columns={"text": "sentence"})
    len(data), data.label_names        # (67349, ['0', '1'])
    ```
    """
    family = get_family(task)
    path = os.fspath(path)
    require_file(path, f"{task} data file")
    columns = _merge_columns(task, columns)
    if regression and not family.takes_regression:
        raise ValueError(f"`regression` applies to similarity, not {task}.")
    declared = None if label_names is None else [_label_key(n, "A declared class") for n in label_names]
    if declared is not None and len(set(declared)) != len(declared):
        raise ValueError(f"Declared classes {label_names} contain duplicates.")

    texts = {role: [] for role in family.roles}
    raw_labels, lines = [], []
    for number, row in _read_rows(path):
        for role in family.roles:
            if role == "choices":
                candidates = _choices(path, number, row, columns[role])
                if num_choices is None:
                    num_choices = len(candidates)
                    if num_choices < 2:
                        raise ValueError(f"{path}:{number}: a multiple-choice row needs at least 2 candidates.")
                elif len(candidates) != num_choices:
                    raise ValueError(
                        f"{path}:{number}: {len(candidates)} candidates, expected {num_choices} "
                        "(every row must have the same number)."
                    )
                texts[role].append(candidates)
            else:
                texts[role].append(_text(path, number, row, role, columns[role]))
        if with_labels:
            column = columns[LABEL]
            if column not in row:
                raise ValueError(
                    f"{path}:{number}: missing label column {column!r}; the row has {sorted(row)}. "
                    "Map the 'label' role to a column with `columns`."
                )
            value = row[column]
            if value is None or (isinstance(value, str) and not value.strip()):
                raise ValueError(
                    f"{path}:{number}: the label (column {column!r}) is {'null' if value is None else 'empty'}."
                )
            raw_labels.append((number, value))
        lines.append(number)
    if not lines:
        raise ValueError(f"{path} holds no examples.")

    labels = None
    if with_labels:
        if family.labels == "index":
            labels = np.array([_answer_index(path, n, v, num_choices) for n, v in raw_labels], "int32")
            declared = None
        elif regression:
            labels = np.array([_score(path, n, v) for n, v in raw_labels], "float32")
            declared = None
        else:
            keys = [(n, _label_key(v, f"{path}:{n}: the label")) for n, v in raw_labels]
            if declared is None:
                declared = _sorted_label_names({k for _, k in keys})
                if len(declared) < 2:
                    raise ValueError(
                        f"{path}: every example has the label {declared[0]!r}; a classifier needs "
                        "at least 2 classes (declare them with `label_names`)."
                    )
            index = {name: i for i, name in enumerate(declared)}
            for n, k in keys:
                if k not in index:
                    raise ValueError(f"{path}:{n}: label {k!r} is not one of the declared classes {declared}.")
            labels = np.array([index[k] for _, k in keys], "int32")
    elif family.labels == "index" or regression:
        declared = None
    return TaskData(task, path, texts, labels, declared, lines)


def _answer_index(path, number, value, num_choices):
    try:
        if isinstance(value, bool):
            raise ValueError
        index = int(value) if not isinstance(value, float) or value.is_integer() else None
        if index is None:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(
            f"{path}:{number}: the label must be the 0-based index of the right candidate; got {value!r}."
        ) from None
    if not 0 <= index < num_choices:
        raise ValueError(f"{path}:{number}: answer index {index} is outside [0, {num_choices}).")
    return index


def _score(path, number, value):
    try:
        score = _number(value) if isinstance(value, (str, int, float)) else None
    except ValueError:
        raise ValueError(f"{path}:{number}: the label {value!r} is not a finite number.") from None
    if score is None:
        raise ValueError(f"{path}:{number}: a regression label must be a number; got {value!r}.")
    try:
        score = float(score)
    except OverflowError:  # an integer past float's range
        score = math.inf
    if not np.isfinite(score):
        raise ValueError(f"{path}:{number}: the label {value!r} is not a finite number.")
    return score


# === tf.data ===


def make_dataset(
    data,
    preprocessor,
    batch_size=32,
    shuffle=False,
    seed=None,
    drop_remainder=False,
    pack_in_graph=False,
    pad_final_batch=None,
):
    """A `tf.data.Dataset` of `(packed_inputs, labels)` batches (inputs only without labels).

    By default the examples are packed once, up front, in chunks through the preprocessor's eager path
    (the tokenizer's Rust BPE, far faster than its graph path) and the dataset serves the packed
    tensors: `L` int32 ids and mask values per sequence stay in memory. With
    `pack_in_graph=True` the strings are batched and packed batch by batch inside the pipeline
    instead (the same ids; less memory, more time). `shuffle` reshuffles every epoch.

    The last batch may hold fewer than `batch_size` examples. `pad_final_batch=True` (the default
    `None`: exactly when a `keras.distribution` is active, which must split every batch evenly over
    its data-parallel devices) fills it up to `batch_size` with dummy rows (one real token, no LM
    target, label 0) and yields `(packed_inputs, labels, sample_weight)`, the weight 0 on dummy
    rows and 1 elsewhere: the task models' default losses (averaged over the sample weights),
    weighted metrics (the task models' default accuracy) and the auxiliary LM loss ignore them
    (plain `metrics` would not: they ignore sample weights). Without labels the dummy rows are
    simply appended: drop predictions past `len(data)`. Under a distribution `batch_size` must be
    a multiple of the data-parallel device count (a `ValueError` says so).

    Example:
    ```python
    preprocessor = get_family("classification").make_preprocessor(tokenizer, sequence_length=128)
    ds = make_dataset(read_task_file("train.csv", "classification"), preprocessor, 32, shuffle=True)
    classifier.fit(ds, epochs=3)
    ```
    """
    import tensorflow as tf

    from keras_gpt1.data import lm_dataset

    if pad_final_batch is None:
        pad_final_batch = lm_dataset.keras_distribution_active()
    lm_dataset.check_data_parallel_batch(batch_size)
    from keras_hub.src.utils.tensor_utils import no_convert_scope

    roles = get_family(data.task).roles
    single = len(roles) == 1

    def pack(features):
        # TensorFlow tensors on every backend: they feed a tf.data pipeline.
        with no_convert_scope():
            return preprocessor(features[0] if single else features)

    if pack_in_graph:
        features = tuple(tf.constant(data.texts[role], dtype=tf.string) for role in roles)
        elements = features if data.labels is None else (features, tf.constant(data.labels))
    else:
        chunks = []
        for start in range(0, len(data), _PACK_CHUNK):
            chunks.append(pack(tuple(data.texts[role][start : start + _PACK_CHUNK] for role in roles)))
        packed = {key: tf.concat([chunk[key] for chunk in chunks], axis=0) for key in chunks[0]}
        elements = packed if data.labels is None else (packed, tf.constant(data.labels))
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    if shuffle:
        dataset = dataset.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if pack_in_graph:
        if data.labels is None:
            dataset = dataset.map(lambda *features: pack(features), num_parallel_calls=tf.data.AUTOTUNE)
        else:
            dataset = dataset.map(
                lambda features, labels: (pack(features), labels), num_parallel_calls=tf.data.AUTOTUNE
            )
    if pad_final_batch and not drop_remainder:

        def pad(batch):
            padded, real = lm_dataset.pad_batch(batch, batch_size)
            x = padded if data.labels is None else padded[0]
            # A dummy sequence is one real token (position 0): a valid input with no LM target.
            mask = x["padding_mask"]
            dummy = tf.reshape(tf.cast(~real, mask.dtype), [-1] + [1] * (mask.shape.rank - 1))
            x = dict(x, padding_mask=mask + dummy * tf.one_hot(0, tf.shape(mask)[-1], dtype=mask.dtype))
            return x if data.labels is None else (x, padded[1], tf.cast(real, "float32"))

        if data.labels is None:
            dataset = dataset.map(pad)
        else:
            dataset = dataset.map(lambda x, labels: pad((x, labels)))
    return dataset.prefetch(tf.data.AUTOTUNE)


# Rows packed per eager call: bounds the ragged intermediates, not the result.
_PACK_CHUNK = 4096
