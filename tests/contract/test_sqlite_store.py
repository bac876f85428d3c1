"""What only the SQLite store promises: a file that outlives the process, group commit,
schema versions, durability the moment `apply` returns."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from soar.errors import ConfigError, ConflictError, StoreError
from soar.models.run import RunStatus
from soar.store import (
    Change,
    MemoryStore,
    RunFilter,
    SqliteStore,
    open_store,
    raw_sqlite_limits,
)
from soar.store.migrations import MIGRATIONS, schema_version
from tests.contract.runs import a_run, a_step, a_transition

ROOT = Path(__file__).resolve().parents[2]


async def test_runs_survive_close_and_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'soar.db'}"
    async with open_store(url) as store:
        await store.apply(Change(runs=[a_run()], steps=[a_step()], transitions=[a_transition()]))
    async with open_store(url) as store:
        snapshot = await store.load_run("run-1")
        assert snapshot is not None
        assert (snapshot.run, snapshot.last_seq) == (a_run(), 1)
        assert snapshot.steps == {"disable_account": a_step()}


async def test_a_ctrl_c_to_the_process_group_leaves_the_writer_to_its_worker(
    tmp_path: Path,
) -> None:
    """A terminal's Ctrl-C reaches the writer too; the worker's last writes must still land."""
    store = await SqliteStore.open(tmp_path / "soar.db")
    os.kill(store.writer_pid, signal.SIGINT)
    await asyncio.sleep(0.2)
    await store.apply(Change(runs=[a_run()]))
    await store.close()
    async with open_store(f"sqlite:///{tmp_path / 'soar.db'}") as reopened:
        assert await reopened.has_run("run-1")


async def test_close_writes_every_change_already_queued(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "soar.db")
    writes = [asyncio.create_task(store.apply(Change(runs=[a_run(f"r{i}")]))) for i in range(50)]
    await asyncio.sleep(0)  # every task has queued its change
    await store.close()
    await asyncio.gather(*writes)
    async with open_store(f"sqlite:///{tmp_path / 'soar.db'}") as reopened:
        assert len(await reopened.list_runs(RunFilter(limit=100))) == 50


async def test_concurrent_changes_all_land_in_far_fewer_transactions(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "soar.db")

    async def writer(task: int) -> None:
        run_id = f"run-{task}"
        await store.apply(Change(runs=[a_run(run_id)]))
        for seq in range(1, 10):
            step = a_step(run_id, f"step-{seq}")
            await store.apply(Change(steps=[step], transitions=[a_transition(run_id, seq)]))

    try:
        await asyncio.gather(*(writer(t) for t in range(200)))
        assert store.changes == 2000
        assert store.commits < 2000 / 10
        assert len(await store.unfinished_runs()) == 200
        for run_id in ("run-0", "run-199"):
            snapshot = await store.load_run(run_id)
            assert snapshot is not None
            assert (snapshot.last_seq, len(snapshot.steps)) == (9, 9)
    finally:
        await store.close()


async def test_a_bad_change_in_a_batch_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "soar.db"
    store = await SqliteStore.open(path)
    try:
        await store.apply(Change(transitions=[a_transition("taken", 1)]))
        # Hold the write lock from outside, so that every change queues into one batch.
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        good = [
            Change(runs=[a_run(f"r{i}")], transitions=[a_transition(f"r{i}")]) for i in range(20)
        ]
        bad = Change(runs=[a_run("bad")], transitions=[a_transition("taken", 1)])
        changes = [*good[:10], bad, *good[10:]]
        writes = [asyncio.create_task(store.apply(c)) for c in changes]
        await asyncio.sleep(0.05)
        commits_before = store.commits
        blocker.execute("ROLLBACK")
        blocker.close()
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        assert [i for i, outcome in enumerate(outcomes) if outcome is not None] == [10]
        error = outcomes[10]
        assert isinstance(error, ConflictError)
        assert "UNIQUE constraint failed: transitions.run_id, transitions.seq" in str(error)
        assert store.commits - commits_before <= 2
        assert len(await store.list_runs(RunFilter())) == 20
        assert await store.load_run("bad") is None
    finally:
        await store.close()


async def test_a_database_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "soar.db"
    future = sqlite3.connect(path)
    future.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    future.close()
    with pytest.raises(StoreError, match="newer than this soar knows"):
        await SqliteStore.open(path)


async def test_a_new_database_gets_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "soar.db"
    await (await SqliteStore.open(path)).close()
    connection = sqlite3.connect(path)
    try:
        assert schema_version(connection) == len(MIGRATIONS)
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        connection.close()


_CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from soar.store import Change, SqliteStore
    from tests.contract.runs import a_run, a_transition

    async def main() -> None:
        store = await SqliteStore.open(sys.argv[1])
        await store.apply(Change(runs=[a_run()], transitions=[a_transition()]))
        print("applied", store.writer_pid, flush=True)
        time.sleep(60)

    asyncio.run(main())
    """
)


async def test_a_change_is_durable_when_apply_returns(tmp_path: Path) -> None:
    path = tmp_path / "soar.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, str(path), cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
    child.send_signal(signal.SIGKILL)
    assert await child.wait() == -signal.SIGKILL
    word, writer_pid = line.split()
    assert word == b"applied"
    async with open_store(f"sqlite:///{path}") as store:
        snapshot = await store.load_run("run-1")
        assert snapshot is not None
        assert snapshot.last_seq == 1
    # the writer process went down with the worker that started it
    for _ in range(100):
        if not _alive(int(writer_pid)):
            break
        await asyncio.sleep(0.05)
    assert not _alive(int(writer_pid)), "the writer process outlived its worker"


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie nobody reaped counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def test_a_dead_writer_process_fails_writes_and_never_hangs(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "soar.db")
    try:
        await store.apply(Change(runs=[a_run()], transitions=[a_transition()]))
        assert store.writer_pid is not None
        os.kill(store.writer_pid, signal.SIGKILL)
        for seq in (2, 3):
            with pytest.raises(StoreError, match="writer process ended"):
                await asyncio.wait_for(
                    store.apply(Change(transitions=[a_transition(seq=seq)])), timeout=10
                )
        assert [t.seq for t in await store.transitions("run-1")] == [1]  # reads still work
    finally:
        await asyncio.wait_for(store.close(), timeout=10)


async def test_reads_see_every_acknowledged_write(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path / 'soar.db'}") as store:
        for seq in range(1, 30):
            await store.apply(Change(transitions=[a_transition(seq=seq)]))
            assert len(await store.transitions("run-1")) == seq


async def test_a_relaxed_synchronous_mode_is_accepted(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path / 'soar.db'}?synchronous=NORMAL") as store:
        await store.apply(Change(runs=[a_run(status=RunStatus.COMPLETED)]))
        assert await store.unfinished_runs() == []


async def test_memory_url_opens_a_memory_store() -> None:
    async with open_store("memory://") as store:
        assert isinstance(store, MemoryStore)


@pytest.mark.parametrize(
    "url",
    ["mysql://localhost/soar", "sqlite://", "sqlite:///", "sqlite:///x.db?fsync=off", "soar.db"],
    ids=["unknown-scheme", "no-path", "empty-path", "unknown-option", "bare-path"],
)
async def test_a_bad_store_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        async with open_store(url):
            pass


async def test_an_unknown_synchronous_mode_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        await SqliteStore.open(tmp_path / "soar.db", synchronous="OFF")


async def test_raw_limits_are_measured_and_leave_no_file(tmp_path: Path) -> None:
    limits = await raw_sqlite_limits(tmp_path, seconds=0.05)
    assert limits.commits_per_s > 0
    assert limits.rows_per_s > limits.commits_per_s
    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []
