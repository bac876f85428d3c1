"""The rollout rules: one stable version, canaries within 100 %, promotion demotes the stable
version, rollback withdraws canaries or goes back to the previous stable; and the routing of
buckets to versions."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from soar.engine.rollout import (
    Choice,
    RolloutRefused,
    bucket_of,
    choose,
    current_state,
    plan_rollback,
    plan_rollout,
    stable_version,
)
from soar.store.base import Rollout

AT = datetime(2026, 2, 1, tzinfo=UTC)


def rec(version: int, share: int, mode: str = "live") -> Rollout:
    return Rollout("contain", version, share, mode, "user:ana", AT)


def state_of(*records: Rollout) -> dict[int, Rollout]:
    return current_state(records).get("contain", {})


def plan(state: dict[int, Rollout], version: int, share: int, mode: str = "live") -> list[Rollout]:
    return plan_rollout(
        state,
        playbook_id="contain",
        version=version,
        share=share,
        mode=mode,
        actor="user:ana",
        at=AT,
        known={1, 2, 3, 4},
    )


def test_the_last_record_of_each_version_is_its_state() -> None:
    state = state_of(rec(1, 100), rec(2, 10), rec(2, 30), rec(3, 5, "dry_run"))
    assert {v: (r.share, r.mode) for v, r in state.items()} == {
        1: (100, "live"),
        2: (30, "live"),
        3: (5, "dry_run"),
    }
    assert stable_version(state) == 1


def test_a_canary_is_one_record() -> None:
    assert plan(state_of(rec(1, 100)), 2, 10) == [rec(2, 10)]


def test_promoting_sets_the_previous_stable_version_to_zero() -> None:
    records = plan(state_of(rec(1, 100), rec(2, 10)), 2, 100)
    assert records == [rec(2, 100), rec(1, 0)]
    after = state_of(rec(1, 100), rec(2, 10), *records)
    assert stable_version(after) == 2


def test_canaries_may_take_100_percent_together_but_not_more() -> None:
    state = state_of(rec(1, 100), rec(2, 60))
    assert plan(state, 3, 40) == [rec(3, 40)]
    with pytest.raises(RolloutRefused, match="101 %"):
        plan(state, 3, 41)


def test_without_a_stable_version_live_shares_sum_to_100_at_most() -> None:
    state = state_of(rec(1, 50), rec(2, 30))
    assert plan(state, 3, 20) == [rec(3, 20)]
    with pytest.raises(RolloutRefused):
        plan(state, 3, 21)


def test_dry_runs_do_not_count_against_the_live_shares() -> None:
    state = state_of(rec(1, 100), rec(2, 90))
    assert plan(state, 3, 100, "dry_run") == [rec(3, 100, "dry_run")]


def test_a_dry_run_at_100_is_not_a_promotion() -> None:
    assert plan(state_of(rec(1, 100)), 2, 100, "dry_run") == [rec(2, 100, "dry_run")]


@pytest.mark.parametrize(
    ("version", "share", "mode", "why"),
    [
        pytest.param(9, 10, "live", "no saved version 9", id="unknown version"),
        pytest.param(2, 101, "live", "0..100", id="share above 100"),
        pytest.param(2, -5, "live", "0..100", id="negative share"),
        pytest.param(2, 10, "shadow", "live or dry_run", id="unknown mode"),
    ],
)
def test_bad_rollouts_are_refused(version: int, share: int, mode: str, why: str) -> None:
    with pytest.raises(RolloutRefused, match=why):
        plan(state_of(rec(1, 100)), version, share, mode)


def test_a_refusal_is_a_conflict() -> None:
    from soar.errors import ConflictError

    assert issubclass(RolloutRefused, ConflictError)


def test_rollback_withdraws_every_live_canary() -> None:
    history = [rec(1, 100), rec(2, 10), rec(3, 5), rec(4, 20, "dry_run")]
    records = plan_rollback(
        state_of(*history), history, playbook_id="contain", actor="user:ana", at=AT
    )
    assert records == [rec(2, 0), rec(3, 0)]


def test_rollback_of_one_version_withdraws_it_in_its_mode() -> None:
    history = [rec(1, 100), rec(4, 20, "dry_run")]
    records = plan_rollback(
        state_of(*history), history, playbook_id="contain", actor="user:ana", at=AT, version=4
    )
    assert records == [rec(4, 0, "dry_run")]


def test_rollback_without_canaries_promotes_the_previous_stable_version() -> None:
    history = [rec(1, 100), rec(2, 10), rec(2, 100), rec(1, 0)]
    records = plan_rollback(
        state_of(*history), history, playbook_id="contain", actor="user:ana", at=AT
    )
    assert records == [rec(1, 100), rec(2, 0)]


def test_rollback_with_nothing_to_go_back_to_is_refused() -> None:
    history = [rec(1, 100)]
    with pytest.raises(RolloutRefused):
        plan_rollback(state_of(*history), history, playbook_id="contain", actor="a", at=AT)
    with pytest.raises(RolloutRefused):
        plan_rollback(
            state_of(*history), history, playbook_id="contain", actor="a", at=AT, version=2
        )


def test_buckets_are_stable_and_spread_evenly() -> None:
    assert bucket_of("contain", "jdoe") == bucket_of("contain", "jdoe")
    assert 0 <= bucket_of("contain", "jdoe") < 100
    counts = Counter(bucket_of("contain", f"alert-{i}") // 10 for i in range(10_000))
    assert all(800 < n < 1200 for n in counts.values()), counts


def test_canaries_fill_buckets_from_zero_and_dry_runs_from_the_top() -> None:
    state = state_of(rec(1, 100), rec(2, 10), rec(3, 5), rec(4, 20, "dry_run"))
    assert choose(state, 0) == Choice(2)
    assert choose(state, 9) == Choice(2)
    assert choose(state, 10) == Choice(3)
    assert choose(state, 14) == Choice(3)
    assert choose(state, 15) == Choice(1)
    assert choose(state, 79) == Choice(1)
    assert choose(state, 80) == Choice(1, (4,))
    assert choose(state, 99) == Choice(1, (4,))


def test_without_a_stable_version_the_rest_starts_nothing() -> None:
    state = state_of(rec(1, 0), rec(2, 30))
    assert choose(state, 29) == Choice(2)
    assert choose(state, 30) == Choice(None)


def test_a_withdrawn_version_takes_no_bucket() -> None:
    state = state_of(
        rec(1, 100), rec(2, 10), rec(2, 0), rec(3, 50, "dry_run"), rec(3, 0, "dry_run")
    )
    assert {choose(state, b) for b in range(100)} == {Choice(1)}
