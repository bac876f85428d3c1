"""The `core` connector: actions that need no outside system, so playbooks run from day one."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from pydantic import BaseModel, Field, JsonValue

from soar.connectors.action import Connector
from soar.connectors.context import ActionContext
from soar.errors import ActionFailed

core = Connector("core", doc="Built-in actions: log, set values, sleep, fail on purpose.")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class LogInput(BaseModel):
    message: str = Field(max_length=10_000)
    level: str = Field(default="info", pattern="^(debug|info|warning)$")


class Nothing(BaseModel):
    """No output."""


class SetInput(BaseModel):
    values: dict[str, JsonValue]


class SetOutput(BaseModel):
    values: dict[str, JsonValue]


class SleepInput(BaseModel):
    seconds: float = Field(ge=0, le=3600)


class FailInput(BaseModel):
    message: str = "failed on purpose"
    retryable: bool = False


@core.action(idempotent=True, timeout=timedelta(seconds=5))
async def log(ctx: ActionContext, params: LogInput) -> Nothing:
    """Write a message to the run's log."""
    ctx.logger.log(_LEVELS[params.level], "%s", params.message)
    return Nothing()


@core.action(idempotent=True, timeout=timedelta(seconds=5), name="set", pure=True)
async def set_values(ctx: ActionContext, params: SetInput) -> SetOutput:
    """Return the given values as this step's output, to name computed values for later steps."""
    return SetOutput(values=params.values)


@core.action(idempotent=True, timeout=timedelta(hours=1, seconds=5))
async def sleep(ctx: ActionContext, params: SleepInput) -> Nothing:
    """Pause for a number of seconds (for long waits use a `wait` step, which is durable)."""
    await asyncio.sleep(params.seconds)
    return Nothing()


@core.action(idempotent=True, timeout=timedelta(seconds=5))
async def noop(ctx: ActionContext, params: Nothing) -> Nothing:
    """Do nothing: a placeholder while a playbook is drafted, and the unit of `soar bench`."""
    return Nothing()


@core.action(idempotent=True, timeout=timedelta(seconds=5))
async def fail(ctx: ActionContext, params: FailInput) -> Nothing:
    """Fail on purpose: to test `retry`, `on_error` and `compensate`."""
    raise ActionFailed(params.message, retryable=params.retryable)
