"""SavedModel export for TensorFlow Serving: raw text in, answers out. TensorFlow only.

This module traces a GPT-1 model and its `GPT1Tokenizer` into one TensorFlow graph and writes it
in TF Serving's layout, `OUTPUT/<version>/saved_model.pb` + `variables/`. It needs the TensorFlow
Keras backend (`KERAS_BACKEND=tensorflow`): the model's own layers are traced. From JAX or
PyTorch, call `keras_gpt1.export.export_saved_model`, which runs `export_in_process` in a
TensorFlow worker process (`keras_gpt1.export.worker`; presets are backend-independent files).

What a server needs and how it is met:

- **Only ops TF Serving links.** The tokenizer is core TF ops (static hash tables, string and
  Unicode ops). Keras's TensorFlow backend writes KV-cache updates with `XlaDynamicUpdateSlice`,
  which TF Serving cannot run outside an XLA cluster, and no function is `jit_compile`d: TF
  Serving compiles XLA on a CPU only behind its experimental `--xla_cpu_compilation_enabled`
  flag, and its GPU builds fail on XLA clusters. So the export traces the cache writes as
  `TensorStridedSliceUpdate` (in place when nothing else reads the cache) and the attention as
  batched matmuls (see `_core_tf_tracing`); the graph's kernels are then TensorFlow's own.
  Without XLA each graph node is dispatched on its own, so a causal LM's token table is stored
  in the layout its LM head reads fastest (`token_table.py`), float32, bfloat16 and int8
  models decode through a step of fewer nodes (`decode_step.py`), and int8 layers compute
  Keras's int8 products exactly through float32 matmuls (`int8_products.py`).
  `tensorflow_text.RoundRobinTrimmer` (used by the task preprocessors) is a `TFText>RoundRobinTrim`
  custom op that the `tensorflow/serving` images do not link, so the exported task signatures
  trim with core ops, to the same result. `tests/test_export.py` lists every op of the graph.
- **Loadable the way TF Serving loads.** The server restores variables by name into a TF1
  session (as `saved_model_cli run` does), not through `tf.saved_model.load`. The module tracks
  the `tf.Variable` under each Keras variable: tracking the Keras wrappers gave a SavedModel that
  only `tf.saved_model.load` could restore.
- **Any batch, any text.** Signatures take `tf.string` tensors of shape `[batch]` (or
  `[batch, k]`); bad text never fails a request: invalid UTF-8 bytes are dropped by the
  tokenizer, `score` reads a long text's first `context` tokens, an empty text or an empty batch
  gives an empty answer, and `max_new_tokens` is capped to what fits after each prompt (each
  row's cap is in the `max_new_tokens` output; below). Only the `token_ids`
  signatures reject input (ids outside the vocabulary, sequences past the context) with an
  `InvalidArgument` error for that request.

Signatures of a causal LM (`GPT1CausalLM`), with `L = max_length` (default: the context):

| signature | inputs | outputs |
|---|---|---|
| `serving_default` | `text` string `[b]` | `text`, `completion` string `[b]`; `token_ids` int32 `[b, n]`; `lengths`, `prompt_lengths`, `max_new_tokens` int32 `[b]` |
| `generate` | `text` string `[b]`, `max_new_tokens` int32 `[]` | as `serving_default` |
| `score` | `text` string `[b]` | `log_likelihood`, `perplexity` float32 `[b]`; `num_scored_tokens` int32 `[b]` |
| `token_ids` | `token_ids`, `padding_mask` int32 `[b, n]` | `logits` float32 `[b, n, vocab]` |

Generation is greedy with the KV cache, `serving_default` generating `default_max_new_tokens`.
The capping rule is the library's (`keras_gpt1.generation.prompts.new_token_allowance`): every
prompt is kept whole, and each row generates `max_new_tokens` or what fits after its prompt in
`L` positions (the `max_new_tokens` output says how many each row could have). A prompt of `L`
tokens or more answers with its own text and no new tokens (`max_new_tokens` 0) where
`generate` raises a ValueError; an empty prompt (no tokens after normalisation) gives
`text = completion = ""`, length 0 and `max_new_tokens` 0. `score` reads the first `context`
tokens; a text of fewer than 2 tokens has `num_scored_tokens = 0` and a NaN perplexity.

Task models (`GPT1TextClassifier`, `GPT1Similarity`, `GPT1MultipleChoice`; the inputs are each
family's `serving_inputs`, see `keras_gpt1.tasks.registry`):

| model | `serving_default` inputs | outputs |
|---|---|---|
| classification | `text` `[b]` | `probabilities` float32 `[b, classes]`, `label` int32 `[b]` (+ `label_name` string `[b]` when the class names are known) |
| entailment, similarity | `text_a`, `text_b` `[b]` | the same (similarity regression: `score` float32 `[b]`) |
| multiple choice | `context` `[b]`, `candidates` `[b, k]` | `probabilities` `[b, k]`, `label` `[b]` (k = 0: `[b, 0]` and -1; a `candidates` batch other than `context`'s: InvalidArgument) |

plus `token_ids` (`token_ids`, `padding_mask` as packed: `[b, n]` or `[b, k, n]`) → `logits`
(or `score`). Texts are packed as in fine-tuning, segments trimmed round robin to fit `L`.

Example:
```python
# KERAS_BACKEND=tensorflow
from keras_gpt1.export import ExportOptions
from keras_gpt1.export.saved_model import export_in_process
path = export_in_process("my_preset", "/tmp/gpt1_serving", ExportOptions(version=1))
# then, in any TensorFlow program:
generate = tf.saved_model.load(path).signatures["serving_default"]
generate(text=tf.constant(["the cat sat"]))["text"]
```
"""

import contextlib
import errno
import functools
import inspect
import os
import threading

import keras
import numpy as np
import tensorflow as tf

from keras_gpt1 import presets
from keras_gpt1.models import preset_io
from keras_gpt1.export import ExportOptions, check_dtype_applies, is_preset_path, preset_of
from keras_gpt1.export.decode_step import make_serving_engine, one_query_attention
from keras_gpt1.export.int8_products import exact_int8_layers
from keras_gpt1.export.tensors import backend_value
from keras_gpt1.export.token_table import TransposedTokenTable
from keras_gpt1.utils.checks import check_integer
from keras_gpt1.utils import artifacts
from keras_gpt1.utils.files import atomic_dir, check_free_space, check_not_a_file, check_writable_dir
from keras_gpt1.utils.generation_defaults import DEFAULT_MAX_NEW_TOKENS
from keras_gpt1.utils.locks import holding_output

_STRINGS = tf.TensorSpec([None], tf.string)
_TRACE_LOCK = threading.Lock()


# === Graph-only replacements for ops TF Serving cannot run ===


def dynamic_update_slice(inputs, start_indices, updates):
    """`inputs` with `updates` written at `start_indices`, in core TF ops (no XLA).

    Same semantics as `keras.ops.slice_update` (start indices clamped so the update fits, as in
    XLA). `TensorStridedSliceUpdate` writes the slice into `inputs`' own buffer when nothing else
    reads it (a KV cache inside the decode loop), else into one copy: a pad-and-select update
    would build two full-size tensors per write and read three.
    """
    inputs = tf.convert_to_tensor(inputs)
    updates = tf.cast(tf.convert_to_tensor(updates), inputs.dtype)
    start = tf.stack([tf.cast(i, tf.int32) for i in start_indices])
    room = tf.shape(inputs) - tf.shape(updates)
    start = tf.maximum(tf.minimum(start, room), 0)
    result = tf.raw_ops.TensorStridedSliceUpdate(
        input=inputs, begin=start, end=start + tf.shape(updates), strides=tf.ones_like(start), value=updates
    )
    # Keep the static shape: loop variables must not lose it between iterations.
    result.set_shape(inputs.shape)
    return result


def batch_matmul_attention(query, key, value, bias=None, mask=None, scale=None, is_causal=False, **options):
    """`keras.ops.dot_product_attention` over `[batch, length, heads, head_dim]` tensors, with the
    heads moved to the front and two `BatchMatMul`s.

    Keras's TensorFlow version contracts with two `Einsum`s; outside XLA, oneDNN's einsum kernel
    costs far more per call than the few kilobytes a decode step's attention reads, and it is
    called twice per layer and token. Logits and softmax are in float32 (as Keras computes them),
    masked positions get Keras's large negative logit. What this does not cover (a bias, a causal
    flag, grouped heads, flash attention, a logit cap) goes to Keras's own function.
    """
    from keras.src.backend.tensorflow import nn

    query, key, value = (tf.convert_to_tensor(t) for t in (query, key, value))
    unusual = bias is not None or is_causal or any(v is not None for v in options.values())
    if unusual or query.shape[2] != key.shape[2]:
        return _KERAS_ATTENTION[0](query, key, value, bias, mask, scale, is_causal, **options)
    if scale is None:
        scale = 1.0 / tf.sqrt(tf.cast(tf.shape(key)[-1], tf.float32))
    if query.shape[1] == 1 and (mask is None or (mask.shape.rank == 4 and mask.shape[1] == 1)):
        return one_query_attention(query, key, value, mask, scale)
    heads_first = [0, 2, 1, 3]
    q, k, v = (tf.transpose(t, heads_first) for t in (query, key, value))
    logits = tf.cast(tf.matmul(q, k, transpose_b=True), tf.float32) * tf.cast(scale, tf.float32)
    if mask is not None:
        logits = tf.where(tf.cast(mask, tf.bool), logits, nn._get_large_negative(tf.float32))
    probabilities = tf.cast(tf.nn.softmax(logits, axis=-1), value.dtype)
    return tf.transpose(tf.matmul(probabilities, v), heads_first)


_KERAS_ATTENTION = []  # Keras's own function while the swap is on


@contextlib.contextmanager
def _core_tf_tracing():
    """Traces the model for a server: `keras.ops.slice_update` (the KV cache writes) as
    `dynamic_update_slice`, `keras.ops.dot_product_attention` as `batch_matmul_attention`.

    Keras's TensorFlow backend implements the first with `XlaDynamicUpdateSlice`, which TF
    Serving fails on outside an XLA cluster; the second is only faster. The swap lasts only while
    the signatures are traced.
    """
    from keras.src.backend.tensorflow import core, nn

    with _TRACE_LOCK:
        originals = core.slice_update, nn.dot_product_attention
        _KERAS_ATTENTION[:] = [nn.dot_product_attention]
        core.slice_update, nn.dot_product_attention = (dynamic_update_slice, batch_matmul_attention)
        try:
            yield
        finally:
            core.slice_update, nn.dot_product_attention = originals
            _KERAS_ATTENTION.clear()


def round_robin_lengths(lengths, budget):
    """Tokens kept per segment when `budget` is dealt one token at a time, left to right.

    `lengths` is int32 `[n, segments]`. The result equals `tensorflow_text.RoundRobinTrimmer`'s
    allocation: segments shorter than their share keep everything, the rest split what is left
    (earlier segments get the odd token).

    Example:
    ```python
    round_robin_lengths(tf.constant([[3, 4, 2]]), 5)   # [[2, 2, 1]]
    ```
    """
    lengths = tf.convert_to_tensor(lengths, tf.int32)
    levels = tf.range(budget + 1, dtype=tf.int32)
    # filled[r, t] = tokens kept in row r if every segment were cut at t; non-decreasing in t.
    filled = tf.reduce_sum(tf.minimum(lengths[:, :, None], levels[None, None, :]), axis=1)
    level = tf.reduce_sum(tf.cast(filled <= budget, tf.int32), axis=1) - 1
    base = tf.minimum(lengths, level[:, None])
    spare = budget - tf.reduce_sum(base, axis=1)
    can_grow = lengths > level[:, None]
    rank = tf.cumsum(tf.cast(can_grow, tf.int32), axis=1)
    return base + tf.cast(can_grow & (rank <= spare[:, None]), tf.int32)


def round_robin_trim(segments, budget):
    """Trims ragged `[n, (tokens)]` segments to `budget` tokens per row in total (round robin)."""
    lengths = tf.stack([tf.cast(s.row_lengths(), tf.int32) for s in segments], axis=1)
    keep = round_robin_lengths(lengths, budget)
    trimmed = []
    for i, segment in enumerate(segments):
        position = tf.ragged.range(tf.cast(segment.row_lengths(), tf.int32))
        trimmed.append(tf.ragged.boolean_mask(segment, position < keep[:, i : i + 1]))
    return trimmed


def _serving_preprocessor(family, tokenizer, sequence_length):
    """The family's preprocessor with its trimming in core TF ops instead of
    `TFText>RoundRobinTrim`; everything else (segment order, both orders for similarity, one
    sequence per candidate) is the preprocessor's own `call`."""

    class ServingPreprocessor(family.task_class.preprocessor_cls):
        def _trim(self, segments, budget):
            return round_robin_trim(segments, budget)

    ServingPreprocessor.__name__ = f"Serving{family.task_class.preprocessor_cls.__name__}"
    return ServingPreprocessor(tokenizer, sequence_length=sequence_length, **family.preprocessor_kwargs)


# === Loading ===


def load_model(preset_dir, dtype=None):
    """The model of a preset directory (or `"gpt1"`, a `hf://` handle): its task model if it has
    `task.json`, else a causal LM, in `dtype` (see `with_export_dtype`)."""

    preset_dir = os.fspath(preset_io.resolve_preset(preset_dir))
    if not os.path.isdir(preset_dir):
        raise FileNotFoundError(f"Model directory {preset_dir!r} does not exist (expected a preset).")
    if preset_io.holds_task_model(preset_dir):
        from keras_gpt1.tasks import GPT1Task

        check_dtype_applies(dtype, "a task model")
        return GPT1Task.from_preset(preset_dir)
    from keras_gpt1.models import GPT1CausalLM

    # A quantized preset loads as saved (a float `dtype=` would not fit its int8 weights), and
    # `with_export_dtype` then refuses a float dtype for it.
    quantized = bool(preset_io.with_saved_dtype(preset_dir, {}))
    float_dtype = {"dtype": dtype} if dtype in ("float32", "bfloat16") and not quantized else {}
    return with_export_dtype(GPT1CausalLM.from_preset(preset_dir, **float_dtype), dtype)


def _quantization_modes(model):
    return {layer.quantization_mode for layer in model._flatten_layers()} - {None}


def with_export_dtype(lm, dtype):
    """`lm`, loaded with `dtype=` for `"float32"` / `"bfloat16"`, checked; for `"int8"`
    quantized with Keras's `quantize("int8")` (a model already in int8 stays as it is). A
    quantized model cannot be turned back into floats or quantized otherwise: a ValueError says so."""
    if dtype is None:
        return lm
    modes = _quantization_modes(lm)
    if modes:
        if modes == {dtype}:
            return lm
        raise ValueError(
            f"The model is already quantized ({', '.join(sorted(modes))}): it cannot be exported with "
            f"`dtype={dtype!r}`. Leave `dtype` out to export it as it is."
        )
    if dtype == "int8":
        import warnings

        with warnings.catch_warnings():
            # Keras warns for every layer without weights to quantize (LayerNorm, Dropout).
            warnings.filterwarnings("ignore", message=".*does not have a `quantize` method")
            lm.quantize("int8")
        return lm
    computes = keras.backend.standardize_dtype(lm.backbone.embeddings.compute_dtype)
    if computes != dtype:  # a model object must come through a preset loaded with `dtype=`
        raise ValueError(f"The model computes in {computes}, not the requested {dtype}.")
    return lm


def _finetune_record(preset_dir):
    """The `finetune.json` that `keras-gpt1 finetune` writes beside a task preset ({} if none)."""
    from keras_gpt1.utils.files import read_json

    path = os.path.join(os.fspath(preset_dir), presets.FINETUNE_FILE)
    if not os.path.isfile(path):
        return {}
    record = read_json(path, "fine-tuning record")
    if not isinstance(record, dict):
        raise ValueError(f"Corrupt fine-tuning record {path!r}: expected a JSON object.")
    return record


def _untruncated_tokenizer(tokenizer, model):
    if tokenizer is None:
        raise ValueError(
            f"The {type(model).__name__} has no tokenizer: the exported signatures take raw text. "
            "Save the model with its GPT1Tokenizer (a preset with tokenizer.json), or give it one "
            "before exporting (`model.tokenizer = ...` for a causal LM, `model.preprocessor = ...` for a task)."
        )
    # A causal LM's signatures feed it tokenized text only, which never holds the special
    # tokens (a pretrained GPT-1 has no rows for them); task signatures pack with them.
    from keras_gpt1.models import GPT1CausalLM

    if isinstance(model, GPT1CausalLM):
        needed, what = tokenizer.base_vocabulary_size, "ids that text can produce"
    else:
        needed, what = tokenizer.vocabulary_size(), "ids, special tokens included,"
    if needed > model.backbone.vocabulary_size:
        raise ValueError(
            f"The tokenizer has {needed} {what} but the model only "
            f"{model.backbone.vocabulary_size} embedding rows: they do not belong together."
        )
    if tokenizer.sequence_length is None:
        return tokenizer
    # The signatures truncate by their own rules; they need whole token sequences.
    config = dict(tokenizer.get_config(), sequence_length=None)
    return type(tokenizer)(vocabulary=tokenizer.vocabulary, merges=tokenizer.merges, **config)


def _tokenizer_state(tokenizer):
    # The tf.Module holding the tokenizer's lookup tables (tracked so the SavedModel saves them).
    return getattr(tokenizer, "tf_module", None) or tokenizer._tf_state


def _tf_variable(variable):
    # The tf.Variable under a Keras variable. The graph reads these; tracking them (not the Keras
    # wrappers) gives the SavedModel one variable each, which TF1-style loaders (TF Serving,
    # `saved_model_cli run`) restore by name. Tracking the wrappers saved a second, unused copy.
    value = backend_value(variable)
    return value if isinstance(value, tf.Variable) else variable


# === Causal LM signatures ===


def _function(input_signature, around=contextlib.nullcontext):
    """`tf.function` with a fixed signature, graph mode only (no XLA: see the module docstring),
    traced inside the context `around()`."""

    def decorate(fn):
        parameters = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        names = [
            spec.name or (parameters[i] if i < len(parameters) else f"input_{i}")
            for i, spec in enumerate(input_signature)
        ]

        @functools.wraps(fn)
        def traced(*args):
            # A tensor of the wrong rank would fail deep inside ("Incompatible shapes: [3] vs.
            # [2]"); EnsureShape checks each input when the signature runs (a static rank check
            # would be folded away, as the placeholder's shape is known when tracing) and its
            # InvalidArgument names the input and the shape it must have.
            args = [
                tf.ensure_shape(
                    arg, spec.shape, name=f"{name}_must_have_shape_{'x'.join(['n'] * spec.shape.rank) or 'scalar'}"
                )
                for arg, spec, name in zip(args, input_signature, names)
            ]
            with around():
                return fn(*args)

        return tf.function(traced, input_signature=input_signature, autograph=False)

    return decorate


def _ragged_positions(ids):
    return tf.ragged.range(tf.cast(ids.row_lengths(), tf.int32))


def _pad_columns(dense, width):
    return tf.pad(dense, [[0, 0], [0, width - tf.shape(dense)[1]]])


def _causal_lm_functions(lm, tokenizer, max_length, default_max_new_tokens, token_table):
    from keras_gpt1.generation.decode_loop import DecodeLoop
    from keras_gpt1.generation.prompts import new_token_allowance
    from keras_gpt1.generation.samplers import Greedy
    from keras_gpt1.generation.score import _token_log_likelihoods

    backbone = lm.backbone
    context = backbone.max_sequence_length
    vocabulary_size = backbone.vocabulary_size
    engine = make_serving_engine(lm, token_table)

    @contextlib.contextmanager
    def tracing():
        # The LM head reads the transposed token table; int8 layers multiply in float32.
        with token_table.tracing(), exact_int8_layers(lm):
            yield

    # Shared by the text signatures: traced once, called from each.
    @_function([_STRINGS])
    def tokenize(text):
        return tf.cast(tokenizer.tokenize(text), tf.int32)

    @_function([_STRINGS, tf.TensorSpec([], tf.int32)], tracing)
    def generate(text, max_new_tokens):
        ids = tokenize(text)
        batch = tf.shape(text)[0]
        new = tf.clip_by_value(tf.cast(max_new_tokens, tf.int32), 1, max_length - 1)
        # The library's capping rule: every prompt is kept whole, and a row generates what fits
        # after it in the window. An empty prompt, or one that fills the window, generates nothing
        # (`generate` refuses those; a server answers every row).
        prompt_lengths = tf.cast(ids.row_lengths(), tf.int32)
        allowed = new_token_allowance(prompt_lengths, new, max_length)
        runs = allowed > 0
        # A row that generates nothing decodes from one pad token (all rows advance together);
        # its output is discarded below.
        lengths = tf.where(runs, prompt_lengths, 1)
        ends = tf.where(runs, prompt_lengths + allowed, 2)
        total = tf.maximum(tf.reduce_max(tf.concat([ends, [2]], 0)), 2)
        decoded = tf.ragged.boolean_mask(ids, _ragged_positions(ids) < tf.where(runs, prompt_lengths, 0)[:, None])
        tokens = _pad_columns(decoded.to_tensor(0), total)
        # Prefill the prefix that every row has; rows then step through the rest of their prompt.
        # (`total - 1` only matters for an empty batch: the first step must fit in the buffer.)
        prefill = tf.reduce_min(tf.concat([lengths, [total - 1]], 0))
        loop = DecodeLoop(engine, Greedy(), batch, total, prefill, False, False, vocabulary_size)

        def decode():
            out = loop.run(tokens, lengths, prefill, ends, tf.constant(0, tf.int32), None)
            return tf.cast(out["token_ids"], tf.int32), tf.cast(out["lengths"], tf.int32)

        # The loop's stopping rule reduces over the rows: an empty batch must not enter it.
        out_tokens, out_lengths = tf.cond(batch > 0, decode, lambda: (tokens, lengths))
        position = tf.range(tf.shape(out_tokens)[1])[None, :]
        fresh = runs[:, None] & (position >= prompt_lengths[:, None]) & (position < out_lengths[:, None])
        completion = tf.ragged.boolean_mask(out_tokens, fresh).with_row_splits_dtype(ids.row_splits.dtype)
        whole = tf.concat([ids, completion], axis=1)
        return {
            "text": tokenizer.detokenize(whole),
            "completion": tokenizer.detokenize(completion),
            "token_ids": whole.to_tensor(0),
            "lengths": tf.cast(whole.row_lengths(), tf.int32),
            "prompt_lengths": prompt_lengths,
            "max_new_tokens": allowed,
        }

    @_function([_STRINGS], tracing)
    def score(text):
        ids = tokenize(text)[:, :context]
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        width = tf.maximum(tf.reduce_max(tf.concat([lengths, [2]], 0)), 2)
        token_ids = _pad_columns(ids.to_tensor(0), width)
        padding_mask = tf.sequence_mask(lengths, width, tf.int32)
        per_token = tf.cast(_token_log_likelihoods(lm, token_ids, padding_mask), tf.float32)
        scored = tf.cast(padding_mask[:, 1:], tf.float32)
        log_likelihood = tf.reduce_sum(per_token * scored, axis=1)
        count = tf.reduce_sum(scored, axis=1)
        perplexity = tf.where(
            count > 0, tf.exp(-log_likelihood / tf.maximum(count, 1.0)), tf.constant(np.nan, tf.float32)
        )
        return {
            "log_likelihood": log_likelihood,
            "perplexity": perplexity,
            "num_scored_tokens": tf.cast(count, tf.int32),
        }

    @_function([tf.TensorSpec([None, None], tf.int32)] * 2, tracing)
    def logits(token_ids, padding_mask):
        token_ids, padding_mask = _checked_token_inputs(token_ids, padding_mask, vocabulary_size, context)
        out = lm({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)
        return {"logits": tf.cast(out, tf.float32)}

    @_function([_STRINGS])
    def serving_default(text):
        return generate(text, tf.constant(default_max_new_tokens, tf.int32))

    return {"serving_default": serving_default, "generate": generate, "score": score, "token_ids": logits}


def _checked_token_inputs(token_ids, padding_mask, vocabulary_size, context):
    """Rejects (InvalidArgument, not a crash) ids outside the vocabulary and too-long inputs."""
    checks = [
        tf.debugging.assert_equal(
            tf.shape(token_ids), tf.shape(padding_mask), message="token_ids and padding_mask shapes differ"
        ),
        tf.debugging.assert_non_negative(token_ids, message="token ids must be >= 0"),
        tf.debugging.assert_less(
            token_ids, tf.constant(vocabulary_size, tf.int32), message=f"token ids must be < {vocabulary_size}"
        ),
        tf.debugging.assert_less_equal(
            tf.shape(token_ids)[-1], context, message=f"sequences must have at most {context} tokens"
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(token_ids), tf.identity(padding_mask)


# === Task signatures ===


def _task_functions(model, tokenizer, family, sequence_length, label_names):
    preprocessor = _serving_preprocessor(family, tokenizer, sequence_length)
    backbone = model.backbone
    regression = getattr(model, "is_regression", False)
    output_name = "score" if regression else "logits"
    names = None
    if label_names is not None and not regression and family.labels != "index":
        if len(label_names) != model.head.units:
            raise ValueError(f"{len(label_names)} class names for a head of {model.head.units} classes.")
        names = tf.constant([str(n) for n in label_names])

    def run(packed):
        # Every sequence ends at its extract token: padding past the longest row is dropped.
        longest = tf.reduce_max(tf.concat([tf.reshape(tf.reduce_sum(packed["padding_mask"], -1), [-1]), [1]], 0))
        packed = {k: v[..., :longest] for k, v in packed.items()}
        return tf.cast(model(packed, training=False), tf.float32)

    def answer(output):
        if regression:
            return {"score": output}
        label = tf.argmax(output, axis=-1, output_type=tf.int32)
        out = {"probabilities": tf.nn.softmax(output, axis=-1), "label": label}
        if names is not None:
            out["label_name"] = tf.gather(names, label)
        return out

    input_names = [name for name, _ in family.serving_inputs]
    specs = [tf.TensorSpec([None] * rank, tf.string, name=name) for name, rank in family.serving_inputs]

    @_function(specs)
    def serving(*texts):
        batch = tf.shape(texts[0])[0]
        # Inputs of different batch sizes are a malformed request: InvalidArgument naming them.
        checks = [
            tf.debugging.assert_equal(
                tf.shape(t)[0], batch,
                message=f"`{name}` must have one row per `{input_names[0]}` text; their batch sizes differ",
            )
            for t, name in zip(texts[1:], input_names[1:])
        ]  # fmt: skip
        with tf.control_dependencies(checks):
            texts = [tf.identity(t) for t in texts]
        x = texts[0] if len(texts) == 1 else tuple(texts)
        if not any(rank == 2 for _, rank in family.serving_inputs):
            return answer(run(preprocessor(x)))
        candidates = texts[-1]

        def no_candidates():  # k = 0: nothing to choose from, an empty answer per row
            return {"probabilities": tf.zeros([batch, 0], tf.float32), "label": tf.fill([batch], -1)}

        return tf.cond(tf.shape(candidates)[1] > 0, lambda: answer(run(preprocessor(x))), no_candidates)

    rank = len(model.input_shape_per_example) + 1

    @_function([tf.TensorSpec([None] * rank, tf.int32)] * 2)
    def logits(token_ids, padding_mask):
        token_ids, padding_mask = _checked_token_inputs(
            token_ids, padding_mask, backbone.vocabulary_size, backbone.max_sequence_length
        )
        out = model({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)
        return {output_name: tf.cast(out, tf.float32)}

    return {"serving_default": serving, "token_ids": logits}


# === The module and the export ===


def build_serving_module(
    model, max_length=None, default_max_new_tokens=DEFAULT_MAX_NEW_TOKENS, task=None, label_names=None
):
    """A `tf.Module` holding the model's variables, the tokenizer's tables and the signatures.

    Returns `(module, signatures)`, `signatures` mapping each signature name to its
    `tf.function`. Save them with `save_serving_module` (not `tf.saved_model.save` directly:
    saving traces the functions again, and must do so without XLA ops).

    Args:
        model: a `GPT1CausalLM` or a task model, with its tokenizer.
        max_length: longest sequence the signatures build: prompt + new tokens for a causal
            LM, the packed length for a task model. Default: the task preprocessor's length, else
            the model's context, which is also the maximum.
        default_max_new_tokens: tokens `serving_default` generates (causal LM).
        task: for a `GPT1TextClassifier`, `"classification"` (one `text`) or `"entailment"`
            (`text_a`, `text_b`); default: what its preprocessor takes (a pair: entailment).
        label_names: class names in index order (a classifier): adds a `label_name` output.

    Example:
    ```python
    module, signatures = build_serving_module(GPT1CausalLM.from_preset("my_preset"))
    save_serving_module(module, signatures, "/tmp/gpt1/1")
    ```
    """
    if keras.config.backend() != "tensorflow":
        raise ValueError(
            "build_serving_module traces the model into a TensorFlow graph and needs "
            f"KERAS_BACKEND=tensorflow (this process runs {keras.config.backend()!r}); use "
            "keras_gpt1.export.export_saved_model, which switches backend by itself."
        )
    from keras_gpt1.models import GPT1CausalLM

    context = model.backbone.max_sequence_length
    if isinstance(model, GPT1CausalLM):
        if task is not None:
            raise ValueError(
                f"`task={task!r}` applies to fine-tuned task models; this is a causal language model "
                "(GPT1CausalLM: text generation and scoring), which has no task: leave `task` out."
            )
        tokenizer = _untruncated_tokenizer(model.tokenizer, model)
        limit = check_integer("max_length", context if max_length is None else max_length, 2, context)
        new = check_integer("default_max_new_tokens", default_max_new_tokens, 1, 1 << 30)
        token_table = TransposedTokenTable(model)
        functions = _causal_lm_functions(model, tokenizer, limit, min(new, limit - 1), token_table)
    else:
        from keras_gpt1.tasks.registry import family_of

        family = family_of(model, task)
        tokenizer = _untruncated_tokenizer(getattr(model.preprocessor, "tokenizer", None), model)
        minimum = 2 * len(family.roles) + 1  # special tokens + one token per segment
        if max_length is None:  # the length the task was trained at, which its preprocessor keeps
            max_length = getattr(model.preprocessor, "sequence_length", None) or context
        limit = check_integer("max_length", max_length, minimum, context)
        functions = _task_functions(model, tokenizer, family, limit, label_names)
        token_table = None

    module = tf.Module(name="gpt1_serving")
    # Variables and lookup tables the functions capture must be tracked to be saved. The
    # variables of a transposed token table are read by no function: saving them would store
    # the table twice.
    replaced = token_table.replaced if token_table is not None else set()
    module.model_variables = [_tf_variable(v) for v in model.variables if id(v) not in replaced]
    if token_table is not None and token_table.table is not None:
        module.model_variables.append(token_table.table)
    module.tokenizer_tables = _tokenizer_state(tokenizer)
    for name, function in functions.items():
        setattr(module, name, function)
    return module, functions


def save_serving_module(module, signatures, path):
    """`tf.saved_model.save` with the functions traced in core TF ops only (see the docstring).

    TensorFlow reports a full disk as a `ResourceExhaustedError` and a read-only one as some other
    `OpError`; both become the `OSError` (ENOSPC, EROFS) that `keras_gpt1.utils.files` names."""
    try:
        with _core_tf_tracing():
            tf.saved_model.save(module, os.fspath(path), signatures=signatures)
    except tf.errors.OpError as e:
        for code, text in (
            (errno.ENOSPC, "No space left"),
            (errno.EDQUOT, "quota exceeded"),
            (errno.EROFS, "Read-only"),
        ):
            if text.lower() in str(e.message).lower():
                raise OSError(code, os.strerror(code), os.fspath(path)) from None
        raise


# The base folder is locked for the whole export: a second writer into it is refused at once.
@holding_output("output_dir", "export", before=check_writable_dir)
def export_in_process(model, output_dir, options=None):
    """Writes `output_dir/<version>/` (a SavedModel) in this process; needs the TensorFlow backend.

    `model` is a preset directory (or `"gpt1"`, a `hf://` handle) or a `GPT1CausalLM` / task
    model, and `options` an `ExportOptions` (default: its defaults), the same object the worker
    receives from another backend. A directory written by `keras-gpt1 finetune` also gives, from
    its `finetune.json`, the task (so an entailment model needs no `task`), the packed length used
    in training (the default `max_length`) and the class names (a `label_name` output). The
    version directory is written beside its final place and renamed into it, so a server
    watching `output_dir` never loads a half-written model. A model object exported in another
    `dtype` is saved to a temporary preset and reloaded in it (`preset_of`), so the caller's
    model is left as it is. Returns the version directory's path.

    Example:
    ```python
    export_in_process("my_preset", "/tmp/gpt1_serving", ExportOptions(version=2))   # /tmp/gpt1_serving/2
    ```
    """
    options = ExportOptions.from_keywords(options)
    output_dir = os.path.abspath(os.fspath(output_dir))
    target = os.path.join(check_not_a_file(output_dir), str(options.version))
    # A base folder holds version folders only: never a model, a run or a SavedModel itself.
    artifacts.check_output_artifact(output_dir, (artifacts.EXPORT_BASE,), what="Export base directory")
    if os.path.exists(target) and not options.overwrite:
        raise ValueError(f"{target!r} already exists: pick another `version`, or pass `overwrite=True`.")
    if is_preset_path(model) or options.dtype is None:
        return _write_version(model, target, options)
    with preset_of(model, options.dtype) as preset_dir:
        return _write_version(preset_dir, target, options)


def _write_version(model, target, options):
    """Loads `model` when it is a preset, traces it and writes the SavedModel at `target`."""
    from keras_gpt1.models import GPT1CausalLM

    task, max_length, label_names = options.task, options.max_length, None
    if is_preset_path(model):
        record = _finetune_record(model)
        model = load_model(model, options.dtype)
        if record and not isinstance(model, GPT1CausalLM):
            trained = record.get("task")
            if task is not None and trained is not None and task != trained:
                raise ValueError(
                    f"The model was fine-tuned for the {trained!r} task (its finetune.json says so), "
                    f"not {task!r}: leave `task` out to export it as {trained}."
                )
            task = task or trained
            max_length = max_length or record.get("sequence_length")
            label_names = record.get("label_names")
    # The space is checked before the (slow) tracing, and again when the export is staged.
    weights_bytes = sum(
        int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize for v in model.variables
    )
    check_free_space(target, weights_bytes, "SavedModel")
    module, signatures = build_serving_module(model, max_length, options.max_new_tokens, task, label_names)
    # Staged under a non-numeric name (TF Serving ignores it while it is being written), with
    # the umask's permissions so a server running as another user can read it.
    with atomic_dir(target, "SavedModel", weights_bytes) as staging:
        save_serving_module(module, signatures, staging)
    return target


# === Reading an export back (protos only: nothing is loaded or run) ===


def _read_saved_model(export_dir):
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(os.fspath(export_dir), "saved_model.pb")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No SavedModel in {os.fspath(export_dir)!r}: {path!r} is missing.")
    saved_model = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    return saved_model


def signature_summary(export_dir):
    """`{signature: {"inputs"|"outputs": {name: (dtype, shape)}}}` of an export, `None` for an
    unknown dimension.

    Example:
    ```python
    signature_summary("/tmp/gpt1_serving/1")["score"]["inputs"]   # {"text": ("string", (None,))}
    ```
    """
    summary = {}
    for meta_graph in _read_saved_model(export_dir).meta_graphs:
        for name, signature in sorted(meta_graph.signature_def.items()):
            if name.startswith("__"):  # TF's internal `__saved_model_init_op`
                continue

            def describe(infos):
                out = {}
                for key, info in sorted(infos.items()):
                    shape = (
                        None
                        if info.tensor_shape.unknown_rank
                        else tuple(None if d.size < 0 else d.size for d in info.tensor_shape.dim)
                    )
                    out[key] = (tf.dtypes.as_dtype(info.dtype).name, shape)
                return out

            summary[name] = {"inputs": describe(signature.inputs), "outputs": describe(signature.outputs)}
    return summary


def graph_op_types(export_dir):
    """Every op type in an export's graphs, the function library included (a sorted list).

    Example:
    ```python
    assert "PyFunc" not in graph_op_types("/tmp/gpt1_serving/1")
    ```
    """
    ops = set()
    for meta_graph in _read_saved_model(export_dir).meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return sorted(ops)
