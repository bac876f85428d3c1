"""What the API's handlers work with: one engine (no consumers of its own), its store and
registry, the session key, and the live-event hub behind `/events`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import JsonValue

from soar.api.auth import Sessions
from soar.config import ApiSettings
from soar.connectors.registry import Registry
from soar.engine import Engine
from soar.ingest.limits import Limits
from soar.models.run import Transition
from soar.store import Store

if TYPE_CHECKING:
    from soar.engine.executor import RunExecutor

_QUEUE = 256  # events a slow listener may fall behind by before it is dropped


@dataclass(slots=True)
class EventHub:
    """Fans every durable run transition out to the open `/events` streams."""

    listeners: set[asyncio.Queue[dict[str, JsonValue]]] = field(default_factory=set)

    def __call__(self, executor: RunExecutor, transitions: list[Transition]) -> None:
        for transition in transitions:
            event: dict[str, JsonValue] = {
                "run_id": transition.run_id,
                "status": executor.run.status.value,
                "step": transition.step,
                "kind": transition.kind.value,
                "seq": transition.seq,
            }
            for queue in list(self.listeners):
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:  # too slow: its stream ends, the console reconnects
                    self.listeners.discard(queue)

    @contextlib.contextmanager
    def listen(self) -> Iterator[asyncio.Queue[dict[str, JsonValue]]]:
        queue: asyncio.Queue[dict[str, JsonValue]] = asyncio.Queue(_QUEUE)
        self.listeners.add(queue)
        try:
            yield queue
        finally:
            self.listeners.discard(queue)


@dataclass(slots=True)
class ApiServices:
    settings: ApiSettings
    engine: Engine
    registry: Registry
    sessions: Sessions
    events: EventHub
    playbooks_dir: Path
    limits: Limits = field(default_factory=Limits)
    public_keys_pem: Callable[[], str] | None = None
    metrics: Callable[[], bytes] | None = None
    readiness: dict[str, Callable[[], str]] = field(default_factory=dict)
    ready: bool = True

    @property
    def store(self) -> Store:
        return self.engine.store
