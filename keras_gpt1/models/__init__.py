from keras_gpt1.models.backbone import GPT1Backbone
from keras_gpt1.models.causal_lm import GPT1CausalLM


def __getattr__(name):
    # The preprocessor needs TensorFlow: imported on first use, so that the models import without it.
    if name == "GPT1CausalLMPreprocessor":
        from keras_gpt1.models.causal_lm_preprocessor import GPT1CausalLMPreprocessor

        return GPT1CausalLMPreprocessor
    raise AttributeError(f"module 'keras_gpt1.models' has no attribute {name!r}")
