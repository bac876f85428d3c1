"""Declaring actions: a connector is a named set of typed async functions with their metadata."""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from functools import cache
from typing import Any, Protocol, TypeVar, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, JsonValue, ValidationError

from soar.connectors.context import ActionContext

_ACTION_NAME = r"^[a-z][a-z0-9_]*$"

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)
ActionFn = Callable[[ActionContext, In], Awaitable[Out]]
VerifyFn = Callable[[ActionContext, In], Awaitable[Out | None]]

# What a spec stores: the parameter is the spec's `input_model`, checked when it is declared.
ActionCall = Callable[[ActionContext, Any], Awaitable[BaseModel]]
VerifyCall = Callable[[ActionContext, Any], Awaitable[BaseModel | None]]


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
    """Everything the engine and the validator know about one action.

    `verify`, when set, is a read-only probe the engine calls before re-issuing an attempt whose
    outcome is unknown after a crash: it returns the output when the effect is already in place
    (the step then succeeds with it) and None when it is not (the attempt is re-issued).
    """

    connector: str
    name: str
    fn: ActionCall
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
    verify: VerifyCall | None = None
    pure: bool = False
    """It only computes its output from its inputs and touches nothing: a dry run calls it,
    so later steps see real values instead of placeholders."""

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
            "verify": self.verify is not None,
            "pure": self.pure,
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
        pure: bool = False,
    ) -> Callable[[ActionFn[In, Out]], ActionFn[In, Out]]:
        """Declare an async `(ctx, params) -> output` function as an action of this connector.

        The input and output models are read from the annotations, so they are declared once.

        Raises:
            TypeError: the function is not async, its annotations are not pydantic models,
                `target_field` is not an input, or the name is already declared.
        """

        def register(fn: ActionFn[In, Out]) -> ActionFn[In, Out]:
            action_name = name or fn.__name__
            label = f"action {self.name}.{action_name}"
            if action_name in self.actions:
                raise TypeError(f"{label} is declared twice")
            input_hint, output_hint = _signature(fn, label)
            input_model = _model(input_hint, f"{label} input")
            output_model = _model(output_hint, f"{label} output")
            if target_field is not None and target_field not in input_model.model_fields:
                raise TypeError(f"{label}: target_field {target_field!r} is not an input")
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
                pure=pure,
            )
            return fn

        return register

    def verify(self, action: str) -> Callable[[VerifyFn[In, Out]], VerifyFn[In, Out]]:
        """Declare an async `(ctx, params) -> output | None` probe for a declared action.

        The engine calls it before re-issuing an attempt whose outcome is unknown after a crash.
        It must only read: return the action's output when the effect is already in place, None
        when it is not. It takes the action's input model and returns its output model or None.

        Raises:
            TypeError: the action is not declared (declare it first), already has a probe, or
                the probe's annotations do not match the action's models.
        """

        def register(fn: VerifyFn[In, Out]) -> VerifyFn[In, Out]:
            label = f"verify probe of {self.name}.{action}"
            spec = self.actions.get(action)
            if spec is None:
                raise TypeError(f"{label}: no action {action!r} is declared (declare it first)")
            if spec.verify is not None:
                raise TypeError(f"{label} is declared twice")
            input_hint, output_hint = _signature(fn, label)
            if input_hint is not spec.input_model:
                raise TypeError(f"{label} must take {spec.input_model.__name__} like the action")
            if not _is_optional_of(output_hint, spec.output_model):
                raise TypeError(f"{label} must return {spec.output_model.__name__} | None")
            self.actions[action] = dataclasses.replace(spec, verify=fn)
            return fn

        return register


def _signature(fn: Callable[..., object], label: str) -> tuple[object, object]:
    """The (params, return) annotations of an async `(ctx, params)` function."""
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"{label} must be an async function")
    params = list(inspect.signature(fn).parameters)
    if len(params) != 2:
        raise TypeError(f"{label} must take (ctx, params)")
    hints = get_type_hints(fn)
    return hints.get(params[1]), hints.get("return")


def _is_optional_of(hint: object, model: type[BaseModel]) -> bool:
    is_union = get_origin(hint) in (Union, types.UnionType)
    return is_union and set(get_args(hint)) == {model, type(None)}


def _model(hint: object, label: str) -> type[BaseModel]:
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return hint
    raise TypeError(f"{label} must be annotated with a pydantic model")
