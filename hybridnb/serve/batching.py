"""Dynamic batching: requests queue, run together in one model thread, get their rows back.

Requests wait at most ``max_latency_ms`` (counted from the first one's arrival) for a
batch to fill up to ``max_batch_size`` rows or ``max_requests`` requests. One batch runs
at a time, in a single executor thread under ``torch.inference_mode``: PyTorch already
spreads one call over its intra-op threads, and a single thread keeps memory and
latency predictable. While a batch runs, the next one gathers, so the model thread
stays busy under load.

With batching off there is nothing to gather, so no gathering task either: a request
goes straight to the model thread (one thread hop), or, for a model whose call takes
less than ``inline_max_ms``, runs on the event loop itself. A sub-millisecond MLP
spends longer handing work to a thread (and the GIL back) than computing; inline, the
server does what a hand-written FastAPI handler does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .metrics import EndpointMetrics

logger = logging.getLogger(__name__)


@dataclass
class _Item:
    x: torch.Tensor
    rows: int
    future: asyncio.Future[Any]
    arrived: float


class Batcher:
    """Gathers submitted tensors into batches and runs ``fn`` on them.

    Parameters
    ----------
    fn:
        The model: a batch tensor in, a batch tensor out (rows in the same order).
    max_batch_size, max_latency_ms, max_requests, batching:
        See :class:`~hybridnb.serve.settings.ServeSettings`.
    metrics:
        Where batch sizes, queue depth and in-flight counts go.
    threads:
        ``torch.set_num_threads`` applied in the model thread, or ``None``.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], *, max_batch_size: int,
                 max_latency_ms: float, max_requests: int, batching: bool = True,
                 metrics: EndpointMetrics | None = None, threads: int | None = None,
                 inline_max_ms: float = 0.0, example: torch.Tensor | None = None):
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000.0
        self.max_requests = max_requests if batching else 1
        self.batching = batching
        self.metrics = metrics
        self.threads = threads
        self._pending: deque[_Item] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._started = False
        self._outstanding = 0  # direct mode: requests in or waiting for the model thread
        self.inline_max_ms = inline_max_ms
        self.example = example
        self.inline = False
        self.batches = 0

    def __repr__(self) -> str:
        mode = (f"up to {self.max_batch_size} rows / {self.max_latency * 1000:g} ms"
                if self.batching else "off, " + ("inline" if self.inline else "model thread"))
        return f"Batcher(batching {mode}, {len(self._pending)} queued, {self.batches} batches)"

    @property
    def running(self) -> bool:
        if not self.batching:
            return self._started
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the gathering task and the model thread (call from the event loop)."""
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hybridnb-model")
        if self.threads is not None:
            import torch

            self._executor.submit(torch.set_num_threads, self.threads).result()
        if self.batching:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")
        else:
            if self.metrics is not None:
                # Read at scrape time: no gauge writes (each takes a lock) per request.
                self.metrics.in_flight.set_function(lambda: min(self._outstanding, 1))
                self.metrics.queue_depth.set_function(lambda: max(self._outstanding - 1, 0))
            if self.inline_max_ms > 0 and self.example is not None:
                self.inline = await self._probe_inline()
        self._started = True

    async def _probe_inline(self) -> bool:
        """Time a few one-row calls in the model thread; inline if they are fast enough."""
        loop = asyncio.get_running_loop()

        def probe() -> float:
            times = []
            for _ in range(7):
                start = time.perf_counter()
                self._run([self.example])  # type: ignore[list-item]
                times.append(time.perf_counter() - start)
            return sorted(times)[len(times) // 2]

        try:  # a model that blocks (or is slow) simply stays in its thread
            median = await asyncio.wait_for(loop.run_in_executor(self._executor, probe), 2.0)
        except Exception as exc:
            logger.info("not running the model inline: probe failed (%r)", exc)
            return False
        logger.debug("one-row model call: %.3f ms", median * 1000)
        return median * 1000 < self.inline_max_ms

    async def stop(self) -> None:
        """Stop gathering; fail what is still queued; let the model thread finish."""
        self._started = False
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._set_queue_depth()

    async def submit(self, x: torch.Tensor, timeout: float | None = None) -> torch.Tensor:
        """Queue ``x`` (a batch of rows) and wait for the model's rows for it.

        Raises ``TimeoutError`` after ``timeout`` seconds; the request is then dropped
        from the queue (or its result discarded if the model already has it).
        """
        if self._wakeup is None:
            raise RuntimeError("the batcher is not started")
        if not self.batching:
            return await self._direct(x, timeout)
        loop = asyncio.get_running_loop()
        item = _Item(x, int(x.shape[0]), loop.create_future(), loop.time())
        self._pending.append(item)
        self._set_queue_depth()
        self._wakeup.set()
        # wait_for cancels the future on timeout; the gatherer skips cancelled items.
        return await asyncio.wait_for(item.future, timeout)

    async def _direct(self, x: torch.Tensor, timeout: float | None) -> torch.Tensor:
        """Batching off: run ``x`` alone, inline or with one hop to the model thread."""
        rows = int(x.shape[0])
        self._outstanding += 1
        if self.metrics is not None:
            self.metrics.batch_size.observe(rows)
        try:
            if self.inline:
                out = self._run([x])
            else:
                # The executor queue is the request queue: on timeout, wait_for cancels
                # the executor future, which drops the call if it has not started.
                fut = asyncio.get_running_loop().run_in_executor(self._executor, self._run, [x])
                out = await (asyncio.wait_for(fut, timeout) if timeout else fut)
        except asyncio.TimeoutError:
            raise
        except Exception:
            logger.exception("model call failed on %d rows", rows)
            raise
        finally:
            self._outstanding -= 1
            self.batches += 1
        if getattr(out, "shape", (None,))[0] != rows:
            raise RuntimeError(f"the model returned {getattr(out, 'shape', '?')} for "
                               f"{rows} rows")
        return out

    def _set_queue_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._pending))

    def _live_rows(self) -> tuple[int, int]:
        rows = n = 0
        for item in self._pending:
            if not item.future.done():
                rows += item.rows
                n += 1
        return rows, n

    async def _gather(self) -> list[_Item]:
        """Wait for requests; return the next batch to run."""
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            while self._pending and self._pending[0].future.done():
                self._pending.popleft()  # timed out while queued
            if self._pending:
                break
            self._wakeup.clear()
            await self._wakeup.wait()
        if self.batching and self.max_latency > 0:
            deadline = self._pending[0].arrived + self.max_latency
            while True:
                rows, n = self._live_rows()
                remaining = deadline - loop.time()
                if rows >= self.max_batch_size or n >= self.max_requests or remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
        batch: list[_Item] = []
        rows = 0
        while self._pending and len(batch) < self.max_requests:
            item = self._pending[0]
            if item.future.done():
                self._pending.popleft()
                continue
            if batch and rows + item.rows > self.max_batch_size:
                break  # it starts the next batch
            batch.append(self._pending.popleft())
            rows += item.rows
        self._set_queue_depth()
        return batch

    def _run(self, batch: list[torch.Tensor]) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            x = batch[0] if len(batch) == 1 else torch.cat(batch)
            return self.fn(x)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if not batch:
                continue
            rows = sum(item.rows for item in batch)
            if self.metrics is not None:
                self.metrics.in_flight.set(len(batch))
                self.metrics.batch_size.observe(rows)
            started = time.perf_counter()
            try:
                out = await loop.run_in_executor(self._executor, self._run,
                                                 [item.x for item in batch])
            except Exception as exc:
                logger.exception("model call failed on a batch of %d rows", rows)
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
            else:
                self._deliver(batch, out, rows)
            finally:
                self.batches += 1
                if self.metrics is not None:
                    self.metrics.in_flight.set(0)
            logger.debug("batch of %d rows / %d requests in %.2f ms", rows, len(batch),
                         (time.perf_counter() - started) * 1000)

    @staticmethod
    def _deliver(batch: list[_Item], out: Any, rows: int) -> None:
        if getattr(out, "shape", (None,))[0] != rows:
            exc = RuntimeError(f"the model returned {getattr(out, 'shape', '?')} for a "
                               f"batch of {rows} rows")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        start = 0
        for item in batch:
            if not item.future.done():
                item.future.set_result(out[start:start + item.rows])
            start += item.rows
