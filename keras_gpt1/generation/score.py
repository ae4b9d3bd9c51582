"""Log-likelihood and perplexity of given text under a `GPT1CausalLM`.

One forward pass per batch (no cache, no loop): logits → log-softmax in float32 → the
log-probability of each actual next token. Token `i` (for `i >= 1`) is scored given tokens
`0 .. i-1`; the first token has no context and is not scored (GPT-1 has no start-of-text token in
pre-training), so a text needs at least two tokens.

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

from keras_gpt1.generation.generate import LENGTH_BUCKET, _compile, _round_up, normalize_prompts


def _token_log_likelihoods(lm, token_ids, padding_mask):
    logits = lm({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)
    log_probs = ops.log_softmax(ops.cast(logits[:, :-1], "float32"), axis=-1)
    targets = ops.cast(token_ids[:, 1:], "int32")
    return ops.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]


def score(lm, inputs, batch_size=8):
    """Per-token log-likelihoods and perplexity of each text (or token-id sequence).

    `inputs` takes the same forms as `generate` (a string, a list of strings with the model's
    tokenizer, ids, a list of id lists, a 2-D array or a `{"token_ids", "padding_mask"}` dict).
    Returns, for a single text or id list, a dict; otherwise a list of dicts, each with
    `token_ids` (list), `token_log_likelihoods` (float32 array, one per token after the first, in
    nats), `log_likelihood` (their sum), `num_scored_tokens` and `perplexity`
    (`exp(-log_likelihood / num_scored_tokens)`).

    Under a `keras.distribution` (JAX) each batch is split over the data-parallel devices, its rows
    padded to a multiple of their count with dummy rows that are left out of the results.

    Example:
    ```python
    lm.score("the cat sat on the mat .")["perplexity"]
    ```
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
    sequences, form = normalize_prompts(inputs, getattr(lm, "tokenizer", None))
    backbone = lm.backbone
    context = backbone.max_sequence_length
    for i, ids in enumerate(sequences):
        if ids.size < 2:
            raise ValueError(
                f"Text {i} has {ids.size} token(s); scoring needs at least 2 (the first token has "
                "no context to be predicted from)."
            )
        if ids.size > context:
            raise ValueError(
                f"Text {i} has {ids.size} tokens, longer than the model's context of {context}. "
                "Split it into windows of at most that many tokens."
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
    results = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        length = _round_up(max(s.size for s in chunk), LENGTH_BUCKET, context)
        rows = -(-len(chunk) // replicas) * replicas
        token_ids = np.zeros((rows, length), "int32")
        padding_mask = np.zeros((rows, length), "int32")
        padding_mask[len(chunk) :, 0] = 1
        for row, ids in enumerate(chunk):
            token_ids[row, : ids.size] = ids
            padding_mask[row, : ids.size] = 1
        inputs = [ops.convert_to_tensor(token_ids), ops.convert_to_tensor(padding_mask)]
        if distribution is not None:
            layout = distribution.get_data_layout((rows, length))
            inputs = [keras.distribution.distribute_tensor(x, layout) for x in inputs]
        fns = _compile(lm, ("score", rows, length), lambda: {"score": lambda t, m: _token_log_likelihoods(lm, t, m)})
        values = ops.convert_to_numpy(fns["score"](*inputs))
        for row, ids in enumerate(chunk):
            per_token = values[row, : ids.size - 1].astype("float32")
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
