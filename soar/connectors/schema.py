"""Pydantic models rebuilt from an action's JSON Schema, so actions known only from a catalog
(`soar connectors --json` output) can be recorded and checked like installed ones.

Types are rebuilt for the subset pydantic writes; constraints (lengths, patterns) are not.
"""

from __future__ import annotations

import keyword
import types
from collections.abc import Mapping
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, JsonValue, create_model

_SCALARS: dict[str, object] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
}
_MAX_DEPTH = 16


def model_from_schema(name: str, schema: Mapping[str, object]) -> type[BaseModel]:
    """A model for an object schema; outside the subset, a model that takes any JSON object.

    Properties whose schema is outside the subset accept any JSON value, so a catalog written by
    a newer soar still yields models that check every field they can.
    """
    defs = schema.get("$defs", {})
    builder = _Builder(defs if isinstance(defs, Mapping) else {})
    ref = schema.get("$ref")
    if isinstance(ref, str):  # pydantic writes a self-referencing model as a `$ref` to `$defs`
        builder.expanding.add(ref.rsplit("/", 1)[-1])
        target = builder.defs.get(ref.rsplit("/", 1)[-1])
        schema = target if isinstance(target, Mapping) else {}
    model = builder.object_model(name, schema, depth=0)
    return model if model is not None else _any_object(name)


def _any_object(name: str) -> type[BaseModel]:
    return create_model(name, __config__=ConfigDict(extra="allow"))


class _Builder:
    """Turns schema nodes into type hints; `$ref`s being expanded are tracked to stop cycles."""

    def __init__(self, defs: Mapping[str, object]) -> None:
        self.defs = defs
        self.expanding: set[str] = set()

    def object_model(
        self, name: str, schema: Mapping[str, object], *, depth: int
    ) -> type[BaseModel] | None:
        properties = schema.get("properties")
        if schema.get("type") != "object" or not isinstance(properties, Mapping):
            return None
        required = schema.get("required", [])
        required_names = {str(r) for r in required} if isinstance(required, list) else set()
        fields: dict[str, Any] = {}
        for index, (prop, prop_schema) in enumerate(properties.items()):
            hint = self.hint(f"{name}_{prop}", prop_schema, depth=depth + 1)
            field_name = prop if _is_plain_name(prop) else f"field_{index}"
            alias = None if field_name == prop else prop
            if prop in required_names:
                fields[field_name] = (hint, Field(alias=alias))
            elif isinstance(prop_schema, Mapping) and "default" in prop_schema:
                fields[field_name] = (hint, Field(default=prop_schema["default"], alias=alias))
            else:
                fields[field_name] = (hint | None, Field(default=None, alias=alias))
        extra: Literal["forbid", "ignore"] = (
            "forbid" if schema.get("additionalProperties") is False else "ignore"
        )
        config = ConfigDict(extra=extra, populate_by_name=True, protected_namespaces=())
        title = schema.get("title")
        model_name = title if isinstance(title, str) and title.isidentifier() else name
        return create_model(model_name, __config__=config, **fields)

    def hint(self, name: str, schema: object, *, depth: int) -> Any:
        """The type hint for one schema node; `JsonValue` when it is outside the subset."""
        if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
            return JsonValue
        if "$ref" in schema:
            return self.ref(str(schema["$ref"]), depth=depth)
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return Literal[tuple(enum)]
        options = schema.get("anyOf")
        if isinstance(options, list) and options:
            members = [self.hint(name, o, depth=depth + 1) for o in options]
            return JsonValue if JsonValue in members else Union[tuple(members)]  # noqa: UP007
        kind = schema.get("type")
        if isinstance(kind, str) and kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            return types.GenericAlias(list, (self.hint(name, schema.get("items"), depth=depth),))
        if kind == "object":
            model = self.object_model(name, schema, depth=depth)
            if model is not None:
                return model
            values = schema.get("additionalProperties")
            value_hint = self.hint(name, values, depth=depth) if values else JsonValue
            return types.GenericAlias(dict, (str, value_hint))
        return JsonValue

    def ref(self, ref: str, *, depth: int) -> Any:
        target_name = ref.rsplit("/", 1)[-1]
        target = self.defs.get(target_name)
        if not ref.startswith("#/$defs/") or target is None or target_name in self.expanding:
            return JsonValue
        self.expanding.add(target_name)
        try:
            return self.hint(target_name, target, depth=depth + 1)
        finally:
            self.expanding.discard(target_name)


def _is_plain_name(name: str) -> bool:
    """Usable as a field name as it is: an identifier that no BaseModel attribute shadows."""
    return (
        name.isidentifier()
        and not keyword.iskeyword(name)
        and not name.startswith("_")
        and not hasattr(BaseModel, name)
    )
