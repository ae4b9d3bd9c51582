"""Devices and processes: virtual CPU devices for trying distribution without accelerators,
multi-host start-up (JAX), and what each backend offers.
"""

import json
import os

import keras

from keras_gpt1.utils.checks import check_integer

_CPU_DEVICE_HINT = (
    "To try distribution on a CPU-only machine, split the host CPU into virtual devices with "
    "`use_virtual_cpu_devices(N)` (keras_gpt1.distribution) before the backend starts"
)


def use_virtual_cpu_devices(count):
    """Splits the host CPU into `count` devices, so distribution can be tried without accelerators.

    Must run before the backend starts (before any tensor is created). JAX: sets
    `jax_num_cpu_devices`; TensorFlow: logical CPU devices. On PyTorch it does nothing.

    Example:
    ```python
    use_virtual_cpu_devices(8)          # first thing in the program
    ```
    """
    count = check_integer("count", count, 1)
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
        f"Distribution `mode={mode!r}` is not available on the PyTorch backend: Keras "
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
