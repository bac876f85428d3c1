"""`soar lab` as a newcomer runs it, in a subprocess: it starts the whole system, the shipped
sample alerts become runs that end or wait for a person, the printed URL serves the console,
and when it stops (by itself with --once, or on Ctrl-C) no process it started is left."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from soar.ingest.normalize import normalize
from tests.servers import unavailable

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]


def shipped_alerts() -> int:
    """How many alerts the shipped sample files hold."""
    return sum(len(normalize(f.read_bytes())) for f in ROOT.glob("playbooks/*/alerts/*.json"))


STOP_WITHIN_S = 15.0

LDAP_PLAYBOOK = """\
id: lab-directory-lookup
name: Look the targeted account up in the directory
trigger:
  match: alert.category == "credential_access"
steps:
  - id: user
    action: ldap.get_user
    with: {username: "{{ alert.users[0].name }}"}
  - id: note
    action: core.log
    with: {message: "{{ steps.user.output.dn }}"}
"""
LDAP_SAMPLE = {
    "id": "lab-test-1",
    "source": "lab-test",
    "title": "Password spraying against alice",
    "severity": "medium",
    "category": "credential_access",
    "time": "2026-11-29T10:00:00Z",
    "users": [{"name": "alice"}],
}


def start_lab(args: list[str], cwd: Path, out: Path) -> subprocess.Popen[bytes]:
    """`soar lab ARGS` from `cwd`, in a session of its own (its id is the lab's pid, and every
    process it starts without a session of its own shares it), output to `out`."""
    with out.open("wb") as log:
        return subprocess.Popen(  # noqa: S603 - this interpreter, our own CLI
            [sys.executable, "-c", "from soar.cli.main import main; main()", "lab", *args],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def printed_processes(output: str) -> dict[str, int]:
    """The child processes the lab names: `  processes   tansu 12, slapd 34, sqlite writer 56`."""
    found = re.search(r"^  processes   (.*)$", output, re.MULTILINE)
    assert found, output
    pairs = [part.rsplit(" ", 1) for part in found.group(1).split(", ") if part != "none"]
    return {name: int(pid) for name, pid in pairs}


def left_behind(lab_pid: int, directory: Path, pids: dict[str, int]) -> list[str]:
    """Live processes the lab started: in its session, running from or naming `directory`,
    or named by it. Read from /proc, so nothing beyond the standard library is needed."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, session = fields[0], int(fields[3])
        if state == "Z":
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        if (
            session == lab_pid
            or str(directory) in cmdline
            or cwd.startswith(str(directory))
            or pid in pids.values()
        ):
            found.append(f"{pid}: {cmdline}")
    return found


def settled_runs(database: Path) -> dict[str, tuple[str, str, int]]:
    db = sqlite3.connect(database)
    try:
        rows = db.execute("SELECT id, playbook_id, status, dry_run FROM runs").fetchall()
    finally:
        db.close()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def expected_runs(output: str) -> int:
    """How many runs the lab's check says the samples start (`starts: a, b` lines)."""
    total = 0
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("starts:") and line != "starts: no playbook":
            total += len(line.removeprefix("starts:").split(","))
    return total


def require_servers(output: str) -> None:
    """Under SOAR_REQUIRE_SERVERS=1 (CI) the lab must have had its broker and directory."""
    if os.environ.get("SOAR_REQUIRE_SERVERS") == "1":
        started = printed_processes(output)
        assert "tansu" in started, output
        assert "slapd" in started, output


def test_lab_once_runs_the_samples_and_leaves_nothing_behind(tmp_path: Path) -> None:
    work = tmp_path / "lab"
    out = tmp_path / "lab.out"
    lab = start_lab(
        ["--once", "--dir", str(work), "--rate", "4", "--resolve-after", "1"], tmp_path, out
    )
    try:
        status = lab.wait(timeout=180)
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
    output = out.read_text()
    assert status == 0, output
    require_servers(output)
    assert "0 with problems" in output
    assert "0 rejected" in output
    console = re.search(r"console +(http://127\.0\.0\.1:\d+/console/)", output)
    assert console, output
    assert "checked: GET /console/ -> 200, GET /api/v1/runs with the token -> 200" in output

    summary = re.search(
        r"lab summary: alerts=(\d+) runs=(\d+) completed=(\d+) "
        r"waiting_for_approval=(\d+) other=(\d+) failed=(\d+)",
        output,
    )
    assert summary, output
    alerts, runs, completed, waiting, other, failed = map(int, summary.groups())
    assert alerts == shipped_alerts()  # each sample once (an OCSF batch counts its elements)
    assert runs == expected_runs(output) > 0
    assert completed + waiting == runs
    assert other == failed == 0
    recorded = settled_runs(work / "soar.db")
    assert len(recorded) == runs
    assert {status for _, status, _ in recorded.values()} <= {"completed", "running", "waiting"}
    assert sum(1 for _, s, _ in recorded.values() if s == "completed") == completed

    assert left_behind(lab.pid, work, printed_processes(output)) == []


def test_ctrl_c_stops_a_running_lab_within_seconds_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    work = tmp_path / "lab"
    out = tmp_path / "lab.out"
    lab = start_lab(["--dir", str(work), "--rate", "5", "--resolve-after", "1"], tmp_path, out)
    try:
        deadline = time.monotonic() + 90
        while " completed after " not in out.read_text():
            assert lab.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        output = out.read_text()
        url = re.search(r"console +(http://127\.0\.0\.1:\d+)/console/", output)
        assert url, output
        with urllib.request.urlopen(f"{url.group(1)}/console/", timeout=5) as page:  # noqa: S310
            assert page.status == 200
            assert b"soar console" in page.read()
        token = (work / "admin-token").read_text().strip()
        assert token in output
        request = urllib.request.Request(  # noqa: S310 - the lab's loopback URL
            f"{url.group(1)}/api/v1/runs", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            listed = json.load(answer)
        assert any(run["status"] == "completed" for run in listed["runs"]), listed

        started = time.monotonic()
        os.killpg(lab.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        status = lab.wait(timeout=STOP_WITHIN_S)
        took = time.monotonic() - started
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
    output = out.read_text()
    assert status == 0, output
    assert took < STOP_WITHIN_S
    assert "stopping the lab" in output
    assert "Traceback" not in output
    require_servers(output)
    assert left_behind(lab.pid, work, printed_processes(output)) == []


@pytest.mark.parametrize("directory", ["slapd", "none"])
def test_ldap_steps_reach_the_lab_directory_or_run_dry_without_one(
    tmp_path: Path, directory: str
) -> None:
    if directory == "slapd" and not Path("/usr/sbin/slapd").exists():
        unavailable("OpenLDAP slapd is not installed (.ci/install-ldap)")
    playbooks = tmp_path / "playbooks"
    (playbooks / "lab-directory-lookup" / "alerts").mkdir(parents=True)
    (playbooks / "lab-directory-lookup" / "playbook.yaml").write_text(LDAP_PLAYBOOK)
    sample = playbooks / "lab-directory-lookup" / "alerts" / "spraying.json"
    sample.write_text(json.dumps(LDAP_SAMPLE))
    work = tmp_path / "lab"
    out = tmp_path / "lab.out"
    args = ["--once", "--dir", str(work), "--rate", "4", "--playbooks", str(playbooks)]
    lab = start_lab([*args, *(["--no-ldap"] if directory == "none" else [])], tmp_path, out)
    try:
        status = lab.wait(timeout=120)
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
    output = out.read_text()
    assert status == 0, output
    ((run_id, (_, run_status, dry_run)),) = settled_runs(work / "soar.db").items()
    db = sqlite3.connect(work / "soar.db")
    try:
        (output_json,) = db.execute(
            "SELECT output FROM steps WHERE run_id = ? AND key = 'user'", (run_id,)
        ).fetchone()
    finally:
        db.close()
    found = json.loads(output_json)
    assert run_status == "completed"
    if directory == "slapd":
        assert dry_run == 0
        assert found["dn"] == "uid=alice,ou=people,dc=example,dc=org"
        assert "directory (OpenLDAP slapd)" in output
    else:
        assert dry_run == 1  # planned, not carried out: the console tags it "dry run"
        assert found["dn"] == "<steps.user.output.dn>"
        assert "no server   ldap" in output
        assert "runs of lab-directory-lookup are dry runs" in output
    assert left_behind(lab.pid, work, printed_processes(output)) == []
