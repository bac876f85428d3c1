"""`soar bench audit`: how fast the log takes records (chain and tree), how fast an export
verifies, how big proofs are — beside raw SHA-256 and Ed25519 rates on the same machine."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from soar.audit.canonical import canonical
from soar.audit.export import export_lines
from soar.audit.keys import Keyring, load_public_keys
from soar.audit.merkle import CompactRange
from soar.audit.proofs import prove_consistency, prove_inclusion
from soar.audit.verify import verify_export
from soar.engine.checkpointer import Checkpointer
from soar.models.audit import AuditEvent, AuditKind
from soar.store.base import Change
from soar.store.sqlite import SqliteStore


@dataclass(frozen=True, slots=True)
class AuditFigures:
    records: int
    append_per_s: float
    tree_per_s: float
    checkpoint_ms: float
    verify_per_s: float
    inclusion_proof_bytes: int
    consistency_proof_bytes: int
    raw_sha256_per_s: float
    raw_sign_per_s: float
    raw_verify_per_s: float
    entry_bytes: int


def _event(n: int, now: datetime) -> AuditEvent:
    body = {
        "kind": "step.finished",
        "time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": "engine",
        "run_id": f"{n // 10:032x}",
        "playbook": "compromised-account",
        "version": 3,
        "step": "disable-account",
        "action": "ldap.disable_account",
        "target": {"kind": "user", "value": f"user{n}@corp.example"},
        "attempt": 1,
        "outcome": "succeeded",
        "output_digest": "sha256:" + hashlib.sha256(str(n).encode()).hexdigest(),
        "trace_id": f"{n:032x}",
    }
    return AuditEvent(
        kind=AuditKind.STEP_FINISHED,
        time=now,
        actor="engine",
        body=canonical(body),
        run_id=str(body["run_id"]),
        step="disable-account",
        action="ldap.disable_account",
        target=f"user{n}@corp.example",
    )


async def measure_audit(directory: Path, *, records: int, per_change: int = 10) -> AuditFigures:
    """Append `records` records in changes of `per_change` (64 changes in flight), sign a
    checkpoint, export, verify, and prove, all in `directory`."""
    now = datetime.now(UTC)
    events = [_event(n, now) for n in range(records)]
    store = await SqliteStore.open(directory / "audit.db")
    try:
        limit = asyncio.Semaphore(64)

        async def append(chunk: list[AuditEvent]) -> None:
            async with limit:
                await store.apply(Change(audit=chunk))

        began = time.perf_counter()
        await asyncio.gather(
            *(append(events[i : i + per_change]) for i in range(0, records, per_change))
        )
        append_seconds = time.perf_counter() - began
        keyring = Keyring.create(directory / "keys")
        checkpointer = Checkpointer(store, keyring)
        began = time.perf_counter()
        await checkpointer.checkpoint()
        checkpoint_seconds = time.perf_counter() - began
        export = directory / "audit.jsonl"
        with export.open("w", encoding="utf-8") as out:
            async for line in export_lines(store):
                out.write(line + "\n")
    finally:
        await store.close()
    keys = load_public_keys(keyring.public_pem())
    began = time.perf_counter()
    with export.open(encoding="utf-8") as lines:
        report = verify_export(lines, keys)
    verify_seconds = time.perf_counter() - began
    if not report.ok:
        raise AssertionError(f"the benchmark's own export does not verify: {report.problem}")
    text = export.read_text(encoding="utf-8").splitlines()
    inclusion = prove_inclusion(text, max(records // 2, 1))
    consistency = prove_consistency(text, max(records // 2, 1), records)
    tree = CompactRange()
    leaves = [os.urandom(32) for _ in range(min(records, 100_000))]
    began = time.perf_counter()
    for leaf in leaves:
        tree.append(leaf)
    tree.root()
    tree_seconds = time.perf_counter() - began
    sign_rate, verify_rate = _ed25519_rates()
    entry_size = sum(len(e.body) for e in events[:100]) // min(records, 100) + 100
    return AuditFigures(
        records=records,
        append_per_s=records / append_seconds,
        tree_per_s=len(leaves) / tree_seconds,
        checkpoint_ms=checkpoint_seconds * 1000,
        verify_per_s=records / verify_seconds,
        inclusion_proof_bytes=len(json.dumps(inclusion.get("path", []))),
        consistency_proof_bytes=len(json.dumps(consistency.get("path", []))),
        raw_sha256_per_s=_sha256_rate(entry_size),
        raw_sign_per_s=sign_rate,
        raw_verify_per_s=verify_rate,
        entry_bytes=entry_size,
    )


def _sha256_rate(size: int, seconds: float = 0.5) -> float:
    data = os.urandom(size)
    count = 0
    began = time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        for _ in range(1000):
            hashlib.sha256(data).digest()
        count += 1000
    return count / elapsed


def _ed25519_rates(count: int = 2000) -> tuple[float, float]:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    message = os.urandom(200)
    began = time.perf_counter()
    signatures = [key.sign(message) for _ in range(count)]
    signed = time.perf_counter() - began
    began = time.perf_counter()
    for signature in signatures:
        public.verify(signature, message)
    verified = time.perf_counter() - began
    return count / signed, count / verified
