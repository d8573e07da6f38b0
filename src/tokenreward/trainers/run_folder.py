"""The run folder `OUT` of a trainer's run: refuse, resume or start.

`RunFolder`: `OUT/run.json` records the settings when a run starts, and the size and SHA-256
of its input files (`input_digests`). Without `--resume` a folder holding a started or
finished run is refused; with `--resume` the settings must match the recorded ones (those in
`may_change` aside), an input file changed since the start is refused, and a run killed
before its first checkpoint starts again from step 0. The run length (`--steps` /
`--epochs`): a trainer whose learning-rate schedule depends on it refuses a change; a
constant-rate trainer (`extendable`) continues to the new length, a finished run included,
exactly as an unbroken run of that length would have gone; fewer steps than already trained
are refused.
`RunFolder.finish`: the final model (its trained parameters checked finite) is written to a
temporary folder and renamed to `OUT/final`; then `OUT/done` marks a finished run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import torch

from tokenreward.errors import NonFiniteError, UserInputError
from tokenreward.io import read_json_file, write_atomic
from tokenreward.lora import write_final
from tokenreward.trainers.checkpoints import latest_checkpoint
from tokenreward.trainers.run_inputs import refuse_changed_inputs

IGNORED_ON_RESUME = ("resume", "progress", "keep_checkpoints")
MAY_CHANGE_ON_RESUME = ("save_every",)


def settings_of(config: Any) -> dict[str, Any]:
    return {
        k: v
        for k, v in json.loads(json.dumps(dataclasses.asdict(config), default=str)).items()
        if k not in IGNORED_ON_RESUME
    }


class RunFolder:
    """`OUT` of one run: refuse, resume or start (see the module docstring). `length` names the
    setting that fixes the run's length (`steps`, `epochs`); `extendable`: the run may continue
    to another length (a trainer whose learning rate does not depend on it); `merge`: a LoRA
    model's final folder holds the merged model, not its adapter."""

    def __init__(
        self,
        out: Path | str,
        settings: dict[str, Any],
        resume: bool,
        main: bool,
        may_change: Sequence[str] = (),
        at_default: Collection[str] = (),
        length: str | None = None,
        extendable: bool = False,
        merge: bool = False,
    ):
        self.out = Path(out)
        self.main, self.merge = main, merge
        self.extending = False
        if self.out.exists() and not self.out.is_dir():
            raise UserInputError(f"--out {self.out} is a file, not a folder")
        recorded = self.out / "run.json"
        refuse_started(self.out, resume)
        if recorded.is_file():
            before = read_json_file(recorded, "restore it or start a new run")
            refuse_changed_inputs(before.get("inputs", {}), settings.get("inputs", {}))
            if length is not None and length in before and before[length] != settings.get(length):
                self._check_new_length(length, before[length], settings[length], extendable)
            ignored = {*may_change, *MAY_CHANGE_ON_RESUME, "inputs", "out", length}  # a run folder may move
            changed = sorted(
                k
                for k in set(before) | set(settings)
                if before.get(k) != settings.get(k) and k not in ignored and not (k not in before and k in at_default)
            )
            if changed:
                shown = ", ".join(f"{k}: {before.get(k)!r} -> {settings.get(k)!r}" for k in changed)
                raise UserInputError(
                    f"--resume {self.out}: settings differ from the run's ({shown}); use the same settings or another --out"
                )
        self.settings = settings
        if main:
            self.out.mkdir(parents=True, exist_ok=True)

    def _check_new_length(self, length: str, before: int, now: int, extendable: bool) -> None:
        """`--resume` with another run length: refused unless the run can go on exactly (see
        the module docstring); a finished run continued to more steps is no longer finished."""
        flag = "--" + length.replace("_", "-")
        if not extendable:
            raise UserInputError(
                f"--resume with {flag} {now}: the run was started with {flag} {before} and its learning-rate "
                "schedule depends on it; start a new run"
            )
        trained = self.start_step()
        done = (self.out / "done").is_file()
        if now < trained or (done and now < before):
            raise UserInputError(
                f"--resume with {flag} {now}: the run has already trained {max(trained, before if done else 0)} "
                "steps; give at least that many or start a new run"
            )
        if done and trained != before:
            raise UserInputError(
                f"--resume with {flag} {now}: the finished run kept no checkpoint of its last step {before}, "
                "so it cannot go on; start a new run"
            )
        self.extending = done

    def begin(self) -> None:
        """Record the settings: from here on the folder holds a started run (called once the
        inputs are read and checked, so a run that fails on bad input leaves nothing to refuse).
        A resumed run records its new length; a finished run going on is marked unfinished."""
        if not self.main:
            return
        recorded = self.out / "run.json"
        if not recorded.is_file():
            write_atomic(recorded, json.dumps(self.settings, indent=2) + "\n")
            return
        before = read_json_file(recorded, "restore it or start a new run")
        if self.extending:
            (self.out / "done").unlink(missing_ok=True)
        lengths = {k: self.settings[k] for k in ("steps", "epochs") if k in self.settings and k in before}
        if any(before[k] != v for k, v in lengths.items()):
            write_atomic(recorded, json.dumps({**before, **lengths}, indent=2) + "\n")

    @property
    def finished(self) -> bool:
        return not self.extending and (self.out / "done").is_file() and (self.out / "final").is_dir()

    def start_step(self) -> int:
        """The newest checkpoint's step, or 0."""
        path = latest_checkpoint(self.out)
        return int(path.name.split("-")[1]) if path is not None else 0

    def save_final(self, save: Callable[[Path], None], name: str = "final") -> Path:
        """`save(tmp)` fills a temporary folder, renamed to `OUT/name` (main process only)."""
        final = self.out / name
        if self.main:
            tmp = self.out / f".{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            save(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        return final

    def mark_done(self) -> None:
        if self.main:
            write_atomic(self.out / "done", "")

    def finish(self, model, tokenizer) -> Path:
        """The end of every run: `OUT/final` holds the model (a LoRA model: its adapter, or
        merged with `merge`) and the tokenizer, once its trained parameters are checked finite;
        then `OUT/done`. Returns `OUT/final`."""
        check_finite_parameters(model, self.out)
        final = self.save_final(lambda tmp: write_final(model, tokenizer, tmp, self.merge))
        self.mark_done()
        return final


def check_finite_parameters(model, out: Path) -> None:
    """Refuse to finish a run whose trained parameters hold inf or NaN (no `final/`, no `done`)."""
    bad = [name for name, p in model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteError(
            f"run {out}: {len(bad)} trained parameter tensors hold inf or NaN (first: {bad[0]}); "
            "no final model written (lower --learning-rate or check the data)"
        )


def fields_at_default(config: Any) -> set[str]:
    """The fields of a config dataclass at their default: on resume, one that the recorded run
    lacks (recorded by an older release) counts as unchanged."""
    return {
        f.name
        for f in dataclasses.fields(config)
        if f.default is not dataclasses.MISSING and getattr(config, f.name) == f.default
    }


def refuse_started(out: Path, resume: bool) -> None:
    """Without `resume`, a folder holding a started or finished run is an error."""
    started = (out / "run.json").is_file() or (out / "final").exists() or latest_checkpoint(out) is not None
    if started and not resume:
        state = "finished" if (out / "done").is_file() else "started"
        raise UserInputError(f"{out} holds a {state} run; pass --resume to continue it or choose another --out")
