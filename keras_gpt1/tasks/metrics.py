"""The GLUE metrics, as NumPy functions over a whole evaluation set.

Accuracy (most tasks), F1 (MRPC, QQP: of the positive class 1), Matthews correlation (CoLA),
Pearson and Spearman correlation (STS-B). These are corpus-level statistics (a mean of per-batch
F1 or correlations would be wrong), so `evaluate` collects all predictions first and calls these.
"""

import numpy as np


def _as_labels(y_true, y_pred):
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.size} labels but {y_pred.size} predictions.")
    if y_true.size == 0:
        raise ValueError("No examples to score.")
    return y_true, y_pred


def accuracy(y_true, y_pred):
    """Fraction of predictions equal to the labels.

    Example:
    ```python
    accuracy([0, 1, 1], [0, 1, 0])   # 0.667
    ```
    """
    y_true, y_pred = _as_labels(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def f1_score(y_true, y_pred, positive=1, average="binary"):
    """F1 of the `positive` class (`average="binary"`, GLUE's MRPC/QQP), or the unweighted mean
    over the classes present in either array (`average="macro"`). 0 when undefined.

    Example:
    ```python
    f1_score([1, 1, 0, 0], [1, 0, 1, 0])   # 0.5
    ```
    """
    y_true, y_pred = _as_labels(y_true, y_pred)
    if average == "macro":
        classes = np.union1d(np.unique(y_true), np.unique(y_pred))
        return float(np.mean([f1_score(y_true, y_pred, positive=c) for c in classes]))
    if average != "binary":
        raise ValueError(f"`average` must be 'binary' or 'macro'; got {average!r}.")
    tp = np.sum((y_pred == positive) & (y_true == positive))
    fp = np.sum((y_pred == positive) & (y_true != positive))
    fn = np.sum((y_pred != positive) & (y_true == positive))
    denominator = 2 * tp + fp + fn
    return float(2 * tp / denominator) if denominator else 0.0


def matthews_corrcoef(y_true, y_pred):
    """Matthews correlation coefficient (multiclass form, Gorodkin 2004); 0 when undefined.

    For two classes it is `(tp·tn − fp·fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn))`.

    Example:
    ```python
    matthews_corrcoef([1, 1, 0, 0], [1, 0, 0, 0])   # 0.577
    ```
    """
    y_true, y_pred = _as_labels(y_true, y_pred)
    classes, encoded = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    t, p = encoded[: y_true.size], encoded[y_true.size :]
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (t, p), 1)
    n = confusion.sum()
    correct = np.trace(confusion)
    true_counts, pred_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    numerator = correct * n - np.dot(true_counts, pred_counts)
    denominator = np.sqrt(n**2 - np.dot(pred_counts, pred_counts)) * np.sqrt(n**2 - np.dot(true_counts, true_counts))
    return float(numerator / denominator) if denominator else 0.0


def pearson_correlation(x, y):
    """Pearson's r; 0 when either input is constant.

    Example:
    ```python
    pearson_correlation([1, 2, 3], [2, 4, 7])   # 0.993
    ```
    """
    x, y = _as_labels(x, y)
    x, y = x.astype(np.float64), y.astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.sum(x * y) / denominator) if denominator else 0.0


def _average_ranks(values):
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    # Ties share the mean of the ranks they span.
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(values)]])
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end - 1) / 2.0 + 1.0
    return ranks


def spearman_correlation(x, y):
    """Spearman's rank correlation (Pearson's r of the average ranks; ties share ranks).

    Example:
    ```python
    spearman_correlation([1, 2, 3], [2, 4, 70])   # 1.0
    ```
    """
    x, y = _as_labels(x, y)
    return pearson_correlation(_average_ranks(x.astype(np.float64)), _average_ranks(y.astype(np.float64)))


def class_metrics(y_true, predictions, regression=False):
    """Accuracy, F1 (binary: of class 1; more classes: macro) and Matthews correlation of the
    argmax of `predictions` (logits); with `regression=True`, `score_metrics` instead.

    Example:
    ```python
    class_metrics([0, 1], np.array([[2.0, 1.0], [0.0, 3.0]]))   # {'accuracy': 1.0, 'f1': 1.0, 'mcc': 1.0}
    ```
    """
    if regression:
        return score_metrics(y_true, predictions)
    predictions = np.asarray(predictions)
    y_true = np.asarray(y_true)
    y_pred = np.argmax(predictions, axis=-1)
    binary = predictions.shape[-1] == 2
    return {
        "accuracy": accuracy(y_true, y_pred),
        "f1": f1_score(y_true, y_pred, average="binary" if binary else "macro"),
        "mcc": matthews_corrcoef(y_true, y_pred),
    }


def score_metrics(y_true, predictions, regression=True):
    """Pearson and Spearman correlation and mean squared error of predicted scores (STS-B).

    Example:
    ```python
    score_metrics([1.0, 2.0, 3.0], [1.1, 1.9, 3.2])["pearson"]   # 0.99
    ```
    """
    scores = np.asarray(predictions).reshape(-1).astype(np.float64)
    y_true = np.asarray(y_true)
    return {
        "pearson": pearson_correlation(y_true, scores),
        "spearman": spearman_correlation(y_true, scores),
        "mse": float(np.mean((scores - y_true.astype(np.float64)) ** 2)),
    }


def choice_metrics(y_true, predictions, regression=False):
    """Accuracy of the highest-scoring candidate against the right candidate's index.

    Example:
    ```python
    choice_metrics([1], np.array([[0.1, 2.0, 0.3]]))   # {'accuracy': 1.0}
    ```
    """
    return {"accuracy": accuracy(np.asarray(y_true), np.argmax(np.asarray(predictions), axis=-1))}
