"""`soar runs abort` on a run that another, live worker drives: the abort goes through the run's
inbox, that worker carries it out, and the command reports the run aborted."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from soar.connectors import Registry
from soar.connectors.core import core
from soar.engine import Engine
from soar.models.run import RunStatus
from soar.playbook.validate import validate_text
from soar.store import open_store

pytestmark = pytest.mark.slow

WAITING = """\
id: waits
name: Waits for a lead
trigger: {manual: true}
steps:
  - id: ask
    approval: {group: leads, timeout: 1h}
  - id: after
    action: core.log
    with: {message: approved}
"""


async def test_an_abort_from_the_cli_reaches_the_worker_driving_the_run(tmp_path: Path) -> None:
    registry = Registry.of([core])
    loaded = validate_text(WAITING, file="waits.yaml", registry=registry).loaded
    assert loaded is not None
    url = f"sqlite:///{tmp_path / 'soar.db'}"
    async with open_store(url) as store:
        worker = Engine(store, registry, [loaded], worker="live", lease_ttl=30)
        await worker.start()
        try:
            run_id = await worker.start_run(loaded)
            for _ in range(200):
                if "ask" in worker.executors[run_id].states:
                    break
                await asyncio.sleep(0.01)
            env = {**os.environ, "SOAR_STORE": url, "SOAR_PLAYBOOKS": str(tmp_path / "none")}
            command = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("soar")),
                "runs",
                "abort",
                run_id,
                "--reason",
                "false positive",
                env=env,
                cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(command.communicate(), 60)
            assert command.returncode == 0, err.decode()
            assert out.decode().strip() == f"run {run_id}: aborted"
            run = await asyncio.wait_for(worker.wait_run(run_id), 10)
            assert run.status is RunStatus.ABORTED
        finally:
            await worker.stop()
