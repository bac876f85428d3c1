"""Versions and rollouts in the engine: a canary takes its share of the matching alerts, the
same alerts every time; a dry-run version runs beside the live one without effects; promote
and rollback; a worker follows rollouts written by another process; files become versions."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections import Counter
from pathlib import Path

from soar.connectors import Registry
from soar.connectors.core import core
from soar.engine import Engine, FakeClock
from soar.engine.versions import new_version, roll_back, roll_out, save_version
from soar.models import Alert
from soar.models.audit import AuditFilter
from soar.playbook.validate import LoadedPlaybook, validate_text
from soar.store import RunFilter, Store, open_store
from soar.store.memory import MemoryStore
from tests.unit.engine.conftest import Effects, effect_connector

ALICE = "user:alice"


def source(version: int, *, dedup: bool = False, extra: str = "") -> str:
    text = f"""\
        id: contain
        name: Contain
        version: {version}
        trigger:
          match: alert.severity >= "high"
        steps:
          - id: act
            action: fx.do
            with: {{ name: "v{version} {{{{ alert.id }}}}" }}
        """
    if dedup:
        text = text.replace(
            '>= "high"\n',
            '>= "high"\n          dedup: { key: "{{ alert.users[0].name }}", window: 1h }\n',
        )
    return textwrap.dedent(text) + extra


def loaded(registry: Registry, text: str, file: str = "contain.yaml") -> LoadedPlaybook:
    result = validate_text(text, file=file, registry=registry)
    assert result.loaded is not None, [str(d) for d in result.diagnostics]
    return result.loaded


def an_alert(n: int, user: str | None = None) -> Alert:
    return Alert.model_validate(
        {
            "id": f"alert-{n}",
            "source": "test",
            "format": "generic",
            "title": "Brute force",
            "severity": "high",
            "category": "credential_access",
            "time": "2026-01-05T09:00:00Z",
            "users": [{"name": user or f"user-{n}"}],
            "raw": {"n": n},
        }
    )


async def save(store: Store, engine: Engine, text: str) -> LoadedPlaybook:
    version = loaded(engine.registry, text)
    await save_version(
        store, engine.evidence, new_version(version, text, author=ALICE, at=engine.clock.now())
    )
    return version


async def rollout(engine: Engine, version: int, share: int, mode: str = "live") -> None:
    await roll_out(
        engine.store,
        engine.evidence,
        playbook_id="contain",
        version=version,
        share=share,
        mode=mode,
        actor=ALICE,
        at=engine.clock.now(),
    )


async def versions_by_alert(store: Store) -> dict[str, set[tuple[int, bool]]]:
    runs = await store.list_runs(RunFilter(limit=100_000))
    found: dict[str, set[tuple[int, bool]]] = {}
    for run in runs:
        assert isinstance(run.alert, dict)
        found.setdefault(str(run.alert["id"]), set()).add((run.playbook_version, run.dry_run))
    return found


async def canary_engine(effects: Effects, *, dedup: bool = False) -> Engine:
    """v1 stable (saved first, so live at 100), v2 saved and given 10 %."""
    registry = Registry.of([core, effect_connector(effects)])
    store = MemoryStore()
    engine = Engine(store, registry, [], clock=FakeClock())
    await save(store, engine, source(1, dedup=dedup))
    await save(store, engine, source(2, dedup=dedup))
    await rollout(engine, 2, 10)
    engine.add_playbook(loaded(registry, source(1, dedup=dedup)))
    await engine.start()
    return engine


async def test_a_canary_at_10_percent_takes_about_10_percent_the_same_alerts_each_time() -> None:
    chosen: list[set[str]] = []
    for _ in range(2):  # two engines on two stores: the routing depends on the alert alone
        effects = Effects()
        engine = await canary_engine(effects)
        try:
            for n in range(1000):
                await engine.submit_alert(an_alert(n))
            await engine.wait_idle()
            routed = await versions_by_alert(engine.store)
        finally:
            await engine.stop()
        assert len(routed) == 1000
        assert all(len(v) == 1 for v in routed.values())  # one live run per alert
        canary = {a for a, v in routed.items() if v == {(2, False)}}
        assert 60 <= len(canary) <= 140, len(canary)
        assert sum(1 for n in effects.by_name if n.startswith("v2 ")) == len(canary)
        chosen.append(canary)
    assert chosen[0] == chosen[1]


async def test_alerts_with_one_dedup_key_go_to_one_version(effects: Effects) -> None:
    engine = await canary_engine(effects, dedup=True)
    try:
        for n in range(300):
            await engine.submit_alert(an_alert(n, user=f"user-{n % 30}"))
        await engine.wait_idle()
        runs = await engine.store.list_runs(RunFilter(limit=1000))
    finally:
        await engine.stop()
    by_user: dict[str, set[int]] = {}
    for run in runs:
        assert isinstance(run.alert, dict)
        by_user.setdefault(str(run.alert["users"][0]["name"]), set()).add(run.playbook_version)
    assert len(by_user) == 30
    assert all(len(v) == 1 for v in by_user.values())


async def test_a_dry_run_version_runs_beside_the_live_one_without_effects(
    effects: Effects,
) -> None:
    registry = Registry.of([core, effect_connector(effects)])
    store = MemoryStore()
    engine = Engine(store, registry, [loaded(registry, source(1))], clock=FakeClock())
    await save(store, engine, source(1))
    await save(store, engine, source(2))
    await rollout(engine, 2, 100, "dry_run")
    await engine.start()
    try:
        first = await engine.submit_alert(an_alert(1), origin="kafka:alerts/0@7#0")
        again = await engine.submit_alert(an_alert(1), origin="kafka:alerts/0@7#0")
        await engine.wait_idle()
        routed = await versions_by_alert(store)
        shadow = await store.load_run(first[1])
    finally:
        await engine.stop()
    assert routed == {"alert-1": {(1, False), (2, True)}}
    assert len(first) == 2
    assert again == first  # redelivered: both runs found, none started twice
    assert list(effects.by_name) == ["v1 alert-1"]
    assert shadow is not None
    assert shadow.run.dry_run
    assert shadow.run.status.value == "completed"


async def test_promote_then_rollback(effects: Effects) -> None:
    engine = await canary_engine(effects)
    try:
        await rollout(engine, 2, 100)
        assert await engine.refresh_rollouts()
        assert engine.playbooks["contain"].playbook.version == 2
        for n in range(50):
            await engine.submit_alert(an_alert(n))
        await roll_back(
            engine.store, engine.evidence, playbook_id="contain", actor=ALICE, at=engine.clock.now()
        )
        assert await engine.refresh_rollouts()
        assert engine.playbooks["contain"].playbook.version == 1
        for n in range(50, 100):
            await engine.submit_alert(an_alert(n))
        await engine.wait_idle()
        routed = await versions_by_alert(engine.store)
    finally:
        await engine.stop()
    assert {a for a, v in routed.items() if v == {(2, False)}} == {f"alert-{n}" for n in range(50)}
    assert {a for a, v in routed.items() if v == {(1, False)}} == {
        f"alert-{n}" for n in range(50, 100)
    }
    kinds = Counter(r.event.kind.value for r in await engine.store.query_audit(AuditFilter()))
    assert kinds["playbook.rolled_out"] == 1 + 1 + 2 + 2  # v1 first, v2 canary, promote, back


async def test_a_canary_withdrawn_sends_its_alerts_back_to_the_stable_version(
    effects: Effects,
) -> None:
    engine = await canary_engine(effects)
    try:
        await roll_back(
            engine.store, engine.evidence, playbook_id="contain", actor=ALICE, at=engine.clock.now()
        )
        await engine.refresh_rollouts()
        for n in range(200):
            await engine.submit_alert(an_alert(n))
        await engine.wait_idle()
        routed = await versions_by_alert(engine.store)
    finally:
        await engine.stop()
    assert set().union(*routed.values()) == {(1, False)}


async def test_a_worker_follows_a_rollout_written_by_another_process(
    effects: Effects, tmp_path: Path
) -> None:
    registry = Registry.of([core, effect_connector(effects)])
    url = f"sqlite:///{tmp_path / 'soar.db'}"
    async with open_store(url) as store, open_store(url) as elsewhere:
        engine = Engine(
            store, registry, [loaded(registry, source(1))], clock=FakeClock(), rollout_interval=0.02
        )
        operator = Engine(elsewhere, registry, [], clock=FakeClock())
        await save(elsewhere, operator, source(1))
        await engine.start()
        try:
            await save(elsewhere, operator, source(2))  # another process: its own writer
            await rollout(operator, 2, 100)
            for _ in range(250):
                if engine.playbooks["contain"].playbook.version == 2:
                    break
                await asyncio.sleep(0.02)
            assert engine.playbooks["contain"].playbook.version == 2
            (run_id,) = await engine.submit_alert(an_alert(1))
            run = await engine.wait_run(run_id)
        finally:
            await engine.stop()
    assert run.playbook_version == 2
    assert list(effects.by_name) == ["v2 alert-1"]


async def test_a_run_resumes_on_its_stored_version_after_a_restart(effects: Effects) -> None:
    registry = Registry.of([core, effect_connector(effects)])
    store = MemoryStore()
    first = Engine(store, registry, [], clock=FakeClock())
    waiting = source(2, extra="  - {id: ask, approval: {group: leads, timeout: 1h}}\n")
    await save(store, first, source(1))
    await save(store, first, waiting)
    await rollout(first, 2, 100)
    first.add_playbook(loaded(registry, source(1)))
    await first.start()
    (run_id,) = await first.submit_alert(an_alert(1))
    await first.stop()
    # restarted with only the v1 file: v2 comes from the store, the run goes on with it
    again = Engine(store, registry, [loaded(registry, source(1))], clock=FakeClock())
    await again.start()
    try:
        assert run_id in again.executors
        await again.decide(run_id, "ask", approved=True, by="lead")
        run = await again.wait_run(run_id)
    finally:
        await again.stop()
    assert (run.playbook_version, run.status.value) == (2, "completed")


async def test_files_become_versions_and_a_newer_file_is_promoted(
    effects: Effects, tmp_path: Path
) -> None:
    registry = Registry.of([core, effect_connector(effects)])
    store = MemoryStore()
    path = tmp_path / "contain.yaml"

    async def start_with(text: str) -> Engine:
        path.write_text(text)
        engine = Engine(
            store, registry, [loaded(registry, text, str(path))], clock=FakeClock(), save_files=True
        )
        await engine.start()
        await engine.stop()
        return engine

    await start_with(source(1))
    await start_with(source(1))  # the same file again: nothing new
    engine = await start_with(source(2))
    await start_with(source(2, extra="# edited without raising version\n"))
    saved = await store.playbook_versions("contain")
    assert [(v.version, v.author) for v in saved] == [(1, f"file:{path}"), (2, f"file:{path}")]
    assert [(r.version, r.share) for r in await store.rollouts("contain")] == [
        (1, 100),
        (2, 100),
        (1, 0),
    ]
    assert engine.playbooks["contain"].playbook.version == 2
    records = await store.query_audit(AuditFilter())
    kinds = [r.event.kind.value for r in records]
    assert kinds == [
        "playbook.created",
        "playbook.rolled_out",
        "playbook.changed",
        "playbook.rolled_out",
        "playbook.rolled_out",
    ]
    assert json.loads(records[2].event.body)["previous_version"] == 1


async def test_an_engine_without_stored_versions_starts_what_it_was_given(
    effects: Effects,
) -> None:
    registry = Registry.of([core, effect_connector(effects)])
    store = MemoryStore()
    engine = Engine(store, registry, [loaded(registry, source(3))], clock=FakeClock())
    await engine.start()
    try:
        (run_id,) = await engine.submit_alert(an_alert(1))
        run = await engine.wait_run(run_id)
    finally:
        await engine.stop()
    assert run.playbook_version == 3
    assert await store.playbook_versions() == []
    assert await store.query_audit(AuditFilter(kind="playbook.created")) == []
