"""Imports flow one way (STYLE.md): models <- playbook <- engine <- ingest, api, cli."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOAR = Path(__file__).resolve().parents[2] / "soar"

# room -> the rooms it may import (itself always allowed; `lazy`, a package-init helper
# that imports nothing of soar, is open to all)
ALLOWED = {
    "models": {"errors"},
    "errors": set(),
    "lazy": set(),
    "config": {"errors", "models"},
    "connectors": {"errors", "models"},
    "store": {"errors", "models"},
    "audit": {"errors", "models"},
    "telemetry": {"errors", "models"},
    "playbook": {"errors", "models", "connectors"},
    "engine": {
        "errors",
        "models",
        "connectors",
        "playbook",
        "store",
        "audit",
        "telemetry",
        "config",
    },
    "ingest": {
        "errors",
        "models",
        "connectors",
        "playbook",
        "engine",
        "store",
        "audit",
        "telemetry",
        "config",
    },
    "api": {
        "errors",
        "models",
        "connectors",
        "playbook",
        "engine",
        "ingest",
        "store",
        "audit",
        "telemetry",
        "config",
    },
    # `soar lab`: the whole system in one process, so it may wire every room but the CLI
    "lab": {
        "errors",
        "models",
        "connectors",
        "playbook",
        "engine",
        "ingest",
        "store",
        "audit",
        "telemetry",
        "config",
        "api",
    },
}


def _room(path: Path) -> str:
    parts = path.relative_to(SOAR).parts
    return parts[0].removesuffix(".py")


def _imported_rooms(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rooms: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "soar" and len(parts) > 1:
                rooms.add(parts[1])
    return rooms


MODULES = sorted(p for p in SOAR.rglob("*.py") if _room(p) in ALLOWED)


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(SOAR)))
def test_a_module_imports_only_the_rooms_below_it(module: Path) -> None:
    room = _room(module)
    forbidden = _imported_rooms(module) - ALLOWED[room] - {room, "lazy"}
    assert not forbidden, f"{module.relative_to(SOAR)} ({room}) imports {sorted(forbidden)}"


def test_nothing_outside_the_cli_imports_the_cli() -> None:
    offenders = [
        str(p.relative_to(SOAR))
        for p in SOAR.rglob("*.py")
        if _room(p) != "cli" and "cli" in _imported_rooms(p)
    ]
    assert offenders == []


def test_the_layer_table_covers_every_room() -> None:
    rooms = {_room(p) for p in SOAR.rglob("*.py")} - {"__init__", "cli"}
    assert rooms <= set(ALLOWED), f"rooms missing from the layer table: {rooms - set(ALLOWED)}"
