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


def every_parser(parser, name="tokenreward"):
    """(command line, parser) of the top-level parser and of every subcommand below it."""
    import argparse

    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from every_parser(child, f"{name} {sub}")


def test_no_parser_takes_abbreviations_and_every_help_names_one_default():
    parsers = list(every_parser(build_parser()))
    assert len(parsers) > len(COMMANDS)
    assert [name for name, parser in parsers if parser.allow_abbrev] == []
    doubled = [
        (name, action.option_strings)
        for name, parser in parsers
        for action in parser._actions
        if (action.help or "").count("(default:") > 1
    ]
    assert doubled == []


@pytest.mark.parametrize(
    "argv, unknown",
    [
        (["world", "build", "--siz", "small"], "--siz small"),
        (["train", "sft", "--data", "d", "--policy", "p", "--out", "o", "--learning", "1"], "--learning 1"),
        (["bench", "credit", "--rewarder", "red"], "--rewarder red"),
        (["score", "--rewarder", "uniform", "--prompt", "a", "--resp", "b"], "--resp b"),
        (["train", "--bogus", "sft", "--data", "d", "--policy", "p", "--out", "o"], "--bogus"),
    ],
)
def test_an_unknown_or_abbreviated_option_is_refused_by_its_subcommand(argv, unknown, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    command = " ".join(argv[: 1 if argv[0] == "score" else 2 if argv[1] != "--bogus" else 1])
    assert err[0].startswith(f"usage: tokenreward {command} ")
    assert err[-1] == f"tokenreward {command}: error: unrecognized arguments: {unknown}"
