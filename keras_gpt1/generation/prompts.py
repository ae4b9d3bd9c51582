"""Prompts for generation: every accepted form turned into int32 id arrays, and checked.

`normalize_prompts` accepts a string, a list of strings, a list of ids, a list of id lists, a 2-D
array or a `{"token_ids", "padding_mask"}` dict, and says which form it was so the output can
mirror it. `check_prompts` and `check_stop_ids` reject what the model cannot run (an empty
prompt, an id outside the vocabulary, a prompt that leaves no room in the context) with an error
that names the prompt and the limit, before anything is compiled. `new_token_allowance` is the
capping rule for a request that does not fit, shared with the export.

Example:
```python
prompts, form = normalize_prompts([[5, 6, 7], [8, 9]])   # two int32 arrays, "ids_batch"
check_prompts(prompts, vocabulary_size=100, context=32, max_new_tokens=8)
```
"""

import numpy as np
from keras import ops

from keras_gpt1.utils.checks import as_int32_ids, check_integer, is_integer


def _as_id_list(row, where):
    values = np.asarray(row) if isinstance(row, (list, tuple, np.ndarray)) else row
    if np.ndim(values) != 1:
        raise ValueError(f"{where} must be a 1-D sequence of token ids; got shape {np.shape(values)}.")
    return as_int32_ids(values, where)  # range-checked before the cast: no int32 wrap-around


def _tokenize(tokenizer, texts):
    if tokenizer is None:
        raise ValueError(
            "Text prompts need a tokenizer: this model has none (`lm.tokenizer` is None). "
            "Load a preset that has one, attach a GPT1Tokenizer, or pass token ids."
        )
    rows = []
    for text in texts:
        ids = tokenizer(text)
        ids = ids.to_list() if hasattr(ids, "to_list") else ops.convert_to_numpy(ids).tolist()
        if getattr(tokenizer, "sequence_length", None):
            # A fixed-length tokenizer pads; keep the real tokens only.
            pad = getattr(tokenizer, "pad_token_id", None)
            while ids and pad is not None and ids[-1] == pad:
                ids.pop()
        rows.append(np.asarray(ids, dtype="int32").reshape(-1))
    return rows


def normalize_prompts(inputs, tokenizer=None):
    """Turns any accepted prompt form into `(list of int32 id arrays, form)`.

    `form` is one of `"text"`, `"texts"`, `"ids"`, `"ids_batch"`, `"arrays"` and decides the
    output format. Accepted: a string, a list of strings, a list of ids, a list of id lists, a 2-D
    array of ids, or a dict `{"token_ids", "padding_mask"}` of right-padded arrays.
    """
    if isinstance(inputs, str):
        return _tokenize(tokenizer, [inputs]), "text"
    if isinstance(inputs, dict):
        if "token_ids" not in inputs:
            raise ValueError("A dict prompt needs 'token_ids' (and optionally 'padding_mask').")
        ids = np.asarray(ops.convert_to_numpy(inputs["token_ids"]))
        if ids.ndim != 2:
            raise ValueError(f"'token_ids' must be [batch, length]; got shape {ids.shape}.")
        mask = inputs.get("padding_mask")
        mask = np.ones_like(ids) if mask is None else np.asarray(ops.convert_to_numpy(mask)).astype(bool)
        lengths = mask.sum(axis=1)
        if not (mask == (np.arange(ids.shape[1])[None] < lengths[:, None])).all():
            raise ValueError("'padding_mask' must mark a prefix of each row (right padding only).")
        return [_as_id_list(row[:n], f"token_ids row {i}") for i, (row, n) in enumerate(zip(ids, lengths))], "arrays"
    if hasattr(inputs, "shape") and not isinstance(inputs, (list, tuple)):
        ids = np.asarray(ops.convert_to_numpy(inputs))
        if ids.ndim == 1:
            return [_as_id_list(ids, "the prompt")], "ids"
        if ids.ndim == 2:
            return [_as_id_list(row, f"prompt {i}") for i, row in enumerate(ids)], "arrays"
        raise ValueError(f"Token id prompts must be 1-D or 2-D; got shape {ids.shape}.")
    if isinstance(inputs, (list, tuple)):
        if len(inputs) == 0:
            raise ValueError("No prompts given (an empty list).")
        if all(isinstance(x, str) for x in inputs):
            return _tokenize(tokenizer, inputs), "texts"
        if all(is_integer(x) for x in inputs):
            return [_as_id_list(inputs, "the prompt")], "ids"
        if all(isinstance(x, (list, tuple, np.ndarray)) for x in inputs):
            return [_as_id_list(x, f"prompt {i}") for i, x in enumerate(inputs)], "ids_batch"
        raise ValueError(
            "A list prompt must hold only strings, only token ids, or only lists of token ids; "
            f"got element types {sorted({type(x).__name__ for x in inputs})}."
        )
    raise ValueError(
        "Prompts must be a string, a list of strings, token ids (list or array), a list of id "
        f"lists, or a {{'token_ids', 'padding_mask'}} dict; got {type(inputs).__name__}."
    )


def check_prompts(prompts, vocabulary_size, context, max_new_tokens):
    """Raises a ValueError naming the prompt when one cannot be generated from: empty, longer
    than the context, an id outside the vocabulary, or no room left for `max_new_tokens`."""
    check_integer("max_new_tokens", max_new_tokens, 1)
    for i, ids in enumerate(prompts):
        if ids.size == 0:
            raise ValueError(f"Prompt {i} is empty (no tokens). GPT-1 needs at least one token to condition on.")
        if ids.size > context:
            raise ValueError(
                f"Prompt {i} has {ids.size} tokens, longer than the model's context of {context}. Truncate it."
            )
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= vocabulary_size:
            raise ValueError(
                f"Prompt {i} contains token id {low if low < 0 else high}, outside the vocabulary "
                f"[0, {vocabulary_size})."
            )
    longest = max(ids.size for ids in prompts)
    if longest + max_new_tokens > context:
        i = max(range(len(prompts)), key=lambda j: prompts[j].size)
        # What to suggest must itself be valid: `max_new_tokens` >= 1, so a prompt that fills the
        # whole context can only be shortened (to leave room for the tokens asked, or at least one).
        new = min(max_new_tokens, context - 1)
        which = "the prompt" if len(prompts) == 1 else "the prompts"
        shorten = f"shorten {which} to at most {context - new} tokens{' each' if len(prompts) > 1 else ''} (room for {new} new)"
        fix = f"use `max_new_tokens` <= {context - longest}, or {shorten}" if longest < context else shorten
        raise ValueError(
            f"Prompt {i}'s {longest} tokens + `max_new_tokens` {max_new_tokens} = {longest + max_new_tokens} "
            f"exceeds the model's context of {context} positions (GPT-1 has learned absolute "
            f"positions, so it cannot slide past them): {fix}."
        )


def new_token_allowance(prompt_lengths, max_new_tokens, limit):
    """New tokens per row under the one capping rule of `generate` and the exported signatures:
    every prompt is kept whole, and a row generates `max_new_tokens`, or as many as fit after its
    own prompt in `limit` positions where fewer do (none for an empty prompt or one that fills
    them). Positions are learned and absolute, so nothing fits past them, and cutting the prompt
    would answer another question than the one asked. Rows are capped one by one, so a row's
    tokens do not depend on the other prompts of its batch.

    `generate_ids` warns where it caps a row and refuses a prompt with no room; a server never
    fails a text request, so the export's signatures report each row's allowance instead. In
    `keras.ops`: NumPy arrays and traced tensors alike. `max_new_tokens` is at most `limit`.

    Example:
    ```python
    new_token_allowance(np.array([3, 30, 0]), 8, 32)   # [8, 2, 0]
    ```
    """
    room = ops.maximum(limit - prompt_lengths, 0)
    return ops.where(prompt_lengths > 0, ops.minimum(room, max_new_tokens), 0)


def check_stop_ids(stop_token_ids, vocabulary_size):
    """Stop token ids as a tuple of ints (an int or any sequence accepted); a ValueError for a
    non-integer or an id outside the vocabulary."""
    if stop_token_ids is None:
        return ()
    if isinstance(stop_token_ids, (int, np.integer)):
        stop_token_ids = (stop_token_ids,)
    stop = []
    for t in np.asarray(stop_token_ids, dtype=object).reshape(-1):
        # A bool or a float is a mistake, not a token id (True would silently mean token 1).
        if not is_integer(t):
            raise ValueError(f"Stop token ids must be integers; got {t!r}.")
        if not 0 <= t < vocabulary_size:
            raise ValueError(f"Stop token id {t} is outside the vocabulary [0, {vocabulary_size}).")
        stop.append(int(t))
    return tuple(stop)


def detokenize(tokenizer, ids):
    """Text for a list of ids through `tokenizer.detokenize` (a Python `str`)."""
    text = tokenizer.detokenize(np.asarray(ids, dtype="int32"))
    if hasattr(text, "numpy"):
        text = text.numpy()
    if isinstance(text, np.ndarray):
        text = text.item() if text.ndim == 0 else text.tolist()
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return text
