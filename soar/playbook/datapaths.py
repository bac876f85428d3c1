"""Checking a data path (`users[0].name`) against a JSON Schema, with did-you-mean hints."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

JsonSchema = Mapping[str, object]
PathPart = str | int | None


def render_path(parts: Sequence[PathPart]) -> str:
    """`steps.user.output.dn`, `alert.users[0].name`, `x[...]` for a computed key."""
    text = ""
    for part in parts:
        if part is None:
            text += "[...]"
        elif isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier() or "-" in part:
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def suggest(word: str, choices: Sequence[str]) -> str:
    """` (did you mean 'x'?)` when a choice is close, else empty."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def find_problem(schema: JsonSchema, parts: Sequence[PathPart], owner: str) -> str | None:
    """Why `parts` cannot exist in data of this schema, or None when it can.

    `owner` names the data in messages ("alert", "ldap.get_user output").
    """
    defs = schema.get("$defs", {})
    assert isinstance(defs, Mapping)  # noqa: S101
    return _walk(schema, defs, list(parts), owner, [])


def _resolve(schema: JsonSchema, defs: Mapping[str, object]) -> JsonSchema:
    seen = 0
    while "$ref" in schema and seen < 32:
        ref = str(schema["$ref"])
        target = defs.get(ref.rsplit("/", 1)[-1])
        if not isinstance(target, Mapping):
            return {}
        schema = target
        seen += 1
    return schema


def _walk(
    schema: JsonSchema,
    defs: Mapping[str, object],
    parts: list[PathPart],
    owner: str,
    done: list[PathPart],
) -> str | None:
    schema = _resolve(schema, defs)
    if not parts:
        return None
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        problems = []
        for option in options:
            if isinstance(option, Mapping) and option.get("type") == "null":
                continue
            problem = (
                _walk(option, defs, parts, owner, done) if isinstance(option, Mapping) else None
            )
            if problem is None:
                return None
            problems.append(problem)
        return problems[0] if problems else None
    part, rest = parts[0], parts[1:]
    kind = schema.get("type")
    where = render_path([owner, *done]) if done else owner
    if kind is None and "properties" not in schema:
        return None  # any JSON value: nothing to check further
    if kind == "array":
        if isinstance(part, str):
            return f"{where} is a list: index it with a number, not {part!r}"
        items = schema.get("items", {})
        return _walk(items if isinstance(items, Mapping) else {}, defs, rest, owner, [*done, part])
    if kind == "object" or "properties" in schema:
        if isinstance(part, int):
            return f"{where} is an object, not a list"
        properties = schema.get("properties", {})
        assert isinstance(properties, Mapping)  # noqa: S101
        if part is None:
            return None
        if part in properties:
            child = properties[part]
            return _walk(
                child if isinstance(child, Mapping) else {}, defs, rest, owner, [*done, part]
            )
        extra = schema.get("additionalProperties", not properties)
        if extra is False or (extra is None and properties):
            return f"{where} has no field {part!r}" + suggest(part, list(properties))
        child = extra if isinstance(extra, Mapping) else {}
        return _walk(child, defs, rest, owner, [*done, part])
    return f"{where} is a {kind}: it has no field {render_path([part])!r}"
