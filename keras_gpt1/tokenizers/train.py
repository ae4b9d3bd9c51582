"""Learning GPT-1 BPE merges from text files with Hugging Face `tokenizers`.

`train_bpe` needs no TensorFlow and returns the vocabulary and merges; `train_tokenizer` wraps
them in a `GPT1Tokenizer` (and so imports TensorFlow).

Example:
```python
tokenizer = train_tokenizer(["corpus.txt"], num_merges=40000, output_dir="my_vocab")
# my_vocab/vocab.json + my_vocab/merges.txt: GPT1Tokenizer.from_preset("my_vocab") and
# transformers.OpenAIGPTTokenizer.from_pretrained("my_vocab") both load them.
```
"""

import json
import os
import tempfile

from tokenizers import trainers

from keras_gpt1.data.text_files import is_jsonl, resolve_corpus_files, scan_corpus_file, write_plain_text
from keras_gpt1.tokenizers import _rust
from keras_gpt1.tokenizers.vocab_files import END_OF_WORD, UNK_TOKEN, write_hf_vocabulary
from keras_gpt1.utils.checks import check_integer
from keras_gpt1.utils import artifacts
from keras_gpt1.utils.files import check_writable_dir
from keras_gpt1.utils.locks import holding_output

DEFAULT_MERGES = 40000
# `_start_`, `_delimiter_`, `_classify_`: GPT1Tokenizer appends them to the trained vocabulary.
NUM_SPECIAL_TOKENS = 3
# `<unk>` and the special tokens: a smaller vocabulary could hold no text at all.
MIN_VOCABULARY_SIZE = NUM_SPECIAL_TOKENS + 1


# `output_dir` is locked from the first check to the last write: a second writer is refused at once.
@holding_output("output_dir", "train-tokenizer", before=check_writable_dir)
def train_bpe(
    files,
    num_merges=None,
    vocabulary_size=None,
    min_frequency=2,
    standardize="bert",
    output_dir=None,
    show_progress=False,
    text_field="text",
    max_text_bytes=None,
):
    """Learns BPE merges from corpus files; returns `(vocabulary, merges)`.

    Reads what `pretrain` reads, through the same reader (`keras_gpt1.data.text_files`): plain
    UTF-8 text and `.jsonl` (text under `text_field`), optionally `.gz`, and globs. `.jsonl`,
    `.gz` and files with over-long lines are first streamed into one temporary plain file (at
    most about `max_text_bytes`).

    Text is normalised and split exactly as `GPT1Tokenizer(standardize=...)` does before BPE, so
    the merges fit the tokenizer. The vocabulary is `<unk>` (id 0), the characters seen (each also
    with `</w>`, as the last symbol of a word), then the merged tokens in the order learned.

    Args:
        files: corpus file paths or globs.
        num_merges: how many merges to learn (default 40,000, as GPT-1).
        vocabulary_size: instead of `num_merges`, the size the resulting `GPT1Tokenizer` should
            have, special tokens included (never smaller than the characters seen, plus 3).
        min_frequency: pairs seen fewer times are never merged; training may stop early.
        standardize: `"bert"` or `"original"`, as in `GPT1Tokenizer`.
        output_dir: if given, also write `vocab.json` and `merges.txt` there.
        show_progress: show the `tokenizers` progress bars.

    Example:
    ```python
    vocabulary, merges = train_bpe(["a.txt", "b.txt"], num_merges=1000)
    ```
    """
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    if not files:
        raise ValueError("Tokenizer training needs at least one text file.")
    files = resolve_corpus_files(files)
    if num_merges is not None and vocabulary_size is not None:
        raise ValueError("Give `num_merges` or `vocabulary_size`, not both.")
    _rust.check_standardize(standardize)
    if num_merges is not None:
        num_merges = check_integer("num_merges", num_merges, 0)
    if vocabulary_size is not None:
        vocabulary_size = check_integer("vocabulary_size", vocabulary_size, MIN_VOCABULARY_SIZE)
    # The same reader and checks as pretraining: empty or whitespace-only files, bad UTF-8, bad
    # JSON lines and corrupt .gz files are refused by name before any training.
    scans = [scan_corpus_file(path, text_field) for path in files]
    characters = sum(scan["characters"] for scan in scans)
    if output_dir is not None:
        check_writable_dir(output_dir)
        _check_tokenizer_output(output_dir)

    plain = all(not p.endswith(".gz") and not is_jsonl(p) for p in files) and not any(s["long_lines"] for s in scans)
    with tempfile.TemporaryDirectory(prefix=".tmp-tokenizer-text-") as work:
        if not plain:  # the trainer reads plain UTF-8 files only
            text = os.path.join(work, "text.txt")
            write_plain_text(files, text, text_field, max_bytes=max_text_bytes)
            files = [text]
        # No corpus gives a vocabulary larger than its characters (merges) plus its alphabet (at
        # most twice the characters): a larger request, which the trainer allocates for up
        # front (and aborts past memory), is cut to that.
        limit = 3 * characters + 1000
        symbols = _initial_symbols(files, min_frequency, standardize)
        if vocabulary_size is not None:
            # The trainer counts tokens, like `vocabulary_size` (less the special tokens added later).
            target = min(max(vocabulary_size - NUM_SPECIAL_TOKENS, 1), limit)
            vocabulary, merges = _train(files, target, min_frequency, standardize, show_progress, symbols)
        else:
            num_merges = DEFAULT_MERGES if num_merges is None else num_merges
            # The trainer stops at a vocabulary size, not a merge count, and a merge may rebuild an
            # existing token ("a bc</w>" after "ab c</w>"), so ask for enough and cut the merge list.
            alphabet_guess = 1000
            while True:
                target = min(num_merges + alphabet_guess, limit)
                vocabulary, merges = _train(files, target, min_frequency, standardize, show_progress, symbols)
                if len(merges) >= num_merges or len(vocabulary) < target:
                    break  # enough merges, or the corpus ran out of pairs
                base = len(vocabulary) - len({a + b for a, b in merges})
                alphabet_guess = base + (num_merges - len(merges)) + 1000
            vocabulary, merges = _truncate(vocabulary, merges, num_merges)
    if output_dir is not None:
        write_hf_vocabulary(output_dir, vocabulary, merges)
    return vocabulary, merges


def _check_tokenizer_output(output_dir):
    """`output_dir` may hold nothing or a `vocab.json` + `merges.txt` pair (replaced): writing the
    pair beside a model or a tokenizer preset (`tokenizer.json`, which loaders read first) would
    mix two artifacts, so those are refused."""
    kind, evidence = artifacts.artifact_kind(output_dir)
    if kind == artifacts.TOKENIZER and evidence == "tokenizer.json":
        raise ValueError(
            f"Output directory {os.fspath(output_dir)!r} already holds a tokenizer preset (tokenizer.json: read "
            "before any vocab.json and merges.txt), which this command never replaces; pick another directory."
        )
    artifacts.check_output_artifact(output_dir, (artifacts.TOKENIZER,))


def train_tokenizer(
    files,
    num_merges=None,
    vocabulary_size=None,
    min_frequency=2,
    standardize="bert",
    output_dir=None,
    show_progress=False,
    text_field="text",
    max_text_bytes=None,
    **tokenizer_kwargs,
):
    """Trains BPE merges (see `train_bpe`) and returns a `GPT1Tokenizer` using them.

    `tokenizer_kwargs` (e.g. `sequence_length`) go to `GPT1Tokenizer`. With `output_dir`, the
    Hugging Face files are written there too.

    Example:
    ```python
    tokenizer = train_tokenizer(["corpus.txt"], vocabulary_size=2000)
    tokenizer.vocabulary_size()   # 2000 (if the corpus has enough distinct pairs)
    ```
    """
    vocabulary, merges = train_bpe(
        files,
        num_merges=num_merges,
        vocabulary_size=vocabulary_size,
        min_frequency=min_frequency,
        standardize=standardize,
        output_dir=output_dir,
        show_progress=show_progress,
        text_field=text_field,
        max_text_bytes=max_text_bytes,
    )
    from keras_gpt1.tokenizers.gpt1_tokenizer import GPT1Tokenizer  # needs TensorFlow

    return GPT1Tokenizer(vocabulary, merges, standardize=standardize, **tokenizer_kwargs)


def _initial_symbols(files, min_frequency, standardize):
    """Every symbol BPE starts from (characters and word-final `c</w>` forms), sorted.

    The trainer breaks ties between equally frequent pairs by token id, and it numbers the
    word-final symbols in hash-map order, so equal inputs could learn different merges
    (huggingface/tokenizers#1794). A run with no merges finds these symbols; `_train` gives them,
    sorted, as its first tokens, which fixes every id and so every tie.
    """
    initial, _ = _train(files, 0, min_frequency, standardize, show_progress=False, symbols=[])
    return sorted(t for t in initial if t != UNK_TOKEN)


def _train(files, vocab_size, min_frequency, standardize, show_progress, symbols):
    """One `tokenizers` BPE training run whose first tokens are `<unk>` and `symbols`; returns
    `(vocabulary, merges)` with canonical ids."""
    tokenizer = _rust.build_tokenizer(standardize=standardize)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[UNK_TOKEN, *symbols],
        end_of_word_suffix=END_OF_WORD,
        show_progress=show_progress,
    )
    tokenizer.train(files, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return _canonical_ids(model["vocab"], merges), merges


def _canonical_ids(vocabulary, merges):
    """Renumbers the trained vocabulary so equal merges always give equal ids.

    The trainer numbers its alphabet in hash-map order, which changes between runs. Here `<unk>`
    is 0, then the symbols no merge builds (sorted, each character before its `</w>` form), then
    the merged tokens in the order they are first learned.
    """
    merged = list(dict.fromkeys(a + b for a, b in merges))
    made = set(merged)
    base = sorted(
        (t for t in vocabulary if t not in made and t != UNK_TOKEN),
        key=lambda t: (t.removesuffix(END_OF_WORD), t.endswith(END_OF_WORD)),
    )
    order = [UNK_TOKEN] + base + [t for t in merged if t in vocabulary]
    return {token: index for index, token in enumerate(order)}


def _truncate(vocabulary, merges, num_merges):
    """The first `num_merges` merges and the tokens they need, renumbered 0..n-1 in id order."""
    made_by_any = {a + b for a, b in merges}
    merges = merges[:num_merges]
    made_by_kept = {a + b for a, b in merges}
    keep = [t for t in sorted(vocabulary, key=vocabulary.get) if t not in made_by_any or t in made_by_kept]
    return {t: i for i, t in enumerate(keep)}, merges
