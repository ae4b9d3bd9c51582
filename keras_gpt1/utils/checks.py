"""Input checks that turn silent backend behaviour into clear errors.

Embedding lookups clamp (JAX, TF on some devices) or crash deep inside a kernel (PyTorch) on
out-of-range ids. We check whenever the values are concrete; inside compiled functions the values
are symbolic and the check is skipped (our own pipelines only produce in-range ids).
"""

import math
import os

import numpy as np

# Keras is imported inside the functions that use it: the command line reads this module's checks
# while it builds its parser, before Keras is loaded (keras_gpt1/cli/startup.py).


def is_integer(value):
    """True for a Python or NumPy integer; False for a bool (which Python counts as an int)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_integer(name, value, low=None, high=None):
    """`value` as an `int` if it is an integer (a NumPy one too; a bool is not) in `[low, high]`
    (a bound of None: none on that side), else a ValueError that names `name` and the bounds.

    Example:
    ```python
    check_integer("k", np.int64(5), 1)          # 5
    check_integer("stride", 512, 1, 511)        # ValueError: `stride` must be an integer in [1, 511]
    check_integer("seed", True)                 # ValueError: `seed` must be an integer
    ```
    """
    integer = is_integer(value)
    too_low = integer and low is not None and value < low
    too_high = integer and high is not None and value > high
    if not integer or too_low or too_high:
        if low is not None and high is not None:
            bounds = f" in [{low}, {high}]"
        elif low is not None:
            bounds = f" >= {low}"
        elif high is not None:
            bounds = f" <= {high}"
        else:
            bounds = ""
        raise ValueError(f"`{name}` must be an integer{bounds}; got {value!r}.")
    return int(value)


def check_number(name, value, low=None, high=None, low_open=False, high_open=False):
    """`value` as a finite `float` in the given range, else a ValueError naming `name`: NaN and
    infinity (`learning_rate=inf`) are refused, as are bools and strings.

    Example:
    ```python
    check_number("learning_rate", 1e-3, 0, low_open=True)     # 0.001
    check_number("learning_rate", float("inf"), 0, low_open=True)  # ValueError
    ```
    """
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = number and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low}")
        if high is not None:
            bounds.append(f"{'<' if high_open else '<='} {high}")
        where = f" {' and '.join(bounds)}" if bounds else ""
        raise ValueError(f"`{name}` must be a finite number{where}; got {value!r}.")
    return float(value)


INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def as_int32_ids(values, name="`token_ids`", vocabulary_size=None):
    """`values` (a list, a NumPy array of any integer dtype, a backend tensor) as an int32 array,
    checked *before* the cast: an id that int32 cannot hold would otherwise wrap around silently
    (2**32 + 5 becomes 5). With `vocabulary_size`, ids must also lie in `[0, vocabulary_size)`.

    Example:
    ```python
    as_int32_ids([5, 6, 7])                       # array([5, 6, 7], dtype=int32)
    as_int32_ids(np.array([5, 2**32 + 5]))        # ValueError: `token_ids` contains id 4294967301 at index (1,) ...
    ```
    """
    if not isinstance(values, (np.ndarray, list, tuple)) and hasattr(values, "shape"):
        import keras

        values = keras.ops.convert_to_numpy(values)
    try:
        array = np.asarray(values)
    except (OverflowError, ValueError) as e:
        raise ValueError(f"{name} must be integer token ids; got {values!r} ({e}).") from None
    if array.dtype == object:  # Python ints past int64 (or mixed types) give an object array.
        flat = array.reshape(-1)
        for i, value in enumerate(flat):
            if not is_integer(value):
                raise ValueError(f"{name} must contain integer token ids; got {value!r}.")
        array = np.array([int(v) for v in flat], dtype=object).reshape(array.shape)
    elif array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must contain integer token ids; got dtype {array.dtype}.")
    if array.size:
        low, high = int(array.min()), int(array.max())
        limit = INT32_MAX + 1 if vocabulary_size is None else int(vocabulary_size)
        floor = INT32_MIN if vocabulary_size is None else 0
        if low < floor or high >= limit:
            bad = low if low < floor else high
            where = tuple(int(i) for i in np.argwhere(array == bad)[0])
            bounds = f"the vocabulary [0, {limit})" if vocabulary_size is not None else "the int32 range of token ids"
            raise ValueError(f"{name} contains id {bad} at index {where}, outside {bounds}.")
    return array.astype("int32")


def check_boolean(name, value):
    """`value` if it is a bool, else a ValueError naming `name`: `"yes"`, `1` or `"false"` in a
    JSON file would otherwise turn into a bool by truthiness (`bool("false")` is True).

    Example:
    ```python
    check_boolean("rematerialize", False)     # False
    check_boolean("rematerialize", "yes")     # ValueError: `rematerialize` must be true or false
    ```
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be true or false (a JSON boolean); got {value!r}.")
    return bool(value)


def check_choice(name, value, allowed):
    """`value` if it is one of `allowed`, else a ValueError naming `name` and the allowed values.

    Example:
    ```python
    check_choice("standardize", "klingon", ("bert", "original"))   # ValueError: ... one of 'bert', 'original'
    ```
    """
    if isinstance(value, bool) or value not in allowed:
        raise ValueError(f"`{name}` must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}.")
    return value


def check_dtype_policy(name, value):
    """`value` if Keras reads it as a dtype policy (a name such as `"float32"` or
    `"mixed_bfloat16"`, a serialized `DTypePolicy`/`DTypePolicyMap`, or None), else a ValueError
    naming `name`, instead of a failure inside layer construction.

    Example:
    ```python
    check_dtype_policy("dtype", "float7")   # ValueError: `dtype` must be a Keras dtype policy ...
    ```
    """
    if value is None:
        return value
    import keras

    try:
        if isinstance(value, dict) and "DTypePolicyMap" in str(value.get("class_name")):
            keras.saving.deserialize_keras_object(value)
        else:
            keras.dtype_policies.get(value)
    except Exception:  # Keras raises ValueError, TypeError or KeyError by form
        shown = value.get("config", {}).get("name", value) if isinstance(value, dict) else value
        raise ValueError(
            f"`{name}` must be a Keras dtype policy such as 'float32', 'bfloat16' or 'mixed_bfloat16'; got {shown!r}."
        ) from None
    return value


_PRESET_INTEGER_KEYS = (
    "vocabulary_size",
    "num_layers",
    "num_heads",
    "hidden_dim",
    "intermediate_dim",
    "max_sequence_length",
)
# Constructor arguments of `GPT1Backbone` without a default: a config missing one cannot be built.
_PRESET_REQUIRED_KEYS = ("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim")


def check_preset_config(config, path):
    """Raises a ValueError naming the file `path` and the key if a preset's backbone `config`
    lacks a required key or holds a wrong type or value (a string where a number belongs, a zero
    size, a dropout of 2, `"rematerialize": "yes"`, `"dtype": "float7"`), instead of a
    `TypeError` or a misleading message from deep inside layer construction."""
    try:
        missing = [key for key in _PRESET_REQUIRED_KEYS if key not in config]
        if missing:
            raise ValueError(
                f"the required key `{missing[0]}` is missing (a GPT1Backbone config needs {_PRESET_REQUIRED_KEYS})."
            )
        for key in _PRESET_INTEGER_KEYS:
            if key in config:
                check_integer(key, config[key], 1)
        if "dropout" in config:
            check_number("dropout", config["dropout"], 0, 1, high_open=True)
        for key in ("rematerialize", "fused_attention", "fused_qkv_matmul"):
            if key in config:
                check_boolean(key, config[key])
        if "dtype" in config:
            check_dtype_policy("dtype", config["dtype"])
        if all(k in config for k in ("hidden_dim", "num_heads")) and config["hidden_dim"] % config["num_heads"]:
            raise ValueError(
                f"`hidden_dim` ({config['hidden_dim']}) must be divisible by `num_heads` ({config['num_heads']})."
            )
    except ValueError as e:
        # Keys of a file in JSON's quotes: the command line turns `name` into a flag name.
        raise ValueError(f"Corrupt preset config {path!r}: {as_json_keys(e)}") from None
    return config


def as_json_keys(error):
    """The message of `error` with each backticked name in JSON's double quotes, for errors about
    a key of a JSON file: the command line reads `` `dtype` `` as its flag `--dtype`."""
    return str(error).replace("`", '"')


def read_weight_shapes(h5_path):
    """`{dataset path: shape}` of every tensor in the Keras weights file `h5_path`, read from the
    file's metadata alone: no tensor is loaded, so a file of any size costs milliseconds.

    Example:
    ```python
    read_weight_shapes("model.weights.h5")["layers/gpt1_embedding/vars/0"]   # (512, 768)
    ```
    """
    import h5py

    found = {}
    with h5py.File(h5_path, "r") as f:
        f.visititems(
            lambda name, obj: found.update({name: tuple(obj.shape)}) if isinstance(obj, h5py.Dataset) else None
        )
    return found


def check_weight_shapes(h5_path, weights, config_path):
    """Raises a ValueError if the tensors of the weights file `h5_path` differ in number or shape
    from `weights` (the model its config describes: variables, or their shapes as tuples, which
    need no model to be built), naming both files and a mismatching shape."""
    found = list(read_weight_shapes(h5_path).values())
    expected = [tuple(int(d) for d in getattr(w, "shape", w)) for w in weights]
    if len(found) != len(expected):
        raise ValueError(
            f"it holds {len(found)} tensors but the config in {config_path} describes a model with {len(expected)}"
        )
    missing = sorted(set(expected) - set(found)) or sorted(set(found) - set(expected))
    if sorted(found) != sorted(expected):
        raise ValueError(
            f"its tensor shapes do not match the model {config_path} describes (e.g. {missing[0] if missing else '?'}): "
            "was config.json edited, or copied from another model?"
        )


def available_memory_bytes():
    """The memory a new allocation can take now (Linux `MemAvailable`), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(needed_bytes, what, available=None):
    """Raises a ValueError naming `what` if `needed_bytes` exceed the memory available now, so a
    config that asks for a 4 TB embedding is refused in a line, not by a raw `ResourceExhaustedError`
    (or the kernel's OOM killer) after minutes of swapping. (A ValueError, not a MemoryError: the
    fault is a value someone wrote, and nothing was allocated.)

    Example:
    ```python
    check_fits_in_memory(4 * 10**12, "The backbone config.json describes")   # ValueError: ... about 4,000.0 GB
    ```
    """
    available = available_memory_bytes() if available is None else available
    if available is not None and needed_bytes > available:
        raise ValueError(
            f"{what} needs about {needed_bytes / 1e9:,.1f} GB for its weights alone, and only "
            f"{available / 1e9:,.1f} GB of memory is available: check its sizes."
        )


def is_concrete(x):
    """True if `x` holds real values we can inspect now (not a tracer or symbolic tensor)."""
    if isinstance(x, (np.ndarray, np.generic, int, list, tuple)):
        return True
    import keras

    if isinstance(x, keras.KerasTensor):
        return False
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly() and hasattr(x, "numpy")
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "torch":
        import torch

        if torch.compiler.is_compiling():
            return False
        return not (isinstance(x, torch.Tensor) and x.is_meta)
    return False


def _static_length(token_ids):
    shape = getattr(token_ids, "shape", None)
    if shape is None or len(shape) < 2:
        return None
    length = shape[1]
    return length if isinstance(length, int) else None


def check_token_ids(token_ids, vocabulary_size, max_sequence_length, start_index=0, name="token_ids"):
    """Raises `ValueError` for ids outside `[0, vocabulary_size)` or a too-long sequence."""
    import keras

    shape = getattr(token_ids, "shape", None)
    if shape is not None and len(shape) != 2:
        raise ValueError(f"`{name}` must have shape [batch, length]; got shape {tuple(shape)}.")
    length = _static_length(token_ids)
    start = start_index if isinstance(start_index, int) else None
    if start is None and is_concrete(start_index):
        start = int(keras.ops.convert_to_numpy(start_index))
    if length is not None and start is not None and start + length > max_sequence_length:
        raise ValueError(
            f"`{name}` has length {length}"
            + (f" starting at position {start}" if start else "")
            + f", longer than the model's context of {max_sequence_length} positions. "
            "Truncate the input (e.g. `GPT1Tokenizer(sequence_length=...)`)."
        )
    if not is_concrete(token_ids):
        return
    values = keras.ops.convert_to_numpy(token_ids)
    if values.size == 0:
        return
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"`{name}` must be integers; got dtype {values.dtype}.")
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= vocabulary_size:
        bad = low if low < 0 else high
        where = tuple(int(i) for i in np.argwhere(values == bad)[0])
        raise ValueError(
            f"`{name}` contains id {bad} at index {where}, outside the vocabulary [0, {vocabulary_size}). "
            "Was the input tokenized with a different vocabulary?"
        )


def _holds_wide_host_ids(values):
    """True for host data (lists, NumPy arrays) or any tensor whose integers are wider than int32."""
    if isinstance(values, (list, tuple, np.ndarray, np.generic)):
        return True
    return any(w in str(getattr(values, "dtype", "")) for w in ("int64", "uint"))


class CheckedInputsMixin:
    """Validates array inputs of `fit`/`evaluate`/`predict` before they enter compiled code,
    where ids are symbolic and the per-call check in the embedding layer cannot see them.

    Models using it define `_check_inputs(x)`; datasets and generators pass through unchecked.
    """

    def _check_array_inputs(self, x):
        # Only arrays: on JAX/PyTorch `is_concrete` is also true of a tf.data.Dataset or generator.
        if isinstance(x, dict) or (is_concrete(x) and (hasattr(x, "shape") or isinstance(x, (list, tuple)))):
            self._check_inputs(x)

    def __call__(self, *args, **kwargs):
        # A direct call converts NumPy/list inputs to the model's int32 first, wrapping ids that
        # int32 cannot hold; check those (host data: cheap, no device sync) before it does.
        x = args[0] if args else kwargs.get("inputs")
        if isinstance(x, dict) and _holds_wide_host_ids(x.get("token_ids")):
            self._check_inputs(x)
        return super().__call__(*args, **kwargs)

    def fit(self, x=None, *args, **kwargs):
        self._check_array_inputs(x)
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_array_inputs(x)
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_array_inputs(x)
        return super().predict(x, *args, **kwargs)
