"""Calling a notify action the way the engine does: inputs validated by the declared model."""

from __future__ import annotations

from pydantic import BaseModel, JsonValue
from soar_notify import notify

from soar.connectors import ActionContext


async def call(name: str, ctx: ActionContext, **inputs: JsonValue) -> BaseModel:
    spec = notify.actions[name]
    return await spec.fn(ctx, spec.input_model.model_validate(inputs))
