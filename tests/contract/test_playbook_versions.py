"""The playbook version and rollout contract: versions are immutable (the same digest again is a
no-op, another digest for a saved version a conflict), rollouts an append-only history read
oldest first, on every backend."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from soar.errors import ConflictError, StoreError
from soar.store import Change, Store
from soar.store.base import PlaybookVersion, Rollout
from tests.contract.backends import BACKENDS, open_backend
from tests.contract.runs import T0, a_run, a_transition


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with open_backend(request, tmp_path) as opened:
        yield opened


def a_version(playbook_id: str = "contain", version: int = 1, *, text: str = "") -> PlaybookVersion:
    source = f"id: {playbook_id}\nversion: {version}\n{text}"
    return PlaybookVersion(
        playbook_id=playbook_id,
        version=version,
        digest="sha256:" + hashlib.sha256(source.encode()).hexdigest(),
        source=source,
        author="user:ana",
        created_at=T0 + timedelta(minutes=version),
    )


def a_rollout(
    version: int, share: int, *, mode: str = "live", playbook_id: str = "contain", minutes: int = 0
) -> Rollout:
    return Rollout(
        playbook_id=playbook_id,
        version=version,
        share=share,
        mode=mode,
        actor="user:ana",
        at=T0 + timedelta(minutes=minutes),
    )


async def test_a_version_round_trips_every_field(store: Store) -> None:
    version = replace(
        a_version(text="name: Zoë's playbook ✓\n"),
        created_at=datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
    )
    await store.apply(Change(playbook_versions=[version]))
    found = await store.playbook_version(version.digest)
    assert found == version
    assert found is not None
    assert found.created_at.tzinfo == UTC
    assert await store.playbook_versions("contain") == [version]
    assert await store.playbook_version("sha256:nothing") is None


async def test_versions_are_listed_by_playbook_then_version(store: Store) -> None:
    saved = [a_version("b", 2), a_version("b", 10), a_version("a", 1), a_version("b", 1)]
    await store.apply(Change(playbook_versions=saved[:2]))
    await store.apply(Change(playbook_versions=saved[2:]))
    listed = await store.playbook_versions()
    assert [(v.playbook_id, v.version) for v in listed] == [("a", 1), ("b", 1), ("b", 2), ("b", 10)]
    assert [v.version for v in await store.playbook_versions("b")] == [1, 2, 10]
    assert await store.playbook_versions("c") == []


async def test_the_same_version_saved_again_is_a_no_op(store: Store) -> None:
    version = a_version()
    await store.apply(Change(playbook_versions=[version]))
    again = replace(
        version, author="file:playbooks/contain.yaml", created_at=T0 + timedelta(days=1)
    )
    await store.apply(Change(playbook_versions=[again]))
    assert await store.playbook_versions() == [version]


async def test_another_digest_for_a_saved_version_is_a_conflict_and_nothing_is_written(
    store: Store,
) -> None:
    await store.apply(Change(playbook_versions=[a_version()]))
    edited = a_version(text="steps: []\n")
    with pytest.raises(ConflictError):
        await store.apply(
            Change(
                playbook_versions=[a_version(version=2), edited],
                rollouts=[a_rollout(2, 100)],
                runs=[a_run("r1")],
                transitions=[a_transition("r1", 1)],
            )
        )
    assert [v.version for v in await store.playbook_versions()] == [1]
    assert await store.rollouts() == []
    assert not await store.has_run("r1")


async def test_a_conflicting_change_fails_alone_among_concurrent_ones(store: Store) -> None:
    await store.apply(Change(playbook_versions=[a_version()]))
    outcomes = await asyncio.gather(
        store.apply(Change(playbook_versions=[a_version(version=2)])),
        store.apply(Change(playbook_versions=[a_version(text="other\n")])),
        store.apply(Change(rollouts=[a_rollout(1, 100)])),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], ConflictError)
    assert outcomes[2] is None
    assert [v.version for v in await store.playbook_versions()] == [1, 2]


async def test_rollouts_are_a_history_oldest_first(store: Store) -> None:
    await store.apply(Change(rollouts=[a_rollout(1, 100), a_rollout(2, 10, minutes=1)]))
    await store.apply(Change(rollouts=[a_rollout(1, 5, playbook_id="other", minutes=2)]))
    await store.apply(Change(rollouts=[a_rollout(2, 100, minutes=3), a_rollout(1, 0, minutes=3)]))
    await store.apply(Change(rollouts=[a_rollout(3, 50, mode="dry_run", minutes=4)]))
    history = await store.rollouts("contain")
    assert [(r.version, r.share, r.mode) for r in history] == [
        (1, 100, "live"),
        (2, 10, "live"),
        (2, 100, "live"),
        (1, 0, "live"),
        (3, 50, "dry_run"),
    ]
    assert history[0] == a_rollout(1, 100)
    everything = await store.rollouts()
    assert len(everything) == 6
    assert everything[2].playbook_id == "other"


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(a_rollout(1, 101), id="share above 100"),
        pytest.param(a_rollout(1, -1), id="negative share"),
        pytest.param(a_rollout(1, 10, mode="shadow"), id="unknown mode"),
        pytest.param(replace(a_rollout(1, 10), at=datetime(2026, 1, 1)), id="naive time"),  # noqa: DTZ001
    ],
)
async def test_a_bad_rollout_is_refused(store: Store, bad: Rollout) -> None:
    with pytest.raises(StoreError):
        await store.apply(Change(rollouts=[bad]))
    assert await store.rollouts() == []


async def test_an_empty_store_has_no_versions_and_no_rollouts(store: Store) -> None:
    assert await store.playbook_versions() == []
    assert await store.rollouts() == []
    assert await store.rollouts("contain") == []
