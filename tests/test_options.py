"""Rewarder options typed from the constructor; one NAME=VALUE parser; unknown options refused."""

from __future__ import annotations

import json

import pytest

from tokenreward.cli import main
from tokenreward.options import parse_assignments, parse_bool, typed_value
from tokenreward.rewards import build_rewarder, rewarder_options
from tokenreward.testing import tiny_reward_model


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("rm") / "rm"
    tiny_reward_model("gpt2", tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize(
    "text, value",
    [
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("1", True),
        ("false", False),
        ("False", False),
        ("NO", False),
        ("0", False),
    ],
)
def test_bools_in_any_case(text, value):
    assert parse_bool(text, "keep_sum") is value


@pytest.mark.parametrize(
    "text, annotation, expected",
    [
        ("0.5", "float", 0.5),
        ("2", "float", 2.0),
        ("3", "int", 3),
        ("none", "str | None", None),
        ("x y", "str | None", "x y"),
    ],
)
def test_typed_values(text, annotation, expected):
    got = typed_value(text, annotation, "opt")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("text, annotation", [("maybe", "bool"), ("0.5x", "float"), ("nan", "float"), ("1.5", "int")])
def test_bad_values_name_option_and_value(text, annotation):
    with pytest.raises(ValueError, match=rf"opt takes .*{text!r}"):
        typed_value(text, annotation, "opt")


def test_one_parser_reads_raw_text_and_refuses_bare_names():
    assert parse_assignments(["keep-sum=False", "beta_c = 0.5"], "--option") == {"keep_sum": "False", "beta_c": "0.5"}
    with pytest.raises(ValueError, match="--option expects NAME=VALUE, got 'keep_sum'"):
        parse_assignments(["keep_sum"], "--option")


@pytest.mark.parametrize("text, on", [("False", False), ("no", False), ("0", False), ("true", True), ("YES", True)])
def test_keep_sum_text_is_typed(rm_dir, text, on):
    red = build_rewarder("red", reward_model=str(rm_dir), device="cpu", keep_sum=text, beta_c="0.25")
    assert red.keep_sum is on and red.beta_c == 0.25


def test_misspelt_option_is_an_error_listing_valid_ones(rm_dir):
    with pytest.raises(
        ValueError, match=r"rewarder 'red' takes no option 'keep_summ'; its options: beta_c, keep_sum, alpha"
    ):
        build_rewarder("red", reward_model=str(rm_dir), keep_summ=True)
    assert list(rewarder_options("red")) == ["beta_c", "keep_sum", "alpha"]


def test_resources_are_offered_to_every_rewarder(rm_dir):
    """A resource a rewarder does not take (here a discriminator for RED) is no error."""
    red = build_rewarder(
        "red", {"reward_model": str(rm_dir), "discriminator": "unused", "policy": "unused"}, device="cpu"
    )
    assert red.keep_sum is False


def test_score_cli_option_false_is_off_and_misspelling_exits_2(rm_dir, capsys):
    args = [
        "score",
        "--rewarder",
        "red",
        "--reward-model",
        str(rm_dir),
        "--prompt",
        "2 + 2 =",
        "--response",
        " 4.",
        "--format",
        "json",
    ]
    assert main([*args, "--option", "keep_sum=False"]) == 0
    off = json.loads(capsys.readouterr().out)
    assert main([*args, "--option", "keep_sum=true"]) == 0
    on = json.loads(capsys.readouterr().out)
    assert sum(on["rewards"]) == pytest.approx(on["sequence_reward"], abs=1e-5)  # keep_sum on: the sum is kept
    assert off["rewards"] != on["rewards"]
    assert main([*args, "--option", "keep_summ=true"]) == 2
    assert "keep_summ" in capsys.readouterr().err


@pytest.mark.parametrize(
    "given, message",
    [
        ({"kep_sum": True}, "opt kep_sum: rewarder 'red' does not take it (it takes reward_model, tokenizer, beta_c,"),
        ({"a": 1, "b": 2}, "opt a, opt b: rewarder 'red' does not take them"),
        ({"keep_sum": 1}, "opt keep_sum: expected a boolean, got 1"),
        ({"beta_c": True}, "opt beta_c: expected a number, got a boolean"),
        ({"beta_c": float("inf")}, "opt beta_c: expected a finite number, got inf"),
        ({"beta_c": float("nan")}, "opt beta_c: expected a finite number, got nan"),
        ({"beta_c": "-inf"}, "opt beta_c takes a finite number, got '-inf'"),
        ({"keep_sum": "maybe"}, "opt keep_sum takes true/false (yes/no, 1/0), got 'maybe'"),
    ],
)
def test_rewarder_arguments_are_checked_against_the_constructor(given, message):
    from tokenreward.rewards import check_rewarder_arguments

    with pytest.raises(ValueError) as err:
        check_rewarder_arguments("red", given, lambda key: f"opt {key}")
    assert str(err.value).startswith(message)


def test_rewarder_arguments_are_typed_and_resources_pass_through():
    from tokenreward.rewards import check_rewarder_arguments

    given = {"beta_c": "0.5", "keep_sum": "yes", "alpha": 2, "reward_model": "folder"}
    assert check_rewarder_arguments("red", given, str) == {
        "beta_c": 0.5,
        "keep_sum": True,
        "alpha": 2,
        "reward_model": "folder",
    }
