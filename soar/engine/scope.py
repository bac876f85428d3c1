"""What expressions see during a run, and how a step's `with` is rendered from templates."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from pydantic import JsonValue

from soar.models.run import Run, StepState, StepStatus
from soar.playbook.durations import format_duration
from soar.playbook.graph import StepGraph
from soar.playbook.source import Path
from soar.playbook.validate import LoadedPlaybook


def step_view(state: StepState) -> dict[str, object]:
    """`steps.<id>` as expressions read it."""
    return {
        "output": state.output,
        "status": state.status.value,
        "error": state.error,
        "attempts": state.attempt,
        "started_at": state.started_at,
        "finished_at": state.finished_at,
    }


def skipped_view() -> dict[str, object]:
    return {
        "output": None,
        "status": StepStatus.SKIPPED.value,
        "error": None,
        "attempts": 0,
        "started_at": None,
        "finished_at": None,
    }


def run_view(run: Run) -> dict[str, object]:
    """`run` as expressions read it."""
    return {
        "id": run.id,
        "status": run.status.value,
        "started_at": run.created_at,
        "playbook": run.playbook_id,
        "version": run.playbook_version,
        "trigger": run.trigger.value,
        "dry_run": run.dry_run,
        "scheduled_for": run.inputs.get("_scheduled_for"),
    }


def node_key_of(instance_key: str) -> str:
    """`forensics` for the instance `forensics[2]`."""
    return instance_key.split("[", 1)[0] if instance_key.endswith("]") else instance_key


def render(
    loaded: LoadedPlaybook,
    path: Path,
    value: JsonValue,
    variables: Mapping[str, object],
    clock: Callable[[], datetime],
) -> object:
    """`value` with every template under `path` evaluated; constants are returned as they are."""
    if path not in loaded.templated:
        return value  # no template below: YAML constants are JSON already
    template = loaded.templates.get(path)
    if template is not None:
        return template.evaluate(variables, clock=clock)
    if isinstance(value, dict):
        return {k: render(loaded, (*path, k), v, variables, clock) for k, v in value.items()}
    if isinstance(value, list):
        return [render(loaded, (*path, i), v, variables, clock) for i, v in enumerate(value)]
    return value


def descendants_of(graph: StepGraph, key: str) -> frozenset[str]:
    node = graph.nodes.get(key)
    return graph.descendants(node) if node is not None else frozenset()


def jsonable(value: object) -> JsonValue:
    """Rendered values as JSON for the store: times as ISO 8601, severities and durations as
    text. Anything else that is not JSON is refused (ValueError)."""
    if value is None or isinstance(value, bool | int | float | str):
        if isinstance(value, str) and type(value) is not str:
            return str(value.value) if hasattr(value, "value") else str(value)
        return value
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    raise ValueError(f"a {type(value).__name__} cannot be stored as JSON")
