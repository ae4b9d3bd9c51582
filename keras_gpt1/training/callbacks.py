"""Callbacks that make long training runs safe: exact-resume checkpoints and a NaN stop.

A checkpoint is a directory `ckpt-{step:08d}` holding every model variable (weights and dropout
seed states), every optimizer variable (Adam moments, step counter, gradient accumulators), on
PyTorch the global RNG state (Keras's torch dropout draws from it), a `state.json` with the
global step and whatever the caller needs to resume its data stream, and, written last, a
`manifest.json` with every file's size and SHA-256. It is written under a temporary name and
renamed into place, so a crash mid-write never leaves a partial checkpoint; the newest `keep` are
kept. `latest_checkpoint` verifies checkpoints against their manifests (a disk error or a copy
can still truncate one) and falls back to the newest valid one, warning about each it skips. Restoring one with `restore_checkpoint` and
feeding the data from the same position (`LMDataset.train_dataset(start_batch=step)`) continues
the run exactly where it stopped.

Works on TensorFlow, JAX and PyTorch (on JAX, reading `self.model` syncs the training state).
"""

import json
import math
import os
import re
import shutil
import warnings
import zipfile

import keras
import numpy as np

from keras_gpt1.utils.files import atomic_dir
from keras_gpt1.utils.manifest import MANIFEST_FILE, manifest_problem, write_manifest

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
    """Checkpoints in `directory` as `(step, path)`, oldest first (not yet verified: see
    `verify_checkpoint`)."""
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        match = CHECKPOINT_PATTERN.match(name)
        path = os.path.join(directory, name)
        # `state.json` (then the manifest) is written last, so without it a checkpoint is incomplete.
        if match and os.path.isfile(os.path.join(path, STATE_FILE)):
            found.append((int(match.group(1)), path))
    return sorted(found)


def _write_manifest(directory):
    write_manifest(directory)  # every file of the checkpoint, written last


def verify_checkpoint(path):
    """None if checkpoint `path` is complete and intact, else the reason it is not.

    Checks every file against `manifest.json` (size, then SHA-256). A checkpoint written before
    manifests existed is checked by its zip archives' CRCs instead.
    """
    manifest_path = os.path.join(path, MANIFEST_FILE)
    if not os.path.isfile(manifest_path):
        if not os.path.isfile(os.path.join(path, STATE_FILE)):
            return f"{STATE_FILE} is missing (the write did not finish)"
        for name in (MODEL_FILE, OPTIMIZER_FILE, RNG_FILE):  # an older checkpoint, no manifest
            file = os.path.join(path, name)
            if os.path.isfile(file):
                try:
                    with zipfile.ZipFile(file) as archive:
                        if archive.testzip() is not None:
                            return f"{name} is corrupt"
                except (zipfile.BadZipFile, OSError) as e:
                    return f"{name} is corrupt ({e})"
        return None
    try:
        return manifest_problem(path)
    except ValueError as e:
        return str(e)


def latest_checkpoint(directory, verify=True):
    """The path of the newest valid checkpoint in `directory`, or None if there is none at all.

    An invalid newer checkpoint (truncated, corrupt, incomplete) is skipped with a warning naming
    it; if checkpoints exist but none is valid, a `ValueError` lists them.
    """
    checkpoints = list_checkpoints(directory)
    if not verify:
        return checkpoints[-1][1] if checkpoints else None
    skipped = []
    for _, path in reversed(checkpoints):
        problem = verify_checkpoint(path)
        if problem is None:
            for bad, why in skipped:
                warnings.warn(f"Skipping checkpoint {bad!r}: {why}. Resuming from {path!r} instead.", stacklevel=2)
            return path
        skipped.append((path, problem))
    if skipped:
        raise ValueError(
            "No valid checkpoint to resume from: "
            + "; ".join(f"{p!r}: {why}" for p, why in skipped)
            + ". Restore them from a backup, or start over with `resume=False`."
        )
    return None


def _variables_bytes(variables):
    return sum(int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize for v in variables)


def save_checkpoint(directory, model, step, state=None, keep=3):
    """Writes checkpoint `ckpt-{step}` atomically and deletes all but the newest `keep`.

    `model` must be compiled (its optimizer is saved too). `state` is a JSON-able dict stored
    beside the global `step`. Returns the checkpoint's path. A full disk raises an `OSError`
    naming the checkpoint and the space it needs; the older checkpoints stay as they were.
    """
    keep = _check_keep(keep)
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, f"ckpt-{int(step):08d}")
    optimizer = model.optimizer
    variables = list(model.variables) + (list(optimizer.variables) if optimizer is not None and optimizer.built else [])
    with atomic_dir(final, "checkpoint", _variables_bytes(variables)) as tmp:
        _save_variables(os.path.join(tmp, MODEL_FILE), model.variables)
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
        _write_manifest(tmp)
    if keep is not None:
        for _, old in list_checkpoints(directory)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _check_keep(keep):
    """`keep` checkpoints (None: all). 0 or a negative count would delete the one just written."""
    from keras_gpt1.utils.checks import check_integer

    return None if keep is None else check_integer("keep_checkpoints", keep, 1)


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
        self.keep = _check_keep(keep)
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
