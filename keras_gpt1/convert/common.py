"""Steps shared by the converters: vocabulary files, building the backbone, writing the preset."""

import os
import warnings

from keras_gpt1 import presets
from keras_gpt1.utils.files import ensure_writable_dir, require_file


# What a conversion writes into its output directory. With `overwrite`, every one of these files
# left by an earlier model goes first, so none of them (a tokenizer, a task head) outlives it.
PRESET_FILES = (
    presets.CONFIG_FILE,
    presets.WEIGHTS_FILE,
    presets.TASK_CONFIG_FILE,
    presets.TASK_WEIGHTS_FILE,
    presets.TOKENIZER_CONFIG_FILE,
    os.path.join(presets.TOKENIZER_ASSETS_DIR, presets.VOCAB_FILE),
    os.path.join(presets.TOKENIZER_ASSETS_DIR, presets.MERGES_FILE),
)


def check_output(source, output, overwrite):
    """Raises unless `output` may receive a converted model (called before any work).

    Both layouts name their config `config.json`, so writing into the source would clobber it;
    an existing model is replaced only on request.
    """
    source, output = os.fspath(source), os.fspath(output)
    if os.path.abspath(source) == os.path.abspath(output):
        raise ValueError(f"The output directory {output!r} is the input directory; pick a new one.")
    if os.path.isfile(os.path.join(output, "config.json")) and not overwrite:
        raise ValueError(
            f"The output directory {output!r} already holds a model (config.json). Pick another "
            "directory, or pass `overwrite=True` to replace it."
        )
    ensure_writable_dir(output)


def clear_output(output, owned_files):
    """Removes the files an earlier conversion left in `output` (called once the new model is
    ready to be written), so that no stale tokenizer or task head outlives the weights."""
    for name in owned_files:
        path = os.path.join(output, name)
        if os.path.isfile(path):
            os.remove(path)


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
    """A `GPT1Backbone` for `config` holding `weights` (checked tensor by tensor first)."""
    from keras_gpt1.convert.mapping import check_weights, expected_shapes, weights_to_backbone
    from keras_gpt1.models import GPT1Backbone

    # Check before building: a 117M backbone takes seconds to initialise.
    check_weights(weights, expected_shapes(config), source, display)
    backbone = GPT1Backbone(**config)
    return weights_to_backbone(weights, backbone, source, display)


def save_preset(backbone, tokenizer, preset_dir):
    """Writes the converted backbone (and tokenizer, if any) as a preset directory, replacing
    the files of an earlier preset there."""
    clear_output(preset_dir, PRESET_FILES)
    backbone.save_to_preset(preset_dir)
    if tokenizer is not None:
        tokenizer.save_to_preset(preset_dir)


def preset_vocabulary_files(preset_dir):
    """Paths of a preset's tokenizer assets `(vocab.json, merges.txt)`, or `None` without a tokenizer."""
    if not os.path.isfile(os.path.join(preset_dir, presets.TOKENIZER_CONFIG_FILE)):
        return None
    assets = os.path.join(preset_dir, presets.TOKENIZER_ASSETS_DIR)
    return (
        require_file(os.path.join(assets, presets.VOCAB_FILE), "tokenizer vocabulary"),
        require_file(os.path.join(assets, presets.MERGES_FILE), "tokenizer merges"),
    )
