"""Declaring actions: a connector is a named set of typed async functions with their metadata."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from functools import cache
from typing import Any, Protocol, TypeVar, get_type_hints

from pydantic import BaseModel, JsonValue, ValidationError

from soar.connectors.context import ActionContext

_ACTION_NAME = r"^[a-z][a-z0-9_]*$"

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)
ActionFn = Callable[[ActionContext, In], Awaitable[Out]]


class TargetKind(StrEnum):
    """What an action touches, recorded in the audit log so auditors can filter by it."""

    NONE = "none"
    USER = "user"
    HOST = "host"
    GROUP = "group"
    TICKET = "ticket"
    ARTIFACT = "artifact"
    MESSAGE = "message"
    SERVICE = "service"


DEFAULT_TIMEOUT = timedelta(seconds=60)

InputProblem = tuple[tuple[str | int, ...], str]


class ActionSignature(Protocol):
    """What the validator needs of an action: installed (`ActionSpec`) or from a catalog."""

    @property
    def qualified_name(self) -> str: ...

    @property
    def output_schema(self) -> Mapping[str, object]: ...

    def input_names(self) -> list[str]: ...

    def required_inputs(self) -> list[str]: ...

    def input_problems(self, constants: Mapping[str, JsonValue]) -> list[InputProblem]: ...


@cache
def _schema_of(model: type[BaseModel]) -> Mapping[str, object]:
    return model.model_json_schema()


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """Everything the engine and the validator know about one action."""

    connector: str
    name: str
    fn: Callable[[ActionContext, Any], Awaitable[BaseModel]]
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    doc: str
    secrets: tuple[str, ...] = ()
    idempotent: bool = False
    compensate: str | None = None
    timeout: timedelta = DEFAULT_TIMEOUT
    target: TargetKind = TargetKind.NONE
    target_field: str | None = None
    cache_ttl: timedelta | None = None

    @property
    def qualified_name(self) -> str:
        """`connector.action`, as playbooks write it."""
        return f"{self.connector}.{self.name}"

    @property
    def output_schema(self) -> Mapping[str, object]:
        """The output model's JSON Schema (computed once per model)."""
        return _schema_of(self.output_model)

    def input_names(self) -> list[str]:
        return [info.alias or name for name, info in self.input_model.model_fields.items()]

    def required_inputs(self) -> list[str]:
        fields = self.input_model.model_fields
        return [info.alias or name for name, info in fields.items() if info.is_required()]

    def input_problems(self, constants: Mapping[str, JsonValue]) -> list[InputProblem]:
        """Why these constant inputs do not fit the input model (missing ones are not asked)."""
        try:
            self.input_model.model_validate(constants)
        except ValidationError as exc:
            return [
                (tuple(error["loc"]), str(error["msg"]).removeprefix("Value error, "))
                for error in exc.errors()
                if error["type"] != "missing" and error["loc"] and error["loc"][0] in constants
            ]
        return []

    def describe(self) -> dict[str, object]:
        """A JSON-ready description for `soar connectors --json` and the API."""
        return {
            "name": self.qualified_name,
            "doc": self.doc,
            "secrets": list(self.secrets),
            "idempotent": self.idempotent,
            "compensate": self.compensate,
            "timeout_seconds": self.timeout.total_seconds(),
            "target": self.target.value,
            "target_field": self.target_field,
            "cache_ttl_seconds": self.cache_ttl.total_seconds() if self.cache_ttl else None,
            "input_schema": self.input_model.model_json_schema(),
            "output_schema": self.output_model.model_json_schema(),
        }


@dataclass(slots=True)
class Connector:
    """A named group of actions; register one per package under the `soar.connectors` group."""

    name: str
    doc: str = ""
    actions: dict[str, ActionSpec] = field(default_factory=dict)

    def action(
        self,
        *,
        secrets: list[str] | tuple[str, ...] = (),
        idempotent: bool = False,
        compensate: str | None = None,
        timeout: timedelta = DEFAULT_TIMEOUT,
        target: TargetKind | str = TargetKind.NONE,
        target_field: str | None = None,
        cache_ttl: timedelta | None = None,
        name: str | None = None,
    ) -> Callable[[ActionFn[In, Out]], ActionFn[In, Out]]:
        """Declare an async `(ctx, params) -> output` function as an action of this connector.

        The input and output models are read from the annotations, so they are declared once.

        Raises:
            TypeError: the function is not async or its annotations are not pydantic models.
        """

        def register(fn: ActionFn[In, Out]) -> ActionFn[In, Out]:
            action_name = name or fn.__name__
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(f"action {self.name}.{action_name} must be an async function")
            hints = get_type_hints(fn)
            params = list(inspect.signature(fn).parameters)
            if len(params) != 2:
                raise TypeError(f"action {self.name}.{action_name} must take (ctx, params)")
            input_model = _model(hints.get(params[1]), f"{self.name}.{action_name} input")
            output_model = _model(hints.get("return"), f"{self.name}.{action_name} output")
            if target_field is not None and target_field not in input_model.model_fields:
                raise TypeError(
                    f"action {self.name}.{action_name}: target_field {target_field!r} "
                    "is not an input"
                )
            self.actions[action_name] = ActionSpec(
                connector=self.name,
                name=action_name,
                fn=fn,
                input_model=input_model,
                output_model=output_model,
                doc=inspect.getdoc(fn) or "",
                secrets=tuple(secrets),
                idempotent=idempotent,
                compensate=compensate,
                timeout=timeout,
                target=TargetKind(target),
                target_field=target_field,
                cache_ttl=cache_ttl,
            )
            return fn

        return register


def _model(hint: object, label: str) -> type[BaseModel]:
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return hint
    raise TypeError(f"action {label} must be annotated with a pydantic model")
