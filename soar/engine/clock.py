"""Time for the engine: the real clock, and a fake one that tests move by hand."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the engine asks of time: the current UTC time, and waiting until a moment."""

    def now(self) -> datetime: ...

    async def sleep_until(self, moment: datetime) -> None: ...


class SystemClock:
    """Wall-clock time; `sleep_until` sleeps on the event loop."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime) -> None:
        delay = (moment - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


class FakeClock:
    """Time that only moves when a test calls `advance`; sleepers wake in due order."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, moment: datetime) -> None:
        if moment <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (moment, next(self._counter), future))
        await future

    @property
    def next_wake(self) -> datetime | None:
        """When the earliest sleeper wakes, or None."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, delta: timedelta) -> None:
        """Move time forward, waking every sleeper that falls due, in order."""
        target = self._now + delta
        while True:
            wake = self.next_wake
            if wake is None or wake > target:
                break
            self._now = max(self._now, wake)
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
            for _ in range(50):  # let woken tasks record what they do before time moves on
                await asyncio.sleep(0)
        self._now = target
        await asyncio.sleep(0)
