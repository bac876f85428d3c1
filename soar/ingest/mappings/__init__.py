"""Input mappings: one module per alert format, each a function from a JSON object to an Alert,
or, for formats whose one message carries several alerts (Alertmanager), to a list of them."""

from collections.abc import Callable

from soar.ingest.mappings.alertmanager import map_alertmanager
from soar.ingest.mappings.detect import detect_format
from soar.ingest.mappings.document import JsonObject
from soar.ingest.mappings.ecs import map_ecs
from soar.ingest.mappings.fingerprint import mint_id
from soar.ingest.mappings.generic import map_generic
from soar.ingest.mappings.ocsf import map_ocsf
from soar.ingest.mappings.splunk import map_splunk
from soar.ingest.mappings.timestamps import parse_time
from soar.models.alert import Alert, AlertFormat

MAPPINGS: dict[AlertFormat, Callable[[JsonObject], Alert]] = {
    AlertFormat.OCSF: map_ocsf,
    AlertFormat.ECS: map_ecs,
    AlertFormat.SPLUNK: map_splunk,
    AlertFormat.GENERIC: map_generic,
}

#: formats whose one object is a group of alerts: mapped to one Alert per member
GROUP_MAPPINGS: dict[AlertFormat, Callable[[JsonObject], list[Alert]]] = {
    AlertFormat.ALERTMANAGER: map_alertmanager,
}

__all__ = [
    "GROUP_MAPPINGS",
    "MAPPINGS",
    "JsonObject",
    "detect_format",
    "map_alertmanager",
    "map_ecs",
    "map_generic",
    "map_ocsf",
    "map_splunk",
    "mint_id",
    "parse_time",
]
