"""Steps shared by the converters: vocabulary files, building the backbone, writing the preset."""

import os
import warnings

import keras
import numpy as np

from keras_gpt1 import presets
from keras_gpt1.utils import artifacts
from keras_gpt1.utils.files import check_writable_dir, estimated_weights_file_bytes, replace_in_dir, require_file
from keras_gpt1.utils.locks import holding_output


def holding_output_folder(parameter):
    """Decorates a converter to run holding the lock of its output folder (the argument named
    `parameter`) from its first check to its last write: a second writer is refused at once,
    naming this one (`keras_gpt1.utils.locks`). An output that is a file or cannot be written is
    named before anything is created."""
    return holding_output(parameter, "convert", before=check_writable_dir)


def check_output(source, output, overwrite):
    """Raises unless `output` may receive a converted model (called before any work).

    Both layouts name their config `config.json`, so writing into the source would clobber it;
    an existing model of any kind (a preset, a fine-tuned model, a pretraining run, a Hugging Face
    model, a tokenizer) is replaced only on request, and then as a whole; SavedModel exports never.
    """
    source, output = os.fspath(source), os.fspath(output)
    if os.path.abspath(source) == os.path.abspath(output):
        raise ValueError(f"The output directory {output!r} is the input directory; pick a new one.")
    # Whether it can be written is checked before the lock (`holding_output_folder`).
    artifacts.check_output_artifact(output, (), "`overwrite=True`", overwrite, what="The output directory")


def weight_bytes(backbone):
    """About how many bytes the backbone's preset takes on disk (a little over): checked against
    the free space before anything is written, since h5py crashes the process when the disk
    fills while it writes, and named in a full disk's message."""
    return estimated_weights_file_bytes(backbone.weights)


def read_vocabulary_files(directory, vocab_name, merges_name, read):
    """`(vocabulary, merges)` from a checkpoint directory with `read(vocab_path, merges_path)` (one
    of `keras_gpt1.tokenizers.vocab_files`' readers), or `None` when it has neither file.

    Having only one of the two is an error: the pair defines the tokenizer.
    """
    vocab_path = os.path.join(directory, vocab_name)
    merges_path = os.path.join(directory, merges_name)
    has_vocab, has_merges = os.path.isfile(vocab_path), os.path.isfile(merges_path)
    if not has_vocab and not has_merges:
        return None
    if has_vocab != has_merges:
        present, absent = (vocab_path, merges_path) if has_vocab else (merges_path, vocab_path)
        raise FileNotFoundError(
            f"Found {present!r} but not {absent!r}: a BPE tokenizer needs both files "
            "(remove the other one to convert the weights alone)."
        )
    return read(vocab_path, merges_path)


def build_tokenizer(vocabulary, merges, num_token_rows, source, **kwargs):
    """A `GPT1Tokenizer` from a checkpoint's vocabulary, checked against the embedding rows.

    The tokenizer appends GPT-1's three fine-tuning tokens after the base vocabulary; a
    pretrained checkpoint has no rows for them yet (fine-tuning adds them), a fine-tuned one does.
    `GPT1Tokenizer` needs TensorFlow, imported only here.
    """
    if len(vocabulary) > num_token_rows:
        raise ValueError(
            f"The vocabulary in {source} has {len(vocabulary)} tokens, but the token embedding has "
            f"only {num_token_rows} rows: the vocabulary files do not belong to these weights."
        )
    from keras_gpt1.tokenizers import GPT1Tokenizer

    tokenizer = GPT1Tokenizer(vocabulary=vocabulary, merges=merges, **kwargs)
    if tokenizer.vocabulary_size() < num_token_rows:
        warnings.warn(
            f"The tokenizer from {source} has {tokenizer.vocabulary_size()} tokens (special tokens "
            f"included) but the token embedding has {num_token_rows} rows: the last "
            f"{num_token_rows - tokenizer.vocabulary_size()} rows have no token.",
            stacklevel=3,
        )
    return tokenizer


def build_backbone(config, weights, source, display=None):
    """A `GPT1Backbone` for `config` holding `weights` (checked tensor by tensor first).

    Each variable is created holding its checkpoint tensor, read as the variable is created and
    then dropped (see `lazy.py`), instead of being created as zeros and assigned: on TensorFlow
    with its oneDNN optimisations (the x86 default), every buffer an assignment frees stays in
    TensorFlow's allocator pool, about half a copy of the weights more at the peak. Inside a
    `StatelessScope`, Keras declares a model's variables without allocating them, and allocates
    each from its initializer when the scope ends; each initializer is swapped for one that
    returns the variable's tensor. `_initializer` is private to Keras, so the result is
    checked: if any variable was not created from its tensor (a Keras that allocates at once,
    as zeros here, not random draws), the weights are assigned instead (`weights_to_backbone`).
    """
    from keras_gpt1.convert.mapping import backbone_variables, check_weights, expected_shapes, weights_to_backbone
    from keras_gpt1.layers import without_random_init
    from keras_gpt1.models import GPT1Backbone

    check_weights(weights, expected_shapes(config), source, display)
    created, failures = set(), []

    def initializer(name):
        def initial_value(shape, dtype=None):
            # A tensor that fails to read must not raise here, at the scope's end: Keras would
            # leave the variables after it half-registered, to be created at the next scope's
            # end anywhere in the process. The error is raised once every variable exists.
            value = None
            if not failures:
                try:
                    value = np.asarray(weights[name], dtype="float32")
                    created.add(name)
                except Exception as e:
                    failures.append(e)
            if value is None:
                value = np.zeros(shape, "float32")
            return value if dtype in (None, "float32") else keras.ops.cast(value, dtype)

        return initial_value

    with without_random_init(), keras.StatelessScope():
        backbone = GPT1Backbone(**config)
        variables = backbone_variables(backbone)
        for name, variable in variables.items():
            variable._initializer = initializer(name)
    if failures:
        raise failures[0]
    if len(created) < len(variables):
        return weights_to_backbone(weights, backbone, source, display)
    return backbone


def save_preset(backbone, tokenizer, preset_dir):
    """Writes the converted backbone (and tokenizer, if any) as a preset directory.

    An earlier model there is replaced only once the new one is written and checked: every file
    of it (a tokenizer, a task head, a run's checkpoints: `artifacts.MODEL_ENTRIES`) goes, and
    nothing of it is lost if writing fails (see `replace_in_dir`). Other files in the directory stay.
    """
    from keras_gpt1.utils.checks import check_weight_shapes

    with replace_in_dir(preset_dir, artifacts.MODEL_ENTRIES, "preset", weight_bytes(backbone)) as staging:
        backbone.save_to_preset(staging)
        if tokenizer is not None:
            tokenizer.save_to_preset(staging)
        weights_path = require_file(os.path.join(staging, presets.WEIGHTS_FILE), "preset weights")
        check_weight_shapes(weights_path, backbone.weights, os.path.join(preset_dir, presets.CONFIG_FILE))


def preset_vocabulary_files(preset_dir):
    """Paths of a preset's tokenizer assets `(vocab.json, merges.txt)`, or `None` without a tokenizer."""
    if not os.path.isfile(os.path.join(preset_dir, presets.TOKENIZER_CONFIG_FILE)):
        return None
    assets = os.path.join(preset_dir, presets.TOKENIZER_ASSETS_DIR)
    return (
        require_file(os.path.join(assets, presets.VOCAB_FILE), "tokenizer vocabulary"),
        require_file(os.path.join(assets, presets.MERGES_FILE), "tokenizer merges"),
    )
