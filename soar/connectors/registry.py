"""Finding connectors: the `soar.connectors` entry point group, loaded once per process."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from soar.connectors.action import ActionSignature, ActionSpec, Connector
from soar.connectors.catalog import CatalogAction
from soar.errors import ConnectorError

ENTRY_POINT_GROUP = "soar.connectors"
_log = logging.getLogger(__name__)


@dataclass(slots=True)
class Registry:
    """The connectors this process knows, by name; actions are looked up as `connector.action`."""

    connectors: dict[str, Connector] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    catalog: dict[str, CatalogAction] = field(default_factory=dict)

    @classmethod
    def of(cls, connectors: Iterable[Connector]) -> Registry:
        """A registry holding exactly these connectors (tests, embedded use)."""
        registry = cls()
        for connector in connectors:
            registry.add(connector)
        return registry

    def add(self, connector: Connector) -> None:
        """Register one connector. Raises `ConnectorError` on a duplicate name."""
        if connector.name in self.connectors:
            raise ConnectorError(f"two connectors are named {connector.name!r}")
        self.connectors[connector.name] = connector

    def action(self, qualified_name: str) -> ActionSpec | None:
        """The action called `connector.action`, or None when there is none."""
        connector_name, _, action_name = qualified_name.partition(".")
        connector = self.connectors.get(connector_name)
        if connector is None:
            return None
        return connector.actions.get(action_name)

    def add_catalog(self, actions: Iterable[CatalogAction]) -> None:
        """Know these actions by signature only (for validation); installed ones take precedence."""
        for action in actions:
            self.catalog.setdefault(action.qualified_name, action)

    def signature(self, qualified_name: str) -> ActionSignature | None:
        """The action's signature, from installed code first, else from a loaded catalog."""
        return self.action(qualified_name) or self.catalog.get(qualified_name)

    def connector_names(self) -> list[str]:
        """Installed connectors and those a catalog describes."""
        return sorted(set(self.connectors) | {a.connector for a in self.catalog.values()})

    def action_names(self) -> list[str]:
        """Every `connector.action` name, sorted, for listings and did-you-mean hints."""
        return sorted({spec.qualified_name for spec in self.actions()} | set(self.catalog))

    def actions(self) -> list[ActionSpec]:
        return [spec for c in self.connectors.values() for spec in c.actions.values()]


def load_registry() -> Registry:
    """Load every installed connector. A connector that fails to import is recorded, not fatal."""
    registry = Registry()
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            connector = entry.load()
        except Exception as exc:  # a broken plugin must not take the engine down
            registry.broken[entry.name] = f"{type(exc).__name__}: {exc}"
            _log.warning("connector %s failed to load: %s", entry.name, exc)
            continue
        if not isinstance(connector, Connector):
            registry.broken[entry.name] = f"{entry.value} is not a soar Connector"
            continue
        registry.add(connector)
    return registry
