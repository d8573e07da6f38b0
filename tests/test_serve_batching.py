"""The server's scorer and micro-batcher without HTTP: failure isolation, batch limits."""

from __future__ import annotations

import asyncio

from tokenreward.rewards import Rewarder, TokenRewards
from tokenreward.serve.batching import MicroBatcher, Scorer
from tokenreward.serve.inputs import Sample
from tokenreward.serve.metrics import Metrics


class Lengths(Rewarder):
    """One token per response, rewarded with its length; a response "bad" cannot be scored."""

    name = "lengths"
    batch_size = 64

    def __init__(self):
        self.calls: list[int] = []

    def _score_batch(self, prompts, responses):
        self.calls.append(len(responses))
        if "bad" in responses:
            raise ValueError(f"response {responses.index('bad')} is bad")
        lengths = [float(len(r)) for r in responses]
        return TokenRewards.from_lists(
            self.name, responses, [[(0, len(r))] for r in responses], [[n] for n in lengths], lengths
        )


def samples(responses: list[str]) -> list[Sample]:
    return [Sample(f"responses[{i}]", "p", r) for i, r in enumerate(responses)]


def test_a_failing_sample_is_isolated_by_halving():
    rewarder = Lengths()
    texts = [" a", " bb", " ccc", "bad", " eeeee", " f", " gg", " hhh"]
    outcomes = Scorer(rewarder, lambda options: rewarder).score(rewarder, samples(texts))
    assert [o.error for o in outcomes] == [None, None, None, "responses[3]: response is bad", None, None, None, None]
    assert outcomes[3].status == 422
    assert [o.record["rewards"] for o in outcomes if o.record] == [[float(len(t))] for t in texts if t != "bad"]
    assert rewarder.calls == [8, 4, 2, 2, 1, 1, 4]  # halves, not eight single passes


def test_batches_respect_max_batch_and_gather_waiting_samples():
    rewarder = Lengths()
    batcher = MicroBatcher(Scorer(rewarder, lambda options: rewarder), Metrics(), max_batch=3, max_wait_ms=50)

    async def run() -> list:
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(rewarder, samples([" x" * (k + 1)])) for k in range(7)))
        finally:
            await batcher.stop()

    answers = asyncio.run(run())
    assert [a[0].record["sequence_reward"] for a in answers] == [2.0 * (k + 1) for k in range(7)]
    assert rewarder.calls == [3, 3, 1]
    assert batcher.metrics.batch_sizes.counts[:3] == [1, 0, 2]  # sizes 1, 3, 3 in buckets le=1, le=2, le=4
