"""A built-in demo corpus made from text that ships with Python: no download needed.

It holds the Python Language Reference topics (`pydoc_data.topics`, English prose) followed by
the docstrings of the standard library's pure-Python modules, read with `ast` (nothing is
imported or executed). Each paragraph becomes one line; doctest and code-like paragraphs are
left out, and reStructuredText markup (``code``, :func:`name`) is reduced to its text: a small
model trained on the backquotes learns runs of them as its likeliest continuation. Files and definitions are visited in sorted/source order, so the corpus is identical on
every run with the same Python installation (about 1.6 MB for Python 3.11).
"""

import ast
import os
import re
import sysconfig

from keras_gpt1.utils.files import atomic_write_text

# Packages whose docstrings are tests, demos or vendored code rather than documentation.
_SKIP_DIRS = {
    "__pycache__",
    "test",
    "tests",
    "idle_test",
    "idlelib",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "site-packages",
    "dist-packages",
    "pydoc_data",
}
DEFAULT_MAX_BYTES = 3_000_000
_RST_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:(?=`)")  # the `:func:` of :func:`name`


def _paragraphs(text):
    for block in text.replace("\r", "").split("\n\n"):
        lines = [line.strip() for line in block.strip().split("\n")]
        if not lines or lines[0].startswith((">>>", "...", "$", "%")):
            continue
        paragraph = " ".join(_RST_ROLE.sub("", " ".join(lines)).replace("`", "").split())
        letters = sum(c.isalpha() or c == " " for c in paragraph)
        # Code, tables and signatures are mostly punctuation; prose is mostly letters.
        if len(paragraph) >= 40 and letters >= 0.8 * len(paragraph):
            yield paragraph


def _reference_topics():
    try:
        from pydoc_data.topics import topics
    except ImportError:  # Some distributions strip the docs data.
        return
    for name in sorted(topics):
        yield from _paragraphs(topics[name])


def _stdlib_docstrings(stdlib_dir):
    for directory, subdirs, files in os.walk(stdlib_dir):
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS and not d.startswith((".", "config-")))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(directory, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    docstring = ast.get_docstring(node)
                    if docstring:
                        yield from _paragraphs(docstring)


def demo_corpus_lines(max_bytes=DEFAULT_MAX_BYTES):
    """The corpus lines (paragraphs), stopping before `max_bytes` of UTF-8 text."""
    size = 0
    seen = set()
    sources = (_reference_topics(), _stdlib_docstrings(sysconfig.get_paths()["stdlib"]))
    for source in sources:
        for paragraph in source:
            if paragraph in seen:  # Inherited and copied docstrings repeat verbatim.
                continue
            seen.add(paragraph)
            size += len(paragraph.encode("utf-8")) + 1
            if size > max_bytes:
                return
            yield paragraph


def build_demo_corpus(path, max_bytes=DEFAULT_MAX_BYTES):
    """Writes the demo corpus to `path` (atomically) unless it is already there; returns `path`.

    Example:
    ```python
    corpus = build_demo_corpus("outputs/corpus/python_docs.txt")
    ```
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        lines = list(demo_corpus_lines(max_bytes))
        if not lines:
            raise ValueError(
                "Could not build the demo corpus: this Python installation has no standard-library "
                "sources or docs. Pass your own text as `corpus`."
            )
        atomic_write_text(path, "\n".join(lines) + "\n")
    return path
