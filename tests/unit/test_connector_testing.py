"""Recorded connectors: calls logged, answers scripted, stale recordings noticed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel, JsonValue, ValidationError

from soar.connectors import (
    ActionContext,
    ActionFailed,
    ActionSpec,
    CallLog,
    Connector,
    ConnectorError,
    RecordedResponse,
    RecordingConnector,
    Registry,
    TargetKind,
    recording_registry,
)
from soar.connectors.catalog import CatalogAction, load_catalog
from soar.connectors.core import core
from soar.connectors.schema import model_from_schema
from tests.conftest import FIXTURES

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
USER = {"dn": "cn=alice", "name": "Alice", "is_service_account": False, "groups": ["staff"]}


class Username(BaseModel):
    username: str


class Directory(BaseModel):
    dn: str
    name: str
    is_service_account: bool
    groups: list[str]


class AccountRef(BaseModel):
    dn: str


class AccountState(BaseModel):
    dn: str
    disabled: bool = True
    changed: bool = False


class Summary(BaseModel):
    lines: list[str] = []
    count: int = 0


def _ldap() -> Connector:
    ldap = Connector("ldap", doc="Directory accounts.")

    @ldap.action(target=TargetKind.USER, target_field="username", cache_ttl=timedelta(minutes=1))
    async def get_user(ctx: ActionContext, params: Username) -> Directory:
        """Look one user up."""
        raise AssertionError("the real action must not run in a recorded registry")

    @ldap.action(
        secrets=["bind_password"],
        idempotent=True,
        compensate="ldap.enable_account",
        timeout=timedelta(seconds=30),
        target=TargetKind.USER,
        target_field="dn",
    )
    async def disable_account(ctx: ActionContext, params: AccountRef) -> AccountState:
        raise AssertionError("the real action must not run in a recorded registry")

    @ldap.verify("disable_account")
    async def is_disabled(ctx: ActionContext, params: AccountRef) -> AccountState | None:
        return None

    return ldap


def _ctx(key: str = "run1/step/user") -> ActionContext:
    return ActionContext(key, clock=lambda: T0)


async def _call(
    registry: Registry, name: str, inputs: dict[str, JsonValue], key: str = "k"
) -> BaseModel:
    spec = registry.action(name)
    assert spec is not None, name
    return await spec.fn(_ctx(key), spec.input_model.model_validate(inputs))


def _recorded(*answers: RecordedResponse, default: str = "error") -> tuple[Registry, CallLog]:
    return recording_registry(
        Registry.of([_ldap()]),
        {"ldap.get_user": answers},
        default="empty" if default == "empty" else "error",
    )


async def test_each_call_is_logged_with_its_inputs_and_idempotency_key() -> None:
    registry, log = recording_registry(
        Registry.of([_ldap()]),
        {
            "ldap.get_user": [RecordedResponse(output=USER)],
            "ldap.disable_account": [RecordedResponse(output={"dn": "cn=alice"})],
        },
    )
    await _call(registry, "ldap.get_user", {"username": "alice"}, key="r1/user/1")
    await _call(registry, "ldap.disable_account", {"dn": "cn=alice"}, key="r1/disable/1")
    await _call(registry, "ldap.disable_account", {"dn": "cn=alice"}, key="r1/disable/1")
    assert log.names() == ["ldap.get_user", "ldap.disable_account", "ldap.disable_account"]
    assert [c.idempotency_key for c in log.for_action("ldap.disable_account")] == [
        "r1/disable/1",
        "r1/disable/1",
    ]
    first = log.calls[0]
    assert (first.action, first.inputs, first.at) == ("ldap.get_user", {"username": "alice"}, T0)


async def test_a_recorded_output_is_returned_as_the_output_model() -> None:
    registry, _ = _recorded(RecordedResponse(output=USER))
    output = await _call(registry, "ldap.get_user", {"username": "alice"})
    assert output == Directory.model_validate(USER)


async def test_responses_answer_in_order_when_each_is_used_once() -> None:
    registry, _ = _recorded(
        RecordedResponse(error="directory unreachable", retryable=True, times=1),
        RecordedResponse(output=USER),
    )
    with pytest.raises(ActionFailed, match="directory unreachable"):
        await _call(registry, "ldap.get_user", {"username": "alice"})
    output = await _call(registry, "ldap.get_user", {"username": "alice"})
    assert isinstance(output, Directory)


async def test_a_response_without_times_answers_every_call() -> None:
    registry, log = _recorded(RecordedResponse(output=USER))
    outputs = [await _call(registry, "ldap.get_user", {"username": "alice"}) for _ in range(3)]
    assert len({o.model_dump_json() for o in outputs}) == 1
    assert len(log.calls) == 3


async def test_times_limits_how_many_calls_a_response_answers() -> None:
    registry, _ = _recorded(RecordedResponse(output=USER, times=2))
    await _call(registry, "ldap.get_user", {"username": "alice"})
    await _call(registry, "ldap.get_user", {"username": "alice"})
    with pytest.raises(ActionFailed, match=r"no recorded response for ldap\.get_user"):
        await _call(registry, "ldap.get_user", {"username": "alice"})


async def test_when_picks_the_response_for_the_inputs() -> None:
    registry, _ = _recorded(
        RecordedResponse(when={"username": "bob"}, output={**USER, "dn": "cn=bob"}),
        RecordedResponse(when={"username": "alice"}, output=USER),
    )
    alice = await _call(registry, "ldap.get_user", {"username": "alice"})
    bob = await _call(registry, "ldap.get_user", {"username": "bob"})
    assert (getattr(alice, "dn", None), getattr(bob, "dn", None)) == ("cn=alice", "cn=bob")


async def test_when_does_not_take_true_for_one() -> None:
    fake = RecordingConnector("flags")

    class Flag(BaseModel):
        on: bool | int

    fake.declare("set", Flag, Summary, RecordedResponse(when={"on": 1}, output={"count": 1}))
    spec = fake.actions["set"]
    with pytest.raises(ActionFailed, match="no recorded response"):
        await spec.fn(_ctx(), Flag(on=True))
    assert await spec.fn(_ctx(), Flag(on=1)) == Summary(count=1)


async def test_a_stale_recorded_output_fails_naming_the_missing_field() -> None:
    stale = {k: v for k, v in USER.items() if k != "is_service_account"}
    registry, _ = _recorded(RecordedResponse(output={**stale, "is_service_acount": False}))
    with pytest.raises(ActionFailed, match="is_service_acount: no such field") as caught:
        await _call(registry, "ldap.get_user", {"username": "alice"})
    assert caught.value.retryable is False


async def test_a_recorded_output_of_the_wrong_type_fails_naming_the_field() -> None:
    registry, _ = _recorded(RecordedResponse(output={**USER, "groups": "staff"}))
    with pytest.raises(ActionFailed, match=r"does not fit Directory: groups: Input should be"):
        await _call(registry, "ldap.get_user", {"username": "alice"})


@pytest.mark.parametrize("retryable", [True, False], ids=["retryable", "final"])
async def test_an_error_response_raises_action_failed(retryable: bool) -> None:
    registry, _ = _recorded(RecordedResponse(error="LDAP busy", retryable=retryable))
    with pytest.raises(ActionFailed, match="LDAP busy") as caught:
        await _call(registry, "ldap.get_user", {"username": "alice"})
    assert caught.value.retryable is retryable


async def test_without_a_response_the_default_is_a_final_error_naming_the_inputs() -> None:
    registry, log = _recorded()
    with pytest.raises(ActionFailed) as caught:
        await _call(registry, "ldap.get_user", {"username": "alice"})
    assert str(caught.value) == (
        'no recorded response for ldap.get_user with inputs {"username": "alice"}'
    )
    assert caught.value.retryable is False
    assert log.names() == ["ldap.get_user"]


async def test_the_empty_default_builds_the_output_from_its_defaults() -> None:
    fake = RecordingConnector("report", default="empty")
    fake.declare("summarise", AccountRef, Summary)
    output = await fake.actions["summarise"].fn(_ctx(), AccountRef(dn="cn=a"))
    assert output == Summary(lines=[], count=0)


async def test_the_empty_default_is_an_error_when_the_output_has_required_fields() -> None:
    registry, _ = _recorded(default="empty")
    with pytest.raises(ActionFailed, match=r"no recorded response for ldap\.get_user"):
        await _call(registry, "ldap.get_user", {"username": "alice"})


def test_metadata_is_preserved_and_the_verify_probe_dropped() -> None:
    original = _ldap().actions["disable_account"]
    registry, _ = recording_registry(Registry.of([_ldap()]), {})
    recorded = registry.action("ldap.disable_account")
    assert recorded is not None
    kept = ("input_model", "output_model", "secrets", "idempotent", "compensate", "timeout")
    assert [getattr(recorded, f) for f in kept] == [getattr(original, f) for f in kept]
    assert (recorded.target, recorded.target_field) == (TargetKind.USER, "dn")
    assert original.verify is not None
    assert recorded.verify is None
    assert recorded.fn is not original.fn
    assert registry.connectors["ldap"].doc == "Directory accounts."


def test_every_installed_action_is_declared_in_the_recorded_registry() -> None:
    signatures = Registry.of([core, _ldap()])
    registry, _ = recording_registry(signatures, {})
    assert registry.action_names() == signatures.action_names()
    assert registry is not signatures


def test_responses_for_an_unknown_action_are_refused() -> None:
    with pytest.raises(ConnectorError, match=r"ldap\.get_usr"):
        recording_registry(Registry.of([_ldap()]), {"ldap.get_usr": []})


def test_a_when_naming_no_input_is_refused() -> None:
    with pytest.raises(ConnectorError, match="'when' names usr, which are not inputs"):
        _recorded(RecordedResponse(when={"usr": "alice"}, output=USER))


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"output": {}, "error": "x"},
        {"output": {}, "retryable": True},
        {"error": "x", "times": 0},
    ],
    ids=["neither", "both", "retryable-output", "zero-times"],
)
def test_a_malformed_recorded_response_is_refused(fields: dict[str, JsonValue]) -> None:
    with pytest.raises(ValidationError):
        RecordedResponse.model_validate(fields)


async def test_a_live_connector_runs_for_real_when_nothing_is_recorded() -> None:
    registry, log = recording_registry(
        Registry.of([core]),
        {"core.log": [RecordedResponse(error="recorded", times=1)]},
        live=["core"],
    )
    with pytest.raises(ActionFailed, match="recorded"):
        await _call(registry, "core.log", {"message": "hi"})
    output = await _call(registry, "core.set", {"values": {"a": 1}})
    assert output.model_dump() == {"values": {"a": 1}}
    assert log.names() == ["core.log", "core.set"]


async def test_catalog_only_actions_get_working_models() -> None:
    signatures = Registry()
    signatures.add_catalog(load_catalog(FIXTURES / "playbooks" / "spec-catalog.json"))
    registry, log = recording_registry(
        signatures, {"ldap.get_user": [RecordedResponse(output=USER)]}
    )
    spec = registry.action("ldap.get_user")
    assert spec is not None
    assert spec.required_inputs() == ["username"]
    output = await _call(registry, "ldap.get_user", {"username": "alice"})
    assert output.model_dump() == USER
    assert log.calls[0].inputs == {"username": "alice"}
    with pytest.raises(ValidationError):
        spec.input_model.model_validate({"username": 42})


async def test_a_catalog_only_action_rejects_a_stale_recording() -> None:
    signatures = Registry()
    signatures.add_catalog(load_catalog(FIXTURES / "playbooks" / "spec-catalog.json"))
    registry, _ = recording_registry(
        signatures, {"ldap.get_user": [RecordedResponse(output={**USER, "groups": None})]}
    )
    with pytest.raises(ActionFailed, match="groups"):
        await _call(registry, "ldap.get_user", {"username": "alice"})


def test_catalog_actions_of_an_installed_connector_join_it() -> None:
    signatures = Registry.of([_ldap()])
    schema: dict[str, object] = {"type": "object", "properties": {}}
    signatures.add_catalog([CatalogAction("ldap.enable_account", schema, schema)])
    registry, _ = recording_registry(signatures, {})
    assert sorted(registry.connectors["ldap"].actions) == [
        "disable_account",
        "enable_account",
        "get_user",
    ]


class Kind(BaseModel):
    name: str


class Nested(BaseModel):
    title: str
    count: int = 3
    ratio: float | None = None
    tags: list[str] = []
    owner: Kind | None = None
    owners: list[Kind] = []
    labels: dict[str, int] = {}
    extra: dict[str, JsonValue] = {}
    schema_: str = "x"


def test_models_from_a_schema_check_the_types_pydantic_wrote() -> None:
    model = model_from_schema("Rebuilt", Nested.model_json_schema())
    value = {"title": "t", "owner": {"name": "a"}, "owners": [{"name": "b"}], "labels": {"x": 1}}
    assert model.model_validate(value).model_dump(mode="json") == Nested.model_validate(
        value
    ).model_dump(mode="json")
    for bad in ({"title": 1}, {"title": "t", "owners": [{}]}, {"title": "t", "labels": {"x": "y"}}):
        with pytest.raises(ValidationError):
            model.model_validate(bad)


def test_a_model_from_a_schema_keeps_defaults_and_optional_fields() -> None:
    model = model_from_schema("Rebuilt", Nested.model_json_schema())
    dumped = model.model_validate({"title": "t"}).model_dump()
    assert (dumped["count"], dumped["ratio"], dumped["tags"]) == (3, None, [])


def test_names_that_clash_with_pydantic_become_aliases() -> None:
    schema: dict[str, object] = {
        "type": "object",
        "properties": {"schema": {"type": "string"}, "class": {"type": "integer"}},
        "required": ["schema", "class"],
    }
    model = model_from_schema("Odd", schema)
    instance = model.model_validate({"schema": "s", "class": 1})
    assert instance.model_dump(by_alias=True) == {"schema": "s", "class": 1}


def test_an_enum_schema_accepts_only_its_values() -> None:
    schema: dict[str, object] = {
        "type": "object",
        "properties": {"level": {"enum": ["info", "warning"], "type": "string"}},
    }
    model = model_from_schema("Levels", schema)
    assert model.model_validate({"level": "info"}).model_dump() == {"level": "info"}
    with pytest.raises(ValidationError):
        model.model_validate({"level": "debug"})


def test_a_schema_outside_the_subset_takes_any_json_object() -> None:
    schema: dict[str, object] = {"allOf": [{"type": "object"}, {"minProperties": 1}]}
    model = model_from_schema("Anything", schema)
    assert model.model_validate({"a": [1, {"b": None}]}).model_dump() == {"a": [1, {"b": None}]}


def test_a_property_outside_the_subset_takes_any_json_value() -> None:
    schema: dict[str, object] = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "blob": {"oneOf": [{"type": "string"}]}},
        "required": ["id"],
    }
    model = model_from_schema("Partly", schema)
    assert model.model_validate({"id": "a", "blob": [1]}).model_dump() == {"id": "a", "blob": [1]}
    with pytest.raises(ValidationError):
        model.model_validate({"id": 1})


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


def test_a_recursive_schema_is_cut_where_it_repeats() -> None:
    model = model_from_schema("Rebuilt", Tree.model_json_schema())
    instance = model.model_validate({"label": "a", "children": [{"label": "b"}]})
    assert instance.model_dump()["children"] == [{"label": "b"}]


async def test_a_recording_connector_answers_from_its_script() -> None:
    ldap = RecordingConnector("ldap")
    spec = ldap.declare(
        "disable_account",
        AccountRef,
        AccountState,
        ActionFailed("timeout", retryable=True),
        AccountState(dn="cn=a", changed=True),
        idempotent=True,
        target=TargetKind.USER,
        target_field="dn",
    )
    assert isinstance(spec, ActionSpec)
    with pytest.raises(ActionFailed) as caught:
        await spec.fn(_ctx("k1"), AccountRef(dn="cn=a"))
    assert caught.value.retryable is True
    assert await spec.fn(_ctx("k1"), AccountRef(dn="cn=a")) == AccountState(dn="cn=a", changed=True)
    with pytest.raises(ActionFailed, match="no recorded response"):
        await spec.fn(_ctx("k1"), AccountRef(dn="cn=a"))
    keys = [c.idempotency_key for c in ldap.log.for_action("ldap.disable_account")]
    assert keys == ["k1", "k1", "k1"]


async def test_a_recording_connector_takes_answers_added_later() -> None:
    ldap = RecordingConnector("ldap")
    ldap.declare("disable_account", AccountRef, AccountState)
    ldap.respond("disable_account", RecordedResponse(output={"dn": "cn=b"}))
    output = await ldap.actions["disable_account"].fn(_ctx(), AccountRef(dn="cn=b"))
    assert output == AccountState(dn="cn=b")


def test_a_recording_connector_refuses_answers_for_undeclared_actions() -> None:
    ldap = RecordingConnector("ldap")
    with pytest.raises(ConnectorError, match="no recorded action 'disable_account'"):
        ldap.respond("disable_account", RecordedResponse(output={}))


def test_a_recording_connector_declares_through_the_real_decorator() -> None:
    ldap = RecordingConnector("ldap")
    with pytest.raises(TypeError, match="target_field 'username' is not an input"):
        ldap.declare("disable_account", AccountRef, AccountState, target_field="username")


async def test_a_recording_connector_can_carry_a_verify_probe() -> None:
    ldap = RecordingConnector("ldap")
    ldap.declare("disable_account", AccountRef, AccountState)

    @ldap.verify("disable_account")
    async def is_disabled(ctx: ActionContext, params: AccountRef) -> AccountState | None:
        return AccountState(dn=params.dn)

    probe = ldap.actions["disable_account"].verify
    assert probe is not None
    assert await probe(_ctx(), AccountRef(dn="cn=c")) == AccountState(dn="cn=c")
    assert ldap.actions["disable_account"].describe()["verify"] is True


def test_a_recording_connector_registers_like_any_connector() -> None:
    ldap = RecordingConnector("ldap")
    ldap.declare("disable_account", AccountRef, AccountState)
    registry = Registry.of([core, ldap])
    assert "ldap.disable_account" in registry.action_names()
