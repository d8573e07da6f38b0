"""A finished world's file record: the size and SHA-256 of every file, written into
`world.json` at the end of a build and checked before a build says the world is ready."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from tokenreward.errors import UserInputError
from tokenreward.io import read_json_file
from tokenreward.world import BUILD_STATE, MANIFEST
from tokenreward.world.families import DEFAULT_FAMILIES

UNRECORDED = {MANIFEST, BUILD_STATE, ".tokenreward.lock"}


def file_digests(root: Path) -> dict[str, dict[str, Any]]:
    """`{relative path: {"size": bytes, "sha256": hex}}` of every file of the world."""
    digests = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        if name in UNRECORDED or name.startswith("work/"):
            continue
        sha = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        digests[name] = {"size": path.stat().st_size, "sha256": sha.hexdigest()}
    return digests


def check_finished(
    root: Path, size: str, seed: int, families: tuple[str, ...] = DEFAULT_FAMILIES, reward_backbone: str | None = None
) -> None:
    """Refuse a finished world of another size, seed, families or reward backbone, or one whose
    files changed since its build."""
    chosen = "" if tuple(families) == DEFAULT_FAMILIES else f" --families {' '.join(families)}"
    chosen += "" if reward_backbone is None else " --reward-backbone PATH"
    fix = f"delete {root} and run `tokenreward world build --size {size} --seed {seed}{chosen} --out {root}` again"
    manifest = read_json_file(root / MANIFEST, fix)
    if (manifest.get("size"), manifest.get("seed")) != (size, seed):
        raise UserInputError(
            f"{root} holds a finished world of size {manifest.get('size')!r} and seed {manifest.get('seed')!r}, "
            f"not size {size!r} seed {seed}; use another --out, or {fix}"
        )
    built = tuple(manifest.get("sizes", {}).get("families", DEFAULT_FAMILIES))
    if built != tuple(families):
        raise UserInputError(
            f"{root} holds a finished world of the families {', '.join(built)}, not {', '.join(families)}; "
            f"use another --out, or {fix}"
        )
    if manifest.get("reward_backbone") != reward_backbone:
        raise UserInputError(
            f"{root} holds a finished world with {backbone_phrase(manifest.get('reward_backbone'))}, not "
            f"{backbone_phrase(reward_backbone)}; use another --out, or {fix}"
        )
    recorded = manifest.get("files")
    if recorded is None:
        print(f"{root}: built before file checksums were recorded; its files are not verified", file=sys.stderr)
        return
    for name, expected in recorded.items():
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"the world at {root} lacks its file {name}; {fix}")
        if path.stat().st_size != expected["size"]:
            raise UserInputError(
                f"the world file {path} has {path.stat().st_size} bytes, {expected['size']} when it was "
                f"built (truncated or changed); {fix}"
            )
    actual = file_digests(root)
    for name, expected in recorded.items():
        if actual[name]["sha256"] != expected["sha256"]:
            raise UserInputError(
                f"the world file {root / name} changed since the world was built (SHA-256 differs); {fix}"
            )


def backbone_phrase(name: str | None) -> str:
    """How an error names a world's reward model: its backbone, or the world's own GPT-2 one."""
    return "the world's GPT-2 reward model" if name is None else f"the reward backbone {name!r}"
