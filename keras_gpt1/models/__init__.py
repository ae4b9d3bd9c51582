from keras_gpt1.models.backbone import GPT1Backbone
from keras_gpt1.models.causal_lm import GPT1CausalLM


def __getattr__(name):
    # The preprocessor needs TensorFlow (the tokenizer's graph); it loads on first use.
    if name == "GPT1CausalLMPreprocessor":
        from keras_gpt1.models.causal_lm_preprocessor import GPT1CausalLMPreprocessor

        return GPT1CausalLMPreprocessor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
