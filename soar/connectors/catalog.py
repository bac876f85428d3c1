"""Actions known from a catalog file instead of installed code, so playbooks can be validated
where the connectors are not installed (a playbook repository's CI, an analyst's laptop).

A catalog is what `soar connectors --json` prints on a machine that has the connectors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from soar.errors import ConfigError

JsonSchema = Mapping[str, object]
InputProblem = tuple[tuple[str | int, ...], str]

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


class _CatalogAction(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    input_schema: dict[str, JsonValue]
    output_schema: dict[str, JsonValue]


class _CatalogConnector(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    actions: list[_CatalogAction]


class _Catalog(BaseModel):
    model_config = ConfigDict(extra="ignore")

    connectors: list[_CatalogConnector]


@dataclass(frozen=True, slots=True)
class CatalogAction:
    """An action's signature read from a catalog: names, required inputs, schemas."""

    qualified_name: str
    input_schema: JsonSchema
    output_schema: JsonSchema

    @property
    def connector(self) -> str:
        return self.qualified_name.partition(".")[0]

    def input_names(self) -> list[str]:
        return list(_properties(self.input_schema))

    def required_inputs(self) -> list[str]:
        required = self.input_schema.get("required", [])
        return [str(r) for r in required] if isinstance(required, list) else []

    def input_problems(self, constants: Mapping[str, JsonValue]) -> list[InputProblem]:
        """Type and enum mismatches of constant inputs (the JSON Schema subset pydantic writes)."""
        problems: list[InputProblem] = []
        properties = _properties(self.input_schema)
        defs = self.input_schema.get("$defs", {})
        for key, value in constants.items():
            schema = properties.get(key)
            if isinstance(schema, Mapping) and isinstance(defs, Mapping):
                problem = _type_problem(schema, defs, value)
                if problem is not None:
                    problems.append(((key,), problem))
        return problems


def load_catalog(path: Path) -> list[CatalogAction]:
    """Read a catalog file.

    Raises:
        ConfigError: not readable, not JSON, or not in the shape `soar connectors --json` prints.
    """
    try:
        document = _Catalog.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read catalog {path}: {exc.strerror}") from exc
    except ValidationError as exc:
        raise ConfigError(
            f"{path} is not an action catalog (soar connectors --json): {exc}"
        ) from exc
    return [
        CatalogAction(action.name, action.input_schema, action.output_schema)
        for connector in document.connectors
        for action in connector.actions
    ]


def _properties(schema: JsonSchema) -> Mapping[str, object]:
    properties = schema.get("properties", {})
    return properties if isinstance(properties, Mapping) else {}


def _type_problem(schema: JsonSchema, defs: Mapping[str, object], value: JsonValue) -> str | None:
    if "$ref" in schema:
        target = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1])
        return _type_problem(target, defs, value) if isinstance(target, Mapping) else None
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        problems = [_type_problem(o, defs, value) for o in options if isinstance(o, Mapping)]
        return None if not problems or None in problems else problems[0]
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        return "expected one of " + ", ".join(repr(e) for e in enum)
    kind = schema.get("type")
    accepted = _JSON_TYPES.get(kind) if isinstance(kind, str) else None
    if accepted is None:
        return None
    matches = isinstance(value, accepted) and not (isinstance(value, bool) and kind != "boolean")
    return None if matches else f"expected {kind}, got {_json_kind(value)}"


def _json_kind(value: JsonValue) -> str:
    for name, types in _JSON_TYPES.items():
        if isinstance(value, types) and not (isinstance(value, bool) and name != "boolean"):
            return name
    return "value"
