"""The input files of a run, recorded when it starts and checked when it resumes: a resumed run
must read what the interrupted one read."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tokenreward.errors import UserInputError

INPUT_FIELDS = (
    "data",
    "eval_data",
    "prompts",
    "labels",
    "world",
    "tokenizer",
    "policy",
    "reference",
    "reward_model",
    "model",
    "backbone",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "merges.txt")
WORLD_MANIFEST = "world.json"


def file_digest(path: Path) -> dict[str, Any]:
    """{"size", "sha256"} of one file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def input_digests(config: Any) -> dict[str, dict[str, Any]]:
    """The size and SHA-256 of each input of a run, by field: a file given directly (data,
    prompts, labels, a GGUF model); for a folder, its world manifest (which holds the digests of
    the world's files) or its tokenizer files (a model's weights are not read). Hub names and
    missing paths are left out."""
    digests: dict[str, dict[str, Any]] = {}
    for name in INPUT_FIELDS:
        value = getattr(config, name, None)
        if not isinstance(value, (str, Path)) or not str(value):
            continue
        path = Path(value)
        if path.is_file():
            digests[name] = {"file": str(path), **file_digest(path)}
        elif path.is_dir():
            inside = [WORLD_MANIFEST] if (path / WORLD_MANIFEST).is_file() else TOKENIZER_FILES
            for file in (path / f for f in inside if (path / f).is_file()):
                digests[f"{name}/{file.name}"] = {"file": str(file), **file_digest(file)}
    return digests


def refuse_changed_inputs(recorded: dict[str, Any], current: dict[str, Any]) -> None:
    """An input file whose size or SHA-256 differs from the run's start is an error (inputs the
    run did not record, e.g. a run.json of an older release, count as unchanged)."""
    for key, before in recorded.items():
        now = current.get(key)
        if now is not None and (now["size"], now["sha256"]) != (before["size"], before["sha256"]):
            flag = "--" + key.split("/")[0].replace("_", "-")
            raise UserInputError(
                f"--resume: {flag} {before['file']} changed since the run started (size/sha256 differ); "
                "restore it or start a new run"
            )
