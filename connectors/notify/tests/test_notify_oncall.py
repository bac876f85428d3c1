"""On-call schedules: weekly windows in a timezone; the person on call at given times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from notify_support import call, context
from pydantic import JsonValue
from soar_notify.testing import Vendor

from soar.connectors import ActionFailed, Secrets

SOC: dict[str, JsonValue] = {
    "timezone": "Europe/Berlin",
    "shifts": [
        {
            "days": ["mon", "tue", "wed", "thu", "fri"],
            "start": "09:00",
            "end": "17:00",
            "people": [{"name": "Alice", "email": "alice@example.org", "phone": "+4915100000001"}],
        },
        {
            "days": ["mon", "tue", "wed", "thu", "fri"],
            "start": "17:00",
            "end": "09:00",
            "people": [{"name": "Bob", "email": "bob@example.org", "phone": "+4915100000002"}],
        },
    ],
    "default": ["weekend@example.org"],
}
DIRECTORY: dict[str, JsonValue] = {"directory": {"oncall": {"soc": SOC}}}


@pytest.mark.parametrize(
    ("moment", "who"),
    [
        pytest.param(datetime(2026, 1, 5, 8, 0, tzinfo=UTC), "alice", id="mon-09:00-berlin"),
        pytest.param(datetime(2026, 1, 5, 15, 59, tzinfo=UTC), "alice", id="mon-16:59-berlin"),
        pytest.param(datetime(2026, 1, 5, 16, 0, tzinfo=UTC), "bob", id="mon-17:00-berlin"),
        pytest.param(datetime(2026, 1, 6, 2, 0, tzinfo=UTC), "bob", id="tue-03:00-night"),
        pytest.param(datetime(2026, 1, 9, 22, 0, tzinfo=UTC), "bob", id="fri-23:00"),
        pytest.param(datetime(2026, 1, 10, 7, 30, tzinfo=UTC), "bob", id="sat-08:30-fri-night"),
        pytest.param(datetime(2026, 1, 10, 8, 0, tzinfo=UTC), "weekend", id="sat-09:00"),
        pytest.param(datetime(2026, 1, 5, 7, 30, tzinfo=UTC), "weekend", id="mon-08:30"),
        pytest.param(datetime(2026, 7, 6, 7, 0, tzinfo=UTC), "alice", id="summer-time-09:00"),
        pytest.param(datetime(2026, 7, 6, 6, 59, tzinfo=UTC), "weekend", id="summer-08:59"),
    ],
)
async def test_the_schedule_picks_the_person_on_call(moment: datetime, who: str) -> None:
    out = await call("on_call", context(DIRECTORY, Secrets({}), at=moment), oncall="soc")
    people = out.model_dump()["people"]
    (person,) = people
    shown = person if isinstance(person, str) else person["email"]
    assert shown.startswith(who)


async def test_an_inline_schedule_from_the_playbook_directory_works() -> None:
    at = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    out = await call("on_call", context({}, Secrets({}), at=at), schedule=SOC)
    assert out.model_dump()["people"][0]["name"] == "Alice"


async def test_a_page_by_sms_goes_to_whoever_is_on_call(vendor: Vendor) -> None:
    settings = {**vendor.settings(), **DIRECTORY}
    night = datetime(2026, 1, 6, 2, 0, tzinfo=UTC)
    await call("sms", context(settings, vendor.secrets(), at=night), oncall="soc", body="P1")
    (got,) = vendor.of("twilio")
    assert got.form["To"] == "+4915100000002"


@pytest.mark.parametrize(
    "schedule",
    [
        pytest.param({"timezone": "Mars/Olympus", "shifts": []}, id="unknown-zone"),
        pytest.param({"shifts": [{"days": ["funday"], "people": ["a@x.org"]}]}, id="bad-day"),
        pytest.param({"shifts": [{"start": "25:00", "people": ["a@x.org"]}]}, id="bad-time"),
        pytest.param({"shifts": [{"people": []}]}, id="nobody"),
    ],
)
async def test_a_malformed_schedule_is_not_retried(schedule: dict[str, JsonValue]) -> None:
    with pytest.raises(ActionFailed) as failed:
        await call("on_call", context({}, Secrets({})), schedule=schedule)
    assert not failed.value.retryable


async def test_an_unknown_schedule_name_is_not_retried() -> None:
    with pytest.raises(ActionFailed, match="no on-call schedule 'db'"):
        await call("on_call", context(DIRECTORY, Secrets({})), oncall="db")
