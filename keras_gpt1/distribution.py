"""Data- and model-parallel training of GPT-1 with the engines Keras already has.

* JAX: `keras.distribution.DataParallel` (variables replicated, batch split) and
  `keras.distribution.ModelParallel` on a 2-D `batch × model` device mesh, with `gpt1_layout_map`
  sharding the weights Megatron-style (see `LAYOUT_RULES`). XLA's GSPMD partitioner inserts the
  collectives.
* TensorFlow: `tf.distribute.MirroredStrategy` for data parallelism on one host, or
  `tf.distribute.MultiWorkerMirroredStrategy` when `TF_CONFIG` describes several workers. Keras
  3.15's TensorFlow `keras.distribution` backend is a DTensor prototype marked "do not use", so
  model parallelism on TensorFlow is refused with a pointer to JAX.
* PyTorch: Keras 3.15 has no distribution backend for torch (`keras.distribution` needs JAX or
  TensorFlow, and `fit` has no `torch.distributed` integration); asking for one raises an error
  that names the alternatives.

The one entry point for training code is `distribution_scope(mode, mesh)`: build, compile and fit
the model inside it.

Example (JAX, 8 devices):
```python
from keras_gpt1 import BUILTIN_PRESETS, GPT1CausalLM
from keras_gpt1.distribution import distribution_scope

config = BUILTIN_PRESETS["gpt1"]["config"]
with distribution_scope("model", "2x4", model_config=config) as dist:
    lm = GPT1CausalLM.from_preset("gpt1")
    dist.verify(lm)          # raises if a weight meant to be sharded is not
    lm.compile()
    lm.fit(dataset)          # a batched tf.data.Dataset; its batches are global batches
```
"""

import contextlib
import json
import os
import re

import keras

MODES = ("none", "data", "model")
DATA_AXIS = "batch"
MODEL_AXIS = "model"

# Variable-path patterns (matched with `re.fullmatch`, after an optional prefix so the rules still
# hold if a model is ever built under an enclosing name scope) → axes of the variable.
#
# Megatron-style pairing: the first matmul of each sublayer (fused q|k|v, FFN-in) is split on its
# OUTPUT axis, the second (attention c_proj, FFN-out) on its INPUT axis, so each device computes a
# slice of the hidden activations locally and one all-reduce per sublayer restores the full
# width. The embeddings are split on the hidden axis: GPT-1's vocabulary (40,478, or 40,481 after
# fine-tuning adds 3 tokens) is divisible by no usual mesh size and JAX cannot place an unevenly
# sharded array, whereas 768 is divisible by 2, 3, 4, 6, 8, 12, 16, ... LayerNorm parameters and
# the biases added after an all-reduce are tiny and stay replicated.
#
# The fused c_attn kernel keeps the checkpoint's q|k|v column order, so its output-axis split is in
# contiguous blocks of 3·hidden/m columns: with m = 4, device 0 holds q's first 3/4, device 1 the
# rest of q and half of k, ... After `split` into q, k and v, GSPMD reshuffles the activations so
# each is sharded by heads: in the compiled forward pass of one block at m = 4 that is 7
# collective-permutes moving ~1.25·B·T·hidden values per device, next to the 2 all-reduces
# (~1.5·B·T·hidden each, ring) and 2 all-gathers the Megatron split needs anyway, i.e. roughly a
# quarter more communication per block. Correct, not optimal: a head-interleaved column order (each
# device's block = q|k|v of its own heads) would avoid it, but would change the weight layout that
# the original checkpoint, Hugging Face files and our presets share, or need three kernels.
LAYOUT_RULES = (
    (r"embeddings/token_embedding/embeddings", (None, MODEL_AXIS)),  # [vocab, hidden]
    (r"embeddings/position_embeddings", (None, MODEL_AXIS)),  # [context, hidden]
    (r"h_\d+/attn/c_attn/kernel", (None, MODEL_AXIS)),  # [hidden, 3·hidden]
    (r"h_\d+/attn/c_attn/bias", (MODEL_AXIS,)),  # [3·hidden]
    (r"h_\d+/attn/c_proj/kernel", (MODEL_AXIS, None)),  # [hidden, hidden]
    (r"h_\d+/c_fc/kernel", (None, MODEL_AXIS)),  # [hidden, intermediate]
    (r"h_\d+/c_fc/bias", (MODEL_AXIS,)),  # [intermediate]
    (r"h_\d+/c_proj/kernel", (MODEL_AXIS, None)),  # [intermediate, hidden]
)
_PREFIX = r"(?:.*/)?"
# Backbone weights of rank ≥ 2 live under these names; every one of them must match a rule, so a
# renamed layer cannot silently fall back to replication.
_BACKBONE_WEIGHT = re.compile(_PREFIX + r"(?:embeddings|h_\d+)/.*")

_CPU_DEVICE_HINT = (
    "To try distribution on a CPU-only machine, split the host CPU into virtual devices before "
    "the backend starts: `--cpu-devices N` on the command line, or "
    "`keras_gpt1.distribution.use_virtual_cpu_devices(N)` in Python"
)


# === Parsing and the command line ===


def parse_mesh(spec):
    """Parses a mesh shape: `"2x4"` → `(2, 4)` (data × model), `"8"` → `(8,)`.

    Example:
    ```python
    assert parse_mesh("2x4") == (2, 4)
    ```
    """
    if isinstance(spec, (tuple, list)):
        dims = tuple(spec)
    else:
        text = str(spec).strip().lower()
        if not re.fullmatch(r"\d+(x\d+)?", text):
            raise ValueError(
                f"Invalid mesh {spec!r}: expected DATAxMODEL such as '2x4', or one number such "
                "as '8' for data parallelism."
            )
        dims = tuple(int(d) for d in text.split("x"))
    if not 1 <= len(dims) <= 2 or any(not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(
            f"Invalid mesh {spec!r}: GPT-1 uses a 1-D (data) or 2-D (data × model) mesh of "
            "positive sizes, e.g. '8' or '2x4'."
        )
    return dims


def add_distribution_arguments(parser):
    """Adds `--distribute {none,data,model}`, `--mesh` and `--cpu-devices` to an argparse parser.

    Example:
    ```python
    parser = argparse.ArgumentParser()
    add_distribution_arguments(parser)
    args = parser.parse_args(["--distribute", "model", "--mesh", "2x4"])
    ```
    """
    group = parser.add_argument_group("distributed training")
    group.add_argument(
        "--distribute",
        choices=MODES,
        default="none",
        help="data: replicate the model, split each batch (JAX keras.distribution.DataParallel, "
        "TensorFlow MirroredStrategy); model: also shard the weights (JAX only, "
        "keras.distribution.ModelParallel). Default: none.",
    )
    group.add_argument(
        "--mesh",
        default=None,
        help="device mesh DATAxMODEL, e.g. 2x4 (model mode) or 8 (data mode); the sizes must "
        "multiply to the number of devices. Default: every device on the data axis (data mode), "
        "or the widest model axis the configuration allows (model mode).",
    )
    group.add_argument(
        "--cpu-devices",
        type=int,
        default=None,
        metavar="N",
        help="split the host CPU into N virtual devices (for trying distribution without "
        "accelerators; it does not make training faster).",
    )
    return parser


@contextlib.contextmanager
def distribution_from_args(args, preset=None, model_config=None):
    """`distribution_scope` from parsed `add_distribution_arguments` flags, for CLI handlers.

    Splits the CPU first if `--cpu-devices` was given, reads the model config from `preset` (a
    built-in name or directory) when no `model_config` is passed, and checks that the (micro-)
    batch, `args.batch_size // args.gradient_accumulation_steps` when present, splits evenly.

    Example:
    ```python
    with distribution_from_args(args, preset=args.preset):
        pretrain(...)
    ```
    """
    mode = getattr(args, "distribute", "none") or "none"
    if getattr(args, "cpu_devices", None):
        use_virtual_cpu_devices(args.cpu_devices)
    if model_config is None and preset is not None and mode == "model":
        from keras_gpt1.models.preset_io import load_backbone_config

        model_config = load_backbone_config(preset)
    with distribution_scope(mode, getattr(args, "mesh", None), model_config=model_config) as dist:
        batch_size = getattr(args, "batch_size", None)
        if isinstance(batch_size, int):
            accumulation = getattr(args, "gradient_accumulation_steps", None) or 1
            dist.check_batch_size(batch_size // max(1, accumulation))
        yield dist


# === Devices ===


def use_virtual_cpu_devices(count):
    """Splits the host CPU into `count` devices, so distribution can be tried without accelerators.

    Must run before the backend starts (before any tensor is created). JAX: sets
    `jax_num_cpu_devices`; TensorFlow: logical CPU devices. On PyTorch it does nothing.

    Example:
    ```python
    use_virtual_cpu_devices(8)          # first thing in the program
    ```
    """
    count = int(count)
    if count < 1:
        raise ValueError(f"--cpu-devices must be at least 1; got {count}.")
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        try:
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError as e:
            raise ValueError(
                f"Cannot split the CPU into {count} devices: JAX has already started. Set it "
                "first thing in the program, or use "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={count}."
            ) from e
    elif backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        current = tf.config.get_logical_device_configuration(cpu)
        if current is not None and len(current) == count:
            return
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
            )
        except RuntimeError as e:
            raise ValueError(
                f"Cannot split the CPU into {count} devices: TensorFlow has already started. "
                "Call this first thing in the program."
            ) from e


def _tf_devices():
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def _torch_error(mode):
    return ValueError(
        f"--distribute {mode} is not available on the PyTorch backend: Keras "
        f"{keras.__version__} implements keras.distribution (DataParallel, ModelParallel) for "
        "JAX only (TensorFlow has a prototype), and `fit` has no torch.distributed "
        "integration. Alternatives: KERAS_BACKEND=jax for data or model parallelism; "
        "KERAS_BACKEND=tensorflow for data parallelism (tf.distribute.MirroredStrategy); or, "
        "staying on PyTorch, your own training loop around "
        "torch.nn.parallel.DistributedDataParallel(model) launched with torchrun (Keras guide "
        "'Multi-GPU distributed training with PyTorch')."
    )


def _multi_worker_tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {raw[:200]!r}") from e
    workers = config.get("cluster", {}).get("worker", [])
    return config if len(workers) + len(config.get("cluster", {}).get("chief", [])) > 1 else None


_multi_host_initialized = False


def maybe_initialize_multi_host():
    """Calls `keras.distribution.initialize()` (JAX) once when `KERAS_DISTRIBUTION_NUM_PROCESSES`
    says there are several processes; a no-op on one host. Must run before any JAX computation."""
    global _multi_host_initialized
    processes = os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES")
    if _multi_host_initialized or keras.config.backend() != "jax" or not processes:
        return
    if int(processes) <= 1:
        return
    try:
        keras.distribution.initialize()
    except RuntimeError as e:
        raise ValueError(
            f"Multi-host start-up failed ({e}). keras.distribution.initialize() must run before "
            "any JAX computation: call keras_gpt1.distribution.maybe_initialize_multi_host() "
            "first thing in the program."
        ) from e
    _multi_host_initialized = True


# === Losses under tf.distribute ===


def _tf_replicas_in_sync():
    if keras.config.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_loss_for_replicas(loss):
    """Divides a per-replica mean loss by the replicas in sync (TensorFlow `tf.distribute` only).

    Under `MirroredStrategy` each replica computes the loss of its slice of the batch and the
    gradients are summed across replicas, so a mean loss must be divided by the replica count to
    give the gradient of the global mean. Keras's built-in losses do this inside
    `Loss.__call__`; a loss computed by hand (a custom `__call__`, an extra term added in
    `compute_loss`) must do it itself. Identity on JAX (global-view SPMD: the loss is already
    the global mean), on PyTorch, and outside a strategy.

    Example:
    ```python
    def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred["task"], sample_weight, training=training)
        return loss + scale_loss_for_replicas(y_pred["extra_mean_loss"])
    ```
    """
    replicas = _tf_replicas_in_sync()
    if replicas > 1:
        loss = keras.ops.multiply(loss, keras.ops.cast(1.0 / replicas, loss.dtype))
    return loss


def unscale_loss_for_replicas(loss):
    """The inverse of `scale_loss_for_replicas`, for logging a scaled loss as the global mean."""
    replicas = _tf_replicas_in_sync()
    if replicas > 1:
        loss = keras.ops.multiply(loss, keras.ops.cast(replicas, loss.dtype))
    return loss


# === Layouts ===


def gpt1_layout_map(device_mesh, rules=LAYOUT_RULES):
    """A `keras.distribution.LayoutMap` sharding GPT-1's weights over the mesh's `model` axis.

    `rules` are `(path_regex, axes)` pairs (default `LAYOUT_RULES`); a path prefix is allowed.
    Unmatched variables are replicated (LayerNorms, biases after an all-reduce, task heads).

    Example:
    ```python
    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"))
    layout_map = gpt1_layout_map(mesh)
    layout_map["h_0/c_fc/kernel"].axes     # (None, "model")
    ```
    """
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for pattern, axes in rules:
        layout_map[_PREFIX + pattern] = tuple(axes)
    return layout_map


def check_model_config(config, model_axis_size):
    """Raises `ValueError` if GPT-1 dimensions do not divide over `model_axis_size` devices.

    JAX can only place evenly sharded arrays (hidden and intermediate widths); whole heads per
    device keep the attention itself local once q/k/v are resharded.
    """
    if model_axis_size <= 1 or not config:
        return
    problems = [
        f"{name}={config[name]}"
        for name in ("hidden_dim", "num_heads", "intermediate_dim")
        if name in config and int(config[name]) % model_axis_size
    ]
    if problems:
        raise ValueError(
            f"Model parallelism over a model axis of {model_axis_size} devices needs hidden_dim, "
            f"num_heads and intermediate_dim divisible by {model_axis_size}; got "
            f"{', '.join(problems)}. Choose a mesh whose second size divides them (GPT-1's "
            "12 heads: 1, 2, 3, 4, 6 or 12)."
        )


def _largest_model_axis(device_count, config):
    for size in range(device_count, 0, -1):
        if device_count % size:
            continue
        try:
            check_model_config(config, size)
        except ValueError:
            continue
        return size
    return 1


class GPT1ModelParallel(keras.distribution.ModelParallel):
    """`ModelParallel` with two checks as each variable is created: a backbone weight matrix that
    matches no layout rule is an error (Keras would silently replicate it), and so is a sharded
    dimension that does not divide evenly (JAX would fail deep inside `device_put`)."""

    def get_variable_layout(self, variable):
        if (
            getattr(variable, "_layout", None) is None
            and len(variable.shape) >= 2
            and _BACKBONE_WEIGHT.fullmatch(variable.path)
            and self._layout_map[variable.path] is None
        ):
            raise ValueError(
                f"GPT-1 weight {variable.path!r} {tuple(variable.shape)} matches no layout rule, "
                "so it would be silently replicated; add a rule for it (see "
                "keras_gpt1.distribution.LAYOUT_RULES)."
            )
        layout = super().get_variable_layout(variable)
        mesh = self.device_mesh
        for dim, axis in zip(variable.shape, layout.axes):
            if axis is None:
                continue
            size = mesh.shape[mesh.axis_names.index(axis)]
            if dim % size:
                raise ValueError(
                    f"Cannot shard variable {variable.path!r} of shape {tuple(variable.shape)} "
                    f"over mesh axis {axis!r} of {size} devices: {dim} is not divisible by "
                    f"{size}. Pick a mesh whose model size divides the model's dimensions."
                )
        return layout


# === The distribution context ===


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
            expected_shard = tuple(
                d // mesh_sizes[a] if a is not None else d for d, a in zip(v.shape, axes)
            )
            shard = tuple(sharding.shard_shape(tuple(v.shape)))
            if shard != expected_shard:
                problems.append(f"{v.path}: shard {shard}, expected {expected_shard}")
                continue
            report[v.path] = (
                f"sharded {spec} shard {shard}" if shard != tuple(v.shape) else "replicated"
            )
        if self.mode == "model":
            problems += [
                f"layout rule {p!r} matches no variable (paths look like "
                f"{[w.path for w in model.weights[:3]]})"
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
            raise ValueError(f"--mesh {mesh} needs --distribute data or --distribute model.")
        return GPT1Distribution("none", (1, 1))
    if mode == "data" and mesh_dims is not None and len(mesh_dims) == 2 and mesh_dims[1] != 1:
        raise ValueError(
            f"Data parallelism replicates the whole model, so mesh {mesh} cannot have a model "
            f"axis of {mesh_dims[1]}; use --distribute model --mesh {mesh}, or --mesh "
            f"{mesh_dims[0] * mesh_dims[1]} for data parallelism."
        )
    if mode == "model" and mesh_dims is not None and len(mesh_dims) == 1:
        raise ValueError(
            f"Model parallelism needs a DATAxMODEL mesh such as 1x{mesh_dims[0]}; got {mesh!r}."
        )

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
        device_mesh = keras.distribution.DeviceMesh(
            (mesh_dims[0],), [DATA_AXIS], np.array(devices[: mesh_dims[0]])
        )
        distribution = keras.distribution.DataParallel(device_mesh=device_mesh)
    else:
        device_mesh = keras.distribution.DeviceMesh(
            mesh_dims, [DATA_AXIS, MODEL_AXIS], np.array(devices).reshape(mesh_dims)
        )
        distribution = GPT1ModelParallel(
            layout_map=gpt1_layout_map(device_mesh, rules), batch_dim_name=DATA_AXIS
        )
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
                else "." if size > count else ""
            )
        )


def _configure_tensorflow(mode, mesh_dims, mesh):
    if mode == "model":
        raise ValueError(
            "Model parallelism (--distribute model) needs the JAX backend: Keras "
            f"{keras.__version__}'s TensorFlow keras.distribution is an unsupported DTensor "
            "prototype. Use KERAS_BACKEND=jax, or --distribute data "
            "(tf.distribute.MirroredStrategy) on TensorFlow."
        )
    import tensorflow as tf

    if _multi_worker_tf_config() is not None:
        # Several workers described by TF_CONFIG: each process drives its local devices and
        # gradients are all-reduced across workers.
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        replicas = strategy.num_replicas_in_sync
        if mesh_dims is not None and mesh_dims[0] != replicas:
            raise ValueError(
                f"Mesh {mesh} asks for {mesh_dims[0]} replicas but the TF_CONFIG cluster has "
                f"{replicas}."
            )
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
