"""`/events` tells the console of every run that moves: the API process's own runs as their
transitions are written, and runs another worker drives as the store shows them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from soar.api.auth import Role
from soar.api.testing import ApiUnderTest
from soar.connectors import Registry
from soar.connectors.core import core
from soar.engine import Engine
from soar.ingest.normalize import normalize
from soar.playbook.catalog import find_playbook_files, validate_files
from soar.store import open_store
from tests.integration.api.conftest import lab_connector

LOW = {"id": "e-1", "title": "note me", "severity": "low", "time": 1748848132979}


async def events_of(api: ApiUnderTest, wanted: int) -> list[dict[str, object]]:
    """The first `wanted` run events on a fresh stream (at most 10 s)."""
    found: list[dict[str, object]] = []
    async with (
        aiohttp.ClientSession() as http,
        http.get(api.url + "/api/v1/events", headers=api.headers(Role.AUDITOR)) as response,
    ):
        assert response.headers["Content-Type"] == "text/event-stream"
        async with asyncio.timeout(10):
            async for raw in response.content:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    found.append(json.loads(line.removeprefix("data: ")))
                    if len(found) >= wanted:
                        break
    return found


async def test_the_api_s_own_runs_stream_their_transitions(api: ApiUnderTest) -> None:
    listening = asyncio.create_task(events_of(api, 3))
    await asyncio.sleep(0.2)
    async with aiohttp.ClientSession() as http:
        url = api.url + "/api/v1/alerts"
        async with http.post(url, json=LOW, headers=api.headers(Role.INGEST)) as response:
            assert response.status == 202
            (run_id,) = (await response.json())["accepted"][0]["runs"]
    events = await listening
    assert {e["run_id"] for e in events} == {run_id}
    assert any(e["step"] == "note" for e in events)


async def test_runs_of_another_worker_reach_the_stream(
    api: ApiUnderTest, tmp_path: Path, playbooks_dir: Path
) -> None:
    registry = Registry.of([core, lab_connector([])])
    files, _ = find_playbook_files([playbooks_dir])
    loaded = [r.loaded for r in validate_files(files, registry=registry) if r.loaded is not None]
    listening = asyncio.create_task(events_of(api, 1))
    await asyncio.sleep(1.5)  # the watcher has seen the store as it was
    async with open_store(f"sqlite:///{tmp_path / 'soar.db'}") as store:
        other = Engine(store, registry, loaded, secrets={"lab.token": "x"}, worker="other")
        (alert,) = normalize(json.dumps(LOW))
        (run_id,) = await other.submit_alert(alert)
        await other.wait_run(run_id)
        await other.stop()
    (event,) = await listening
    assert (event["run_id"], event["kind"]) == (run_id, "run_updated")
