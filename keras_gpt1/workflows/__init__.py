"""Whole jobs, above the models they build: `pretrain` (the engine of `keras-gpt1 pretrain`, with
its checked `PretrainConfig`), and `finetune` / `evaluate`, the paper's fine-tuning recipe on a
task family (`keras-gpt1 finetune`, `keras-gpt1 evaluate`).

The modules are `pretraining.py` and `finetuning.py`, not named after the functions: a submodule
named `pretrain` would be bound over the function here as soon as anything imported it.

Example:
```python
from keras_gpt1.workflows import pretrain

result = pretrain(corpus=["my_corpus.txt"], preset="gpt1_tiny", steps=200, output="runs/tiny")
```
"""

from keras_gpt1.workflows.finetuning import evaluate, finetune
from keras_gpt1.workflows.pretrain_config import PretrainConfig
from keras_gpt1.workflows.pretraining import PretrainResult, pretrain

__all__ = ["PretrainConfig", "PretrainResult", "evaluate", "finetune", "pretrain"]
