"""Reading and writing GPT-1 BPE vocabularies (no TensorFlow needed).

Two on-disk formats hold the same two things, a token → id map and a ranked list of merges:

- the original release: `encoder_bpe_40000.json` (token → id) and `vocab_40000.bpe`
  (a `#version: 0.2` line, then one merge `a b` a line, best first);
- Hugging Face: `vocab.json` (token → id) and `merges.txt` (the same layout as `vocab_40000.bpe`).

Both are read; the Hugging Face format is written. Every problem is reported with the file name and,
where there is one, the line, because a 40,000-line file is otherwise hopeless to debug.

Example:
```python
vocabulary, merges = read_hf_vocabulary("vocab.json", "merges.txt")
write_hf_vocabulary("out/", vocabulary, merges)
```
"""

import json
import os

from keras_gpt1.presets import MERGES_FILE, VOCAB_FILE
from keras_gpt1.utils.files import read_json, replace_in_dir, require_file

UNK_TOKEN = "<unk>"
END_OF_WORD = "</w>"
MERGES_HEADER = "#version: 0.2"


class VocabularyError(ValueError):
    """A vocabulary or merges file (or in-memory equivalent) is malformed or inconsistent."""


def _line_of(path, token):
    """1-based line of `token`'s JSON key in `path`, or None (a best effort for error messages)."""
    try:
        with open(path, encoding="utf-8") as f:
            needle = json.dumps(token, ensure_ascii=False) + ":"
            needle_ascii = json.dumps(token) + ":"
            for number, line in enumerate(f, 1):
                if needle in line or needle_ascii in line:
                    return number
    except (OSError, UnicodeDecodeError):
        pass
    return None


def _where(source, line):
    return f"{source!r} line {line}" if line else repr(source)


def read_vocabulary_json(path, what="vocabulary file"):
    """Reads a token → id JSON map (`vocab.json` or the original `encoder_bpe_40000.json`).

    Raises `FileNotFoundError` or `VocabularyError` naming the file (and line) on bad input.

    Example:
    ```python
    vocabulary = read_vocabulary_json("vocab.json")   # {"<unk>": 0, "a": 1, ...}
    ```
    """
    path = os.fspath(path)
    try:
        data = read_json(path, what)
    except ValueError as e:
        raise VocabularyError(str(e)) from None
    if not isinstance(data, dict):
        raise VocabularyError(
            f"Corrupt {what} {path!r}: expected a JSON object mapping tokens to ids, got a JSON {type(data).__name__}."
        )
    for token, index in data.items():
        if isinstance(index, bool) or not isinstance(index, int):
            raise VocabularyError(
                f"Corrupt {what} {_where(path, _line_of(path, token))}: the id of token {token!r} "
                f"is {index!r}, not an integer."
            )
    check_vocabulary(data, source=path)
    return data


def check_vocabulary(vocabulary, source="vocabulary"):
    """Checks that ids are the integers 0..n-1, each used once, and that `<unk>` is present."""
    if not isinstance(vocabulary, dict) or not vocabulary:
        raise VocabularyError(f"{source!r}: the vocabulary must be a non-empty dict of token -> id.")
    seen = {}
    for token, index in vocabulary.items():
        if not isinstance(token, str) or token == "":
            raise VocabularyError(f"{source!r}: tokens must be non-empty strings; got {token!r}.")
        if isinstance(index, bool) or not isinstance(index, int):
            raise VocabularyError(f"{source!r}: the id of token {token!r} is {index!r}, not an integer.")
        if index in seen:
            line = _line_of(source, token) if os.path.isfile(str(source)) else None
            raise VocabularyError(
                f"Corrupt vocabulary {_where(source, line)}: tokens {seen[index]!r} and {token!r} both have id {index}."
            )
        seen[index] = token
    size = len(vocabulary)
    bad = sorted(i for i in seen if not 0 <= i < size)
    if bad:
        missing = min(set(range(size)) - set(seen))
        token = seen[bad[0]]
        line = _line_of(source, token) if os.path.isfile(str(source)) else None
        raise VocabularyError(
            f"Corrupt vocabulary {_where(source, line)}: ids must be 0..{size - 1} with no gaps, but "
            f"token {token!r} has id {bad[0]} and id {missing} is unused."
        )
    if UNK_TOKEN not in vocabulary:
        raise VocabularyError(f"Vocabulary {source!r} has no {UNK_TOKEN!r} token; GPT-1 maps unknown characters to it.")


def read_merges_txt(path, what="merges file"):
    """Reads ranked merges (`merges.txt` or the original `vocab_40000.bpe`) as `(a, b)` tuples.

    A first line starting with `#version` is skipped, as are empty lines at the end of the file.

    Example:
    ```python
    merges = read_merges_txt("merges.txt")   # [("t", "h"), ("th", "e</w>"), ...]
    ```
    """
    path = require_file(os.fspath(path), what)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise VocabularyError(f"Corrupt {what} {path!r}: not UTF-8 ({e}).") from None
    if not text.strip():
        # Our writer, Hugging Face's and the original release all start with a `#version` line,
        # even for a tokenizer without merges: an empty file was truncated, and reading it as "no
        # merges" would tokenize every word letter by letter, silently.
        raise VocabularyError(
            f"Corrupt {what} {path!r}: the file is empty (truncated?). Even a tokenizer without merges has its "
            f"{MERGES_HEADER!r} line; restore the file from the tokenizer it belongs to."
        )
    lines = text.split("\n")
    while lines and lines[-1].rstrip("\r") == "":
        lines.pop()
    merges = []
    for number, line in enumerate(lines, 1):
        line = line[:-1] if line.endswith("\r") else line
        if number == 1 and line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise VocabularyError(
                f"Corrupt {what} {path!r} line {number}: expected two tokens separated by one space, got {line!r}."
            )
        merges.append((parts[0], parts[1]))
    return merges


def merge_line_numbers(path):
    """Maps merge rank → line number for a merges file read by `read_merges_txt`."""
    with open(path, encoding="utf-8", newline="") as f:
        first = f.readline()
    offset = 2 if first.startswith("#version") else 1
    return lambda rank: rank + offset


def normalize_merges(merges, source="merges"):
    """Accepts `["a b", ...]` or `[("a", "b"), ...]`; returns a list of `(a, b)` tuples."""
    out = []
    for rank, merge in enumerate(merges):
        if isinstance(merge, str):
            parts = merge.split(" ")
        elif isinstance(merge, (tuple, list)):
            parts = list(merge)
        else:
            parts = None
        if not parts or len(parts) != 2 or not all(isinstance(p, str) and p for p in parts):
            raise VocabularyError(f"{source!r} entry {rank + 1}: expected 'a b' or ('a', 'b'), got {merge!r}.")
        out.append((parts[0], parts[1]))
    return out


def check_merges(vocabulary, merges, vocabulary_source="vocabulary", merges_source="merges", line_of=None):
    """Checks that both halves and the result of every merge are in the vocabulary.

    `line_of(rank)` gives the line of a merge in its file, for the error message.
    """
    for rank, (a, b) in enumerate(merges):
        missing = [t for t in (a, b, a + b) if t not in vocabulary]
        if missing:
            where = f"{merges_source!r} line {line_of(rank)}" if line_of else f"{merges_source!r} entry {rank + 1}"
            role = "its result" if missing[0] == a + b and missing[0] not in (a, b) else "token"
            raise VocabularyError(
                f"Merge {a + ' ' + b!r} at {where} does not match the vocabulary: {role} "
                f"{missing[0]!r} is not in {vocabulary_source!r}. Are the two files from the same "
                "tokenizer?"
            )


def read_hf_vocabulary(vocab_path, merges_path):
    """Reads Hugging Face `vocab.json` + `merges.txt`; returns `(vocabulary, merges)`, checked.

    Example:
    ```python
    vocabulary, merges = read_hf_vocabulary("gpt1/vocab.json", "gpt1/merges.txt")
    ```
    """
    vocabulary = read_vocabulary_json(vocab_path)
    merges = read_merges_txt(merges_path)
    line_of = merge_line_numbers(merges_path)
    check_merges(vocabulary, merges, os.fspath(vocab_path), os.fspath(merges_path), line_of)
    return vocabulary, merges


def read_original_vocabulary(encoder_path, bpe_path):
    """Reads the original release's `encoder_bpe_40000.json` + `vocab_40000.bpe`.

    Example:
    ```python
    vocabulary, merges = read_original_vocabulary(
        "model/encoder_bpe_40000.json", "model/vocab_40000.bpe"
    )
    ```
    """
    vocabulary = read_vocabulary_json(encoder_path, "encoder file")
    merges = read_merges_txt(bpe_path, "BPE merges file")
    line_of = merge_line_numbers(bpe_path)
    check_merges(vocabulary, merges, os.fspath(encoder_path), os.fspath(bpe_path), line_of)
    return vocabulary, merges


def write_hf_vocabulary(directory, vocabulary, merges):
    """Writes `vocab.json` (one token a line, in id order) and `merges.txt` into `directory`.

    Returns the two paths. The pair replaces an earlier one atomically (both or neither).

    Example:
    ```python
    vocab_path, merges_path = write_hf_vocabulary("out/", {"<unk>": 0, "a</w>": 1}, [])
    ```
    """
    directory = os.fspath(directory)
    merges = normalize_merges(merges)
    check_vocabulary(vocabulary)
    check_merges(vocabulary, merges)
    items = sorted(vocabulary.items(), key=lambda item: item[1])
    body = ",\n".join(f"  {json.dumps(token, ensure_ascii=False)}: {index}" for token, index in items)
    # Both files are written in full, then swapped in together (see `replace_in_dir`): a failure
    # at any point (a full disk) leaves the earlier pair as it was, never a new vocabulary beside
    # old merges.
    with replace_in_dir(directory, (VOCAB_FILE, MERGES_FILE), "tokenizer") as staging:
        with open(os.path.join(staging, VOCAB_FILE), "w", encoding="utf-8") as f:
            f.write("{\n" + body + "\n}\n")
        with open(os.path.join(staging, MERGES_FILE), "w", encoding="utf-8") as f:
            f.write(MERGES_HEADER + "\n" + "".join(f"{a} {b}\n" for a, b in merges))
    vocab_path = os.path.join(directory, VOCAB_FILE)
    merges_path = os.path.join(directory, MERGES_FILE)
    return vocab_path, merges_path
