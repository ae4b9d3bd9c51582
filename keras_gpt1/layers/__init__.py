from keras_gpt1.layers.attention import GPT1Attention, causal_attention_mask
from keras_gpt1.layers.embedding import GPT1Embedding
from keras_gpt1.layers.transformer_block import GPT1Block
