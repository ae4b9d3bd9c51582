"""The decode engines, by name: what `generate_ids(engine=...)` chooses from.

Each engine is one module implementing the protocol of `engine.py`; it is listed here, in the
order `"auto"` tries them: the first engine that runs the model (`unsupported_reason` is None)
and builds is used, and `KerasEngine`, last, runs every model. To add an engine, write its
module the way `keras_engine.py` is written and add its class to `_BUILT_IN` (or, from outside
the library, call `register_engine`).

Example:
```python
make_engine(lm)                 # "auto": the PyTorch engine on PyTorch where it runs lm
make_engine(lm, "keras")        # the Keras layers, on any backend
```
"""

import warnings

from keras_gpt1.generation.engine import DecodeEngine, EngineUnavailable
from keras_gpt1.generation.keras_engine import KerasEngine
from keras_gpt1.generation.torch_engine import TorchEngine

_BUILT_IN = (TorchEngine, KerasEngine)
ENGINES = {engine.name: engine for engine in _BUILT_IN}


def register_engine(engine_class):
    """Adds a `DecodeEngine` subclass (its `name` must be new), tried by `"auto"` before the
    built-in engines; returns it.

    Example:
    ```python
    class MyEngine(KerasEngine):
        name = "mine"
    register_engine(MyEngine)
    generate_ids(lm, prompts, engine="mine")
    ```
    """
    if not (isinstance(engine_class, type) and issubclass(engine_class, DecodeEngine)):
        raise ValueError(f"`engine_class` must be a DecodeEngine subclass; got {engine_class!r}.")
    if not engine_class.name or engine_class.name == "auto" or engine_class.name in ENGINES:
        raise ValueError(f"An engine named {engine_class.name!r} is already registered (or the name is reserved).")
    ordered = {engine_class.name: engine_class, **ENGINES}  # first: "auto" tries it first
    ENGINES.clear()
    ENGINES.update(ordered)
    return engine_class


def engine_names():
    return ("auto", *ENGINES)


def make_engine(lm, engine="auto"):
    """The engine that makes `lm`'s model calls: a registered engine's name, `"auto"` (the first
    registered engine that runs the model; with a warning, the next one where building it
    fails), or a `DecodeEngine` instance, used as it is. A named engine that cannot run the
    model is a ValueError saying why."""
    if isinstance(engine, DecodeEngine):
        return engine
    if engine == "auto":
        for candidate in ENGINES.values():
            if not candidate.supports(lm):
                continue
            try:
                return candidate.build(lm)
            except EngineUnavailable as error:
                warnings.warn(f"The {candidate.name!r} engine is unavailable ({error}); trying the next engine.")
        raise ValueError("No registered decode engine runs this model.")
    if engine not in ENGINES:
        raise ValueError(f"Unknown engine {engine!r}; choose one of {', '.join(repr(n) for n in engine_names())}.")
    reason = ENGINES[engine].unsupported_reason(lm)
    try:
        if reason is None:
            return ENGINES[engine].build(lm)
    except EngineUnavailable as error:
        reason = str(error)
    raise ValueError(f"engine={engine!r} cannot run this model: {reason}. Use engine='keras'.")
