"""Every generated subcommand renders its help (argparse formats help text with `%`)."""

from __future__ import annotations

import pytest

from tokenreward.bench import BENCHES
from tokenreward.cli import build_parser
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
