"""A rewarder that asks a tokenreward server (`tokenreward serve`) for the token rewards.

The server answers one `tokenreward score` record per pair (`rewarder`, `sequence_reward`,
`tokens`, `offsets` into the response, `rewards`), in the reward model's tokenization; the
inherited `Rewarder.score` then projects them onto the policy's tokens (`align_to`), so the
server path and the in-process path give the same layout. A GPU-sized reward model lives on
the server; verl's reward-loop workers, which have no GPU, only send text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tokenreward.encoding import response_text
from tokenreward.errors import UserInputError
from tokenreward.rewards import Rewarder, TextOrMessages, TokenRewards


def default_client(url: str):
    """`tokenreward.client.TokenRewardClient(url)` (from the `serve` extra)."""
    try:
        from tokenreward.client import TokenRewardClient
    except ImportError as err:
        raise ImportError(
            f"reward.tokenreward.server_url needs tokenreward's client (pip install 'tokenreward[serve]'): {err}"
        ) from err
    return TokenRewardClient(url)


class ServerRewarder(Rewarder):
    """Scores through `client.token_rewards(prompts, responses) -> [record, ...]`."""

    name = "server"

    def __init__(
        self,
        url: str,
        combine: str = "sum",
        batch_size: int = 8,
        make_client: Callable[[str], Any] | None = None,
    ):
        if combine not in ("sum", "mean"):
            raise UserInputError(f"combine must be 'sum' or 'mean', got {combine!r}")
        self.url, self.combine, self.batch_size = url, combine, batch_size
        self.client = (make_client or default_client)(url)

    def _score_batch(self, prompts: list[TextOrMessages], responses: list[TextOrMessages]) -> TokenRewards:
        records = list(self.client.token_rewards(prompts, responses))
        if len(records) != len(responses):
            raise UserInputError(
                f"tokenreward server {self.url}: {len(records)} records for {len(responses)} responses"
            )
        for i, record in enumerate(records):
            if not isinstance(record, dict) or record.get("error") or "rewards" not in record:
                problem = record.get("error") if isinstance(record, dict) else record
                raise UserInputError(f"tokenreward server {self.url}: response {i} was not scored: {problem}")
        self.name = str(records[0].get("rewarder", "server")) if records else self.name
        return TokenRewards.from_lists(
            self.name,
            [response_text(r, index=i) for i, r in enumerate(responses)],
            [[tuple(span) for span in rec["offsets"]] for rec in records],
            [rec["rewards"] for rec in records],
            [rec["sequence_reward"] for rec in records],
        )
