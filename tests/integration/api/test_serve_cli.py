"""`soar serve` and `soar tokens` as an operator runs them: a token made on the command line opens
the API the server logs, an alert posted there becomes a run, and SIGTERM ends it with exit 0."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PLAYBOOK = """\
id: note-every-alert
name: Note every alert
trigger: {match: 'true'}
steps:
  - {id: note, action: core.log, with: {message: "{{ alert.title }}"}}
"""
SOAR = str(Path(sys.executable).with_name("soar"))  # the installed command
ALERT = {"id": "cli-1", "title": "from curl", "severity": "low", "time": 1748848132979}


def soar(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [SOAR, *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)  # noqa: S603


def request(url: str, token: str, body: object = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    sent = urllib.request.Request(url, data=data, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    if data is not None:
        sent.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(sent, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_answers_with_a_token_from_the_cli_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "playbooks" / "note").mkdir(parents=True)
    (tmp_path / "playbooks" / "note" / "playbook.yaml").write_text(PLAYBOOK)
    env = {
        **os.environ,
        "SOAR_STORE": f"sqlite:///{tmp_path / 'soar.db'}",
        "SOAR_PLAYBOOKS": str(tmp_path / "playbooks"),
        "SOAR_AUDIT__KEYS": str(tmp_path / "keys"),
        "SOAR_API__PORT": "0",
    }
    made = soar(
        "tokens", "create", "--name", "ops", "--role", "admin", "--json", env=env, cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    assert token not in soar("tokens", "list", env=env, cwd=tmp_path).stdout
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(  # noqa: S603 - our own command
            [SOAR, "serve"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            url = None
            for _ in range(200):
                found = re.search(r"API on (http://\S+)/api/v1", log.read_text())
                if found:
                    url = found.group(1)
                    break
                assert server.poll() is None, log.read_text()
                time.sleep(0.05)
            assert url is not None, log.read_text()
            assert request(url + "/api/v1/runs", "soar_wrong_wrong_wrong_wrong")[0] == 401
            status, body = request(url + "/api/v1/alerts", token, ALERT)
            assert status == 202, body
            (run_id,) = body["accepted"][0]["runs"]  # type: ignore[index]
            for _ in range(100):
                status, detail = request(f"{url}/api/v1/runs/{run_id}", token)
                if detail["run"]["status"] == "completed":  # type: ignore[index]
                    break
                time.sleep(0.05)
            assert detail["run"]["status"] == "completed"  # type: ignore[index]
            with urllib.request.urlopen(url + "/metrics", timeout=10) as response:  # noqa: S310
                exposition = response.read().decode()
            assert 'soar_steps_total{outcome="succeeded",playbook="note-every-alert"' in exposition
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=20) == 0, log.read_text()
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
