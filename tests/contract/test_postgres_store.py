"""What only the PostgreSQL store promises: many processes on one database append to one audit
chain, group commit, schema versions, durability the moment `apply` returns, and a writer
connection that comes back after the server dropped it."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import textwrap
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from soar.errors import ConfigError, ConflictError, StoreError
from soar.models.audit import ZERO_HASH, AuditRecord
from soar.store import Change, MemoryStore, RunFilter, open_store
from soar.store.postgres import PostgresStore
from soar.store.postgres_migrations import MIGRATIONS, schema_version
from tests.contract.runs import (
    T0,
    a_run,
    a_step,
    a_timer,
    a_transition,
    an_event,
    expected_hash,
)
from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]


def assert_one_chain(records: list[AuditRecord], count: int) -> None:
    """`records` are seq 1..count, each linked to the one before and hashed as specified."""
    assert [r.seq for r in records] == list(range(1, count + 1))
    assert records[0].prev == ZERO_HASH
    assert all(b.prev == a.hash for a, b in itertools.pairwise(records))
    assert all(r.hash == expected_hash(r.seq, r.prev, r.event.body) for r in records)


async def test_a_postgresql_url_opens_a_postgres_store_whose_runs_survive_reopening(
    postgres_dsn: str,
) -> None:
    async with open_store(postgres_dsn) as store:
        assert isinstance(store, PostgresStore)
        await store.apply(Change(runs=[a_run()], steps=[a_step()], transitions=[a_transition()]))
    async with open_store(postgres_dsn.replace("postgresql://", "postgres://", 1)) as store:
        snapshot = await store.load_run("run-1")
        assert snapshot is not None
        assert (snapshot.run, snapshot.last_seq) == (a_run(), 1)
        assert snapshot.steps == {"disable_account": a_step()}


async def test_two_stores_on_one_database_append_concurrently_to_one_chain(
    postgres_dsn: str,
) -> None:
    """Two workers (a store each, its own writer connection) write at the same time, a change
    at a time; the head lock queues each append behind the other's commit, so every change
    succeeds and every record lands in one chain, in commit order."""
    first = await PostgresStore.open(postgres_dsn)
    second = await PostgresStore.open(postgres_dsn)

    async def append(store: PostgresStore, start: int) -> None:
        for n in range(start, start + 100):
            await store.apply(Change(audit=[an_event(n), an_event(n + 1000)]))

    try:
        await asyncio.gather(append(first, 1), append(second, 101))
        records = await second.audit_records(0, 1000)
        assert (first.changes, second.changes) == (100, 100)
        assert await first.audit_head() == (400, records[-1].hash)
    finally:
        await first.close()
        await second.close()
    assert_one_chain(records, 400)
    # each change's two records are adjacent: a change is sealed whole
    pairs = [(a.event.step, b.event.step) for a, b in zip(records[::2], records[1::2], strict=True)]
    assert all(b == f"s{int(a[1:]) + 1000}" for a, b in pairs)
    # and the two writers' changes interleave: they did run at the same time
    writers = [int(a[1:]) <= 100 for a, _ in pairs]
    assert sum(1 for x, y in itertools.pairwise(writers) if x != y) > 10


_APPENDER = textwrap.dedent(
    """
    import asyncio, sys
    from soar.store import Change
    from soar.store.postgres import PostgresStore
    from tests.contract.runs import an_event

    async def main(dsn: str, worker: int) -> None:
        store = await PostgresStore.open(dsn)
        try:
            for n in range(300):  # a change at a time: every append races the other workers'
                await store.apply(Change(audit=[an_event(n, actor=f"worker-{worker}")]))
        finally:
            await store.close()
        print(store.commits, flush=True)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def test_worker_processes_append_to_one_chain_in_commit_order(postgres_dsn: str) -> None:
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _APPENDER,
            postgres_dsn,
            str(worker),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        for worker in range(3)
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(c.communicate() for c in children)), 60)
    assert [c.returncode for c in children] == [0, 0, 0]
    assert [int(out) for out, _ in outputs] == [300, 300, 300]
    async with open_store(postgres_dsn) as store:
        records = await store.audit_records(0, 1000)
        assert await store.audit_head() == (900, records[-1].hash)
    assert_one_chain(records, 900)
    actors = [r.event.actor for r in records]
    assert sorted(actors) == sorted(f"worker-{w}" for w in range(3) for _ in range(300))


async def test_concurrent_changes_all_land_in_far_fewer_transactions(postgres_dsn: str) -> None:
    store = await PostgresStore.open(postgres_dsn)

    async def writer(task: int) -> None:
        run_id = f"run-{task}"
        await store.apply(Change(runs=[a_run(run_id)]))
        for seq in range(1, 10):
            step = a_step(run_id, f"step-{seq}")
            await store.apply(
                Change(steps=[step], transitions=[a_transition(run_id, seq)], audit=[an_event(seq)])
            )

    try:
        await asyncio.gather(*(writer(t) for t in range(200)))
        assert store.changes == 2000
        assert store.commits < 2000 / 10
        assert len(await store.unfinished_runs()) == 200
        for run_id in ("run-0", "run-199"):
            snapshot = await store.load_run(run_id)
            assert snapshot is not None
            assert (snapshot.last_seq, len(snapshot.steps)) == (9, 9)
        assert_one_chain(await store.audit_records(0, 2000), 1800)
    finally:
        await store.close()


async def test_a_bad_change_in_a_group_fails_alone(postgres_dsn: str) -> None:
    store = await PostgresStore.open(postgres_dsn)
    blocker = await asyncpg.connect(postgres_dsn)
    try:
        await store.apply(Change(transitions=[a_transition("taken", 1)], audit=[an_event(0)]))
        # Hold a lock that every insert into runs waits for, so that the changes queue up.
        blocking = blocker.transaction()
        await blocking.start()
        await blocker.execute("LOCK TABLE runs IN EXCLUSIVE MODE")
        good = [
            Change(runs=[a_run(f"r{i}")], transitions=[a_transition(f"r{i}")], audit=[an_event(i)])
            for i in range(1, 21)
        ]
        bad = Change(
            runs=[a_run("bad")], transitions=[a_transition("taken", 1)], audit=[an_event(99)]
        )
        changes = [*good[:10], bad, *good[10:]]
        writes = [asyncio.create_task(store.apply(c)) for c in changes]
        await asyncio.sleep(0.05)
        commits_before = store.commits
        await blocking.rollback()
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        assert [i for i, outcome in enumerate(outcomes) if outcome is not None] == [10]
        error = outcomes[10]
        assert isinstance(error, ConflictError)
        assert "transitions_pkey" in str(error)
        assert store.commits - commits_before <= 2
        assert len(await store.list_runs(RunFilter())) == 20
        assert await store.load_run("bad") is None
        records = await store.audit_records(0, 100)
        assert_one_chain(records, 21)
        assert "s99" not in {r.event.step for r in records}
    finally:
        await blocker.close()
        await store.close()


async def test_close_writes_every_change_already_queued(postgres_dsn: str) -> None:
    store = await PostgresStore.open(postgres_dsn)
    writes = [asyncio.create_task(store.apply(Change(runs=[a_run(f"r{i}")]))) for i in range(50)]
    await asyncio.sleep(0)  # every task has queued its change
    await store.close()
    await asyncio.gather(*writes)
    with pytest.raises(StoreError, match="closed"):
        await store.apply(Change(runs=[a_run()]))
    with pytest.raises(StoreError, match="closed"):
        await store.list_runs(RunFilter())
    async with open_store(postgres_dsn) as reopened:
        assert len(await reopened.list_runs(RunFilter(limit=100))) == 50


async def test_reads_see_every_acknowledged_write(postgres_dsn: str) -> None:
    async with open_store(postgres_dsn) as store:
        for seq in range(1, 30):
            await store.apply(Change(transitions=[a_transition(seq=seq)]))
            assert len(await store.transitions("run-1")) == seq


_CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from soar.store import Change
    from soar.store.postgres import PostgresStore
    from tests.contract.runs import a_run, a_transition, an_event

    async def main() -> None:
        store = await PostgresStore.open(sys.argv[1])
        await store.apply(Change(runs=[a_run()], transitions=[a_transition()], audit=[an_event(1)]))
        print("applied", flush=True)
        time.sleep(60)

    asyncio.run(main())
    """
)


async def test_a_change_is_durable_when_apply_returns(postgres_dsn: str) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, postgres_dsn, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
    child.send_signal(signal.SIGKILL)
    assert await child.wait() == -signal.SIGKILL
    assert line == b"applied\n"
    async with open_store(postgres_dsn) as store:
        snapshot = await store.load_run("run-1")
        assert snapshot is not None
        assert snapshot.last_seq == 1
        assert (await store.audit_head())[0] == 1


async def test_a_new_database_gets_every_migration_and_an_empty_head(postgres_dsn: str) -> None:
    await (await PostgresStore.open(postgres_dsn)).close()
    connection = await asyncpg.connect(postgres_dsn)
    try:
        assert await schema_version(connection) == len(MIGRATIONS)
        head = await connection.fetch("SELECT seq, hash FROM audit_head")
        assert [tuple(r) for r in head] == [(0, ZERO_HASH)]
    finally:
        await connection.close()


async def test_stores_opening_a_new_database_at_once_migrate_it_once(postgres_dsn: str) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(postgres_dsn) for _ in range(4)))
    try:
        await asyncio.gather(*(s.apply(Change(audit=[an_event(n)])) for n, s in enumerate(stores)))
        assert_one_chain(await stores[0].audit_records(0, 10), 4)
    finally:
        for store in stores:
            await store.close()


async def test_a_database_from_a_newer_schema_is_refused(postgres_dsn: str) -> None:
    await (await PostgresStore.open(postgres_dsn)).close()
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute("UPDATE soar_schema SET version = $1", len(MIGRATIONS) + 1)
    finally:
        await connection.close()
    with pytest.raises(StoreError, match="newer than this soar knows"):
        await PostgresStore.open(postgres_dsn)


async def test_a_writer_connection_the_server_dropped_is_replaced(postgres_dsn: str) -> None:
    async with open_store(postgres_dsn) as store:
        await store.apply(Change(runs=[a_run()], transitions=[a_transition(seq=1)]))
        admin = await asyncpg.connect(postgres_dsn)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert killed >= 2  # the writer and at least one reader
        await asyncio.sleep(0.2)  # the driver sees the connections closed
        await store.apply(Change(transitions=[a_transition(seq=2)]))
        assert [t.seq for t in await store.transitions("run-1")] == [1, 2]


async def test_ids_sort_bytewise_whatever_the_database_locale(
    postgres_server: PostgresServer,
) -> None:
    """Under an ICU English collation "B" sorts after "a"; the store orders as SQLite does."""
    name = "soar_test_icu"
    admin = await asyncpg.connect(postgres_server.admin_dsn)
    try:
        await admin.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' "
            "LOCALE 'C.UTF-8'"
        )
        try:
            timers = [a_timer(i, T0) for i in ("b", "B", "a", "_x", "a-2", "a_1")]
            change = Change(runs=[a_run(i) for i in ("b", "B", "a")], timers=timers)
            expected = MemoryStore()
            await expected.apply(change)
            async with open_store(postgres_server.dsn(name)) as store:
                await store.apply(change)
                assert [t.id for t in await store.due_timers(T0, 10)] == [
                    t.id for t in await expected.due_timers(T0, 10)
                ]
                assert [r.id for r in await store.list_runs(RunFilter())] == ["b", "a", "B"]
        finally:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


async def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as raised:
        await PostgresStore.open("postgresql://soar:s3cret@127.0.0.1:1/soar", connect_timeout=5)
    assert "s3cret" not in str(raised.value)
    assert "127.0.0.1:1" in str(raised.value)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://soar:s3cret@127.0.0.1:99999/soar",
        "postgresql://soar:s3cret@[::1/soar",
        "postgresql://soar:s3cret@127.0.0.1/soar?sslmode=sometimes",
    ],
    ids=["port-out-of-range", "bad-ipv6", "bad-sslmode"],
)
async def test_a_malformed_dsn_is_a_config_error_without_the_password(dsn: str) -> None:
    with pytest.raises(ConfigError) as raised:
        async with open_store(dsn):
            pass
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"batch_limit": 0}, "batch_limit"), ({"read_connections": 0}, "read_connections")],
    ids=["batch-limit", "read-connections"],
)
async def test_bad_options_are_config_errors(
    postgres_dsn: str, options: dict[str, int], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        await PostgresStore.open(postgres_dsn, **options)
