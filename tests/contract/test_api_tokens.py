"""The API token contract: tokens are kept by the digest of their secret, upserted by id (a
revocation is the token written again), and listed oldest first, on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from soar.errors import ConflictError, StoreError
from soar.store import Change, Store
from soar.store.base import ApiToken
from tests.contract.backends import BACKENDS, open_backend
from tests.contract.runs import T0


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with open_backend(request, tmp_path) as opened:
        yield opened


def a_token(token_id: str, *, minutes: int = 0, role: str = "responder") -> ApiToken:
    return ApiToken(
        id=token_id,
        name=f"{token_id} for the SOC",
        role=role,
        digest=f"sha256:{token_id * 4}",
        created_at=T0 + timedelta(minutes=minutes),
        created_by="user:admin",
    )


async def test_a_token_round_trips_every_field(store: Store) -> None:
    token = replace(
        a_token("t1"),
        name="Zoë's laptop",
        created_at=datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
        revoked_at=datetime(2026, 3, 2, tzinfo=UTC),
    )
    await store.apply(Change(tokens=[token]))
    found = await store.api_token(token.digest)
    assert found == token
    assert found is not None
    assert found.created_at.tzinfo == UTC
    assert await store.api_token("sha256:nothing") is None


async def test_a_revocation_is_the_token_written_again(store: Store) -> None:
    token = a_token("t1")
    await store.apply(Change(tokens=[token]))
    revoked = replace(token, revoked_at=T0 + timedelta(days=1))
    await store.apply(Change(tokens=[revoked]))
    assert await store.api_token(token.digest) == revoked
    assert await store.api_tokens() == [revoked]


async def test_tokens_are_listed_oldest_first_revoked_ones_too(store: Store) -> None:
    tokens = [a_token("b", minutes=2), a_token("c", minutes=1, role="auditor"), a_token("a")]
    await store.apply(Change(tokens=tokens[:2]))
    await store.apply(Change(tokens=[replace(tokens[2], revoked_at=T0)]))
    assert [t.id for t in await store.api_tokens()] == ["a", "c", "b"]


async def test_an_empty_store_has_no_tokens(store: Store) -> None:
    assert await store.api_tokens() == []


async def test_two_tokens_with_one_digest_are_a_conflict_and_nothing_is_written(
    store: Store,
) -> None:
    await store.apply(Change(tokens=[a_token("t1")]))
    twin = replace(a_token("t2"), digest=a_token("t1").digest)
    with pytest.raises(ConflictError):
        await store.apply(Change(tokens=[a_token("t3"), twin]))
    assert [t.id for t in await store.api_tokens()] == ["t1"]


async def test_a_token_may_change_its_own_digest(store: Store) -> None:
    await store.apply(Change(tokens=[a_token("t1")]))
    moved = replace(a_token("t1"), digest="sha256:rotated")
    await store.apply(Change(tokens=[moved]))
    assert await store.api_token("sha256:rotated") == moved
    assert await store.api_token(a_token("t1").digest) is None


async def test_a_naive_time_is_refused(store: Store) -> None:
    naive = replace(a_token("t1"), created_at=datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(StoreError, match="naive"):
        await store.apply(Change(tokens=[naive]))
    assert await store.api_tokens() == []
