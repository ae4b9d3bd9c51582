"""Generation's defaults and names, defined once for the library, the export and the command line.

They live here, below every layer and importing nothing, so that the command line's parser
(built before Keras is imported, for a fast `--help`) reads the same values that
`GPT1CausalLM.generate`, `keras_gpt1.generation` and the export use.

Example:
```python
from keras_gpt1.utils.generation_defaults import DEFAULT_MAX_NEW_TOKENS, SAMPLER_NAMES
DEFAULT_MAX_NEW_TOKENS   # 32: what `generate` makes when given neither `max_length` nor `max_new_tokens`
SAMPLER_NAMES            # ("greedy", "random", "top_k", "top_p", "beam"): `get_sampler`'s names
```
"""

# New tokens per row when a call gives no length: `generate` without a preprocessor's
# `sequence_length`, `keras-gpt1 generate`, and the exported `serving_default` signature.
DEFAULT_MAX_NEW_TOKENS = 32

# The samplers by name, the default first (`keras_gpt1.generation.samplers.SAMPLERS` maps each to
# its class; `"temperature"` is accepted as another name for `"random"`).
SAMPLER_NAMES = ("greedy", "random", "top_k", "top_p", "beam")
