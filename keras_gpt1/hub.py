"""Pretrained weights by name: `"gpt1"` and `hf://owner/name` handles → a local preset directory.

`GPT1CausalLM.from_preset("gpt1")` loads OpenAI's GPT-1. The first call downloads the files it
needs from the Hugging Face repository `openai-community/openai-gpt` (about 480 MB, with
huggingface_hub's progress bars), converts them with `keras_gpt1.convert`, and caches the
converted preset; later calls read the cache without touching the network. Any
`OpenAIGPTLMHeadModel` repository loads the same way as `"hf://owner/name"`.

**Where things live.** Downloads go to huggingface_hub's own cache (`HF_HOME`, `HF_HUB_CACHE`);
they may be deleted once converted. Converted presets go to `$KERAS_GPT1_CACHE`, by default
`$HF_HOME/keras_gpt1` (`~/.cache/huggingface/keras_gpt1`), one directory per repository
(`openai-community--openai-gpt`). To move the cache, move the directory and point
`KERAS_GPT1_CACHE` at the new place; each entry is an ordinary preset directory, loadable by path.
A cached entry is never refreshed from the Hub: delete it to fetch again.

**Design.** `keras_gpt1.models.preset_io.resolve_preset`, the one door every `from_preset` passes,
calls `fetch_preset` for a name with published weights; this module sits in the models' layer
with the converter it calls, and imports huggingface_hub and the converter only when something
is fetched. When `keras_gpt1` is imported, it registers `"gpt1"` as a KerasHub built-in preset whose handle is that converted directory, read
on first use, so KerasHub's auto classes (`keras_hub.models.TextClassifier.from_preset("gpt1",
num_classes=2)`, `CausalLM`, `Backbone`, `Tokenizer`) load it too.

**Never half a preset.** A conversion writes into a temporary directory beside its entry and
renames it into place when complete, so an interrupted download or conversion leaves nothing
that loads; a file lock per entry lets one process convert while others wait for its result.

Example:
```python
from keras_gpt1.hub import fetch_preset
fetch_preset("openai-community/openai-gpt")   # the converted preset's directory
```
"""

import os
import shutil
import socket
import sys
import tempfile
import urllib.parse

from keras_gpt1 import presets
from keras_gpt1.models import preset_io
from keras_gpt1.utils.files import atomic_write_json, follow_umask, read_json

CACHE_ENV = "KERAS_GPT1_CACHE"
ARCHITECTURE_SUFFIX = ".architecture"
HF_CONFIG_FILE = "config.json"
# The files a conversion needs, by role; weights in the order `transformers` prefers them.
_CONFIG_AND_VOCABULARY = [HF_CONFIG_FILE, presets.VOCAB_FILE, presets.MERGES_FILE]
_SAFETENSORS = ["model.safetensors", "model.safetensors.index.json", "model-*.safetensors"]
_PYTORCH = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin"]


class PretrainedWeightsUnavailable(ConnectionError):
    """The Hub could not be reached (or is switched off) and nothing usable is cached."""


def cache_dir():
    """Where converted presets are cached: `$KERAS_GPT1_CACHE`, else `$HF_HOME/keras_gpt1`."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return os.path.expanduser(configured)
    from huggingface_hub import constants

    return os.path.join(constants.HF_HOME, "keras_gpt1")


def cached_preset_dir(repo_id):
    """The cache entry of a repository (it may not exist yet)."""
    return os.path.join(cache_dir(), repo_id.replace("/", "--"))


def _is_complete(preset_dir):
    # Entries appear only by renaming a finished conversion into place.
    return os.path.isfile(os.path.join(preset_dir, presets.CONFIG_FILE))


def fetch_preset(repo_id, load_weights=True):
    """The converted preset directory of the Hugging Face repository `repo_id`.

    Downloads and converts on the first call, then returns the cached entry. With
    `load_weights=False` only `config.json` is fetched, and the entry holds the architecture
    alone (unless the full preset is already cached, which is returned instead).

    Raises `PretrainedWeightsUnavailable` when the Hub is unreachable and nothing is cached,
    and `ValueError` for a repository that holds no GPT-1 checkpoint.
    """
    entry = cached_preset_dir(repo_id)
    if _is_complete(entry):
        return entry
    if not load_weights:
        return _fetch_architecture(repo_id, entry + ARCHITECTURE_SUFFIX)
    return _locked_build(entry, lambda tmp: _download_and_convert(repo_id, tmp))


def _locked_build(entry, build):
    """Runs `build(tmp_dir)` under the entry's lock and renames the result into `entry`."""
    from filelock import FileLock  # a dependency of huggingface_hub

    root = os.path.dirname(entry)
    os.makedirs(root, exist_ok=True)
    name = os.path.basename(entry)
    with FileLock(os.path.join(root, f".{name}.lock")):
        if _is_complete(entry):  # another process finished while this one waited
            return entry
        # Left by an interrupted run (no one else holds the lock): never loaded, now removed.
        for stale in os.listdir(root):
            if stale.startswith(f".tmp-{name}-"):
                shutil.rmtree(os.path.join(root, stale), ignore_errors=True)
        if os.path.isdir(entry):  # incomplete: written by something other than this module
            shutil.rmtree(entry)
        tmp = tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root)
        try:
            build(tmp)
            # `mkdtemp` makes a private 0700 directory; a cache entry is read like any preset,
            # perhaps by another user (a shared cache, a server), so it follows the umask.
            follow_umask(tmp)
            os.rename(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return entry


def hub_reachable(timeout=3.0):
    """Whether the Hugging Face Hub can be reached now.

    False when `HF_HUB_OFFLINE` is set (huggingface_hub would refuse to download anyway), else
    whether a TCP connection to the Hub's host (`HF_ENDPOINT`, by default huggingface.co) opens
    within `timeout` seconds. Code that can do without the Hub (the notebooks fall back to
    offline stand-ins) decides up front with this, at a cost of at most `timeout`, instead of
    starting a download and catching whatever error comes out of it. True is no promise: the
    Hub may still refuse a request (an unknown or gated repository, a server error).

    Example:
    ```python
    from keras_gpt1.hub import hub_reachable
    preset = "gpt1" if hub_reachable() else "gpt1_tiny"   # OpenAI's weights, or random ones offline
    ```
    """
    from huggingface_hub import constants

    if offline_by_setting():
        return False
    endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    if not endpoint.hostname:
        return False
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout):
            return True
    except OSError:  # no route, DNS failure, refused connection, timeout
        return False


def offline_by_setting():
    """Whether `HF_HUB_OFFLINE` switches the Hub off (huggingface_hub reads the variable once, at
    import; it may have been set since, so both are asked)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


# === Downloading ===


def _ways_out(repo_id):
    # The hint to unset HF_HUB_OFFLINE only where it is set: elsewhere it sends the user looking
    # for a setting they never made.
    connect = (
        "unset HF_HUB_OFFLINE and connect to the internet"
        if offline_by_setting()
        else "connect to the internet (there seems to be no network)"
    )
    return (
        f"Three ways out: (1) {connect}, then try again; (2) download the repository elsewhere "
        f"(https://huggingface.co/{repo_id}), convert the local copy with `keras-gpt1 convert --model "
        "DIR --output PRESET_DIR` and load PRESET_DIR, a local preset directory; (3) pass "
        "load_weights=False for the architecture with random weights."
    )


def _offline_reason():
    """Why the Hub is not asked, or None when it is reachable (then a file missing from a
    snapshot is missing from the repository itself, not only from the local cache)."""
    if offline_by_setting():
        return "HF_HUB_OFFLINE is set"
    if not hub_reachable():
        return "the Hugging Face Hub cannot be reached"
    return None


def _one_line(error):
    """`Type: message` of an exception on one line (huggingface_hub's span several)."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _snapshot(repo_id, patterns):
    """The local snapshot directory holding (at least) the repository's files matching `patterns`."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    # The errors are raised `from None`: huggingface_hub's chain of three or four tracebacks
    # adds nothing to the one line that names the cause, which the message keeps.
    try:
        return snapshot_download(repo_id, allow_patterns=patterns)
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise ValueError(
            f"hf://{repo_id}: no such model repository on the Hugging Face Hub (or it is private "
            f"or gated: log in with `hf auth login`). {_one_line(e)}"
        ) from None
    except Exception as e:  # offline, DNS, refused connection, timeout, server error...
        raise PretrainedWeightsUnavailable(
            f"Could not fetch hf://{repo_id} from the Hugging Face Hub, and it is not in the local "
            f"cache ({_one_line(e)}). {_ways_out(repo_id)}"
        ) from None


def _read_gpt_config(repo_id, snapshot):
    path = os.path.join(snapshot, HF_CONFIG_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"hf://{repo_id} has no {HF_CONFIG_FILE}: it is not a transformers model repository.")
    config = read_json(path, f"config of hf://{repo_id}")
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "openai-gpt":
        raise ValueError(
            f"hf://{repo_id} is not an OpenAI GPT model: its {HF_CONFIG_FILE} has model_type "
            f"{model_type!r}, and only 'openai-gpt' (OpenAIGPTLMHeadModel) checkpoints load here."
        )
    return config


def _has_any(snapshot, patterns):
    import fnmatch

    names = os.listdir(snapshot)
    return any(fnmatch.fnmatch(name, pattern) for name in names for pattern in patterns)


def _download_checkpoint(repo_id):
    """A local Hugging Face directory with config, vocabulary and weights of `repo_id`."""
    # config.json first: a repository of another kind fails before any weights are downloaded.
    _read_gpt_config(repo_id, _snapshot(repo_id, [HF_CONFIG_FILE]))
    snapshot = _snapshot(repo_id, _CONFIG_AND_VOCABULARY + _SAFETENSORS)
    if not _has_any(snapshot, _SAFETENSORS):
        snapshot = _snapshot(repo_id, _CONFIG_AND_VOCABULARY + _PYTORCH)
    if not _has_any(snapshot, _SAFETENSORS + _PYTORCH):
        reason = _offline_reason()
        if reason is not None:  # the snapshot is what the cache holds, not what the repository does
            raise PretrainedWeightsUnavailable(
                f"The weights file of hf://{repo_id} (model.safetensors, or pytorch_model.bin) is missing "
                f"from the local Hugging Face cache {snapshot!r}, which holds its {HF_CONFIG_FILE} only, "
                f"and {reason}. {_ways_out(repo_id)}"
            )
        raise ValueError(
            f"hf://{repo_id} has no weights this library reads: expected model.safetensors "
            "(or sharded model-*.safetensors) or pytorch_model.bin."
        )
    if not os.path.isfile(os.path.join(snapshot, presets.VOCAB_FILE)):
        snapshot = _snapshot(repo_id, _CONFIG_AND_VOCABULARY + _SAFETENSORS + _PYTORCH + ["tokenizer.json"])
    _check_cached_tokenizer(repo_id, snapshot)
    return snapshot


def _check_cached_tokenizer(repo_id, snapshot):
    """Refuses a snapshot served from the local cache without its tokenizer files: converted, it
    would be cached as a complete preset without a tokenizer, forever (an entry is never
    refreshed). Online, a repository without them is converted without a tokenizer, as it is."""
    names = (presets.VOCAB_FILE, presets.MERGES_FILE)
    missing = [name for name in names if not os.path.isfile(os.path.join(snapshot, name))]
    has_tokenizer_json = os.path.isfile(os.path.join(snapshot, "tokenizer.json"))
    if not missing or (len(missing) == len(names) and has_tokenizer_json):
        return
    reason = _offline_reason()
    if reason is None:
        return
    raise PretrainedWeightsUnavailable(
        f"The tokenizer of hf://{repo_id} is missing from the local Hugging Face cache {snapshot!r}: "
        f"no {' or '.join(missing)}, and {reason}. Nothing was converted or cached (a preset without its "
        f"tokenizer would stay in the cache as if complete). {_ways_out(repo_id)}"
    )


def _download_and_convert(repo_id, output):
    snapshot = _download_checkpoint(repo_id)
    from keras_gpt1.convert.hf import convert_hf_to_preset

    # stderr, like huggingface_hub's progress bars: stdout belongs to the command's own output.
    print(
        f"Converting hf://{repo_id} to a keras_gpt1 preset in {cached_preset_dir(repo_id)}", file=sys.stderr, flush=True
    )
    convert_hf_to_preset(snapshot, output, overwrite=True)


def _fetch_architecture(repo_id, entry):
    if _is_complete(entry):
        return entry

    def build(tmp):
        from keras_gpt1.convert.hf import backbone_config_from_hf_config

        snapshot = _snapshot(repo_id, [HF_CONFIG_FILE])
        hf_config = _read_gpt_config(repo_id, snapshot)
        config = backbone_config_from_hf_config(hf_config, f"hf://{repo_id}/{HF_CONFIG_FILE}")
        atomic_write_json(os.path.join(tmp, presets.CONFIG_FILE), preset_io.backbone_config_json(config))

    return _locked_build(entry, build)


class _FetchedWhenRead(dict):
    """A KerasHub built-in preset entry whose handle is the converted preset, fetched (and
    converted, once) only when KerasHub's loader first reads it."""

    def __init__(self, name, description):
        super().__init__(metadata={"description": description, "path": name})
        self._name = name

    def __getitem__(self, key):
        if key == "kaggle_handle":
            return os.fspath(preset_io.resolve_preset(self._name))
        return super().__getitem__(key)


def _register_with_keras_hub():
    """Names with published weights (`"gpt1"`) become KerasHub built-in presets, so that
    KerasHub's own auto classes take them: `keras_hub.models.TextClassifier.from_preset("gpt1",
    num_classes=2)` is a `GPT1TextClassifier` on OpenAI's weights, `GPT1Backbone.presets` lists
    them. Nothing is fetched until a preset is loaded."""
    from keras_hub.src.utils.preset_utils import register_presets

    from keras_gpt1.models.backbone import GPT1Backbone

    entries = {
        name: _FetchedWhenRead(name, builtin["description"])
        for name, builtin in presets.BUILTIN_PRESETS.items()
        if "weights" in builtin
    }
    register_presets(entries, GPT1Backbone)


_register_with_keras_hub()
