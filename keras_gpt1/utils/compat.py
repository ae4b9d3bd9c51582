"""The oldest Keras and keras-hub keras_gpt1 runs on, checked at import, and what differs there.

keras_gpt1 installs into runtimes that already have Keras and KerasHub (Colab, Kaggle), so its
floors are those runtimes' versions rather than the newest release (pyproject.toml; the Colab
runtime's exact set is constraints-colab.txt, which CI tests). An older Keras or keras-hub would
fail somewhere deep inside with an AttributeError or ImportError, so `check_versions` runs when
`keras_gpt1` is imported -- before anything imports keras_hub -- and names the package, the version
found and the version needed. It reads versions from the installed packages' metadata, which
imports nothing.

What a supported version lacks is adapted here, in one place, instead of raising a floor:

- Grain pipelines (`in_grain_data_pipeline`, `convert_preprocessing_outputs_grain`): older
  keras-hub has none, so a tokenizer is never inside one there, and the stand-ins say so and pass
  outputs through.
- `TF_WORKFLOW`: newer keras-hub runs its preprocessing layers in plain Python outside tf.data
  unless a layer is built with `_allow_python_workflow=False`; older keras-hub always runs them
  with TensorFlow and refuses the argument. `StartEndPacker(..., **TF_WORKFLOW)` asks for the
  TensorFlow path on both.
- `save_task_to_preset`: keras-hub 0.26's saver calls `save_preprocessor(None)` for a task without
  a preprocessor and fails inside; the saver used here skips it, as newer keras-hub does.
"""

import importlib.metadata

# The floors of pyproject.toml's `dependencies` (tests/test_compat.py keeps the two equal).
MINIMUM_VERSIONS = {"keras": "3.13.2", "keras-hub": "0.26.0"}


def _release(version):
    """`version`'s release numbers as a tuple, `(3, 13, 2)` for "3.13.2" or "3.13.2rc1"; a
    pre-release or dev build counts as its release, which is what its features are closest to."""
    numbers = []
    for part in version.split("+")[0].split("."):
        digits = ""
        for character in part:
            if not character.isdigit():
                break
            digits += character
        if not digits:
            break
        numbers.append(int(digits))
        if len(digits) < len(part):  # "2rc1": the release ends here
            break
    return tuple(numbers)


def check_versions(installed=None):
    """Raise one ImportError naming each package older than keras_gpt1 needs.

    `installed` maps package names to versions (for tests); by default they come from the
    environment's package metadata. A package whose metadata is missing (a source checkout on
    `PYTHONPATH`) is not checked: its import then decides.

    >>> check_versions({"keras": "3.15.1", "keras-hub": "0.32.0"})  # nothing to say
    """
    problems = []
    for name, needed in MINIMUM_VERSIONS.items():
        if installed is not None:
            found = installed.get(name)
        else:
            try:
                found = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                found = None
        if found is not None and _release(found) < _release(needed):
            problems.append(f"{name} {found} is installed and keras_gpt1 needs {name}>={needed}")
    if problems:
        upgrade = " ".join(f"'{name}>={MINIMUM_VERSIONS[name]}'" for name in MINIMUM_VERSIONS)
        raise ImportError(f"{'; '.join(problems)}. Install newer ones: pip install {upgrade}")


check_versions()

# Below this line keras_hub may be imported: the versions are known to be supported.
from keras_hub.src.layers.preprocessing.preprocessing_layer import PreprocessingLayer  # noqa: E402
from keras_hub.src.utils import preset_utils as _preset_utils  # noqa: E402
from keras_hub.src.utils import tensor_utils as _tensor_utils  # noqa: E402


def _never_in_grain_pipeline():
    return False


def _unchanged(outputs):
    return outputs


in_grain_data_pipeline = getattr(_tensor_utils, "in_grain_data_pipeline", _never_in_grain_pipeline)
convert_preprocessing_outputs_grain = getattr(_tensor_utils, "convert_preprocessing_outputs_grain", _unchanged)

TF_WORKFLOW = {"_allow_python_workflow": False} if hasattr(PreprocessingLayer, "_use_tf_workflow") else {}


def save_task_to_preset(task, preset_dir, max_shard_size=10):
    """KerasHub's `Task.save_to_preset`, also for a task whose preprocessor is None."""
    saver = _preset_utils.get_preset_saver(preset_dir)
    save_preprocessor = saver.save_preprocessor
    saver.save_preprocessor = lambda preprocessor: None if preprocessor is None else save_preprocessor(preprocessor)
    saver.save_task(task, max_shard_size=max_shard_size)
