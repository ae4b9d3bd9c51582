"""A loss-curve PNG for a pretraining run: whether it learned, at a glance, next to its preset.

matplotlib is optional (it comes with the `dev` extra): without it `write_loss_curve` writes
nothing and returns None, so a run never fails for want of a plot. The figure is drawn on
matplotlib's Agg canvas directly, which needs no display and changes no global backend.
"""

import os

from keras_gpt1.utils.files import atomic_path

LOSS_CURVE_FILE = "loss_curve.png"


def matplotlib_available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_loss_curve(path, updates, train_loss, validation_loss=None, initial_validation_loss=None):
    """Plots training and validation loss against optimizer updates into the PNG `path` (atomically).

    Args:
        path: the PNG to write.
        updates: the update count at the end of each evaluation interval.
        train_loss: the mean training loss of each interval.
        validation_loss: the validation loss after each interval (or None).
        initial_validation_loss: the untrained model's validation loss, drawn at update 0.

    Returns:
        `path`, or None when matplotlib is not installed.

    Example:
    ```python
    write_loss_curve("run/loss_curve.png", [50, 100], [6.2, 5.8], [6.0, 5.7], initial_validation_loss=7.6)
    ```
    """
    if not matplotlib_available():
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    updates, train_loss = list(updates), list(train_loss)
    if len(updates) != len(train_loss) or (validation_loss is not None and len(validation_loss) != len(updates)):
        raise ValueError(
            f"`updates`, `train_loss` and `validation_loss` must have one value per interval; got "
            f"{len(updates)}, {len(train_loss)} and {None if validation_loss is None else len(validation_loss)}."
        )
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(updates, train_loss, marker="o", label="training (interval mean)")
    if validation_loss is not None:
        xs, ys = list(updates), list(validation_loss)
        if initial_validation_loss is not None:
            xs, ys = [0] + xs, [initial_validation_loss] + ys
        axes.plot(xs, ys, marker="s", label="validation")
    axes.set_xlabel("optimizer updates")
    axes.set_ylabel("next-token loss (nats)")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
