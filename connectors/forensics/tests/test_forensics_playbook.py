"""An EDR collection stored as evidence by a playbook run through soar's engine."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from soar_edr import edr
from soar_edr.testing import FalconTestServer
from soar_forensics import forensics

from soar.connectors import Registry
from soar.connectors.core import core
from soar.engine import Engine, FakeClock
from soar.models.run import RunStatus
from soar.playbook.validate import validate_text
from soar.store.memory import MemoryStore

PLAYBOOK = """\
id: collect-evidence
name: Collect a file from a host as evidence
trigger: {manual: true}
steps:
  - id: grab
    action: edr.start_forensic_collection
    with: {host: web-01, path: "PATH"}
  - id: keep
    action: forensics.collect
    with:
      edr: "{{ steps.grab.output }}"
      description: "from {{ steps.grab.output.host }}"
  - id: sweep
    for_each: [web-01]
    action: forensics.collect
    with: {host: "{{ item }}", profile: triage}
"""


def read_json(path: str) -> dict[str, object]:
    loaded = json.loads(Path(path).read_text())
    assert isinstance(loaded, dict)
    return loaded


async def test_a_run_stores_the_collected_file_and_references_it(
    falcon: FalconTestServer, store_dir: Path, host_path: str, evil: bytes
) -> None:
    settings = falcon.settings
    engine = Engine(
        MemoryStore(),
        Registry.of([core, edr, forensics]),
        [],
        clock=FakeClock(),
        connector_settings={
            "edr": settings,
            "forensics": {
                "store_dir": str(store_dir),
                "edr_base_url": falcon.url,
                "profiles": {"triage": [host_path]},
            },
        },
        secrets={
            "edr.client_id": falcon.client_id,
            "edr.client_secret": falcon.client_secret,
            "forensics.edr_client_id": falcon.client_id,
            "forensics.edr_client_secret": falcon.client_secret,
        },
    )
    try:
        text = textwrap.dedent(PLAYBOOK).replace("PATH", host_path.replace("\\", "\\\\"))
        result = validate_text(text, file="p.yaml", registry=engine.registry)
        assert result.loaded is not None, [str(d) for d in result.diagnostics]
        engine.add_playbook(result.loaded)
        run_id = await engine.start_run(result.loaded)
        run = await engine.wait_run(run_id)
        assert run.status is RunStatus.COMPLETED, run
        snapshot = await engine.store.load_run(run_id)
        assert snapshot is not None
        output = snapshot.steps["keep"].output
        assert isinstance(output, dict)
        record = read_json(str(output["record"]))
        grabbed = snapshot.steps["grab"].output
        assert isinstance(grabbed, dict)
        assert record["sha256"] == output["sha256"] == grabbed["sha256"]
        swept = snapshot.steps["sweep[0]"].output
        assert isinstance(swept, dict)
        assert isinstance(swept["files"], list)
        assert [f["sha256"] for f in swept["files"]] == [grabbed["sha256"]]  # type: ignore[index,call-overload]
        assert record["collector"] == {
            "action": "forensics.collect",
            "run_id": run_id,
            "step": "keep",
            "idempotency_key": f"{run_id}:keep",
        }
        audit = repr(await engine.store.audit_records(0, 10_000))
        assert str(output["sha256"]) in audit  # the audit log references the evidence
        stored = repr(snapshot) + audit + repr(await engine.store.transitions(run_id))
        assert falcon.client_secret not in stored
    finally:
        await engine.stop()
