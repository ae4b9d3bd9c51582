"""The model shapes the benchmarks measure: GPT-1's 117M dimensions, and a tiny one for smoke runs.

The same dimensions as the `gpt1` and `gpt1_tiny` presets (a test checks it), written here so that
a benchmark's driver process need not import keras_gpt1, and with it a framework.
"""

FULL = dict(
    vocabulary_size=40478, num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072, max_sequence_length=512
)
TINY = dict(
    vocabulary_size=1024, num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=256, max_sequence_length=128
)


def config(quick):
    """`TINY` for a smoke run (`--quick`), else `FULL`."""
    return TINY if quick else FULL


def config_name(quick):
    return "tiny" if quick else "117M"


def openai_gpt_arguments(cfg):
    """`transformers.OpenAIGPTConfig`'s arguments for the shapes `cfg` (its MLP is 4 x wide, as GPT-1's).
    KerasHub's `GPT2Backbone` takes `cfg` itself: its arguments have the same names."""
    return dict(
        vocab_size=cfg["vocabulary_size"],
        n_positions=cfg["max_sequence_length"],
        n_embd=cfg["hidden_dim"],
        n_layer=cfg["num_layers"],
        n_head=cfg["num_heads"],
    )
