"""`Retry-After` as servers send it: delta-seconds, an HTTP-date, or something unreadable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from soar.connectors.retry import retry_after_seconds
from soar.engine.backoff import MAX_RETRY_AFTER, retry_delay
from soar.playbook.schema import Retry

NOW = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Sun, 29 Nov 2026 10:01:30 GMT", 90.0),
        ("Sun, 29 Nov 2026 09:59:00 GMT", 0.0),  # already past: come back now
        (None, None),
        ("soon", None),
        ("nan", None),
        ("", None),
    ],
)
def test_retry_after_is_read_in_both_rfc_forms(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, now=NOW) == seconds


@pytest.mark.parametrize(
    ("asked", "waited"),
    [(30.0, timedelta(seconds=30)), (1e12, MAX_RETRY_AFTER), (float("inf"), MAX_RETRY_AFTER)],
)
def test_the_engine_waits_what_was_asked_up_to_an_hour(asked: float, waited: timedelta) -> None:
    policy = Retry(attempts=3, backoff=timedelta(seconds=2), jitter=False)
    assert retry_delay(policy, 1, retry_after=asked) == waited
    assert retry_delay(policy, 1, retry_after=0.5) == timedelta(seconds=2)  # never sooner
