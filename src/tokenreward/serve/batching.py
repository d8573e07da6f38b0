"""Micro-batching across requests, and scoring that isolates the samples that fail.

Every sample of every request goes into one asyncio queue. A collector takes the first
waiting sample, then more until it holds `max_batch` samples or `max_wait_ms` have passed
since that first sample arrived, whichever comes first (samples already queued are taken
without waiting), and hands the micro-batch to one scoring thread. While the thread scores,
the next micro-batch gathers. A micro-batch whose scoring raises is scored again in halves,
until each failing sample stands alone, so a sample that cannot be scored gets its own error
and the others their rewards. A blank sample is not queued: it is answered at once with the
server's empty reward (`blank_record`).
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tokenreward.align import project_rewards
from tokenreward.errors import UserInputError
from tokenreward.rewards import Rewarder, TokenRewards
from tokenreward.serve.inputs import BadRequest, Sample, option_kinds
from tokenreward.serve.metrics import Metrics

#: errors that mean "this input cannot be scored" (answered 422); anything else is the server's (500)
INPUT_ERRORS = (ValueError, TypeError, KeyError)
#: constructor arguments that are resources or infrastructure, never per-request options
NOT_OPTIONS = {"batch_size", "device", "seed"}


@dataclass
class Scored:
    """The outcome of one sample: its `tokenreward score` record, or an error and its status."""

    record: dict[str, Any] | None = None
    error: str | None = None
    status: int = 200


def tunable_options(rewarder_class: type) -> dict[str, set[type]]:
    """Constructor arguments of the rewarder with a number, boolean or string default (its
    method options, e.g. `beta_c`, `keep_sum`), each with the types it takes (from its
    annotation); model folders and devices are not among them."""
    params = list(inspect.signature(rewarder_class.__init__).parameters.values())[1:]
    return {
        p.name: option_kinds(p.annotation, p.default)
        for p in params
        if isinstance(p.default, (bool, int, float, str)) and p.name not in NOT_OPTIONS
    }


def blank_record(rewarder: str, sample: Sample, reward: float) -> dict[str, Any]:
    """The record of a blank response: sequence reward `reward`; no tokens, or, when the
    request gave ids, one reward per id, all 0 but the last, which holds `reward` (the layout
    tokenreward's PPO gives a blank rollout), so the token rewards sum to the sequence reward."""
    offsets = [[int(s), int(e)] for s, e in sample.align_to or []]
    rewards = [0.0] * len(offsets)
    if rewards:
        rewards[-1] = reward
    text = sample.response if isinstance(sample.response, str) else ""
    tokens = [text[s:e] for s, e in offsets]
    return {"rewarder": rewarder, "sequence_reward": reward, "tokens": tokens, "offsets": offsets, "rewards": rewards}


def error_text(err: BaseException) -> str:
    """The message of a single-sample failure, without the rewarder's "response 0" batch index."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return re.sub(r"\b(prompt\+response|response|prompt|pairs?) 0\b( \(numbered from 0 below\))?", r"\1", text)


def sample_record(result: TokenRewards, i: int, sample: Sample, combine: str) -> dict[str, Any]:
    """The record of response `i`; with `align_to`, its rewards moved onto those tokens first."""
    if sample.align_to is None:
        return result.record(i)
    text = result.responses[i]
    moved = project_rewards(result.offsets[i], result.token_rewards(i), sample.align_to, len(text), combine)
    return TokenRewards.from_lists(
        result.rewarder, [text], [sample.align_to], [moved], result.sequence_rewards[i : i + 1]
    ).record(0)


class Scorer:
    """The loaded rewarder, its per-request option variants, and failure-isolating scoring.

    `server_options` are the options the rewarder was built with; a request's options apply on
    top of them (`effective_options`). `build_variant(options)` builds the rewarder with those
    effective options (through its own constructor, so its checks run); up to `max_variants`
    are kept, least recently used first out. `empty_reward` is a blank response's reward.
    """

    def __init__(
        self,
        rewarder: Rewarder,
        build_variant: Callable[[dict[str, Any]], Rewarder],
        max_variants: int = 4,
        server_options: dict[str, Any] | None = None,
        empty_reward: float = 0.0,
    ):
        self.rewarder = rewarder
        self.options = tunable_options(type(rewarder))
        self.server_options = dict(server_options or {})
        self.build_variant = build_variant
        self.max_variants = max_variants
        self.empty_reward = empty_reward
        self.variants: OrderedDict[tuple, Rewarder] = OrderedDict()

    def effective_options(self, request_options: dict[str, Any]) -> dict[str, Any]:
        """The server's options with the request's on top (a request sets only its own keys)."""
        return {**self.server_options, **request_options}

    def variant(self, request_options: dict[str, Any]) -> Rewarder:
        options = self.effective_options(request_options)
        if options == self.server_options:
            return self.rewarder
        key = tuple(sorted((k, repr(v)) for k, v in options.items()))
        if key not in self.variants:
            try:
                self.variants[key] = self.build_variant(options)
            except INPUT_ERRORS as err:
                raise BadRequest(f"options: {error_text(err)}") from err
            while len(self.variants) > self.max_variants:
                self.variants.popitem(last=False)
        self.variants.move_to_end(key)
        return self.variants[key]

    def score(self, rewarder: Rewarder, samples: list[Sample]) -> list[Scored]:
        try:
            result = rewarder.score([s.prompt for s in samples], [s.response for s in samples])
            return [Scored(sample_record(result, i, s, rewarder.combine)) for i, s in enumerate(samples)]
        except Exception as err:  # noqa: BLE001 - one bad sample must not fail the others
            if len(samples) > 1:
                half = len(samples) // 2
                return self.score(rewarder, samples[:half]) + self.score(rewarder, samples[half:])
            status = 422 if isinstance(err, INPUT_ERRORS) else 500
            return [Scored(error=f"{samples[0].field}: {error_text(err)}", status=status)]


@dataclass
class Pending:
    rewarder: Rewarder
    sample: Sample
    future: asyncio.Future
    arrived: float


class MicroBatcher:
    """The queue, its collector task and the scoring thread (see the module docstring)."""

    def __init__(self, scorer: Scorer, metrics: Metrics, max_batch: int = 32, max_wait_ms: float = 5.0):
        if max_batch < 1:
            raise UserInputError(f"max_batch={max_batch}: must be at least 1")
        if max_wait_ms < 0:
            raise UserInputError(f"max_wait_ms={max_wait_ms}: must be at least 0")
        self.scorer, self.metrics = scorer, metrics
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000.0
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="tokenreward-score")
        self.queue: asyncio.Queue[Pending] | None = None
        self.full: asyncio.Event | None = None
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.full = asyncio.Event()  # set when a micro-batch's worth of samples waits behind the first
        self.task = asyncio.create_task(self._collect_forever())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.executor.shutdown(wait=True)

    async def rewarder_for(self, options: dict[str, Any]) -> Rewarder:
        """The rewarder for these request options, on top of the server's (built on the scoring thread when new)."""
        if self.scorer.effective_options(options) == self.scorer.server_options:
            return self.scorer.rewarder
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.scorer.variant, options)

    async def submit(self, rewarder: Rewarder, samples: list[Sample]) -> list[Scored]:
        """The outcomes of `samples`, in order; blank ones answered at once with the empty reward."""
        loop = asyncio.get_running_loop()
        futures = []
        for sample in samples:
            future = loop.create_future()
            if sample.blank:
                future.set_result(Scored(blank_record(rewarder.name, sample, self.scorer.empty_reward)))
            else:
                self.queue.put_nowait(Pending(rewarder, sample, future, time.monotonic()))
            futures.append(future)
        self.metrics.queue_depth = self.queue.qsize()
        if self.queue.qsize() >= self.max_batch - 1:
            self.full.set()
        return list(await asyncio.gather(*futures))

    async def _next_batch(self) -> list[Pending]:
        first = await self.queue.get()
        left = first.arrived + self.max_wait - time.monotonic()
        if self.queue.qsize() < self.max_batch - 1 and left > 0:
            self.full.clear()
            try:
                await asyncio.wait_for(self.full.wait(), left)
            except asyncio.TimeoutError:
                pass
        batch = [first]
        while len(batch) < self.max_batch and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    async def _collect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            self.metrics.queue_depth = self.queue.qsize()
            groups: dict[int, list[Pending]] = {}
            for item in batch:
                groups.setdefault(id(item.rewarder), []).append(item)
            failed = 0
            for items in groups.values():
                try:
                    outcomes = await loop.run_in_executor(
                        self.executor, self.scorer.score, items[0].rewarder, [i.sample for i in items]
                    )
                except Exception as err:  # noqa: BLE001 - the collector must survive anything
                    outcomes = [Scored(error=f"{i.sample.field}: scoring failed ({err})", status=500) for i in items]
                for item, outcome in zip(items, outcomes):
                    failed += outcome.error is not None
                    if not item.future.done():
                        item.future.set_result(outcome)
            self.metrics.batch(len(batch), failed)
