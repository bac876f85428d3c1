"""`verify_export` names the first bad record and the kind of tampering, including the ones
only a signed checkpoint can catch (a rewritten chain, a cut tail) and bad keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from soar.audit.canonical import canonical
from soar.audit.keys import Keyring, checkpoint_line, load_public_keys
from soar.audit.merkle import CompactRange
from soar.audit.verify import ProblemKind, verify_export
from soar.models.audit import ZERO_HASH, AuditEvent, AuditKind, seal
from tests.unit.audit_log.test_independent_checker import an_export

NOW = datetime(2026, 11, 28, 13, tzinfo=UTC)


def keys_of(keyring: Keyring) -> dict[str, object]:
    return dict(load_public_keys(keyring.public_pem()))


def test_an_untouched_export_verifies(tmp_path: Path) -> None:
    lines, keyring = an_export(tmp_path)
    report = verify_export(lines, keys_of(keyring))  # type: ignore[arg-type]
    assert (report.ok, report.records, report.checkpoints, report.last_checkpoint) == (
        True,
        37,
        2,
        37,
    )


def rewritten(lines: list[str], keyring: Keyring | None, at: int) -> list[str]:
    """The records re-sealed after changing record `at`: every hash and link is consistent."""
    events = []
    for line in lines:
        item = json.loads(line)
        if item["type"] != "record":
            continue
        body = item["body"]
        if item["seq"] == at:
            body = {**body, "actor": "mallory"}
        events.append(
            AuditEvent(kind=AuditKind.STEP_FINISHED, time=NOW, actor="x", body=canonical(body))
        )
    out = [r.line() for r in seal(events, (0, ZERO_HASH))]
    checkpoints = [line for line in lines if '"type":"checkpoint"' in line]
    if keyring is not None:
        tree = CompactRange()
        for line in out:
            tree.append(bytes.fromhex(json.loads(line)["hash"]))
        body = {
            "log": "soar",
            "tree_size": len(out),
            "root": tree.root().hex(),
            "head": json.loads(out[-1])["hash"],
            "time": "2026-11-28T13:00:00.000000Z",
        }
        checkpoints = [checkpoint_line(body, keyring)]
    return out + checkpoints


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(tmp_path: Path) -> None:
    lines, keyring = an_export(tmp_path)
    forged = rewritten(lines, None, at=20)
    report = verify_export(forged, keys_of(keyring))  # type: ignore[arg-type]
    assert report.problem is not None
    assert report.problem.kind is ProblemKind.ROOT_MISMATCH
    assert "records 14..37" in report.problem.message  # the checkpoint at 13 still holds
    assert report.problem.seq == 14


def test_a_rewritten_chain_signed_by_another_key_is_an_unknown_key(tmp_path: Path) -> None:
    lines, keyring = an_export(tmp_path)
    rogue = Keyring.create(tmp_path / "rogue")
    report = verify_export(rewritten(lines, rogue, at=20), keys_of(keyring))  # type: ignore[arg-type]
    assert report.problem is not None
    assert report.problem.kind is ProblemKind.UNKNOWN_KEY


def test_the_published_checkpoints_catch_a_cut_tail_whose_checkpoints_were_removed(
    tmp_path: Path,
) -> None:
    lines, keyring = an_export(tmp_path)
    published = [line for line in lines if '"type":"checkpoint"' in line]
    records = [line for line in lines if '"type":"record"' in line][:30]
    assert verify_export(records, keys_of(keyring)).ok  # type: ignore[arg-type]
    report = verify_export(records, keys_of(keyring), external=published)  # type: ignore[arg-type]
    assert report.problem is not None
    assert report.problem.kind is ProblemKind.TRUNCATED
    assert report.problem.seq == 31


@pytest.mark.parametrize(
    ("damage", "kind", "seq"),
    [
        ("signature", ProblemKind.BAD_SIGNATURE, None),
        ("not json", ProblemKind.MALFORMED, None),
        ("duplicate", ProblemKind.INSERTED, 5),
    ],
)
def test_other_damage_is_named(
    tmp_path: Path, damage: str, kind: ProblemKind, seq: int | None
) -> None:
    lines, keyring = an_export(tmp_path)
    if damage == "signature":
        index = next(i for i, line in enumerate(lines) if '"type":"checkpoint"' in line)
        item = json.loads(lines[index])
        item["signature"] = item["signature"][:-6] + "AAAAA="
        lines[index] = json.dumps(item)
    elif damage == "not json":
        lines.insert(3, "{oops")
    else:
        lines.insert(5, lines[4])
    report = verify_export(lines, keys_of(keyring))  # type: ignore[arg-type]
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == (kind, seq)
