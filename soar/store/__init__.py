"""Where runs are kept: the `Store` protocol, its backends, and `open_store` to pick one by URL."""

from __future__ import annotations

from soar.store.base import Change, RunFilter, RunSnapshot, Store
from soar.store.memory import MemoryStore

__all__ = ["Change", "MemoryStore", "RunFilter", "RunSnapshot", "Store"]
