"""Every generated subcommand renders its help (argparse formats help text with `%`)."""

from __future__ import annotations

import pytest

from tokenreward.bench import BENCHES
from tokenreward.cli import build_parser, main
from tokenreward.config import escape_help
from tokenreward.trainers import TRAINERS

COMMANDS = [["train", name] for name in TRAINERS.names()] + [["bench", name] for name in BENCHES.names()]
COMMANDS += [["score"], ["label"], ["demo"], ["world"], ["train"], ["bench"], ["serve"]]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_help_renders(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv + ["--help"])
    assert exit_info.value.code == 0
    assert f"usage: tokenreward {' '.join(argv)}" in capsys.readouterr().out


def test_percent_in_help_is_literal():
    import argparse

    parser = argparse.ArgumentParser(prog="p")
    parser.add_argument("--top", help=escape_help("keep the top 30% of tokens"))
    assert "keep the top 30% of tokens" in parser.format_help()


def test_version(capsys):
    assert main(["--version"]) == 0
    from tokenreward import __version__

    assert capsys.readouterr().out.strip() == f"tokenreward {__version__}"


HARNESS_FLAGS = [
    "--learning-rate",
    "--save-every",
    "--seed",
    "--resume",
    "--progress",
    "--max-grad-norm",
    "--bf16",
    "--gradient-accumulation",
    "--gradient-checkpointing",
]


OWN_TRAINERS = [
    n for n, spec in TRAINERS.items() if spec.run.__module__.startswith("tokenreward.")
]  # not the tests' fakes


@pytest.mark.parametrize("name", OWN_TRAINERS)
def test_every_trainer_speaks_one_vocabulary(name):
    """The harness flags under one spelling each, the old ones as aliases, ranges in the help."""
    import argparse

    from tokenreward.config import add_config_arguments

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TRAINERS.get(name).config)
    flags = {flag: action for action in parser._actions for flag in action.option_strings}
    assert all(flag in flags for flag in HARNESS_FLAGS), [f for f in HARNESS_FLAGS if f not in flags]
    assert flags["--lr"] is flags["--learning-rate"] and flags["--checkpoint-every"] is flags["--save-every"]
    assert "> 0.0" in flags["--learning-rate"].help and ">= 1" in flags["--save-every"].help
    assert not any(
        f.startswith("--checkpoint-every") or f == "--lr" for a in parser._actions for f in a.option_strings[:1]
    )
