"""The world's oracle reviser (`tokenreward.world.oracle.revise`): the minimal correct edit
of a response, known exactly because the world generated the defects it removes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenreward.revisers.base import Reviser, Revision, RevisionRequest, register_reviser


@register_reviser("world")
class WorldReviser(Reviser):
    batch_size = 64

    def __init__(self, world: Any = None):
        from tokenreward.world import open_world

        self.world = world if hasattr(world, "prompt_record") else open_world(Path(world) if world else None)

    def revise_batch(self, requests: Sequence[RevisionRequest]) -> list[Revision]:
        from tokenreward.world.oracle import revise

        results = []
        for request in requests:
            try:
                record = self.world.prompt_record(request.prompt)
            except (KeyError, TypeError):
                results.append(
                    Revision(
                        None, failure="the prompt is not one of the world's prompts; the oracle cannot revise for it"
                    )
                )
                continue
            results.append(Revision(revise(record, request.rejected)))
        return results
