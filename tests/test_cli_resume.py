"""`tokenreward train NAME --out OUT --resume` alone, for every registered trainer: the config is
rebuilt from the settings `OUT/run.json` recorded, and a flag given on the command line wins over
the recorded value (for `RunFolder` to compare)."""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from pathlib import Path

import pytest

from tokenreward.cli import build_parser
from tokenreward.config import config_from_args
from tokenreward.runnable import recorded_settings
from tokenreward.trainers import TRAINERS
from tokenreward.trainers.run_folder import settings_of


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def required_flags(cls: type, root: Path) -> list[str]:
    """A value for each required field of the config: a path under `root`, a name, a number."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            value = {int: "1", float: "0.5"}.get(hints[f.name], str(root / f.name))
            out += [flag(f.name), value]
    return out


@functools.cache
def parser():
    return build_parser()


def config_of(argv: list[str]):
    args = parser().parse_args(argv)
    spec = TRAINERS.get(args.method)
    return config_from_args(spec.config, args, **recorded_settings(spec.config, args))


SHIPPED = [name for name, spec in TRAINERS.items() if spec.config.__module__.startswith("tokenreward.")]


@pytest.mark.parametrize("name", SHIPPED)  # not the trainers other test modules register
def test_resume_alone_takes_the_recorded_settings(name, tmp_path):
    spec = TRAINERS.get(name)
    out = tmp_path / "run"
    started = config_of(["train", name, *required_flags(spec.config, tmp_path), "--out", str(out), "--seed", "7"])
    out.mkdir()
    (out / "run.json").write_text(json.dumps(settings_of(started)))
    resumed = config_of(["train", name, "--out", str(out), "--resume"])
    assert resumed.resume and settings_of(resumed) == settings_of(started)
    assert resumed == dataclasses.replace(started, resume=True)
    changed = config_of(["train", name, "--out", str(out), "--resume", "--seed", "8"])
    assert {k for k, v in settings_of(changed).items() if settings_of(started)[k] != v} == {"seed"}
