"""The world's oracle as a checker for the `verifiable` rewarder (its default): a prompt of the
world gets `oracle_reward(record, response, "verifiable")` (1.0 right, 0.0 wrong) with `record`
the world's record of that prompt."""

from __future__ import annotations

from tokenreward.errors import UnknownNameError, UserInputError
from tokenreward.rewarders.verifiable import prompt_text
from tokenreward.types import TextOrMessages
from tokenreward.world import open_world
from tokenreward.world.oracle import oracle_reward, verifiable_families


class WorldVerifier:
    """`checker(prompt, response)` for the world at `world` (default `open_world()`); a prompt the
    world does not hold, or one of a family with no right answer, is refused naming the prompt
    and the world's verifiable families."""

    def __init__(self, world: str | None = None):
        self.world = open_world(world)
        self.families = [f for f in verifiable_families() if f in self.world.families]

    def __call__(self, prompt: TextOrMessages, response: str) -> float:
        text = prompt_text(prompt)
        try:
            record = self.world.prompt_record(text)
        except UnknownNameError:
            record = None
        if record is None or record.get("family") not in self.families:
            why = "is not a prompt of the world" if record is None else f"is of the {record['family']} family"
            raise UserInputError(
                f"verifiable: prompt {text[:60]!r} {why} at {self.world.root}; the verifiable families: "
                f"{', '.join(self.families) or 'none in this world'}"
            )
        return oracle_reward(record, response, "verifiable")
