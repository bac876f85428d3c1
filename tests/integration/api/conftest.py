"""The API over a real engine on a SQLite store, with a connector that holds a canary secret,
a playbook that waits for an approval before it acts, and one token per role."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import BaseModel

from soar.api.testing import ApiUnderTest, running_api
from soar.connectors import ActionContext, Connector, Registry
from soar.connectors.core import core
from soar.engine import Engine
from soar.playbook.catalog import find_playbook_files, validate_files
from soar.store import open_store

CANARY = "canary-api-5d1e9b"

GATED = """\
id: gated
name: Isolate after a lead approves
version: 1
trigger:
  match: alert.severity >= "high"
steps:
  - id: ask
    approval:
      group: soc-leads
      message: "Isolate {{ alert.hosts[0].name }}?"
      timeout: 1h
  - id: isolate
    when: steps.ask.output.approved
    action: lab.isolate
    with: { host: "{{ alert.hosts[0].name }}" }
    compensate: { action: lab.release, with: { host: "{{ alert.hosts[0].name }}" } }
"""

QUICK = """\
id: quick
name: Note every low alert
version: 1
trigger:
  match: alert.severity == "low"
steps:
  - id: note
    action: lab.isolate
    with: { host: "{{ alert.title }}" }
"""


class Host(BaseModel):
    host: str


class Done(BaseModel):
    host: str
    token_tail: str


def lab_connector(effects: list[str]) -> Connector:
    lab = Connector("lab", doc="records what it was asked to do")

    @lab.action(idempotent=True, secrets=["token"], compensate="lab.release")
    async def isolate(ctx: ActionContext, params: Host) -> Done:
        """Isolate a host (recorded)."""
        effects.append(f"isolate {params.host}")
        # an output that carries the secret: the API must never show it
        return Done(host=params.host, token_tail=ctx.secrets["token"])

    @lab.action(idempotent=True, secrets=["token"])
    async def release(ctx: ActionContext, params: Host) -> Done:
        """Release a host (recorded)."""
        effects.append(f"release {params.host}")
        return Done(host=params.host, token_tail="")

    return lab


def write_playbooks(root: Path) -> Path:
    for name, text in (("gated", GATED), ("quick", QUICK)):
        (root / name).mkdir(parents=True)
        (root / name / "playbook.yaml").write_text(text)
    return root


@pytest.fixture
def playbooks_dir(tmp_path: Path) -> Path:
    return write_playbooks(tmp_path / "playbooks")


@pytest.fixture
def effects() -> list[str]:
    return []


@pytest.fixture
async def api(
    tmp_path: Path, playbooks_dir: Path, effects: list[str]
) -> AsyncIterator[ApiUnderTest]:
    async with api_over(tmp_path, playbooks_dir, effects) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ApiUnderTest]:
    """One API for a whole module of read-mostly tests (the role matrix)."""
    root = tmp_path_factory.mktemp("api")
    async with api_over(root, write_playbooks(root / "playbooks"), []) as running:
        yield running


@contextlib.asynccontextmanager
async def api_over(
    tmp_path: Path, playbooks_dir: Path, effects: list[str]
) -> AsyncIterator[ApiUnderTest]:
    registry = Registry.of([core, lab_connector(effects)])
    files, _ = find_playbook_files([playbooks_dir])
    loaded = [r.loaded for r in validate_files(files, registry=registry) if r.loaded is not None]
    assert len(loaded) == 2
    async with open_store(f"sqlite:///{tmp_path / 'soar.db'}") as store:
        engine = Engine(store, registry, loaded, secrets={"lab.token": CANARY}, lease_ttl=5)
        await engine.start()
        try:
            async with running_api(engine, registry, playbooks_dir=playbooks_dir) as running:
                yield running
        finally:
            await engine.stop()
