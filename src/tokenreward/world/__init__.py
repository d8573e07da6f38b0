"""The world: a synthetic assistant domain with known token credit, and its models.

    from tokenreward.world import open_world
    world = open_world()                 # $TOKENREWARD_WORLD, else the cached full, else small world
    world.prompts("test")[0]             # {"id", "family", "prompt", "meta"}
    world.responses("test")[0]           # {..., "response", "oracle_score", "credit_spans"}
    build_rewarder("red", world.resources())

Build one with `tokenreward world build [--size small|full]` or
`tokenreward.worldbuild.build.build_world(out, size, seed)`.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from tokenreward.errors import UnknownNameError, UserInputError
from tokenreward.io import read_json_file

SPLITS = ("sft", "reward", "rl", "test")
MANIFEST = "world.json"
BUILD_STATE = "build-state.json"
STANDARD_FOLDERS = {"tokenizer": "tokenizer", "policy": "policy", "reward_model": "reward-model"}


def cache_dir() -> Path:
    """Where `tokenreward world build` puts worlds by default: `$XDG_CACHE_HOME/tokenreward`
    (`~/.cache/tokenreward`)."""
    from tokenreward.io import cache_root

    return cache_root()


def default_world_path(size: str, reward_backbone: str | None = None) -> Path:
    """`world-SIZE` in the cache directory; a world whose reward model starts from a pretrained
    backbone: `world-SIZE-NAME` (NAME: the backbone's file or folder name)."""
    return cache_dir() / (f"world-{size}" if reward_backbone is None else f"world-{size}-{reward_backbone}")


def _build_hint(path: Path, size: str = "small") -> str:
    return f"tokenreward world build --size {size} --out {path}"


class World:
    """A built world directory (see its README.md for the files)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifest = self.root / MANIFEST
        if not self.root.is_dir():
            raise FileNotFoundError(f"no world at {self.root}; build one with `{_build_hint(self.root)}`")
        if not manifest.is_file() and not (self.root / BUILD_STATE).is_file():
            raise FileNotFoundError(
                f"{self.root} is not a world folder (it has no {MANIFEST}); build one with `{_build_hint(self.root)}`"
            )
        if not manifest.is_file():
            done = []
            state = self.root / BUILD_STATE
            recorded = read_json_file(state, f"delete {self.root} and build it again") if state.is_file() else {}
            done, size = recorded.get("done", []), recorded.get("size", "small")
            raise FileNotFoundError(
                f"the world at {self.root} is half-built (finished stages: {', '.join(done) or 'none'}); "
                f"finish it with `{_build_hint(self.root, size)}`"
            )
        try:
            self.config: dict[str, Any] = json.loads(manifest.read_text())
        except ValueError:
            raise UserInputError(
                f"{manifest} is not valid JSON; the world is damaged: rebuild it with "
                f"`{_build_hint(self.root)}` after deleting {self.root}"
            ) from None
        self._check_sizes()
        for name in STANDARD_FOLDERS.values():
            if (
                not (self.root / name / "config.json").is_file()
                and not (self.root / name / "tokenizer.json").is_file()
            ):
                raise FileNotFoundError(
                    f"the world at {self.root} lacks its {name}/ folder; rebuild it with "
                    f"`{_build_hint(self.root, self.config.get('size', 'small'))}` after deleting {MANIFEST}"
                )

    def _check_sizes(self) -> None:
        """Every file recorded at the build still exists with its size (a cheap check; `world
        build` also compares the SHA-256)."""
        fix = (
            f"delete {self.root} and build it again with `{_build_hint(self.root, self.config.get('size', 'small'))}`"
        )
        for name, expected in self.config.get("files", {}).items():
            path = self.root / name
            if not path.is_file():
                raise FileNotFoundError(f"the world at {self.root} lacks its file {name}; {fix}")
            if path.stat().st_size != expected["size"]:
                raise UserInputError(
                    f"the world file {path} has {path.stat().st_size} bytes, {expected['size']} when it was "
                    f"built (truncated or changed); {fix}"
                )

    def __repr__(self) -> str:
        return f"World({str(self.root)!r}, size={self.config.get('size')!r}, seed={self.config.get('seed')!r})"

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / STANDARD_FOLDERS["tokenizer"]

    @property
    def policy_dir(self) -> Path:
        """The SFT policy, which is also the reference model."""
        return self.root / STANDARD_FOLDERS["policy"]

    @property
    def reward_model_dir(self) -> Path:
        return self.root / STANDARD_FOLDERS["reward_model"]

    @property
    def families(self) -> tuple[str, ...]:
        """The world's task families, in the order their prompts were drawn."""
        from tokenreward.world.families import DEFAULT_FAMILIES

        return tuple(self.config.get("sizes", {}).get("families", DEFAULT_FAMILIES))

    @property
    def metrics(self) -> dict[str, Any]:
        return self.config.get("metrics", {})

    @property
    def reward_backbone(self) -> dict[str, Any] | None:
        """The pretrained backbone the reward model started from (name, parameters, the pairs it
        trained on, its LoRA recipe), or None when the reward model is the world's GPT-2 one."""
        return recorded_backbone(self.config)

    def reward_model_description(self) -> str:
        """One line naming the world's reward model (what the benchmarks print and record)."""
        from tokenreward.world.readme import describe_reward_model

        return describe_reward_model(self.reward_backbone)

    def _records(self, kind: str, split: str) -> list[dict[str, Any]]:
        if split not in SPLITS:
            raise UserInputError(f"unknown split {split!r}; the world's splits are {', '.join(SPLITS)}")
        return _read_jsonl(self.root / "data" / f"{kind}.{split}.jsonl")

    def prompts(self, split: str) -> list[dict[str, Any]]:
        """Prompt records `{"id", "family", "prompt", "meta"}`."""
        return self._records("prompts", split)

    def responses(self, split: str) -> list[dict[str, Any]]:
        """Response records: `family`, `prompt`, `response`, `oracle_score`, `credit_spans`, ..."""
        return self._records("responses", split)

    def pairs(self, split: str) -> list[dict[str, Any]]:
        """Preference pairs (TRL `prompt`/`chosen`/`rejected`) with oracle scores and the revision."""
        return self._records("pairs", split)

    def policy_pairs(self, split: str) -> list[dict[str, Any]]:
        """Pairs of the SFT policy's own samples, oracle-graded and labelled like `pairs`
        (the reward and test splits; the reward model trains on them too); no revision."""
        if split not in ("reward", "test"):
            raise UserInputError(f"the world has policy pairs for the reward and test splits, not {split!r}")
        return self._records("policy_pairs", split)

    def steps(self, split: str) -> list[dict[str, Any]]:
        """Stepwise records (TRL's `prompt`/`completions`/`labels`, `tokenreward train prm`'s data)
        of the split's responses of families that write steps; only in worlds built with one."""
        if not (self.root / "data" / f"steps.{split}.jsonl").is_file() and split in SPLITS:
            raise FileNotFoundError(
                f"the world at {self.root} has no stepwise data (data/steps.{split}.jsonl): it is built for worlds "
                "with a family that writes steps (`tokenreward world build --families ... multistep`)"
            )
        return self._records("steps", split)

    def sft_examples(self) -> list[dict[str, Any]]:
        """The policy's SFT data (TRL `prompt`/`completion`), revision instructions included."""
        return _read_jsonl(self.root / "data" / "sft.jsonl")

    def prompt_record(self, prompt: str) -> dict[str, Any]:
        """The prompt record whose prompt text is `prompt` (any split)."""
        index = self._prompt_index()
        if prompt not in index:
            raise UnknownNameError(f"prompt {prompt[:60]!r} is not a prompt of the world at {self.root}")
        return index[prompt]

    def _prompt_index(self) -> dict[str, dict[str, Any]]:
        if not hasattr(self, "_index"):
            self._index = {r["prompt"]: r for split in SPLITS for r in self.prompts(split)}
        return self._index

    def resources(self) -> dict[str, Any]:
        """Keyword arguments for `build_rewarder`: `reward_model`, `tokenizer`, `policy`,
        `reference`, plus every other model folder in the world under its folder name
        (e.g. `discriminator`), dashes read as underscores, and `world` (this folder, for the
        `verifiable` rewarder's oracle). A world whose reward model has a backbone's own tokenizer
        also offers `reward_tokenizer` (the reward model's folder), which the rewarders read the
        reward model with (`tokenreward.rewards.build_rewarder`)."""
        found = {
            "world": str(self.root),
            "reward_model": str(self.reward_model_dir),
            "tokenizer": str(self.tokenizer_dir),
            "policy": str(self.policy_dir),
            "reference": str(self.policy_dir),
        }
        if self.reward_backbone is not None:
            found["reward_tokenizer"] = str(self.reward_model_dir)
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and folder.name not in STANDARD_FOLDERS.values() and (folder / "config.json").is_file():
                found.setdefault(folder.name.replace("-", "_"), str(folder))
        return found


def recorded_backbone(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The reward backbone a world's `world.json` records (None: the world's GPT-2 reward model)."""
    if "reward_backbone" not in manifest:
        return None
    return manifest.get("metrics", {}).get("reward_backbone", {"name": manifest["reward_backbone"]})


@lru_cache(maxsize=64)
def _read_cached(path: str, mtime: float) -> tuple[str, ...]:
    with open(path) as handle:
        return tuple(line for line in handle if line.strip())


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"missing world file {path}")
    with open(path) as handle:
        numbers = [n for n, line in enumerate(handle, start=1) if line.strip()]
    rows = []
    for number, line in zip(numbers, _read_cached(str(path), path.stat().st_mtime)):
        try:
            rows.append(json.loads(line))
        except ValueError as err:
            raise UserInputError(f"{path} line {number}: not valid JSON ({err}); the world is damaged") from None
    return rows


def open_world(path: str | Path | None = None) -> World:
    """The world at `path`; without one, `$TOKENREWARD_WORLD`, else the built full world in the
    cache directory, else the small one. A missing or half-built world raises
    FileNotFoundError saying how to build it."""
    if path is not None:
        return World(path)
    if os.environ.get("TOKENREWARD_WORLD"):
        return World(os.environ["TOKENREWARD_WORLD"])
    for size in ("full", "small"):
        candidate = default_world_path(size)
        if (candidate / MANIFEST).is_file():
            return World(candidate)
    raise FileNotFoundError(
        f"no world found (looked at $TOKENREWARD_WORLD, {default_world_path('full')} and {default_world_path('small')}); "
        "build one with `tokenreward world build --size full` (about 2 min on 2 cores) or `--size small` (about 1 min)"
    )


__all__ = ["SPLITS", "World", "cache_dir", "default_world_path", "open_world"]
