"""The SPEC §11 scenarios in the lab, for real: `soar lab --once --fire-cron` starts the monthly
server check at once, which asks the lab's real Prometheus (scraping a real node exporter) for
every server's figures and mails the report through the lab's SMTP server, which keeps every
mail it accepts in `<lab>/mail/`; the change-management sample runs its backup, apply and check
commands on the lab's real sshd."""

from __future__ import annotations

import email
import email.policy
import os
import signal
from pathlib import Path

import pytest

from tests.integration.lab.test_lab import left_behind, printed_processes, start_lab
from tests.servers import unavailable

pytestmark = pytest.mark.slow

PROMETHEUS = Path("/usr/bin/prometheus")
NODE_EXPORTER = Path("/usr/bin/prometheus-node-exporter")
SSHD = Path("/usr/sbin/sshd")


def _needs(*binaries: Path) -> None:
    missing = [str(b) for b in binaries if not b.exists()]
    if missing:
        unavailable(f"not installed: {', '.join(missing)}")


def test_the_fired_monthly_check_mails_a_report_read_back_from_the_lab_smtp_server(
    tmp_path: Path,
) -> None:
    _needs(PROMETHEUS, NODE_EXPORTER, SSHD)
    work = tmp_path / "lab"
    out = tmp_path / "lab.out"
    args = ["--once", "--fire-cron", "--dir", str(work), "--rate", "4", "--resolve-after", "1"]
    lab = start_lab(args, tmp_path, out)
    try:
        status = lab.wait(timeout=180)
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
    output = out.read_text()
    assert status == 0, output
    assert "fired the cron schedule of monthly-server-check (0 6 1 * *)" in output
    assert "failed=0" in output

    mails = [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted((work / "mail").glob("*.eml"))
    ]
    reports = [m for m in mails if str(m["Subject"]).startswith("Monthly server check ")]
    assert len(reports) == 1, [m["Subject"] for m in mails]
    report = reports[0]
    assert report["To"] == "infra-team@example.org, cio@example.org"
    assert "1 server(s)" in str(report["Subject"])
    body = report.get_body().get_content()  # type: ignore[union-attr]
    target = next(
        line.split()[-1]
        for line in output.splitlines()
        if "monitoring (Prometheus, node exporter)" in line
    )
    assert f"{target}: CPU " in body, body  # the node exporter's own figures
    assert "memory " in body
    assert "fullest disk " in body
    assert "Thresholds: CPU 90 %" in body

    # change management ran its allow-listed commands over ssh, in order
    commands = [line.split()[1] for line in (work / "ssh-commands.log").read_text().splitlines()]
    assert commands == ["backup", "apply", "check", "apply", "check"]
    assert left_behind(lab.pid, work, printed_processes(output)) == []
