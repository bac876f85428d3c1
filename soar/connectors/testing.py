"""Fake connectors for tests: they record every call and answer from a script of responses, so
playbook tests (`soar test`), engine tests and connector authors need no outside system. Also
what connector packages' own tests share: fault switches for their loopback API servers, and
the checks of their docs/connectors/<name>.md pages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from soar.connectors.action import (
    DEFAULT_TIMEOUT,
    ActionCall,
    ActionSpec,
    Connector,
    TargetKind,
)
from soar.connectors.context import ActionContext
from soar.connectors.registry import Registry
from soar.connectors.schema import model_from_schema
from soar.errors import ActionFailed, ConnectorError

Default = Literal["error", "empty"]


class RecordedResponse(BaseModel):
    """One scripted answer: an `output` (a JSON object) or an `error`, never both.

    `when` restricts it to calls whose inputs have these top-level values; `times` is how many
    calls it answers (None: every matching call).
    """

    model_config = ConfigDict(extra="forbid")

    output: dict[str, JsonValue] | None = None
    error: str | None = None
    retryable: bool = False
    when: dict[str, JsonValue] = Field(default_factory=dict)
    times: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_outcome(self) -> Self:
        if (self.output is None) == (self.error is None):
            raise ValueError("a recorded response has either 'output' or 'error'")
        if self.retryable and self.error is None:
            raise ValueError("'retryable' applies to an 'error' response only")
        return self

    def matches(self, inputs: Mapping[str, JsonValue]) -> bool:
        """Whether every `when` value equals the call's input of that name."""
        return all(k in inputs and _same_json(v, inputs[k]) for k, v in self.when.items())


# What a script may hold: a recorded response (answers as its `times` says), or an output model
# instance or an ActionFailed (each answers one call).
Answer = RecordedResponse | BaseModel | ActionFailed


@dataclass(frozen=True, slots=True)
class Call:
    """One call of a recorded action: inputs as the action saw them, rendered to JSON."""

    action: str
    inputs: dict[str, JsonValue]
    idempotency_key: str
    at: datetime


@dataclass(slots=True)
class CallLog:
    """Every call of the recorded actions, in the order they were made (failed ones too)."""

    calls: list[Call] = field(default_factory=list)

    def for_action(self, name: str) -> list[Call]:
        """The calls of one `connector.action`."""
        return [call for call in self.calls if call.action == name]

    def names(self) -> list[str]:
        """The `connector.action` of each call, in order: `["ldap.get_user", ...]`."""
        return [call.action for call in self.calls]


@dataclass(slots=True)
class _Line:
    response: RecordedResponse
    left: int | None


@dataclass(slots=True)
class RecordingConnector(Connector):
    """A real `Connector` whose actions record each call in `log` and answer from a script.

    Declare actions with `declare(name, InputModel, OutputModel, *answers, **metadata)` and add
    answers later with `respond(name, *answers)`. An answer is a `RecordedResponse`, or an
    output model instance or `ActionFailed`, which answers one call. A call takes the first
    answer whose `when` matches and whose `times` is not used up. With none, `default="error"`
    raises `ActionFailed(retryable=False)`; `default="empty"` returns the output model's defaults
    when it has them. Probes can be added with the ordinary `@fake.verify("name")` decorator.
    """

    log: CallLog = field(default_factory=CallLog)
    default: Default = "error"
    _scripts: dict[str, list[_Line]] = field(default_factory=dict, init=False, repr=False)
    _live: dict[str, ActionCall] = field(default_factory=dict, init=False, repr=False)

    def declare(
        self,
        name: str,
        input_model: type[BaseModel],
        output_model: type[BaseModel],
        *answers: Answer,
        doc: str = "",
        secrets: Sequence[str] = (),
        idempotent: bool = False,
        compensate: str | None = None,
        timeout: timedelta = DEFAULT_TIMEOUT,
        target: TargetKind | str = TargetKind.NONE,
        target_field: str | None = None,
        cache_ttl: timedelta | None = None,
    ) -> ActionSpec:
        """Declare a recorded action through the ordinary `Connector.action` decorator.

        Raises:
            TypeError: as `Connector.action` does (duplicate name, bad `target_field`, ...).
        """
        record = self._recorder(name)
        record.__name__ = name
        record.__doc__ = doc
        record.__annotations__ = {
            "ctx": ActionContext,
            "params": input_model,
            "return": output_model,
        }
        self.action(
            secrets=tuple(secrets),
            idempotent=idempotent,
            compensate=compensate,
            timeout=timeout,
            target=target,
            target_field=target_field,
            cache_ttl=cache_ttl,
        )(record)
        self.respond(name, *answers)
        return self.actions[name]

    def mirror(self, spec: ActionSpec, *, live: bool = False) -> ActionSpec:
        """Declare a recorded twin of an installed action: same models and metadata, no probe.

        A `live` twin runs the real action when no answer matches, instead of the default.
        """
        self.actions[spec.name] = dataclasses.replace(
            spec, connector=self.name, fn=self._recorder(spec.name), verify=None
        )
        if live:
            self._live[spec.name] = spec.fn
        return self.actions[spec.name]

    def respond(self, action: str, *answers: Answer) -> None:
        """Append answers to a declared action's script.

        Raises:
            ConnectorError: the action is not declared, or a `when` names no input of it.
        """
        spec = self.actions.get(action)
        if spec is None:
            raise ConnectorError(f"{self.name} has no recorded action {action!r}")
        responses = [_as_response(answer) for answer in answers]
        if spec.input_model.model_config.get("extra") != "allow":
            inputs = set(spec.input_names())
            for response in responses:
                unknown = sorted(set(response.when) - inputs)
                if unknown:
                    raise ConnectorError(
                        f"recorded response for {spec.qualified_name}: 'when' names "
                        f"{', '.join(unknown)}, which are not inputs"
                    )
        script = self._scripts.setdefault(action, [])
        script.extend(_Line(response, response.times) for response in responses)

    def _recorder(self, action: str) -> ActionCall:
        async def record(ctx: ActionContext, params: BaseModel) -> BaseModel:
            inputs = params.model_dump(mode="json", by_alias=True)
            spec = self.actions[action]
            self.log.calls.append(
                Call(spec.qualified_name, inputs, ctx.idempotency_key, ctx.clock())
            )
            line = self._next_line(action, inputs)
            if line is not None:
                return _answer(spec, line.response)
            live = self._live.get(action)
            if live is not None:
                return await live(ctx, params)
            return _unanswered(spec, inputs, self.default)

        return record

    def _next_line(self, action: str, inputs: Mapping[str, JsonValue]) -> _Line | None:
        for line in self._scripts.get(action, []):
            if line.left != 0 and line.response.matches(inputs):
                if line.left is not None:
                    line.left -= 1
                return line
        return None


def recording_registry(
    signatures: Registry,
    responses: Mapping[str, Sequence[Answer]],
    *,
    default: Default = "error",
    live: Collection[str] = (),
) -> tuple[Registry, CallLog]:
    """A new registry declaring every action of `signatures`, recorded and scripted.

    Installed actions keep their models and metadata (no `verify` probe); actions known only
    from a catalog get models rebuilt from their JSON Schemas. `responses` is keyed by
    `connector.action`. Connectors named in `live` (e.g. `core`, which touches nothing outside)
    run for real when no response matches; their calls are logged too.

    Raises:
        ConnectorError: `responses` names an action that `signatures` does not know, or a
            `when` that names no input.
    """
    log = CallLog()
    fakes: dict[str, RecordingConnector] = {}

    def fake(name: str, doc: str = "") -> RecordingConnector:
        return fakes.setdefault(name, RecordingConnector(name, doc=doc, log=log, default=default))

    for connector in signatures.connectors.values():
        twin = fake(connector.name, connector.doc)
        for spec in connector.actions.values():
            twin.mirror(spec, live=connector.name in live)
    for qualified, action in sorted(signatures.catalog.items()):
        if signatures.action(qualified) is None:
            connector_name, _, action_name = qualified.partition(".")
            stem = "".join(part.title() for part in qualified.replace(".", "_").split("_"))
            fake(connector_name).declare(
                action_name,
                model_from_schema(f"{stem}Input", action.input_schema),
                model_from_schema(f"{stem}Output", action.output_schema),
            )
    known = {spec.qualified_name for twin in fakes.values() for spec in twin.actions.values()}
    unknown = sorted(set(responses) - known)
    if unknown:
        raise ConnectorError(f"recorded responses for unknown actions: {', '.join(unknown)}")
    for qualified, answers in responses.items():
        connector_name, _, action_name = qualified.partition(".")
        fakes[connector_name].respond(action_name, *answers)
    return Registry.of(fakes.values()), log


def _as_response(answer: Answer) -> RecordedResponse:
    if isinstance(answer, RecordedResponse):
        return answer
    if isinstance(answer, ActionFailed):
        return RecordedResponse(error=str(answer), retryable=answer.retryable, times=1)
    return RecordedResponse(output=answer.model_dump(mode="json", by_alias=True), times=1)


def _answer(spec: ActionSpec, response: RecordedResponse) -> BaseModel:
    if response.error is not None:
        raise ActionFailed(response.error, retryable=response.retryable)
    output = response.output or {}
    model = spec.output_model
    stale = f"recorded output of {spec.qualified_name} does not fit {model.__name__}"
    if model.model_config.get("extra") != "allow":
        fields = {info.alias or name for name, info in model.model_fields.items()}
        unknown = sorted(set(output) - fields - set(model.model_fields))
        if unknown:
            raise ActionFailed(f"{stale}: {unknown[0]}: no such field", retryable=False)
    try:
        return model.model_validate(output)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise ActionFailed(f"{stale}: {problems}", retryable=False) from exc


def _unanswered(spec: ActionSpec, inputs: Mapping[str, JsonValue], default: Default) -> BaseModel:
    if default == "empty":
        try:
            return spec.output_model()
        except ValidationError:
            pass  # required fields: no empty output exists, so the call is unanswered
    shown = json.dumps(inputs, sort_keys=True)
    raise ActionFailed(
        f"no recorded response for {spec.qualified_name} with inputs {shown}", retryable=False
    )


def _same_json(a: JsonValue, b: JsonValue) -> bool:
    """JSON equality: 1 equals 1.0, but true is not 1 and "1" is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# -- loopback API servers ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """How a test server answers one request instead of serving it: `status`; a rate limit
    (429) also has the `retry_after` seconds to send."""

    status: int
    retry_after: float | None = None

    @property
    def headers(self) -> dict[str, str]:
        """`Retry-After` for a rate limit, else none."""
        return {} if self.retry_after is None else {"Retry-After": f"{self.retry_after:g}"}


class FaultSwitches:
    """The fault switches of a loopback test server for an HTTP API, each counting down per
    request: `rate_limit(times, retry_after)`, `fail(times, status)` and `slow(seconds,
    times)`. The server awaits `next_fault(request.path)` before it serves a request and
    answers the `Fault` it returns, when there is one, in the API's own error shape.
    """

    def __init__(self) -> None:
        self._rate_limited = 0
        self._retry_after = 1.0
        self._failing = 0
        self._fail_status = 503
        self._fail_path: str | None = None
        self._fail_after = 0
        self._slow = 0
        self._slow_seconds = 0.0

    def rate_limit(self, times: int, retry_after: float = 1.0) -> None:
        """The next `times` requests answer 429 with `Retry-After: retry_after`."""
        self._rate_limited, self._retry_after = times, retry_after

    def fail(
        self, times: int, status: int = 503, *, path: str | None = None, after: int = 0
    ) -> None:
        """The next `times` requests (to `path` only, when given; after `after` of them have
        gone through) answer `status`."""
        self._failing, self._fail_status, self._fail_path = times, status, path
        self._fail_after = after

    def slow(self, seconds: float, times: int = 1) -> None:
        """The next `times` requests wait `seconds` before they are answered."""
        self._slow, self._slow_seconds = times, seconds

    async def next_fault(self, path: str) -> Fault | None:
        """Wait when `slow` says so, then the fault this request to `path` gets, or None."""
        if self._slow > 0:
            self._slow -= 1
            await asyncio.sleep(self._slow_seconds)
        if self._rate_limited > 0:
            self._rate_limited -= 1
            return Fault(429, self._retry_after)
        if self._failing > 0 and self._fail_path in (None, path):
            if self._fail_after:
                self._fail_after -= 1
                return None
            self._failing -= 1
            return Fault(self._fail_status)
        return None


# -- docs pages ----------------------------------------------------------------------------

_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
_STEPS_WRAPPER = 'id: docs\nname: docs\ntrigger:\n  match: alert.severity >= "low"\nsteps:\n'


def check_docs_page(connector: Connector, page: Path) -> None:
    """Check a connector's reference page (docs/connectors/<name>.md): a heading
    ``### `name.action` `` for each action, a table row ``| `field` |`` for each field of its
    input and output models (by alias where there is one), and each secret as
    `` `name.secret` ``.

    Raises:
        AssertionError: naming everything the page leaves out.
    """
    text = page.read_text(encoding="utf-8")
    missing: list[str] = []
    for spec in connector.actions.values():
        wanted = [f"### `{spec.qualified_name}`"]
        for model in (spec.input_model, spec.output_model):
            wanted += [f"| `{info.alias or name}` |" for name, info in model.model_fields.items()]
        wanted += [f"`{connector.name}.{secret}`" for secret in spec.secrets]
        missing += [f"{spec.qualified_name}: {w}" for w in wanted if w not in text]
    if missing:
        raise AssertionError(f"{page.name} leaves out " + "; ".join(missing))


def yaml_examples(page: Path) -> list[str]:
    """The fenced ```yaml blocks of a docs page, in order."""
    return _YAML_BLOCK.findall(page.read_text(encoding="utf-8"))


def steps_playbook(block: str) -> str:
    """A playbook around a docs example that is a list of steps, to validate the example.

    Raises:
        AssertionError: the example is not a YAML list.
    """
    from ruamel.yaml import YAML  # here: only docs tests need it, not every connector import

    if not isinstance(YAML(typ="safe", pure=True).load(block), list):
        raise AssertionError(f"a docs example is not a list of steps:\n{block}")
    return _STEPS_WRAPPER + "".join("  " + line + "\n" for line in block.splitlines())
