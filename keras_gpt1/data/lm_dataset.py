"""Language-model pretraining data: text files to packed, shuffled batches (tf.data).

**TensorFlow-only module** (tf.data and the in-graph tokenizer); the batches it yields are plain
arrays that `model.fit` consumes on any Keras backend.

The pipeline, streamed end to end (the corpus is never held in memory):

1. Files: plain text (one document or paragraph a line), `.jsonl` (one JSON object a line, text
   under `text_field`), either optionally `.gz`. Globs are expanded and sorted; files are read in
   that order, lines in file order.
2. Lines are tokenized in chunks by the tokenizer in the graph and concatenated into one token
   stream (no separator token: GPT-1 had none, and BooksCorpus books were simply concatenated).
3. The stream is cut into consecutive, non-overlapping windows of `sequence_length + 1` tokens:
   window `i` holds stream tokens `[i*(L+1), (i+1)*(L+1))`. Every token lands in exactly one
   window, except the last `num_tokens % (L+1)` tokens, which are dropped (the only remainder).
   A window gives `inputs = w[:-1]`, `labels = w[1:]`.
4. Split: window `i` is held out for validation when `i % period == period - 1`, with
   `period = round(1 / validation_fraction)`. The split depends only on the corpus and the
   sequence length, not on the seed. Validation batches keep corpus order; a capped split is
   read once and kept in memory, and under a `keras.distribution` the last batch is padded
   with zero-weight rows to a full batch (see `validation_dataset`).
5. Training order: an infinite sequence of data epochs. Epoch `e` shuffles the training windows
   with stateless randomness seeded by `(seed, e)`, in blocks of `shuffle_block` windows (each
   block a uniform permutation; a corpus of at most one block is fully shuffled every epoch),
   then the epochs are concatenated and batched (a batch may span two epochs).
   The order depends only on the seed (not on TensorFlow's global seed), so batch `n` of a run
   is always the same batch: `train_dataset(start_batch=n)` resumes exactly there, re-reading
   at most one data epoch of text to get there.

Example:
```python
from keras_gpt1.data import LMDataset
data = LMDataset(["books/*.txt"], tokenizer, sequence_length=512, batch_size=8, seed=0)
print(data.count())              # one streaming pass: tokens, windows, split sizes
model.fit(data.train_dataset(), steps_per_epoch=1000, epochs=10,
          validation_data=data.validation_dataset())
```
"""

import math

import numpy as np
import tensorflow as tf

from keras_gpt1.data.text_files import (  # noqa: F401  (the corpus readers, re-exported here)
    MAX_LINE_CHARS,
    WORDS_PER_PIECE,
    _json_text,
    check_corpus_file,
    is_jsonl,
    iter_texts,
    resolve_corpus_files,
    write_plain_text,
)

# Lines tokenized per call: large enough to amortise the tokenizer's per-call cost.
LINES_PER_CHUNK = 256
DEFAULT_SHUFFLE_BLOCK = 8192


def keras_distribution_active():
    """Whether a `keras.distribution` (JAX data or model parallelism) is set: batches get split."""
    import keras

    return keras.distribution.distribution() is not None


def data_parallel_size():
    """How many ways the active `keras.distribution` splits each batch (1 without one)."""
    import keras

    distribution = keras.distribution.distribution()
    if distribution is None:
        return 1
    mesh = distribution.device_mesh
    name = getattr(distribution, "batch_dim_name", None) or mesh.axis_names[0]
    return int(mesh.shape[list(mesh.axis_names).index(name)])


def check_data_parallel_batch(batch_size, what="batch size"):
    """Raises `ValueError` unless `batch_size` splits evenly over the active distribution's data axis."""
    replicas = data_parallel_size()
    if batch_size % replicas:
        raise ValueError(
            f"The {what} ({batch_size}) must be divisible by the {replicas} data-parallel devices "
            "of the active keras.distribution (each gets an equal slice of every batch)."
        )


def pad_batch(batch, batch_size):
    """Pads every tensor of the nest `batch` with zero rows to `batch_size` rows (in a tf graph).

    For a batched `tf.data` pipeline whose last batch may be partial: a data-parallel
    `keras.distribution` (JAX) can only split batches whose size is a multiple of its data axis.
    Returns `(padded, real)`, `real` a bool `[batch_size]` vector that is True on the batch's own
    rows; callers give the others a sample weight of 0 (or drop their predictions).

    Example:
    ```python
    dataset = dataset.batch(8).map(lambda x, y: pad_batch((x, y), 8))
    ```
    """
    flat = [tf.convert_to_tensor(t) for t in tf.nest.flatten(batch)]
    rows = tf.shape(flat[0])[0]
    padded = []
    for t in flat:
        rest = t.shape[1:].as_list()
        t = tf.pad(t, [[0, batch_size - rows]] + [[0, 0]] * len(rest))
        t.set_shape([batch_size] + rest)
        padded.append(t)
    return tf.nest.pack_sequence_as(batch, padded), tf.range(batch_size) < rows


# === Files: keras_gpt1.data.text_files (shared with the tokenizer trainer, no TensorFlow) ===


# === Tokenization ===


def split_long_lines(lines):
    """A batch of lines with each line longer than `MAX_LINE_CHARS` bytes split at whitespace into
    pieces of `WORDS_PER_PIECE` words (in a tf graph; the tokens are unchanged). Batches without
    such a line pass through untouched."""

    def split():
        pattern = r"((?:\S+[^\S\n]+){%d})" % WORDS_PER_PIECE
        return tf.strings.split(tf.strings.regex_replace(lines, pattern, "\\1\n"), "\n").flat_values

    too_long = tf.reduce_any(tf.strings.length(lines) > MAX_LINE_CHARS)
    return tf.cond(too_long, split, lambda: lines)


def _tokenize(tokenizer, strings):
    """Flat int32 ids of a batch of strings, in order, from a tokenizer giving ragged ids."""
    ids = tokenizer.tokenize(strings) if hasattr(tokenizer, "tokenize") else tokenizer(strings)
    if isinstance(ids, tf.RaggedTensor):
        ids = ids.flat_values
    elif ids.shape.rank != 1:
        raise ValueError(
            "The tokenizer must return ragged ids (no `sequence_length`) to pack a corpus; "
            f"it returned a dense tensor of shape {ids.shape}."
        )
    return tf.cast(ids, tf.int32)


class LMDataset:
    """Packed next-token batches from text files (see the module docstring for the exact rules).

    Args:
        files: a path, glob, or list of them (`.txt`, `.jsonl`, optionally `.gz`).
        tokenizer: maps a batch of strings to ragged ids in TensorFlow (`GPT1Tokenizer`).
        sequence_length: tokens per training example (windows hold one more, for the labels).
        batch_size: windows per batch.
        seed: fixes the training order.
        validation_fraction: share of windows held out (0 for none).
        text_field: the text key of `.jsonl` records.
        shuffle_block: windows shuffled together (memory: `shuffle_block * (L+1) * 4` bytes).
        check_files: read each file once up front to report missing, empty, non-UTF-8 or
            malformed files before training.

    Example:
    ```python
    data = LMDataset("corpus.txt", tokenizer, sequence_length=128, batch_size=32)
    x, labels, weights = next(iter(data.train_dataset()))
    x["token_ids"].shape, labels.shape          # (32, 128), (32, 128)
    ```
    """

    def __init__(
        self,
        files,
        tokenizer,
        sequence_length,
        batch_size,
        seed=0,
        validation_fraction=0.05,
        text_field="text",
        shuffle_block=DEFAULT_SHUFFLE_BLOCK,
        check_files=True,
    ):
        if int(sequence_length) < 1:
            raise ValueError(f"`sequence_length` must be >= 1; got {sequence_length!r}.")
        if int(batch_size) < 1:
            raise ValueError(f"`batch_size` must be >= 1; got {batch_size!r}.")
        if not 0 <= validation_fraction < 0.5:
            raise ValueError(f"`validation_fraction` must be in [0, 0.5); got {validation_fraction!r}.")
        self.files = resolve_corpus_files(files)
        self.tokenizer = tokenizer
        self.sequence_length = int(sequence_length)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.validation_fraction = float(validation_fraction)
        self.validation_period = round(1 / validation_fraction) if validation_fraction > 0 else 0
        self.text_field = text_field
        self.shuffle_block = int(shuffle_block)
        self._stats = None
        self._token_ids = None
        self._validation_windows = None
        if check_files:
            for path in self.files:
                check_corpus_file(path, text_field)

    @property
    def window_length(self):
        return self.sequence_length + 1

    # --- stream ---

    def lines(self):
        """All text lines (jsonl: record texts) in corpus order, in chunks of up to 256 strings."""
        text_field = self.text_field

        def parse(batch):
            return np.array([_json_text(line.decode("utf-8"), text_field) for line in batch.numpy()], dtype=object)

        def json_texts(batch):
            texts = tf.py_function(parse, [batch], tf.string)
            texts.set_shape([None])
            return texts

        def file_lines(path, compression, jsonl):
            lines = tf.data.TextLineDataset(path, compression_type=compression)
            chunks = lines.batch(LINES_PER_CHUNK)
            chunks = chunks.map(lambda b: tf.cond(jsonl, lambda: json_texts(b), lambda: b))
            # Over-long lines in pieces, then chunks of at most LINES_PER_CHUNK pieces again:
            # the tokenizer's memory grows with the text of one call.
            return chunks.map(split_long_lines).rebatch(LINES_PER_CHUNK)

        specs = tf.data.Dataset.from_tensor_slices(
            (
                self.files,
                ["GZIP" if p.endswith(".gz") else "" for p in self.files],
                [is_jsonl(p) for p in self.files],
            )
        )
        return specs.flat_map(file_lines)

    def token_ids(self):
        """The corpus as a stream of 1-D int32 id chunks (concatenated, they are the token stream)."""
        # Built once and shared by every pipeline below: tracing the tokenizer's graph is the
        # slowest part of building a pipeline.
        if self._token_ids is None:
            tokenizer = self.tokenizer
            self._token_ids = self.lines().map(
                lambda b: _tokenize(tokenizer, b), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
        return self._token_ids

    def windows(self, split=None):
        """Windows `[sequence_length + 1]` in corpus order: all (`None`), `"train"` or `"validation"`."""
        windows = self.token_ids().rebatch(self.window_length, drop_remainder=True)
        if split is None:
            return windows
        if split not in ("train", "validation"):
            raise ValueError(f"`split` must be None, 'train' or 'validation'; got {split!r}.")
        period = self.validation_period
        if not period:
            return windows if split == "train" else windows.take(0)
        held_out = split == "validation"
        return windows.enumerate().filter(lambda i, w: tf.equal(i % period == period - 1, held_out)).map(lambda i, w: w)

    # --- sizes ---

    def count(self):
        """Tokens, windows and split sizes: one streaming pass over the corpus (cached).

        Returns a dict with `tokens`, `windows`, `remainder` (tokens dropped at the end),
        `train_windows` and `validation_windows`.
        """
        if self._stats is None:
            sizes = self.token_ids().map(lambda ids: tf.size(ids, out_type=tf.int64))
            tokens = int(sizes.reduce(tf.constant(0, tf.int64), lambda total, n: total + n))
            windows = tokens // self.window_length
            held_out = windows // self.validation_period if self.validation_period else 0
            self._stats = {
                "tokens": tokens,
                "windows": windows,
                "remainder": tokens - windows * self.window_length,
                "train_windows": windows - held_out,
                "validation_windows": held_out,
            }
        return dict(self._stats)

    def check_size(self):
        """Raises a clear `ValueError` if the corpus cannot fill a training and a validation window."""
        stats = self.count()
        if stats["windows"] == 0:
            raise ValueError(
                f"The corpus has only {stats['tokens']} tokens, fewer than one window of "
                f"sequence_length + 1 = {self.window_length} tokens. Add text or lower "
                "`sequence_length`."
            )
        if self.validation_period and stats["validation_windows"] == 0:
            raise ValueError(
                f"The corpus makes {stats['windows']} windows of {self.window_length} tokens, too few "
                f"to hold out a validation window at validation_fraction={self.validation_fraction} "
                f"(needs {self.validation_period}). Add text, lower `sequence_length`, raise "
                "`validation_fraction`, or set it to 0."
            )
        return stats

    # --- datasets for fit ---

    def _epoch_windows(self, train_windows, epoch):
        """Training windows of data epoch `epoch`, shuffled by `(seed, epoch)` block by block."""
        seed = self.seed
        blocks = train_windows.batch(self.shuffle_block).enumerate()

        def shuffle(block_index, block):
            # Distinct, reproducible stream per (seed, epoch, block).
            key = tf.stack([tf.constant(seed, tf.int64), epoch * (1 << 32) + block_index])
            return tf.random.experimental.stateless_shuffle(block, seed=key)

        return blocks.map(shuffle).unbatch()

    def _to_example(self, windows, rows=None):
        """`(x, labels, sample_weight)` of a batch of windows; `rows` marks the real ones (padding)."""
        inputs, labels = windows[:, :-1], windows[:, 1:]
        padding_mask = tf.ones_like(inputs)
        weights = padding_mask if rows is None else padding_mask * tf.cast(rows, tf.int32)[:, None]
        return {"token_ids": inputs, "padding_mask": padding_mask}, labels, weights

    def train_dataset(self, start_batch=0):
        """Infinite shuffled batches `(x, labels, padding_mask)`, starting at batch `start_batch`.

        `x = {"token_ids", "padding_mask"}` int32 `[batch, sequence_length]`; the mask doubles as
        the sample weight of the next-token loss. Batch `n` is the same on every call with the
        same seed, so a resumed run passes the number of batches already trained on.
        """
        train_windows = self.count()["train_windows"]
        if train_windows == 0:
            self.check_size()
        first_window = int(start_batch) * self.batch_size
        first_epoch, offset = divmod(first_window, train_windows)
        epochs = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
        train = self.windows("train")  # captured by each epoch's function, traced once
        windows = epochs.flat_map(lambda epoch: self._epoch_windows(train, epoch)).skip(offset)
        return (
            windows.batch(self.batch_size, drop_remainder=True)
            .map(self._to_example, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )

    def validation_dataset(self, max_batches=None, pad_final_batch=None):
        """The held-out windows in corpus order, batched, as `(x, labels, sample_weight)`; or None.

        `max_batches` caps the evaluation cost on a large corpus (the first batches are used).
        With a cap, the (at most `max_batches * batch_size`) windows are read once and kept in
        memory, so later evaluations do not re-read and re-tokenize the corpus; without one, the
        split is streamed from the files at every evaluation.

        The last batch may hold fewer than `batch_size` windows. `pad_final_batch=True` fills it
        up to `batch_size` with dummy rows whose sample weight is 0: every batch then has the same
        shape, which a data-parallel `keras.distribution` (JAX) needs to split it evenly over its
        devices. Padding changes neither `Perplexity` nor `NextTokenAccuracy` (both count weighted
        tokens); Keras's `loss` average weights the padded batch as a full one. The default
        (`None`) pads exactly when a `keras.distribution` is active.
        """
        if not self.validation_period:
            return None
        if pad_final_batch is None:
            pad_final_batch = keras_distribution_active()
        size = self.count()["validation_windows"]
        windows = self.windows("validation")
        if max_batches:
            size = min(size, int(max_batches) * self.batch_size)
            if self._validation_windows is None or len(self._validation_windows) != size:
                chunks = list(windows.take(size).batch(1024).as_numpy_iterator())
                empty = np.zeros((0, self.window_length), np.int32)
                self._validation_windows = np.concatenate(chunks) if chunks else empty
            windows = tf.data.Dataset.from_tensor_slices(self._validation_windows)
        batches = math.ceil(size / self.batch_size)
        dataset = windows.batch(self.batch_size)
        if pad_final_batch:
            dataset = dataset.map(lambda w: self._to_example(*pad_batch(w, self.batch_size)))
        else:
            dataset = dataset.map(self._to_example)
        # A known length lets Keras show progress and end evaluation without a warning.
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
        return dataset.prefetch(tf.data.AUTOTUNE)

    def train_batches_per_epoch(self):
        """Training batches in one data epoch (fractional: batches may span epochs)."""
        return self.count()["train_windows"] / self.batch_size
