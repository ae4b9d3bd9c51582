"""`distribution_scope`: the one entry point that builds a data- or model-parallel set-up for
the backend in use, and `GPT1Distribution`, which verifies a model's actual weight layout.
"""

import contextlib
import re

import keras

from keras_gpt1.distribution.devices import (
    _CPU_DEVICE_HINT,
    _multi_worker_tf_config,
    _tf_devices,
    _torch_error,
    maybe_initialize_multi_host,
)
from keras_gpt1.distribution.layout import (
    _BACKBONE_WEIGHT,
    _PREFIX,
    DATA_AXIS,
    LAYOUT_RULES,
    MODEL_AXIS,
    MODES,
    GPT1ModelParallel,
    _largest_model_axis,
    check_model_config,
    gpt1_layout_map,
    parse_mesh,
)


class GPT1Distribution:
    """How one training run is distributed: the mode, mesh, and the backend object behind it.

    Made by `configure_distribution`. `scope()` is the context to build, compile and fit in;
    `verify(model)` checks that the weights really are laid out as intended.

    Attributes:
        mode: "none", "data" or "model".
        mesh_shape: `(data, model)` device counts.
        distribution: the `keras.distribution.Distribution` (JAX), else None.
        strategy: the `tf.distribute.Strategy` (TensorFlow), else None.
    """

    def __init__(self, mode, mesh_shape, distribution=None, strategy=None, rules=LAYOUT_RULES):
        self.mode = mode
        self.mesh_shape = tuple(mesh_shape)
        self.distribution = distribution
        self.strategy = strategy
        self.rules = tuple(rules)

    @property
    def num_replicas(self):
        """Model replicas, i.e. how many ways each global batch is split."""
        return self.mesh_shape[0]

    @property
    def model_axis_size(self):
        return self.mesh_shape[1]

    def __repr__(self):
        backend = type(self.strategy or self.distribution).__name__ if self.mode != "none" else "-"
        return f"<GPT1Distribution mode={self.mode} mesh={self.mesh_shape} via {backend}>"

    def scope(self):
        if self.distribution is not None:
            return self.distribution.scope()
        if self.strategy is not None:
            return self.strategy.scope()
        return contextlib.nullcontext()

    def check_batch_size(self, batch_size):
        """Raises if `batch_size` (the global batch) does not split evenly over the replicas."""
        if self.mode != "none" and batch_size % self.num_replicas:
            raise ValueError(
                f"The batch size {batch_size} must be divisible by the {self.num_replicas} data "
                f"replicas of mesh {'x'.join(map(str, self.mesh_shape))} (each replica gets an "
                "equal slice of every batch)."
            )

    def distribute_dataset(self, dataset):
        """This process's share of a batched `tf.data.Dataset` (identity on one host).

        JAX: `Distribution.distribute_dataset` (rebatch to the per-process batch, then
        `shard(num_processes, process_id)`); `fit` also does this itself. TensorFlow: the strategy
        shards inside `fit` (files first, else elements), so the dataset is returned unchanged.
        """
        if self.distribution is not None:
            return self.distribution.distribute_dataset(dataset)
        return dataset

    def verify(self, model):
        """Checks every variable's placement and returns `{path: description}`.

        JAX: each variable matched by a rule must carry a `NamedSharding` with exactly the rule's
        axes and a per-device shard that is really smaller (model mode); everything else must be
        replicated. Every rule must match at least one variable and every rank ≥ 2 backbone weight
        must match a rule: a `LayoutMap` key that matches nothing silently replicates. TensorFlow:
        each variable must be mirrored on every replica. Raises `ValueError` listing problems.
        """
        if self.mode == "none":
            return {}
        backbone = getattr(model, "backbone", model)
        config = {
            name: getattr(backbone, name)
            for name in ("hidden_dim", "num_heads", "intermediate_dim")
            if hasattr(backbone, name)
        }
        if self.mode == "model":
            check_model_config(config, self.model_axis_size)
        if self.strategy is not None:
            return self._verify_mirrored(model)
        return self._verify_sharded(model)

    def _verify_mirrored(self, model):
        report, problems = {}, []
        expected = self.strategy.num_replicas_in_sync
        for v in model.weights:
            values = getattr(v.value, "values", None)
            if values is None or len(values) != expected:
                problems.append(f"{v.path} is not mirrored on {expected} replicas")
            else:
                report[v.path] = f"mirrored x{len(values)}"
        if problems:
            raise ValueError("Variables not distributed as intended: " + "; ".join(problems))
        return report

    def _verify_sharded(self, model):
        import jax

        compiled = [(re.compile(_PREFIX + p), tuple(a)) for p, a in self.rules]
        matched = {p.pattern: 0 for p, _ in compiled}
        report, problems = {}, []
        mesh = self.distribution.device_mesh
        mesh_sizes = dict(zip(mesh.axis_names, mesh.shape))
        for v in model.weights:
            hits = [(p, a) for p, a in compiled if p.fullmatch(v.path)]
            if self.mode == "model" and hits:
                pattern, axes = hits[0]
                matched[pattern.pattern] += 1
            else:
                axes = (None,) * len(v.shape)
                is_matrix = len(v.shape) >= 2 and _BACKBONE_WEIGHT.fullmatch(v.path)
                if self.mode == "model" and is_matrix:
                    problems.append(f"{v.path} {tuple(v.shape)} matches no layout rule")
            sharding = v.value.sharding
            if not isinstance(sharding, jax.sharding.NamedSharding):
                problems.append(f"{v.path} has {type(sharding).__name__}, not a NamedSharding")
                continue
            spec = tuple(sharding.spec) + (None,) * (len(v.shape) - len(sharding.spec))
            if spec != axes:
                problems.append(f"{v.path} is laid out as {spec}, expected {axes}")
                continue
            expected_shard = tuple(d // mesh_sizes[a] if a is not None else d for d, a in zip(v.shape, axes))
            shard = tuple(sharding.shard_shape(tuple(v.shape)))
            if shard != expected_shard:
                problems.append(f"{v.path}: shard {shard}, expected {expected_shard}")
                continue
            report[v.path] = f"sharded {spec} shard {shard}" if shard != tuple(v.shape) else "replicated"
        if self.mode == "model":
            problems += [
                f"layout rule {p!r} matches no variable (paths look like {[w.path for w in model.weights[:3]]})"
                for p, n in matched.items()
                if n == 0
            ]
        if problems:
            raise ValueError("Variables not distributed as intended: " + "; ".join(problems))
        return report


def configure_distribution(mode="none", mesh=None, model_config=None, rules=LAYOUT_RULES):
    """Builds the distribution for `mode` ("none", "data", "model") on the current backend.

    Args:
        mode: "none" (one device), "data" (replicate, split batches) or "model" (also shard the
            weights; JAX only).
        mesh: `"2x4"`, `(2, 4)`, `"8"` or None; sizes must multiply to the device count.
        model_config: optional dict with `hidden_dim`, `num_heads`, `intermediate_dim`, checked
            against the model axis (and used to pick the default mesh in model mode).
        rules: layout rules for model mode (default `LAYOUT_RULES`).

    Returns:
        A `GPT1Distribution`; enter `.scope()` around building, compiling and fitting.

    Example:
    ```python
    dist = configure_distribution("data")
    with dist.scope():
        lm = GPT1CausalLM.from_preset("gpt1_tiny")
    ```
    """
    if mode not in MODES:
        raise ValueError(f"Unknown distribution mode {mode!r}; choose one of {MODES}.")
    mesh_dims = parse_mesh(mesh) if mesh is not None else None
    if mode == "none":
        if mesh_dims is not None and mesh_dims not in ((1,), (1, 1)):
            raise ValueError(f"`mesh={mesh!r}` needs `mode='data'` or `mode='model'`.")
        return GPT1Distribution("none", (1, 1))
    if mode == "data" and mesh_dims is not None and len(mesh_dims) == 2 and mesh_dims[1] != 1:
        raise ValueError(
            f"Data parallelism replicates the whole model, so mesh {mesh} cannot have a model "
            f"axis of {mesh_dims[1]}; use `mode='model'` with `mesh={mesh!r}`, or "
            f"`mesh='{mesh_dims[0] * mesh_dims[1]}'` for data parallelism."
        )
    if mode == "model" and mesh_dims is not None and len(mesh_dims) == 1:
        raise ValueError(f"Model parallelism needs a DATAxMODEL mesh such as 1x{mesh_dims[0]}; got {mesh!r}.")

    backend = keras.config.backend()
    if backend == "torch":
        raise _torch_error(mode)
    if backend == "tensorflow":
        return _configure_tensorflow(mode, mesh_dims, mesh)
    if backend != "jax":
        raise ValueError(f"Distributed training is not supported on the {backend!r} backend.")

    maybe_initialize_multi_host()
    devices = keras.distribution.list_devices()
    count = len(devices)
    if mesh_dims is None:
        if mode == "data":
            mesh_dims = (count, 1)
        else:
            model = _largest_model_axis(count, model_config)
            mesh_dims = (count // model, model)
    elif len(mesh_dims) == 1:
        mesh_dims = (mesh_dims[0], 1)
    _check_device_count(mesh_dims, count, backend)
    if mode == "model":
        check_model_config(model_config, mesh_dims[1])

    import numpy as np

    if mode == "data":
        device_mesh = keras.distribution.DeviceMesh((mesh_dims[0],), [DATA_AXIS], np.array(devices[: mesh_dims[0]]))
        distribution = keras.distribution.DataParallel(device_mesh=device_mesh)
    else:
        device_mesh = keras.distribution.DeviceMesh(
            mesh_dims, [DATA_AXIS, MODEL_AXIS], np.array(devices).reshape(mesh_dims)
        )
        distribution = GPT1ModelParallel(layout_map=gpt1_layout_map(device_mesh, rules), batch_dim_name=DATA_AXIS)
    return GPT1Distribution(mode, mesh_dims, distribution=distribution, rules=rules)


def _check_device_count(mesh_dims, count, backend):
    size = mesh_dims[0] * mesh_dims[1]
    if size != count:
        raise ValueError(
            f"Mesh {'x'.join(map(str, mesh_dims))} needs {size} devices but the {backend} "
            f"backend sees {count}. Give a mesh whose sizes multiply to {count}."
            + (" " + _CPU_DEVICE_HINT if size > count else "")
            + (
                " (for JAX also XLA_FLAGS=--xla_force_host_platform_device_count=N)."
                if size > count and backend == "jax"
                else "."
                if size > count
                else ""
            )
        )


def _configure_tensorflow(mode, mesh_dims, mesh):
    if mode == "model":
        raise ValueError(
            "Model parallelism (`mode='model'`) needs the JAX backend: Keras "
            f"{keras.__version__}'s TensorFlow keras.distribution is an unsupported DTensor "
            "prototype. Use KERAS_BACKEND=jax, or `mode='data'` "
            "(tf.distribute.MirroredStrategy) on TensorFlow."
        )
    import tensorflow as tf

    if _multi_worker_tf_config() is not None:
        # Several workers described by TF_CONFIG: each process drives its local devices and
        # gradients are all-reduced across workers.
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        replicas = strategy.num_replicas_in_sync
        if mesh_dims is not None and mesh_dims[0] != replicas:
            raise ValueError(f"Mesh {mesh} asks for {mesh_dims[0]} replicas but the TF_CONFIG cluster has {replicas}.")
        return GPT1Distribution("data", (replicas, 1), strategy=strategy)
    devices = _tf_devices()
    replicas = len(devices) if mesh_dims is None else mesh_dims[0]
    _check_device_count((replicas, 1), len(devices), "tensorflow")
    strategy = tf.distribute.MirroredStrategy(devices)
    return GPT1Distribution("data", (replicas, 1), strategy=strategy)


@contextlib.contextmanager
def distribution_scope(mode="none", mesh=None, model_config=None, rules=LAYOUT_RULES):
    """Context manager: build, compile and fit GPT-1 inside it to train distributed.

    Yields the `GPT1Distribution` (use `.verify(model)`, `.check_batch_size(n)`). With
    `mode="none"` it changes nothing, on every backend.

    Example:
    ```python
    with distribution_scope("data") as dist:
        lm = GPT1CausalLM.from_preset("gpt1_tiny")
        lm.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
        lm.fit(x, y, batch_size=8 * dist.num_replicas)
    ```
    """
    dist = configure_distribution(mode, mesh, model_config=model_config, rules=rules)
    with dist.scope():
        yield dist
