"""Validating one playbook file: YAML, schema, then every semantic check, all problems at once."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from soar.connectors.registry import Registry
from soar.errors import Diagnostic
from soar.playbook.checks import Checker
from soar.playbook.datapaths import suggest
from soar.playbook.expr import Expression, Template
from soar.playbook.graph import StepGraph
from soar.playbook.schema import Playbook
from soar.playbook.source import Path, Source, read_source

_REPAIR_ROUNDS = 8
_MISSING = object()


@dataclass(frozen=True, slots=True)
class LoadedPlaybook:
    """A playbook that validated clean, with every expression and template compiled once."""

    playbook: Playbook
    file: str
    digest: str
    expressions: Mapping[Path, Expression]
    templates: Mapping[Path, Template]
    graph: StepGraph
    templated: frozenset[Path] = frozenset()
    """Every path that has a template at or below it; anything else is a plain constant."""


def connectors_of(loaded: LoadedPlaybook) -> set[str]:
    """Every connector a playbook's steps, fallbacks, escalations and compensations call."""
    used: set[str] = set()
    for node in loaded.graph.nodes.values():
        names = [node.step.action]
        if node.step.compensate is not None:
            names.append(node.step.compensate.action)
        used.update(name.partition(".")[0] for name in names if name)
    return used


@dataclass(slots=True)
class Validation:
    """What validating one file found."""

    file: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    playbook: Playbook | None = None
    loaded: LoadedPlaybook | None = None

    @property
    def ok(self) -> bool:
        return not self.diagnostics


def validate_text(
    text: str,
    *,
    file: str,
    registry: Registry,
    known_playbooks: Mapping[str, Playbook] | None = None,
) -> Validation:
    """Check one playbook's text; `known_playbooks` lets sub-playbook calls be checked too."""
    result = Validation(file=file)
    source, problems = read_source(text, file=file)
    if source is None:
        result.diagnostics = problems
        return result
    playbook, problems, removed = _validate_schema(source)
    result.diagnostics.extend(problems)
    if playbook is None:
        return result
    result.playbook = playbook
    checker = Checker(source, playbook, registry, removed=removed, known=known_playbooks)
    checker.run()
    result.diagnostics.extend(checker.diagnostics)
    result.diagnostics = _sorted_unique(result.diagnostics)
    if not result.diagnostics:
        result.loaded = LoadedPlaybook(
            playbook=playbook,
            file=file,
            digest="sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest(),
            expressions=checker.expressions,
            templates=checker.templates,
            graph=checker.graph,
            templated=frozenset(p[:i] for p in checker.templates for i in range(len(p) + 1)),
        )
    return result


def _sorted_unique(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(set(diagnostics), key=lambda d: (d.file, d.line, d.col, d.message))


def _validate_schema(source: Source) -> tuple[Playbook | None, list[Diagnostic], set[Path]]:
    """Validate against the schema; on errors, drop the bad parts and try again, so that the
    semantic checks still run on the rest and every problem is reported in one pass."""
    data = copy.deepcopy(source.data)
    if not isinstance(data, dict):
        return (
            None,
            [source.diagnostic((), "a playbook is a mapping of keys (id, trigger, ...)")],
            set(),
        )
    diagnostics: list[Diagnostic] = []
    removed: set[Path] = set()
    for _ in range(_REPAIR_ROUNDS):
        try:
            return Playbook.model_validate(data), diagnostics, removed
        except ValidationError as exc:
            progress = False
            for error in exc.errors():
                loc: Path = tuple(error["loc"])
                if any(loc[: len(r)] == r for r in removed):
                    if error["type"] == "missing" and _remove(data, loc[:-1], removed):
                        progress = True
                    continue
                diagnostics.append(_schema_diagnostic(source, loc, error["type"], error["msg"]))
                target = loc if error["type"] != "missing" else loc[:-1]
                progress = _remove(data, target, removed) or progress
            if not progress:
                break
    return None, diagnostics, removed


def _remove(data: object, path: Path, removed: set[Path]) -> bool:
    """Delete the mapping entry at `path`; list items are never removed (indexes must hold)."""
    if not path or not isinstance(path[-1], str):
        return False
    parent: object = data
    for part in path[:-1]:
        parent = _child(parent, part)
    if isinstance(parent, dict) and path[-1] in parent:
        del parent[path[-1]]
        removed.add(path)
        return True
    return False


def _child(parent: object, part: str | int) -> object:
    if isinstance(parent, dict) and isinstance(part, str):
        return parent.get(part, _MISSING)
    if isinstance(parent, list) and isinstance(part, int) and 0 <= part < len(parent):
        return parent[part]
    return _MISSING


def _schema_diagnostic(source: Source, loc: Path, kind: str, message: str) -> Diagnostic:
    where = ".".join(str(p) for p in loc) or "playbook"
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(loc[:-1])
        hint = suggest(key, allowed) if allowed else ""
        return source.diagnostic(loc, f"unknown key {key!r}{hint}", key=True)
    if kind == "missing":
        return source.diagnostic(loc[:-1], f"missing required key {loc[-1]!r} in {where}")
    text = message.removeprefix("Value error, ")
    return source.diagnostic(loc, f"{where}: {text}")


def _allowed_keys(parent: Path) -> list[str]:
    """The keys the schema allows at `parent`, for did-you-mean hints."""
    model: type[BaseModel] | None = Playbook
    skip_key = False
    for part in parent:
        if isinstance(part, int):
            continue
        if skip_key:  # a key of a free mapping such as `inputs`
            skip_key = False
            continue
        info = _field(model, part) if model is not None else None
        if info is None:
            return []
        skip_key = _is_mapping(info.annotation)
        model = _first_model(info.annotation)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _field(model: type[BaseModel], key: str) -> FieldInfo | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _is_mapping(annotation: object) -> bool:
    if get_origin(annotation) is dict:
        return True
    return any(_is_mapping(arg) for arg in get_args(annotation))


def _first_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _first_model(arg)
        if found is not None:
            return found
    return None
