"""The installed connectors, their actions and the actions' schemas."""

from __future__ import annotations

from soar.api.models import ConnectorList
from soar.api.routing import ALL_READERS, Call, Routes

routes = Routes("connectors")


@routes.get("/connectors", roles=ALL_READERS, response=ConnectorList)
async def list_connectors(call: Call) -> ConnectorList:
    """Every installed connector and action, as `soar connectors --json` shows them."""
    registry = call.services.registry
    return ConnectorList.model_validate(
        {
            "connectors": [
                {
                    "name": c.name,
                    "doc": c.doc,
                    "actions": [
                        {**spec.describe(), "read_only": spec.cache_ttl is not None}
                        for spec in c.actions.values()
                    ],
                }
                for c in sorted(registry.connectors.values(), key=lambda c: c.name)
            ]
        }
    )
