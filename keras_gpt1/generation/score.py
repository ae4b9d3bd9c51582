"""Log-likelihood and perplexity of given text under a `GPT1CausalLM`.

One forward pass per batch (no cache, no loop): logits → log-softmax in float32 → the
log-probability of each actual next token. Token `i` (for `i >= 1`) is scored given tokens
`0 .. i-1`; the first token has no context and is not scored (GPT-1 has no start-of-text token in
pre-training), so a text needs at least two tokens.

A text longer than the context (512) is scored in overlapping windows when `stride` is given:
windows of `context` tokens start `stride` tokens apart, and each token is scored once, in the
first window that reaches it, so it sees at least `context - stride` tokens before it (all of
them near the start). A smaller stride gives each token more context and costs more windows.

Example:
```python
result = score(lm, [[5, 6, 7, 8]])[0]
result["token_log_likelihoods"]     # 3 values: log p(6|5), log p(7|5 6), log p(8|5 6 7)
result["perplexity"]                # exp(-mean of those)
```
"""

import keras
import numpy as np
from keras import ops

from keras_gpt1.generation.compile_cache import LENGTH_BUCKET, compiled, round_up
from keras_gpt1.generation.prompts import normalize_prompts
from keras_gpt1.utils.checks import check_integer


def _token_log_likelihoods(lm, token_ids, padding_mask):
    logits = lm({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)
    log_probs = ops.log_softmax(ops.cast(logits[:, :-1], "float32"), axis=-1)
    targets = ops.cast(token_ids[:, 1:], "int32")
    return ops.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]


def _windows(size, context, stride):
    """`(begin, end, first)` for each window over a text of `size` tokens: the window holds
    tokens `begin .. end - 1`, and scores tokens `first .. end - 1` (each token once overall)."""
    if size <= context:
        return [(0, size, 1)]
    windows, scored_up_to = [], 1
    for begin in range(0, size, stride):
        end = min(begin + context, size)
        windows.append((begin, end, scored_up_to))
        scored_up_to = end
        if end == size:
            break
    return windows


def score(lm, inputs, batch_size=8, stride=None):
    """Per-token log-likelihoods and perplexity of each text (or token-id sequence).

    `inputs` takes the same forms as `generate` (a string, a list of strings with the model's
    tokenizer, ids, a list of id lists, a 2-D array or a `{"token_ids", "padding_mask"}` dict).
    Returns, for a single text or id list, a dict; otherwise a list of dicts, each with
    `token_ids` (list), `token_log_likelihoods` (float32 array, one per token after the first, in
    nats), `log_likelihood` (their sum), `num_scored_tokens` and `perplexity`
    (`exp(-log_likelihood / num_scored_tokens)`).

    `stride` (an integer in `[1, context - 1]`) lets texts longer than the model's context be
    scored in overlapping windows (see the module docstring); without it such a text is an error.
    `batch_size` counts windows.

    Under a `keras.distribution` (JAX) each batch is split over the data-parallel devices, its rows
    padded to a multiple of their count with dummy rows that are left out of the results.

    Example:
    ```python
    lm.score("the cat sat on the mat .")["perplexity"]
    stride = lm.backbone.max_sequence_length // 2       # 256 for GPT-1's 512-token context
    lm.score(long_document, stride=stride)["perplexity"]   # windows of a whole context, half apart
    ```
    """
    batch_size = check_integer("batch_size", batch_size, 1)
    sequences, form = normalize_prompts(inputs, getattr(lm, "tokenizer", None))
    backbone = lm.backbone
    context = backbone.max_sequence_length
    if stride is not None:
        stride = check_integer("stride", stride, 1, context - 1)
    for i, ids in enumerate(sequences):
        if ids.size < 2:
            raise ValueError(
                f"Text {i} has {ids.size} token(s); scoring needs at least 2 (the first token has "
                "no context to be predicted from)."
            )
        if ids.size > context and stride is None:
            raise ValueError(
                f"Text {i} has {ids.size} tokens, longer than the model's context of {context}. "
                f"Pass `stride=` (e.g. {context // 2}) to score it in overlapping windows."
            )
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= backbone.vocabulary_size:
            raise ValueError(
                f"Text {i} contains token id {low if low < 0 else high}, outside the vocabulary "
                f"[0, {backbone.vocabulary_size})."
            )

    # Under a keras.distribution (JAX) each batch is split over the data-parallel devices: its
    # rows are padded to a multiple of their count with dummy rows (one real token), whose
    # results are never read. (lm_dataset imports TensorFlow: only then.)
    distribution, replicas = keras.distribution.distribution(), 1
    if distribution is not None:
        from keras_gpt1.data.lm_dataset import data_parallel_size

        replicas = data_parallel_size()
    # Every window of every text, as (text index, window tokens, index of its first scored token).
    windows = [
        (i, ids[begin:end], first - begin)
        for i, ids in enumerate(sequences)
        for begin, end, first in _windows(ids.size, context, stride)
    ]
    scored = [[] for _ in sequences]
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        length = round_up(max(ids.size for _, ids, _ in chunk), LENGTH_BUCKET, context)
        rows = -(-len(chunk) // replicas) * replicas
        token_ids = np.zeros((rows, length), "int32")
        padding_mask = np.zeros((rows, length), "int32")
        padding_mask[len(chunk) :, 0] = 1
        for row, (_, ids, _) in enumerate(chunk):
            token_ids[row, : ids.size] = ids
            padding_mask[row, : ids.size] = 1
        inputs = [ops.convert_to_tensor(token_ids), ops.convert_to_tensor(padding_mask)]
        if distribution is not None:
            layout = distribution.get_data_layout((rows, length))
            inputs = [keras.distribution.distribute_tensor(x, layout) for x in inputs]
        fns = compiled(lm, ("score", rows, length), lambda: {"score": lambda t, m: _token_log_likelihoods(lm, t, m)})
        values = ops.convert_to_numpy(fns["score"](*inputs))
        for row, (i, ids, first) in enumerate(chunk):
            # values[row, j - 1] is the log-likelihood of the window's token j.
            scored[i].append(values[row, first - 1 : ids.size - 1].astype("float32"))
    results = []
    for ids, pieces in zip(sequences, scored):
        per_token = np.concatenate(pieces)
        total = float(per_token.astype("float64").sum())
        results.append(
            {
                "token_ids": ids.tolist(),
                "token_log_likelihoods": per_token,
                "log_likelihood": total,
                "num_scored_tokens": int(per_token.size),
                "perplexity": float(np.exp(-total / per_token.size)),
            }
        )
    return results[0] if form in ("text", "ids") else results
