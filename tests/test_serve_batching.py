"""The server's scorer and micro-batcher without HTTP: failure isolation, batch limits."""

from __future__ import annotations

import asyncio
import re

import pytest

from tokenreward.rewards import Rewarder, TokenRewards
from tokenreward.serve.batching import MicroBatcher, Scorer, tunable_options
from tokenreward.serve.inputs import BadRequest, Sample, read_options
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


class Knobs(Rewarder):
    """A rewarder with one option of each kind (never scores)."""

    name = "knobs"

    def __init__(self, steps: int = 3, scale: float = 1.0, flag: bool = False, mode: str = "a", seed: int = 0):
        pass

    def _score_batch(self, prompts, responses):
        raise NotImplementedError


@pytest.mark.parametrize(
    "options, message",
    [
        ({"steps": 2.5}, "options.steps: expected an integer, got 2.5"),
        ({"steps": True}, "options.steps: expected an integer, got a boolean"),
        ({"steps": "3"}, "options.steps: expected an integer, got '3'"),
        ({"scale": float("nan")}, "options.scale: expected a finite number, got nan"),
        ({"scale": float("-inf")}, "options.scale: expected a finite number, got -inf"),
        ({"scale": False}, "options.scale: expected a number, got a boolean"),
        ({"flag": 1}, "options.flag: expected a boolean, got 1"),
        ({"flag": "yes"}, "options.flag: expected a boolean, got 'yes'"),
        ({"mode": 2}, "options.mode: expected a string, got 2"),
        ({"mode": None}, "options.mode: expected a string, got null"),
        ({"seed": 1}, "options.seed: not an option of this rewarder (options: flag, mode, scale, steps)"),
        ({"a": 1, "b": 2}, "options.a, options.b: not options of this rewarder"),
    ],
)
def test_option_values_must_have_their_options_type(options, message):
    with pytest.raises(BadRequest, match="^" + re.escape(message)):
        read_options({"options": options}, tunable_options(Knobs))


def test_option_values_of_the_right_type_pass_and_integers_widen_to_float():
    known = tunable_options(Knobs)
    assert known == {"steps": {int}, "scale": {float}, "flag": {bool}, "mode": {str}}
    given = {"steps": 4, "scale": 1, "flag": False, "mode": "b"}
    got = read_options({"options": given}, known)
    assert got == given and type(got["scale"]) is float and type(got["steps"]) is int


def test_request_options_go_on_top_of_the_servers_and_the_same_setting_reuses_the_rewarder():
    built = []
    base = Lengths()
    scorer = Scorer(base, lambda options: built.append(options) or Lengths(), server_options={"keep_sum": True})
    assert scorer.variant({}) is base and scorer.variant({"keep_sum": True}) is base
    first = scorer.variant({"beta_c": 0.5})
    assert built == [{"keep_sum": True, "beta_c": 0.5}] and scorer.variant({"beta_c": 0.5}) is first
    scorer.variant({"keep_sum": False})
    assert built[-1] == {"keep_sum": False}
