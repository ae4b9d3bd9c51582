"""Text generation and scoring for GPT-1: KV-cached decoding, samplers, log-likelihoods.

Example:
```python
from keras_gpt1 import GPT1CausalLM
lm = GPT1CausalLM.from_preset("gpt1_tiny", dropout=0.0)
lm.generate([5, 6, 7], max_new_tokens=8, sampler="top_k", k=5, seed=0)
lm.score([[5, 6, 7, 8]])
```
"""

from keras_gpt1.generation.generate import generate, generate_ids
from keras_gpt1.generation.samplers import (
    Beam,
    Greedy,
    Random,
    Sampler,
    TopK,
    TopP,
    get_sampler,
)
from keras_gpt1.generation.score import score
