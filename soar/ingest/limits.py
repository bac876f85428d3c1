"""Bounds on one inbound message, so a hostile producer cannot buy unbounded time or memory."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Limits(BaseModel):
    """What `normalize` accepts before it refuses a message.

    `max_bytes` is the UTF-8 size of the whole message (default 1 MiB), `max_depth` the deepest
    nesting of arrays and objects (the top level counts as 1), `max_batch` the most alerts one
    message may carry as a JSON array.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_bytes: int = Field(default=1_048_576, ge=2)
    max_depth: int = Field(default=64, ge=2, le=512)
    max_batch: int = Field(default=1000, ge=1)
