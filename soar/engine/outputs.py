"""Stand-in outputs for dry runs: shaped like the action's output schema, so the steps after
an action render, with placeholders such as `<steps.user.output.dn>` where values would be."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from pydantic import JsonValue

_DEPTH = 8


def placeholder_output(schema: Mapping[str, object], path: str) -> JsonValue:
    """A value of `schema`'s shape: text placeholders naming the path, false, 0, empty lists."""
    defs = schema.get("$defs", {})
    return _value(schema, defs if isinstance(defs, Mapping) else {}, path, 0)


def _value(
    schema: Mapping[str, object], defs: Mapping[str, object], path: str, depth: int
) -> JsonValue:
    if depth > _DEPTH:
        return None
    if "$ref" in schema:
        target = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1])
        return _value(target, defs, path, depth + 1) if isinstance(target, Mapping) else None
    if "default" in schema and schema["default"] is not None:
        default = schema["default"]
        return (
            cast(JsonValue, default)
            if isinstance(default, str | int | float | bool | list | dict)
            else None
        )
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        for option in options:
            if isinstance(option, Mapping) and option.get("type") != "null":
                return _value(option, defs, path, depth + 1)
        return None
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return cast(JsonValue, enum[0])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        if not isinstance(properties, Mapping):
            return {}
        return {
            str(name): _value(sub, defs, f"{path}.{name}", depth + 1)
            for name, sub in properties.items()
            if isinstance(sub, Mapping)
        }
    if kind == "array":
        return []
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        return 0
    if kind == "null":
        return None
    return f"<{path}>"
