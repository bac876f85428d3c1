"""Declaring actions and verify probes: what a connector author writes, and what is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel

from soar.connectors import ActionContext, ActionFailed, Connector, TargetKind


class AccountRef(BaseModel):
    dn: str


class AccountState(BaseModel):
    dn: str
    disabled: bool
    changed: bool = False


class HostRef(BaseModel):
    host: str


def _directory() -> Connector:
    ldap = Connector("ldap", doc="Directory accounts.")

    @ldap.action(
        secrets=["bind_password"],
        idempotent=True,
        compensate="ldap.enable_account",
        timeout=timedelta(seconds=30),
        target=TargetKind.USER,
        target_field="dn",
        cache_ttl=timedelta(minutes=5),
    )
    async def disable_account(ctx: ActionContext, params: AccountRef) -> AccountState:
        """Disable one account."""
        return AccountState(dn=params.dn, disabled=True, changed=True)

    return ldap


def test_models_are_read_from_the_annotations() -> None:
    spec = _directory().actions["disable_account"]
    assert (spec.input_model, spec.output_model) == (AccountRef, AccountState)
    assert spec.qualified_name == "ldap.disable_account"


def test_metadata_on_the_decorator_lands_on_the_spec() -> None:
    spec = _directory().actions["disable_account"]
    assert spec.secrets == ("bind_password",)
    assert spec.idempotent is True
    assert spec.compensate == "ldap.enable_account"
    assert spec.timeout == timedelta(seconds=30)
    assert spec.target is TargetKind.USER
    assert spec.target_field == "dn"
    assert spec.cache_ttl == timedelta(minutes=5)
    assert spec.doc == "Disable one account."
    assert spec.verify is None


def test_the_action_name_may_differ_from_the_function_name() -> None:
    core = Connector("mine")

    @core.action(name="set")
    async def set_values(ctx: ActionContext, params: AccountRef) -> AccountRef:
        return params

    assert list(core.actions) == ["set"]


async def test_a_declared_action_is_called_as_the_engine_calls_it() -> None:
    spec = _directory().actions["disable_account"]
    output = await spec.fn(ActionContext("k1"), spec.input_model.model_validate({"dn": "cn=a"}))
    assert output == AccountState(dn="cn=a", disabled=True, changed=True)


def test_a_plain_function_is_refused() -> None:
    ldap = Connector("ldap")
    with pytest.raises(TypeError, match=r"ldap\.lookup must be an async function"):

        @ldap.action()  # type: ignore[arg-type]
        def lookup(ctx: ActionContext, params: AccountRef) -> AccountState:
            return AccountState(dn=params.dn, disabled=False)


def test_an_input_that_is_not_a_model_is_refused() -> None:
    ldap = Connector("ldap")
    with pytest.raises(TypeError, match=r"ldap\.lookup input must be annotated with a pydantic"):

        @ldap.action()  # type: ignore[type-var]
        async def lookup(ctx: ActionContext, params: dict[str, str]) -> AccountState:
            return AccountState(dn=params["dn"], disabled=False)


def test_an_output_that_is_not_a_model_is_refused() -> None:
    ldap = Connector("ldap")
    with pytest.raises(TypeError, match=r"ldap\.lookup output must be annotated with a pydantic"):

        @ldap.action()  # type: ignore[type-var]
        async def lookup(ctx: ActionContext, params: AccountRef) -> str:
            return params.dn


def test_a_function_without_ctx_and_params_is_refused() -> None:
    ldap = Connector("ldap")
    with pytest.raises(TypeError, match=r"must take \(ctx, params\)"):

        @ldap.action()  # type: ignore[arg-type]
        async def lookup(params: AccountRef) -> AccountState:
            return AccountState(dn=params.dn, disabled=False)


def test_a_target_field_that_is_not_an_input_is_refused() -> None:
    ldap = Connector("ldap")
    with pytest.raises(TypeError, match="target_field 'username' is not an input"):

        @ldap.action(target=TargetKind.USER, target_field="username")
        async def lookup(ctx: ActionContext, params: AccountRef) -> AccountState:
            return AccountState(dn=params.dn, disabled=False)


def test_an_unknown_target_kind_is_refused() -> None:
    ldap = Connector("ldap")
    with pytest.raises(ValueError, match="'planet'"):

        @ldap.action(target="planet")
        async def lookup(ctx: ActionContext, params: AccountRef) -> AccountState:
            return AccountState(dn=params.dn, disabled=False)


def test_an_action_name_declared_twice_is_refused() -> None:
    ldap = _directory()
    with pytest.raises(TypeError, match=r"ldap\.disable_account is declared twice"):

        @ldap.action()
        async def disable_account(ctx: ActionContext, params: AccountRef) -> AccountState:
            return AccountState(dn=params.dn, disabled=True)


async def test_a_verify_probe_is_attached_to_its_action() -> None:
    ldap = _directory()

    @ldap.verify("disable_account")
    async def is_disabled(ctx: ActionContext, params: AccountRef) -> AccountState | None:
        return AccountState(dn=params.dn, disabled=True) if params.dn == "cn=done" else None

    probe = ldap.actions["disable_account"].verify
    assert probe is not None
    assert await probe(ActionContext("k1"), AccountRef(dn="cn=done")) == AccountState(
        dn="cn=done", disabled=True
    )
    assert await probe(ActionContext("k1"), AccountRef(dn="cn=other")) is None


def test_a_verify_probe_keeps_the_rest_of_the_spec() -> None:
    ldap = _directory()
    before = ldap.actions["disable_account"]

    @ldap.verify("disable_account")
    async def is_disabled(ctx: ActionContext, params: AccountRef) -> AccountState | None:
        return None

    after = ldap.actions["disable_account"]
    assert (after.fn, after.secrets, after.compensate) == (
        before.fn,
        before.secrets,
        before.compensate,
    )


def test_a_verify_probe_for_an_undeclared_action_is_refused() -> None:
    ldap = _directory()
    with pytest.raises(TypeError, match="no action 'enable_account' is declared"):

        @ldap.verify("enable_account")
        async def is_enabled(ctx: ActionContext, params: AccountRef) -> AccountState | None:
            return None


def test_a_second_verify_probe_is_refused() -> None:
    ldap = _directory()

    @ldap.verify("disable_account")
    async def is_disabled(ctx: ActionContext, params: AccountRef) -> AccountState | None:
        return None

    with pytest.raises(TypeError, match=r"ldap\.disable_account is declared twice"):

        @ldap.verify("disable_account")
        async def is_disabled_again(ctx: ActionContext, params: AccountRef) -> AccountState | None:
            return None


def test_a_verify_probe_with_another_input_model_is_refused() -> None:
    ldap = _directory()
    with pytest.raises(TypeError, match="must take AccountRef like the action"):

        @ldap.verify("disable_account")
        async def is_disabled(ctx: ActionContext, params: HostRef) -> AccountState | None:
            return None


@pytest.mark.parametrize(
    "returns",
    [AccountState, HostRef | None, AccountState | HostRef],
    ids=["not-optional", "other-model", "union-without-none"],
)
def test_a_verify_probe_must_return_the_output_model_or_none(returns: object) -> None:
    ldap = _directory()

    async def probe(ctx: ActionContext, params: AccountRef) -> AccountState | None:
        return None

    probe.__annotations__ = {"ctx": ActionContext, "params": AccountRef, "return": returns}
    with pytest.raises(TypeError, match=r"must return AccountState \| None"):
        ldap.verify("disable_account")(probe)


def test_a_plain_verify_probe_is_refused() -> None:
    ldap = _directory()
    with pytest.raises(TypeError, match=r"verify probe of ldap\.disable_account must be an async"):

        @ldap.verify("disable_account")  # type: ignore[arg-type]
        def is_disabled(ctx: ActionContext, params: AccountRef) -> AccountState | None:
            return None


def test_describe_holds_what_soar_connectors_prints() -> None:
    described = _directory().actions["disable_account"].describe()
    assert {k: v for k, v in described.items() if not k.endswith("_schema")} == {
        "name": "ldap.disable_account",
        "doc": "Disable one account.",
        "secrets": ["bind_password"],
        "idempotent": True,
        "compensate": "ldap.enable_account",
        "timeout_seconds": 30.0,
        "target": "user",
        "target_field": "dn",
        "cache_ttl_seconds": 300.0,
        "verify": False,
        "pure": False,
    }
    assert described["input_schema"] == AccountRef.model_json_schema()
    assert described["output_schema"] == AccountState.model_json_schema()


def test_describe_says_whether_there_is_a_verify_probe() -> None:
    ldap = _directory()

    @ldap.verify("disable_account")
    async def is_disabled(ctx: ActionContext, params: AccountRef) -> AccountState | None:
        return None

    assert ldap.actions["disable_account"].describe()["verify"] is True


async def test_action_failed_carries_whether_a_retry_may_help() -> None:
    edr = Connector("edr")

    @edr.action()
    async def isolate(ctx: ActionContext, params: HostRef) -> HostRef:
        raise ActionFailed("EDR unreachable", retryable=True)

    with pytest.raises(ActionFailed) as caught:
        await edr.actions["isolate"].fn(ActionContext("k"), HostRef(host="h1"))
    assert caught.value.retryable is True
