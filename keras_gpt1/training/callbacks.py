"""Callbacks that make long training runs safe: exact-resume checkpoints and a NaN stop.

A checkpoint is a directory `ckpt-{step:08d}` holding every model variable (weights and dropout
seed states), every optimizer variable (Adam moments, step counter, gradient accumulators), on
PyTorch the global RNG state (Keras's torch dropout draws from it), and a `state.json` with the global step and whatever the caller needs to resume its data stream. It is
written under a temporary name and renamed into place, so a crash mid-write never leaves a
partial checkpoint; the newest `keep` are kept. Restoring one with `restore_checkpoint` and
feeding the data from the same position (`LMDataset.train_dataset(start_batch=step)`) continues
the run exactly where it stopped.

Works on TensorFlow, JAX and PyTorch (on JAX, reading `self.model` syncs the training state).
"""

import json
import math
import os
import re
import shutil
import tempfile

import keras
import numpy as np

CHECKPOINT_PATTERN = re.compile(r"^ckpt-(\d{8,})$")
STATE_FILE = "state.json"
MODEL_FILE = "model_variables.npz"
OPTIMIZER_FILE = "optimizer_variables.npz"
RNG_FILE = "rng_state.npz"


def _global_rng_state():
    """RNG state outside the model's variables that training consumes.

    TensorFlow and JAX draw dropout masks from each layer's `SeedGenerator` state, a model
    variable. Keras's PyTorch dropout (for layers without an explicit seed) uses torch's global
    generator instead, so its state must be saved too for an exact resume.
    """
    if keras.config.backend() != "torch":
        return {}
    import torch

    state = {"torch_cpu": torch.get_rng_state().numpy()}
    if torch.cuda.is_available():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            state[f"torch_cuda_{i}"] = cuda_state.numpy()
    return state


def _set_global_rng_state(path):
    if keras.config.backend() != "torch" or not os.path.isfile(path):
        return
    import torch

    with np.load(path) as data:
        torch.set_rng_state(torch.from_numpy(data["torch_cpu"]))
        cuda = [torch.from_numpy(data[k]) for k in sorted(data.files) if k.startswith("torch_cuda_")]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def _variable_paths(variables):
    return [getattr(v, "path", None) or v.name for v in variables]


def _save_variables(path, variables):
    # `v`, not `v.value`: MirroredStrategy's scalar optimizer variables have no plain value.
    arrays = {f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)}
    with open(path, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())


def _load_variables(path, variables, what):
    with np.load(path) as data:
        if len(data.files) != len(variables):
            raise ValueError(
                f"Checkpoint file {path!r} holds {len(data.files)} {what} variables; the model has "
                f"{len(variables)}. Was it written by a different configuration?"
            )
        for i, variable in enumerate(variables):
            value = data[f"v{i}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"Checkpoint file {path!r}: {what} variable {i} ({_variable_paths([variable])[0]}) "
                    f"has shape {value.shape}, the model expects {tuple(variable.shape)}."
                )
            variable.assign(value)


def list_checkpoints(directory):
    """Complete checkpoints in `directory` as `(step, path)`, oldest first."""
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        match = CHECKPOINT_PATTERN.match(name)
        path = os.path.join(directory, name)
        # `state.json` is written last, so its presence marks a complete checkpoint.
        if match and os.path.isfile(os.path.join(path, STATE_FILE)):
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(directory):
    """The path of the newest complete checkpoint in `directory`, or None."""
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1][1] if checkpoints else None


def save_checkpoint(directory, model, step, state=None, keep=3):
    """Writes checkpoint `ckpt-{step}` atomically and deletes all but the newest `keep`.

    `model` must be compiled (its optimizer is saved too). `state` is a JSON-able dict stored
    beside the global `step`. Returns the checkpoint's path.
    """
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, f"ckpt-{int(step):08d}")
    tmp = tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=directory)
    try:
        _save_variables(os.path.join(tmp, MODEL_FILE), model.variables)
        optimizer = model.optimizer
        if optimizer is not None and optimizer.built:
            _save_variables(os.path.join(tmp, OPTIMIZER_FILE), optimizer.variables)
        rng = _global_rng_state()
        if rng:
            with open(os.path.join(tmp, RNG_FILE), "wb") as f:
                np.savez(f, **rng)
        payload = {
            "step": int(step),
            "model_variables": _variable_paths(model.variables),
            "state": state or {},
        }
        with open(os.path.join(tmp, STATE_FILE), "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(final):  # Re-saving a step (e.g. after a resume): replace it.
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    if keep:
        for _, old in list_checkpoints(directory)[: -int(keep)]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def restore_checkpoint(path, model):
    """Loads model (and, if compiled, optimizer) variables from checkpoint `path`.

    Returns the checkpoint's `{"step": ..., "state": {...}}`.

    Example:
    ```python
    info = restore_checkpoint(latest_checkpoint("run/checkpoints"), model)
    model.fit(data.train_dataset(start_batch=info["step"]), ...)
    ```
    """
    with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
        payload = json.load(f)
    _load_variables(os.path.join(path, MODEL_FILE), model.variables, "model")
    optimizer = getattr(model, "optimizer", None)
    optimizer_file = os.path.join(path, OPTIMIZER_FILE)
    if optimizer is not None and os.path.isfile(optimizer_file):
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        _load_variables(optimizer_file, optimizer.variables, "optimizer")
    _set_global_rng_state(os.path.join(path, RNG_FILE))
    return {"step": int(payload["step"]), "state": payload.get("state", {})}


def _finite(logs, key="loss"):
    value = (logs or {}).get(key)
    return value is None or math.isfinite(float(value))


class TrainingCheckpoint(keras.callbacks.Callback):
    """Saves exact-resume checkpoints during `fit` (see the module docstring), keeping the last K.

    Args:
        directory: where `ckpt-{step}` directories go.
        save_every: save every this many batches, or `"epoch"` to save at each epoch's end (after
            validation).
        keep: how many checkpoints to keep (the newest).
        initial_step: global batch count already done when `fit` starts (0, or a restored step).
        state_fn: optional `state_fn(step, logs) -> dict` of extra JSON state to store.
        resumed_from: the checkpoint `fit` continues from, if any. Its global RNG state (PyTorch)
            is applied again just before the first batch: `fit`'s own set-up draws from that
            generator after `restore_checkpoint` has set it (on PyTorch, Keras feeds a tf.data
            dataset through a `torch.utils.data.DataLoader`, whose iterator draws a seed).

    Nothing is saved once a loss is not finite: the newest checkpoint stays the last good one.

    Example:
    ```python
    checkpoint = TrainingCheckpoint("run/checkpoints", save_every="epoch", keep=3)
    model.fit(data.train_dataset(), steps_per_epoch=500, epochs=20, callbacks=[checkpoint])
    ```
    """

    def __init__(self, directory, save_every="epoch", keep=3, initial_step=0, state_fn=None, resumed_from=None):
        super().__init__()
        if save_every != "epoch" and int(save_every) < 1:
            raise ValueError(f"`save_every` must be 'epoch' or a positive int; got {save_every!r}.")
        self.directory = os.fspath(directory)
        self.save_every = save_every
        self.keep = int(keep)
        self.step = int(initial_step)
        self.state_fn = state_fn
        self.last_saved = None
        self.resumed_from = resumed_from
        self._healthy = True

    def on_train_batch_begin(self, batch, logs=None):
        if self.resumed_from:
            _set_global_rng_state(os.path.join(self.resumed_from, RNG_FILE))
            self.resumed_from = None

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if not _finite(logs):
            self._healthy = False
        if self.save_every != "epoch" and self.step % int(self.save_every) == 0:
            self._save(logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_every == "epoch":
            self._save(logs)

    def _save(self, logs):
        if not self._healthy or not _finite(logs) or not _finite(logs, "val_loss"):
            self._healthy = False
            return
        state = self.state_fn(self.step, dict(logs or {})) if self.state_fn else {}
        self.last_saved = save_checkpoint(self.directory, self.model, self.step, state, keep=self.keep)


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or infinite and remembers where.

    After `fit` returns, `bad_step` is the 1-based global batch number of the bad batch (None if
    training stayed finite); the caller reports it. Unlike `keras.callbacks.TerminateOnNaN` it
    also works out which checkpoint is the last good one: put it before `TrainingCheckpoint`.

    Example:
    ```python
    nan = StopOnNaN()
    model.fit(..., callbacks=[nan, checkpoint])
    if nan.bad_step: raise FloatingPointError(f"NaN at step {nan.bad_step}")
    ```
    """

    def __init__(self, initial_step=0):
        super().__init__()
        self.step = int(initial_step)
        self.bad_step = None
        self.bad_value = None

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.bad_step is None and not _finite(logs):
            self.bad_step = self.step
            self.bad_value = float(logs["loss"])
            self.model.stop_training = True


class StopAtStep(keras.callbacks.Callback):
    """Ends `fit` after a global batch count (the last epoch may be shorter than the others)."""

    def __init__(self, final_step, initial_step=0):
        super().__init__()
        self.final_step = int(final_step)
        self.step = int(initial_step)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step >= self.final_step:
            self.model.stop_training = True


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current `learning_rate` to the epoch logs (for TensorBoard, History).

    Put it before `keras.callbacks.TensorBoard` in the callback list.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            optimizer = self.model.optimizer
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
