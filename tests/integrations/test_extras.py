"""The verl extra's pins agree with the packages it installs: the transformers range verl itself
declares, and the `kernels` that transformers' own "kernels" extra asks for at the installed version
(a base install brings a newer `kernels` that this transformers cannot import with)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import tomllib

pytest.importorskip("verl", reason="verl is not installed (pip install 'tokenreward[verl]')")

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
# every release line the checks below compare specifiers on (x.y.0 to x.y.9)
PROBE_VERSIONS = [
    Version(f"{major}.{minor}.{patch}") for major in (0, 5) for minor in range(30) for patch in range(10)
]


def verl_extra() -> dict[str, Requirement]:
    """pyproject.toml's verl extra, by package name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(line) for line in project["optional-dependencies"]["verl"]]
    return {requirement.name: requirement for requirement in requirements}


def declared(package: str, name: str, extra: str | None = None) -> Requirement:
    """The installed `package`'s requirement on `name` (under `extra`, or unconditional)."""
    for line in importlib.metadata.requires(package) or []:
        requirement = Requirement(line)
        in_extra = requirement.marker is not None and requirement.marker.evaluate({"extra": extra or ""})
        if requirement.name == name and (requirement.marker is None if extra is None else in_extra):
            return requirement
    raise AssertionError(f"{package} declares no requirement on {name} (extra {extra})")


def allowed(requirement: Requirement) -> list[Version]:
    return [version for version in PROBE_VERSIONS if requirement.specifier.contains(version, prereleases=False)]


def test_the_verl_extra_holds_transformers_where_verl_does():
    assert allowed(verl_extra()["transformers"]) == allowed(declared("verl", "transformers"))


def test_the_verl_extra_pins_the_kernels_that_the_installed_transformers_asks_for():
    transformers_version = Version(importlib.metadata.version("transformers"))
    assert verl_extra()["transformers"].specifier.contains(transformers_version)
    wanted = declared("transformers", "kernels", extra="kernels")
    assert allowed(verl_extra()["kernels"]) == allowed(wanted)
    assert wanted.specifier.contains(importlib.metadata.version("kernels"))


def test_transformers_models_import_with_the_installed_kernels():
    from transformers import PreTrainedModel  # raised ValueError with kernels 0.19 under transformers 5.10

    assert PreTrainedModel.__module__ == "transformers.modeling_utils"
