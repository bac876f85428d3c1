"""SIGKILL a worker at random moments and at chosen points, restart it, repeatedly: in the end
every run has ended, every effect happened once, every due compensation ran once, and every
timer fired. The effects are counted by idempotency key in a database of their own."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
WORKER = HERE / "worker.py"
PLAYBOOK = HERE / "crash.playbook.yaml"
RUNS = 48
EFFECT_STEPS = ["one", "stamp", "charge", "many[0]", "many[1]", "many[2]"]


def start_worker(tmp_path: Path, crash_at: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    if crash_at:
        env["SOAR_CRASH_AT"] = crash_at
    log = (tmp_path / "worker.log").open("ab")
    try:
        return _spawn(tmp_path, env, log)
    finally:
        log.close()  # the child keeps its own descriptor


def _spawn(tmp_path: Path, env: dict[str, str], log: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - our own worker script
        [
            sys.executable,
            str(WORKER),
            str(tmp_path / "soar.db"),
            str(tmp_path / "effects.db"),
            str(PLAYBOOK),
            str(RUNS),
        ],
        env=env,
        stdout=log,  # type: ignore[arg-type]
        stderr=subprocess.STDOUT,
    )


def run_until_done(
    tmp_path: Path, *, kills: int, rng: random.Random, crash_at: str | None = None
) -> int:
    """Start, kill at random moments `kills` times, then let the last worker finish."""
    killed = 0
    for _ in range(kills + 20):
        worker = start_worker(tmp_path, crash_at)
        if killed < kills:
            try:
                worker.wait(timeout=rng.uniform(0.15, 0.9))
            except subprocess.TimeoutExpired:
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                killed += 1
                continue
        else:
            worker.wait(timeout=120)
        log = (tmp_path / "worker.log").read_text(errors="replace")
        if worker.returncode == 0:
            assert log.rstrip().endswith("all runs ended")
            return killed
        if worker.returncode != -signal.SIGKILL:
            pytest.fail(f"worker exited {worker.returncode}: {log[-2000:]}")
    pytest.fail("the runs never all ended")


def check(tmp_path: Path) -> None:
    store = sqlite3.connect(tmp_path / "soar.db")
    effects = sqlite3.connect(tmp_path / "effects.db")
    statuses = dict(store.execute("SELECT id, status FROM runs").fetchall())
    assert len(statuses) == RUNS
    expected = {f"run-{i:04d}": ("failed" if i % 4 == 3 else "completed") for i in range(RUNS)}
    assert statuses == expected
    done = dict(effects.execute("SELECT key, name FROM effects").fetchall())
    undone = dict(effects.execute("SELECT key, name FROM undone").fetchall())
    for run_id, status in expected.items():
        for step in EFFECT_STEPS:
            assert f"{run_id}:{step}" in done, f"{run_id}: effect of {step} missing"
        if status == "completed":
            assert f"{run_id}:last" in done
            assert not any(k.startswith(f"{run_id}:") for k in undone), f"{run_id} was compensated"
        else:
            assert f"{run_id}:last" not in done
            for step in EFFECT_STEPS:
                assert f"{run_id}:{step}~compensate" in undone, f"{run_id}: {step} not compensated"
    # exactly once: one row per key by construction, and no key outside the expected ones
    wanted = {f"{r}:{s}" for r in expected for s in EFFECT_STEPS} | {
        f"{r}:last" for r, s in expected.items() if s == "completed"
    }
    assert set(done) == wanted
    # every timer fired: each run's wait ended and its approval timed out to its default
    outcomes = store.execute(
        "SELECT run_id, key, status FROM steps WHERE key IN ('pause', 'ask')"
    ).fetchall()
    assert len(outcomes) == 2 * RUNS
    assert {status for _, _, status in outcomes} == {"succeeded"}
    check_audit(store, set(done) | set(undone))
    verify_exported(tmp_path)


def verify_exported(tmp_path: Path) -> None:
    """The exported log, with the checkpoints signed between kills, verifies offline."""
    from soar.audit.export import export_lines
    from soar.audit.keys import Keyring, load_public_keys
    from soar.audit.verify import verify_export
    from soar.store import SqliteStore

    async def lines() -> list[str]:
        store = await SqliteStore.open(tmp_path / "soar.db")
        try:
            return [line async for line in export_lines(store)]
        finally:
            await store.close()

    exported = asyncio.run(lines())
    keys = load_public_keys(Keyring.open(tmp_path / "keys").public_pem())
    report = verify_export(exported, keys)
    assert report.ok, report.problem
    assert report.checkpoints >= 1
    assert report.last_checkpoint == report.records  # signed to the end at the clean stop


def check_audit(store: sqlite3.Connection, effect_keys: set[str]) -> None:
    """The log has no gap and no broken link, and every effect that happened has its records:
    the attempt that was issued, under the effect's idempotency key, and its success."""
    rows = store.execute("SELECT seq, body, prev, hash FROM audit ORDER BY seq").fetchall()
    assert rows, "nothing was audited"
    prev = "0" * 64
    started: set[str] = set()
    succeeded: set[tuple[str, str]] = set()
    for expected_seq, (seq, body, link, digest) in enumerate(rows, start=1):
        assert seq == expected_seq, f"gap before audit record {seq}"
        assert link == prev, f"audit record {seq} does not link to {seq - 1}"
        entry = f'{{"body":{body},"prev":"{prev}","seq":{seq}}}'.encode()
        assert hashlib.sha256(b"\x00" + entry).hexdigest() == digest, f"record {seq} altered"
        prev = digest
        event = json.loads(body)
        if "idempotency_key" in event:  # an attempt's first record: its start or its outcome
            started.add(event["idempotency_key"])
        if event["kind"] == "step.finished" and event["outcome"] == "succeeded":
            succeeded.add((event["run_id"], event["step"]))
    for key in effect_keys:
        run_id, _, step = key.partition(":")
        assert key in started, f"effect {key} has no record of its attempt"
        assert (run_id, step) in succeeded, f"effect {key} has no step.finished record"


@pytest.mark.slow
def test_random_sigkills_lose_nothing_and_repeat_nothing(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("SOAR_CRASH_SEED", "7")))
    killed = run_until_done(tmp_path, kills=6, rng=rng)
    assert killed >= 3, "the runs ended before the worker could be killed often enough"
    check(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    ["after_started", "after_effect", "after_sync_effect", "while_waiting", "during_compensation"],
)
def test_a_sigkill_at_a_chosen_point_loses_nothing(tmp_path: Path, point: str) -> None:
    worker = start_worker(tmp_path, crash_at=point)
    worker.wait(timeout=120)
    assert worker.returncode == -signal.SIGKILL, "the chosen point was never reached"
    run_until_done(tmp_path, kills=0, rng=random.Random(1))
    check(tmp_path)
    repeats = {"after_effect": "apply", "after_sync_effect": "stamp", "during_compensation": "undo"}
    if point in repeats:
        # the killed attempt was issued again under the same key, and took effect once
        kind = repeats[point]
        effects = sqlite3.connect(tmp_path / "effects.db")
        repeated = effects.execute(
            "SELECT key FROM calls WHERE kind = ? GROUP BY key HAVING count(*) > 1", (kind,)
        ).fetchall()
        assert repeated, "no attempt was issued twice: the kill did not hit an open attempt"
