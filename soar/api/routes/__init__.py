"""The API's routes, one module per area; `ROUTES` is the whole table."""

from __future__ import annotations

from soar.api.routes.alerts import routes as alerts
from soar.api.routes.approvals import routes as approvals
from soar.api.routes.audit import routes as audit
from soar.api.routes.connectors import routes as connectors
from soar.api.routes.playbooks import routes as playbooks
from soar.api.routes.runs import routes as runs
from soar.api.routes.session import routes as session
from soar.api.routes.system import routes as system
from soar.api.routing import Route

ROUTES: list[Route] = [
    route
    for area in (system, session, playbooks, runs, approvals, alerts, audit, connectors)
    for route in area.table
]
