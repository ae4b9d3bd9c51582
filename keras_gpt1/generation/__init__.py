"""Text generation and scoring for GPT-1: KV-cached decoding, samplers, log-likelihoods.

The decode loop runs over a decode engine (`engine.py` has the protocol, `registry.py` the
engines); logits processors (`LogitsProcessor`) change every step's logits for every engine.

Example:
```python
from keras_gpt1 import GPT1CausalLM
lm = GPT1CausalLM.from_preset("gpt1_tiny", dropout=0.0)
lm.generate([5, 6, 7], max_new_tokens=8, sampler="top_k", k=5, seed=0)
lm.score([[5, 6, 7, 8]])
```
"""

from keras_gpt1.generation.decode_loop import LogitsProcessor
from keras_gpt1.generation.engine import DecodeEngine, EngineUnavailable
from keras_gpt1.generation.generate import generate, generate_ids
from keras_gpt1.generation.keras_engine import KerasEngine
from keras_gpt1.generation.registry import make_engine, register_engine
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
