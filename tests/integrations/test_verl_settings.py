"""The `reward.tokenreward.*` block of a verl config, checked without verl: every error names the
verl key the user wrote (not a CLI flag), and every value is checked (types, finite numbers).

`settings.py` reads plain mappings and needs nothing of verl, but its package imports verl, so it
is loaded here from its file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import tokenreward


@pytest.fixture(scope="module")
def read_settings():
    path = Path(tokenreward.__file__).parent / "integrations" / "verl" / "settings.py"
    spec = importlib.util.spec_from_file_location("tokenreward_verl_settings", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module.read_settings
    del sys.modules[spec.name]


RED = {"rewarder": "red", "reward_model": "rm"}


@pytest.mark.parametrize(
    "block, message",
    [
        ({**RED, "loading": "bf16"}, "reward.tokenreward.loading: expected a mapping of dtype, device,"),
        ({**RED, "loading": {"dtype": "bf17"}}, "reward.tokenreward.loading.dtype bf17: choose auto, bfloat16"),
        (
            {**RED, "loading": {"max_batch_tokens": 0}},
            "reward.tokenreward.loading.max_batch_tokens 0: must be at least 1",
        ),
        (
            {**RED, "loading": {"max_batch_tokens": True}},
            "reward.tokenreward.loading.max_batch_tokens must be a whole",
        ),
        ({"rewarder": "red"}, "reward.tokenreward.reward_model: required by rewarder 'red'"),
        ({**RED, "beta_c": float("inf")}, "reward.tokenreward.beta_c: expected a finite number, got inf"),
        ({**RED, "beta_c": "abc"}, "reward.tokenreward.beta_c takes float, got 'abc'"),
        ({**RED, "keep_sum": 1}, "reward.tokenreward.keep_sum: expected a boolean, got 1"),
        ({**RED, "kep_sum": True}, "reward.tokenreward.kep_sum: unknown key for rewarder 'red'"),
        ({**RED, "batch_size": 0}, "reward.tokenreward.batch_size: must be a positive integer, got 0"),
    ],
)
def test_a_bad_block_is_refused_naming_the_verl_key(read_settings, block, message):
    with pytest.raises(ValueError) as err:
        read_settings(block)
    assert str(err.value).startswith(message) and "--" not in str(err.value)


def test_a_good_block_is_read_with_typed_options_and_the_default_reward_model(read_settings):
    settings = read_settings({"rewarder": "red", "beta_c": "0.5", "loading": {"dtype": "float32"}}, "verl-rm")
    assert settings.resources["beta_c"] == 0.5 and settings.resources["reward_model"] == "verl-rm"
    assert settings.resources["loading"].dtype == "float32"
