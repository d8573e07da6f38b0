"""The world's oracle reviser (`tokenreward.world.oracle.revise`): the minimal correct edit
of a response, known exactly because the world generated the defects it removes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from tokenreward.revisers.base import Reviser, Revision, RevisionRequest, register_reviser

SPLITS = ("sft", "reward", "rl", "test")


@register_reviser("world")
class WorldReviser(Reviser):
    def __init__(self, world: Any = None):
        from tokenreward.world import open_world

        self.world = world if hasattr(world, "prompts") else open_world(Path(world) if world else None)
        self.prompt_records = {r["prompt"]: r for split in SPLITS for r in self.world.prompts(split)}
        self.batch_size = 64

    def revise_batch(self, requests: Sequence[RevisionRequest]) -> list[Revision]:
        from tokenreward.world.oracle import revise

        results = []
        for request in requests:
            record = self.prompt_records.get(request.prompt) if isinstance(request.prompt, str) else None
            if record is None:
                results.append(Revision(None, failure="the prompt is not one of the world's prompts; the oracle cannot grade it"))
            else:
                results.append(Revision(revise(record, request.rejected)))
        return results
