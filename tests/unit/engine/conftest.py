"""Engine tests: a connector that counts effects by idempotency key, a fake clock, a store."""

from __future__ import annotations

import asyncio
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from pydantic import BaseModel

from soar.connectors import ActionContext, ActionFailed, Connector, Registry
from soar.connectors.core import core
from soar.engine import Engine, FakeClock
from soar.playbook.validate import LoadedPlaybook, validate_text
from soar.store.memory import MemoryStore


class Do(BaseModel):
    name: str
    fail_times: int = 0
    retryable: bool = True
    seconds: float = 0
    retry_after: float | None = None


class Done(BaseModel):
    name: str
    calls: int


class Undo(BaseModel):
    name: str


@dataclass
class Effects:
    """What the fake outside world saw: calls per idempotency key, effects, compensations."""

    calls: Counter[str] = field(default_factory=Counter)
    by_name: Counter[str] = field(default_factory=Counter)
    effects: dict[str, str] = field(default_factory=dict)
    undone: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    time_left: dict[str, float] = field(default_factory=dict)


def effect_connector(effects: Effects) -> Connector:
    fx = Connector("fx", doc="test effects")

    @fx.action(idempotent=True, compensate="fx.undo")
    async def do(ctx: ActionContext, params: Do) -> Done:
        effects.calls[ctx.idempotency_key] += 1
        effects.by_name[params.name] += 1
        effects.time_left[ctx.idempotency_key] = ctx.time_left(-1.0)
        calls = effects.calls[ctx.idempotency_key]
        if params.seconds:
            await asyncio.sleep(params.seconds)
        if effects.by_name[params.name] <= params.fail_times:
            raise ActionFailed(
                f"{params.name} failed on call {calls}",
                retryable=params.retryable,
                retry_after=params.retry_after,
            )
        effects.effects.setdefault(ctx.idempotency_key, params.name)
        effects.order.append(params.name)
        return Done(name=params.name, calls=calls)

    @fx.action(idempotent=True)
    async def undo(ctx: ActionContext, params: Undo) -> Done:
        effects.undone.append(params.name)
        return Done(name=params.name, calls=len(effects.undone))

    @fx.action()
    async def stubborn(ctx: ActionContext, params: Do) -> Done:
        """Ignores cancellation: the engine must not wait for it."""
        effects.calls[ctx.idempotency_key] += 1
        deadline = asyncio.get_running_loop().time() + params.seconds
        while asyncio.get_running_loop().time() < deadline:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue
        return Done(name=params.name, calls=1)

    return fx


@dataclass
class World:
    engine: Engine
    store: MemoryStore
    clock: FakeClock
    effects: Effects
    registry: Registry

    def load(self, text: str) -> LoadedPlaybook:
        result = validate_text(textwrap.dedent(text), file="t.yaml", registry=self.registry)
        assert result.loaded is not None, [str(d) for d in result.diagnostics]
        self.engine.add_playbook(result.loaded)
        return result.loaded

    async def until(
        self, predicate: Callable[[], bool | Awaitable[bool]], *, spins: int = 2000
    ) -> None:
        for _ in range(spins):
            value = predicate()
            if isinstance(value, Awaitable):
                value = await value
            if value:
                return
            await asyncio.sleep(0)
        raise AssertionError("condition never held")


@pytest.fixture
def effects() -> Effects:
    return Effects()


@pytest.fixture
async def world(effects: Effects) -> AsyncIterator[World]:
    registry = Registry.of([core, effect_connector(effects)])
    store = MemoryStore()
    clock = FakeClock()
    counter = iter(range(1, 10_000))
    engine = Engine(store, registry, [], clock=clock, new_id=lambda: f"r{next(counter)}")
    yield World(engine, store, clock, effects, registry)
    await engine.stop()
