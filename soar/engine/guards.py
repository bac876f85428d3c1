"""Fewer calls to the systems soar acts on: a cache of read-only outputs, and per connector a
token bucket and a circuit breaker, shared by every run of one engine.

A flood of alerts about one user should look the user up once, not once per alert; and when a
directory or an EDR starts failing, a thousand runs retrying at once keep it down. So:

- **Cache.** An action that declares `cache_ttl` (read-only look-ups only) has its output kept
  for that long, per exact inputs; `limits.<connector>.cache_ttl` overrides it (0 turns caching
  off). Failures are never kept, nor an output in which a secret value had to be hidden.
- **Rate limit.** `limits.<connector>.rate` calls per second, with bursts of `burst`: a call
  waits for its token (before its timeout starts).
- **Circuit breaker.** When at least `breaker_calls` of the connector's last calls ended, and
  `breaker_ratio` of them failed for reasons worth retrying (the system's trouble, not a
  refusal), the breaker opens for `breaker_open`: calls fail at once as retryable, and the
  step's retry policy waits. Then one call is let through; its success closes the breaker.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from pydantic import JsonValue

from soar.config import ConnectorLimits
from soar.connectors.action import ActionSpec

_MAX_CACHED: Final = 10_000
_REDACTED: Final = "[redacted]"


class CircuitOpen(Exception):
    """The connector's breaker is open: the call was not made."""

    def __init__(self, connector: str, retry_in: float) -> None:
        self.connector = connector
        self.retry_in = retry_in
        super().__init__(
            f"{connector} is failing: calls are held back for {retry_in:.1f}s (circuit open)"
        )


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: float
    now: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens, self.stamp = self.burst, self.now()

    def wait_for_token(self) -> float:
        """Take a token; the seconds to wait first (0 when one was there)."""
        moment = self.now()
        self.tokens = min(self.burst, self.tokens + (moment - self.stamp) * self.rate)
        self.stamp = moment
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass(slots=True)
class CircuitBreaker:
    calls: int
    ratio: float
    open_for: float
    now: Callable[[], float] = time.monotonic
    outcomes: deque[bool] = field(init=False)
    opened_at: float | None = None
    probing: bool = False

    def __post_init__(self) -> None:
        self.outcomes = deque(maxlen=self.calls)

    def admit(self, connector: str) -> None:
        """Raises CircuitOpen while the breaker is open (one probe is let through after)."""
        if self.opened_at is None:
            return
        left = self.opened_at + self.open_for - self.now()
        if left > 0 or self.probing:
            raise CircuitOpen(connector, max(left, 0.0))
        self.probing = True

    def record(self, ok: bool) -> None:
        if self.opened_at is not None and self.probing:
            self.probing = False
            if ok:
                self.opened_at = None
                self.outcomes.clear()
            else:
                self.opened_at = self.now()
            return
        self.outcomes.append(ok)
        failed = self.outcomes.count(False)
        if len(self.outcomes) >= self.calls and failed >= self.ratio * len(self.outcomes):
            self.opened_at = self.now()


class Guards:
    """The cache, buckets and breakers of one engine."""

    def __init__(
        self,
        limits: Mapping[str, ConnectorLimits] | None = None,
        *,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = dict(limits or {})
        self._now = now
        self._cache: OrderedDict[tuple[str, str], tuple[float, JsonValue]] = OrderedDict()
        self._buckets: dict[str, TokenBucket] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self.hits = 0

    def cached(self, spec: ActionSpec, inputs: Mapping[str, JsonValue]) -> tuple[bool, JsonValue]:
        """(True, output) when a fresh output for these inputs is kept."""
        if self._ttl(spec) <= 0:
            return False, None
        key = (spec.qualified_name, _canonical(inputs))
        found = self._cache.get(key)
        if found is None:
            return False, None
        expires, output = found
        if expires <= self._now():
            del self._cache[key]
            return False, None
        self._cache.move_to_end(key)
        self.hits += 1
        return True, output

    def remember(
        self, spec: ActionSpec, inputs: Mapping[str, JsonValue], output: JsonValue
    ) -> None:
        ttl = self._ttl(spec)
        if ttl <= 0 or _REDACTED in _canonical(output):  # a secret was in it: never kept
            return
        self._cache[(spec.qualified_name, _canonical(inputs))] = (self._now() + ttl, output)
        while len(self._cache) > _MAX_CACHED:
            self._cache.popitem(last=False)

    async def pace(self, connector: str) -> None:
        """Wait for the connector's rate limit, then raise CircuitOpen if its breaker is."""
        limits = self._limits.get(connector)
        if limits is None:
            return
        breaker = self._breaker(connector, limits)
        if breaker is not None:
            breaker.admit(connector)
        if limits.rate is not None:
            bucket = self._buckets.get(connector)
            if bucket is None:
                burst = float(limits.burst or max(1.0, limits.rate))
                bucket = self._buckets[connector] = TokenBucket(limits.rate, burst, self._now)
            delay = bucket.wait_for_token()
            if delay > 0:
                await asyncio.sleep(delay)

    def record(self, connector: str, *, ok: bool) -> None:
        """A call ended: `ok` False for a failure worth retrying (the connector's trouble)."""
        breaker = self._breakers.get(connector)
        if breaker is not None:
            breaker.record(ok)

    def _breaker(self, connector: str, limits: ConnectorLimits) -> CircuitBreaker | None:
        if limits.breaker_calls is None:
            return None
        breaker = self._breakers.get(connector)
        if breaker is None:
            breaker = self._breakers[connector] = CircuitBreaker(
                limits.breaker_calls,
                limits.breaker_ratio,
                limits.breaker_open.total_seconds(),
                self._now,
            )
        return breaker

    def _ttl(self, spec: ActionSpec) -> float:
        limits = self._limits.get(spec.connector)
        if limits is not None and limits.cache_ttl is not None:
            override = limits.cache_ttl.get(spec.name)
            if override is not None:
                return override.total_seconds() if spec.cache_ttl is not None else 0.0
        return spec.cache_ttl.total_seconds() if spec.cache_ttl is not None else 0.0


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
