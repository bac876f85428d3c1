"""The API's routes, one module per area; `ROUTES` is the whole table."""

from __future__ import annotations

from soar.api.routes import alerts, approvals, audit, connectors, playbooks, runs, session, system
from soar.api.routing import Route

ROUTES: list[Route] = [
    route
    for module in (system, session, playbooks, runs, approvals, alerts, audit, connectors)
    for route in module.routes.table
]
