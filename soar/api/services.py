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
from soar.errors import StoreError
from soar.ingest.limits import Limits
from soar.models.run import Transition
from soar.store import RunFilter, Store

if TYPE_CHECKING:
    from soar.engine.executor import RunExecutor

_QUEUE = 256  # events a slow listener may fall behind by before it is dropped
_WATCHED = 200  # the newest runs watched for changes made by other workers


@dataclass(slots=True)
class EventHub:
    """Fans every durable run transition out to the open `/events` streams."""

    listeners: set[asyncio.Queue[dict[str, JsonValue]]] = field(default_factory=set)

    def __call__(self, executor: RunExecutor, transitions: list[Transition]) -> None:
        for transition in transitions:
            self.publish(
                {
                    "run_id": transition.run_id,
                    "status": executor.run.status.value,
                    "step": transition.step,
                    "kind": transition.kind.value,
                    "seq": transition.seq,
                }
            )

    def publish(self, event: dict[str, JsonValue]) -> None:
        for queue in list(self.listeners):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # too slow: its stream ends, the console reconnects
                self.listeners.discard(queue)

    async def watch(self, engine: Engine, every: float = 1.0) -> None:
        """While someone listens, tell them of runs that other workers move: this process sees
        its own runs' transitions as they happen, and the others' only in the store."""
        seen: dict[str, tuple[str, object]] = {}
        primed = False  # what the store held when someone began to listen is not news
        while True:
            await asyncio.sleep(every)
            if not self.listeners:
                seen.clear()
                primed = False
                continue
            try:
                runs = await engine.store.list_runs(RunFilter(limit=_WATCHED))
            except StoreError:
                continue
            for run in runs:
                state = (run.status.value, run.updated_at)
                if primed and seen.get(run.id) != state and run.id not in engine.executors:
                    self.publish(
                        {
                            "run_id": run.id,
                            "status": run.status.value,
                            "step": None,
                            "kind": "run_updated",
                            "seq": None,
                        }
                    )
                seen[run.id] = state
            for gone in set(seen) - {r.id for r in runs}:
                del seen[gone]
            primed = True

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
