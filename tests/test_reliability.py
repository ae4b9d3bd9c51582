"""Bad input and faults across the library: each gets a clear error naming the problem (never a
silent wrong result or a raw traceback), and no work is lost. See docs/reliability.md."""

import numpy as np
import pytest

from conftest import TINY_CONFIG
from keras_gpt1.cli import main as cli_main
from keras_gpt1.utils.checks import as_int32_ids

WIDE = 2**32 + 5  # int32 would wrap it to 5


@pytest.fixture(scope="module")
def lm():
    from keras_gpt1.models import GPT1Backbone, GPT1CausalLM

    return GPT1CausalLM(GPT1Backbone(**TINY_CONFIG))


# === Token ids that do not fit int32 are refused before any cast ===


@pytest.mark.parametrize(
    "values",
    [
        [5, WIDE, 7],
        np.array([5, WIDE, 7], dtype=np.int64),
        np.array([5, 2**63 + 5, 7], dtype=np.uint64),
        [5, 2**70, 7],  # past int64 too
        [5, -(2**31) - 1, 7],
    ],
    ids=["list", "int64", "uint64", "past-int64", "below-int32"],
)
def test_as_int32_ids_refuses_ids_int32_cannot_hold(values):
    with pytest.raises(ValueError, match=r"contains id -?\d+ at index \(1,\), outside the int32 range"):
        as_int32_ids(values)


def test_as_int32_ids_keeps_valid_ids_and_checks_the_vocabulary():
    np.testing.assert_array_equal(as_int32_ids(np.array([5, 6], np.uint64)), [5, 6])
    assert as_int32_ids(np.array([5, 6], np.int64)).dtype == np.int32
    with pytest.raises(ValueError, match=r"id 97 at index \(0,\), outside the vocabulary \[0, 97\)"):
        as_int32_ids([97], vocabulary_size=97)
    with pytest.raises(ValueError, match="integer token ids"):
        as_int32_ids([5, 1.5])


@pytest.mark.parametrize(
    "prompt",
    [
        [5, WIDE, 7],
        np.array([5, WIDE, 7]),
        np.array([5, 2**63 + 5, 7], dtype=np.uint64),
        [[5, WIDE, 7], [1, 2]],
        {"token_ids": np.array([[5, WIDE, 7]])},
    ],
    ids=["list", "int64", "uint64", "batch", "dict"],
)
def test_generate_and_score_refuse_wide_ids(lm, prompt):
    with pytest.raises(ValueError, match=r"contains id \d+ at index"):
        lm.generate(prompt, max_new_tokens=2)
    with pytest.raises(ValueError, match=r"contains id \d+ at index"):
        lm.score(prompt)


@pytest.mark.parametrize(
    "token_ids",
    [np.array([[5, WIDE, 7]]), np.array([[5, 2**63 + 5, 7]], np.uint64), [[5, WIDE, 7]]],
    ids=["int64", "uint64", "list"],
)
def test_model_call_predict_and_fit_refuse_wide_ids(lm, token_ids):
    x = {"token_ids": token_ids, "padding_mask": np.ones((1, 3), "int32")}
    with pytest.raises(ValueError, match=r"contains id \d+ at index \(0, 1\)"):
        lm(x)
    with pytest.raises(ValueError, match=r"contains id \d+ at index \(0, 1\)"):
        lm.predict(x, verbose=0)
    lm.compile(optimizer="sgd", jit_compile=False)
    with pytest.raises(ValueError, match=r"contains id \d+ at index \(0, 1\)"):
        lm.fit(x, np.zeros((1, 3), "int32"), epochs=1, verbose=0)


@pytest.fixture(scope="module")
def preset_dir(lm, tmp_path_factory):
    path = tmp_path_factory.mktemp("preset") / "tiny"
    lm.save_to_preset(str(path))
    return str(path)


@pytest.mark.parametrize("ids", [f"5 {WIDE} 7", f"5,{2**31},7", f"5 {2**80} 7", "5 -1 7"])
def test_cli_refuses_out_of_range_ids_in_one_line(preset_dir, ids, capsys):
    for command in (["score", "--ids", ids], ["generate", "--prompt-ids", ids, "--max-new-tokens", "2"]):
        assert cli_main([command[0], "--model", preset_dir, *command[1:]]) == 2
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err
        assert "outside" in err, err
