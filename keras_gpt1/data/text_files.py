"""Reading corpus text files: the one reader behind `pretrain` and `train-tokenizer` (no TensorFlow).

Formats: plain UTF-8 text (a document or paragraph a line) and `.jsonl` (one JSON object a line,
text under `text_field`), either optionally `.gz`; globs are expanded and sorted. Every file is
checked once, streaming, before any work (`check_corpus_file`): missing, empty or whitespace-only,
not UTF-8, a corrupt `.gz`, bad JSON lines are each a `ValueError` naming the file (and line).

A line longer than `MAX_LINE_CHARS` characters is split at whitespace into pieces of
`WORDS_PER_PIECE` words, with a warning: the tokenizers work a line at a time, and a single 50 MB
line would take gigabytes. Splitting at whitespace leaves the tokens unchanged (GPT-1's BPE never
crosses a space).

Example:
```python
files = resolve_corpus_files(["books/*.txt", "web.jsonl.gz"])
for path in files:
    check_corpus_file(path)
for text in iter_texts(files[0]):
    ...
```
"""

import codecs
import glob
import gzip
import json
import os
import re
import warnings
import zlib

_READ_SIZE = 1 << 20
# Lines longer than this are split into pieces of `WORDS_PER_PIECE` words (at whitespace).
MAX_LINE_CHARS = 1 << 16
WORDS_PER_PIECE = 256


def resolve_corpus_files(patterns):
    """Expands files and glob patterns (sorted per pattern, duplicates dropped) into paths.

    Raises `FileNotFoundError` naming a pattern that matches no file.

    Example:
    ```python
    resolve_corpus_files(["data/*.txt", "extra.jsonl.gz"])
    ```
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    patterns = [os.fspath(p) for p in patterns]
    if not patterns:
        raise ValueError("No corpus files given.")
    files, seen = [], set()
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        else:
            matches = [pattern] if os.path.isfile(pattern) else []
        if not matches:
            if os.path.isdir(pattern):
                raise FileNotFoundError(
                    f"Corpus path {pattern!r} is a directory; pass files or a glob such as "
                    f"{os.path.join(pattern, '*.txt')!r}."
                )
            raise FileNotFoundError(f"Corpus file {pattern!r} does not exist (or the glob matches no file).")
        for path in matches:
            key = os.path.abspath(path)
            if key not in seen:
                seen.add(key)
                files.append(path)
    return files


def is_jsonl(path):
    name = path[:-3] if path.endswith(".gz") else path
    return name.endswith(".jsonl")


def _open_binary(path):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def check_corpus_file(path, text_field="text", digest=None):
    """Reads `path` once, streaming, and raises a clear error if it cannot be used.

    Errors: not UTF-8 (with the line number), a corrupt `.gz`, invalid JSON or a missing/non-string
    `text_field` in a `.jsonl` line, or no text at all (empty or whitespace only). Returns the
    number of characters of text. `digest` (a `hashlib` object), if given, is updated with the
    file's (decompressed) bytes. Warns if a line is longer than `MAX_LINE_CHARS` (it is split).
    """
    return scan_corpus_file(path, text_field, digest)["characters"]


def scan_corpus_file(path, text_field="text", digest=None):
    """`check_corpus_file`, returning `{"characters": ..., "long_lines": ...}`."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line_number, characters, pending = 1, 0, ""
    long_lines, first_long = 0, None
    jsonl = is_jsonl(path)

    def check_lines(text, final=False):
        nonlocal line_number, characters, pending, long_lines, first_long
        text = pending + text
        lines = text.split("\n")
        pending = "" if final else lines.pop()
        for line in lines:
            if jsonl:
                line = _json_text(line, text_field, path, line_number) if line.strip() else ""
            characters += len(line.strip())
            if len(line) > MAX_LINE_CHARS:
                long_lines += 1
                first_long = first_long or (line_number, len(line))
            line_number += 1

    try:
        with _open_binary(path) as f:
            while True:
                block = f.read(_READ_SIZE)
                if not block:
                    break
                if digest is not None:
                    digest.update(block)
                try:
                    text = decoder.decode(block)
                except UnicodeDecodeError as e:
                    bad_line = line_number + (pending + block[: e.start].decode("utf-8", "replace")).count("\n")
                    raise ValueError(
                        f"Corpus file {path!r} is not UTF-8 text: undecodable byte "
                        f"{block[e.start : e.start + 1]!r} on line {bad_line}. Convert it to UTF-8 "
                        "first (e.g. `iconv -f latin1 -t utf-8`)."
                    ) from None
                check_lines(text)
            try:
                check_lines(decoder.decode(b"", final=True), final=True)
            except UnicodeDecodeError:
                raise ValueError(f"Corpus file {path!r} is not UTF-8 text: it ends inside a character.") from None
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"Cannot read corpus file {path!r} (corrupt or truncated?): {e}") from None
    if characters == 0:
        raise ValueError(
            f"Corpus file {path!r} is empty (no text{' in ' + repr(text_field) if jsonl else ''}; "
            "whitespace does not count)."
        )
    if long_lines:
        warnings.warn(
            f"Corpus file {path!r} has {long_lines} line(s) longer than {MAX_LINE_CHARS:,} characters "
            f"(the first: line {first_long[0]}, {first_long[1]:,} characters); they are split at "
            "whitespace so that memory stays bounded (the tokens are the same).",
            stacklevel=3,
        )
    return {"characters": characters, "long_lines": long_lines}


def _json_text(line, text_field, path="<jsonl>", line_number=0):
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"Corpus file {path!r}, line {line_number}: invalid JSON ({e.msg}).") from None
    if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
        raise ValueError(
            f"Corpus file {path!r}, line {line_number}: expected a JSON object with a string field {text_field!r}."
        )
    return record[text_field]


_WHITESPACE = re.compile(r"\s")


def split_long_line(text, max_chars=MAX_LINE_CHARS):
    """`text` in pieces of about `max_chars` characters, cut at whitespace (a word longer than
    that stays whole); a short text is one piece.

    Example:
    ```python
    split_long_line("aaa bbb ccc", max_chars=4)   # ["aaa bbb", "ccc"]
    ```
    """
    if len(text) <= max_chars:
        return [text]
    pieces, start = [], 0
    while len(text) - start > max_chars:
        space = _WHITESPACE.search(text, start + max_chars)
        if space is None:
            break
        pieces.append(text[start : space.start()])
        start = space.end()
    pieces.append(text[start:])
    return pieces


def iter_texts(path, text_field="text"):
    """Yields the text lines of one corpus file (jsonl: each record's text), streaming; lines
    longer than `MAX_LINE_CHARS` come in pieces (`split_long_line`)."""
    jsonl = is_jsonl(path)
    with _open_binary(path) as f:
        for number, raw in enumerate(f, 1):
            line = raw.decode("utf-8").rstrip("\n")
            if jsonl:
                if not line.strip():
                    continue
                line = _json_text(line, text_field, path, number)
            yield from split_long_line(line)


def write_plain_text(files, path, text_field="text", max_bytes=None):
    """Streams the corpus's text into one plain UTF-8 file (a line per line/record), e.g. for a
    tokenizer trainer that reads only plain files; stops after about `max_bytes`."""
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        for source in files:
            for text in iter_texts(source, text_field):
                text = text.replace("\n", " ")
                out.write(text + "\n")
                written += len(text) + 1
                if max_bytes and written >= max_bytes:
                    return path
    return path
