"""`check_integer`, the one integer-argument check every public entry point uses."""

import json

import numpy as np
import pytest

from keras_gpt1.utils.checks import check_integer


def test_check_integer_accepts_python_and_numpy_integers_as_int():
    for value in (3, np.int64(3), np.int32(3), np.uint8(3)):
        result = check_integer("n", value, 1, 3)
        assert result == 3 and type(result) is int  # JSON-safe in configs
    assert check_integer("seed", -7) == -7  # no bounds given: any integer


@pytest.mark.parametrize(
    "args, message",
    [
        (("n", True, 0), r"`n` must be an integer >= 0; got True\."),
        (("n", 2.0, 1), r"`n` must be an integer >= 1; got 2\.0\."),
        (("n", "3", 1), r"`n` must be an integer >= 1; got '3'\."),
        (("n", None, 1), r"`n` must be an integer >= 1; got None\."),
        (("n", 0, 1), r"`n` must be an integer >= 1; got 0\."),
        (("n", 5, 1, 4), r"`n` must be an integer in \[1, 4\]; got 5\."),
        (("n", np.int64(0), 1, 4), r"`n` must be an integer in \[1, 4\]; got np\.int64\(0\)\."),
        (("n", 5, None, 4), r"`n` must be an integer <= 4; got 5\."),
        (("n", 1.5), r"`n` must be an integer; got 1\.5\."),
    ],
)
def test_check_integer_names_the_argument_and_its_bounds(args, message):
    with pytest.raises(ValueError, match=message):
        check_integer(*args)


def test_numpy_integer_arguments_reach_configs_as_python_ints():
    from keras_gpt1 import GPT1Backbone, GPT1Tokenizer
    from keras_gpt1.tasks import GPT1TextClassifier

    vocabulary = {"<unk>": 0, "a": 1, "b</w>": 2, "ab</w>": 3}
    tokenizer = GPT1Tokenizer(vocabulary, ["a b</w>"], sequence_length=np.int64(8))
    assert type(tokenizer.sequence_length) is int
    backbone = GPT1Backbone(
        vocabulary_size=16, num_layers=1, num_heads=1, hidden_dim=8, intermediate_dim=16, max_sequence_length=8
    )
    classifier = GPT1TextClassifier(backbone, num_classes=np.int64(3))
    assert type(classifier.num_classes) is int
    json.dumps([tokenizer.get_config(), classifier.get_config()["num_classes"]])
