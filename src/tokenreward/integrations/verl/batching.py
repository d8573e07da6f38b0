"""Batching verl's per-sample reward calls.

verl's reward-loop worker starts one `run_single` task per sample and gathers them, so the
calls of one chunk all arrive in the same event-loop turn. `MicroBatcher.submit` queues its
item; the first item of a batch schedules a flush that lets the loop run until no more
items arrive (every ready task has queued its sample), then scores the whole queue in one
call on a single scoring thread (the event loop stays free; the model is never used from two
threads at once). A failing batch fails each of its callers with the same error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class MicroBatcher(Generic[Item, Result]):
    def __init__(self, score_batch: Callable[[list[Item]], Sequence[Result]]):
        self.score_batch = score_batch
        self.pending: list[tuple[Item, asyncio.Future]] = []
        self.flush_scheduled = False
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenreward-scoring")
        #: sizes of the batches scored so far (read by tests and logs)
        self.batch_sizes: list[int] = []

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((item, future))
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            seen = -1
            while seen != len(self.pending):
                seen = len(self.pending)
                await asyncio.sleep(0)
        finally:  # also when the loop is shut down mid-wait: the next submit starts afresh
            batch, self.pending, self.flush_scheduled = self.pending, [], False
        self.batch_sizes.append(len(batch))
        items = [item for item, _ in batch]
        try:
            results = await asyncio.get_running_loop().run_in_executor(self.executor, self.score_batch, items)
            if len(results) != len(items):
                raise RuntimeError(f"scoring returned {len(results)} results for {len(items)} samples")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as err:  # noqa: BLE001  (forwarded to every caller of the batch)
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)
