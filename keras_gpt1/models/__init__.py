from keras_gpt1.models.backbone import GPT1Backbone
from keras_gpt1.models.causal_lm import GPT1CausalLM
