"""deploy/compose.yaml's topology without Docker: Apache Kafka from the suite's jars, a throwaway
PostgreSQL, two `soar worker` processes and one `soar serve`, each started with the environment
its compose service gets (only hosts, ports, paths and fresh topic names substituted). Alerts go
in through Kafka and the API; each becomes exactly one completed run; traces reach an OTLP/HTTP
receiver standing in for the collector; SIGTERM stops every process with exit status 0."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import pytest
import yaml
from aiohttp import web
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

from tests.apache_kafka import ApacheKafka
from tests.integration.ingest.kafka_tools import TIME
from tests.postgres_server import PostgresServer

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

DEPLOY = Path(__file__).parents[3] / "deploy"
SOAR = Path(sys.executable).parent / "soar"
ALERTS = 20
UP_S = 60.0  # seconds for a process to answer, or for every run to finish
STOP_S = 45.0  # the compose stop_grace_period
PLAYBOOK = """\
id: deploy-check
name: One step on every alert
trigger: {match: 'true'}
steps:
  - id: note
    action: core.set
    with: {values: {title: "{{ alert.title }}"}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def image_command(service: str) -> list[str]:
    """The service's command after the image's entrypoint (`soar`), as this venv's soar."""
    command: list[str] = compose()["services"][service]["command"]
    return [str(SOAR), *command]


def interpolate(value: str) -> str:
    """Compose's `${VAR:?message}` and `${VAR:-default}` (the values that matter are replaced
    below anyway: the database password is the test server's)."""
    return re.sub(
        r"\$\{(\w+)(?::([?-])([^}]*))?\}",
        lambda m: m.group(3) if m.group(2) == "-" else f"stand-in-{m.group(1).lower()}",
        value,
    )


class Substitution:
    """What changes between a compose service's environment and this machine: the service
    hosts become loopback servers, ports free ones, container paths directories in tmp_path,
    the topic and group names fresh ones (the suite's broker is shared)."""

    def __init__(self, tmp_path: Path, *, store: str, bootstrap: str, otlp: str) -> None:
        self.root = tmp_path / "fs"
        self.store, self.bootstrap, self.otlp = store, bootstrap, otlp
        self.tag = uuid.uuid4().hex[:8]
        self.services = set(compose()["services"])

    def path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def env(self, service: str, **ports: int) -> dict[str, str]:
        raw = compose()["services"][service]["environment"]
        env = {name: interpolate(str(value)) for name, value in raw.items()}
        for name, value in env.items():
            env[name] = self._one(name, value, ports)
        leftover = {n: v for n, v in env.items() if self._names_a_service(v)}
        assert leftover == {}, (
            f"compose values this test does not know how to substitute: {leftover}"
        )
        return env

    def _one(self, name: str, value: str, ports: dict[str, int]) -> str:
        if name == "SOAR_STORE":
            assert urlsplit(value).hostname == "postgres"
            return self.store
        if name == "SOAR_KAFKA__BOOTSTRAP_SERVERS":
            assert value.split(":")[0] == "kafka"
            return self.bootstrap
        if name == "SOAR_TELEMETRY__OTLP_ENDPOINT":
            assert urlsplit(value).hostname == "otel-collector"
            return self.otlp + urlsplit(value).path
        if name == "SOAR_KAFKA__TOPICS":
            return json.dumps([self.topic(t) for t in json.loads(value)])
        if name in {"SOAR_KAFKA__DEAD_LETTER_TOPIC", "SOAR_KAFKA__GROUP"}:
            return self.topic(value)
        if name.endswith("__HOST") or name.endswith("_HOST"):
            return "127.0.0.1"  # 0.0.0.0 in a container; loopback only here
        if name == "SOAR_API__PORT":
            return str(ports["api"])
        if name == "SOAR_TELEMETRY__METRICS_PORT":
            return str(ports["metrics"])
        if value.startswith(("/etc/soar/", "/run/secrets/")):
            return str(self.path(value))
        return value

    def topic(self, name: str) -> str:
        return f"{name}-{self.tag}"

    def _names_a_service(self, value: str) -> bool:
        return any(re.search(rf"(//|@|^){re.escape(s)}[:/]", value) for s in self.services)


class Fleet:
    """The soar processes, each with its log."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SOAR_")}
        with (self.tmp_path / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(  # noqa: S603 - this venv's soar
                argv,
                env={**base, **env},
                cwd=self.tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{(self.tmp_path / f'{name}.log').read_text()[-3000:]}"
            for name in self.procs
        )

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited {proc.returncode}:\n{self.logs()}")

    def stop(self) -> dict[str, int | None]:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        deadline = time.monotonic() + STOP_S
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                codes[name] = None
        return codes

    def kill(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def soar_cli(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SOAR_")}
    done = subprocess.run(  # noqa: S603 - this venv's soar
        [str(SOAR), *argv],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"soar {' '.join(argv)}: {done.stderr}"
    return done.stdout


def prepare(env: dict[str, str], tmp_path: Path) -> None:
    """What an operator makes once before `docker compose up` (deploy/README.md): the
    playbooks, the secret-store key, the session key and the audit keyring."""
    playbooks = Path(env["SOAR_PLAYBOOKS"])
    playbooks.mkdir(parents=True)
    (playbooks / "deploy-check").mkdir()
    (playbooks / "deploy-check" / "playbook.yaml").write_text(PLAYBOOK)
    Path(env["SOAR_SECRETS__FILE"]).parent.mkdir(parents=True)
    key_file = Path(env["SOAR_SECRETS__KEY_FILE"])
    key_file.parent.mkdir(parents=True)
    soar_cli(["secrets", "keygen", str(key_file)], env, tmp_path)
    Path(env["SOAR_API__SESSION_KEY_FILE"]).write_bytes(os.urandom(48))
    soar_cli(["keys", "create"], env, tmp_path)
    assert (Path(env["SOAR_AUDIT__KEYS"]) / "keyring.json").is_file()


@asynccontextmanager
async def otlp_receiver() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A stand-in for the collector's OTLP/HTTP receiver: it keeps every body POSTed."""
    received: list[bytes] = []

    async def traces(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=200, content_type="application/x-protobuf", body=b"")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        await runner.cleanup()


async def create_topics(bootstrap: str, substitution: Substitution) -> None:
    """The topics compose's kafka-init creates, under this test's names and partition counts."""
    script = " ".join(compose()["services"]["kafka-init"]["command"])
    wanted = re.findall(r"--topic (\S+) --partitions (\d+)", script)
    assert wanted
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(substitution.topic(name), int(n), 1) for name, n in wanted]
        )
    finally:
        await admin.close()


async def until(what: str, check: Any, fleet: Fleet) -> Any:
    deadline = time.monotonic() + UP_S
    while time.monotonic() < deadline:
        fleet.check_alive()
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    pytest.fail(f"{what} not within {UP_S:.0f}s:\n{fleet.logs()}")


async def get(http: aiohttp.ClientSession, url: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with http.get(url, headers=headers) as answer:
            body = await answer.text()
            return answer.status, body
    except aiohttp.ClientError:
        return 0, None


async def test_the_compose_topology_runs_without_docker(
    apache_kafka: ApacheKafka, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    async with (
        otlp_receiver() as (otlp, traces),
        postgres_server.database() as dsn,
        aiohttp.ClientSession() as http,
    ):
        sub = Substitution(tmp_path, store=dsn, bootstrap=apache_kafka.bootstrap, otlp=otlp)
        ports = {"api": free_port(), "w1": free_port(), "w2": free_port()}
        api_env = sub.env("api", api=ports["api"])
        workers = {w: sub.env("worker", metrics=ports[w]) for w in ("w1", "w2")}

        prepare(api_env, tmp_path)
        await create_topics(apache_kafka.bootstrap, sub)

        fleet = Fleet(tmp_path)
        try:
            fleet.start("api", image_command("api"), api_env)
            for name, env in workers.items():
                fleet.start(name, image_command("worker"), env)
            base = f"http://127.0.0.1:{ports['api']}"

            async def api_up() -> bool:
                return (await get(http, f"{base}/api/v1/health"))[0] == 200

            await until("the API", api_up, fleet)
            ingest = json.loads(
                soar_cli(
                    ["tokens", "create", "--name", "feeder", "--role", "ingest", "--json"],
                    api_env,
                    tmp_path,
                )
            )["token"]
            reader = json.loads(
                soar_cli(
                    ["tokens", "create", "--name", "watch", "--role", "auditor", "--json"],
                    api_env,
                    tmp_path,
                )
            )["token"]

            topic = json.loads(workers["w1"]["SOAR_KAFKA__TOPICS"])[0]
            producer = AIOKafkaProducer(bootstrap_servers=apache_kafka.bootstrap, acks="all")
            await producer.start()
            try:
                for n in range(ALERTS):
                    alert = {"title": f"kafka {n}", "severity": "high", "id": f"k{n}", "time": TIME}
                    await producer.send_and_wait(
                        topic, json.dumps(alert).encode(), key=f"k{n}".encode()
                    )
            finally:
                await producer.stop()
            posted = {"title": "posted", "severity": "high", "id": "p0", "time": TIME}
            async with http.post(
                f"{base}/api/v1/alerts", json=posted, headers={"Authorization": f"Bearer {ingest}"}
            ) as answer:
                assert answer.status == 202, await answer.text()

            titles = sorted([f"kafka {n}" for n in range(ALERTS)] + ["posted"])

            async def all_completed() -> list[dict[str, Any]] | None:
                status, body = await get(
                    http, f"{base}/api/v1/runs?status=completed&limit=1000", reader
                )
                runs: list[dict[str, Any]] = json.loads(body)["runs"] if status == 200 else []
                return runs if len(runs) >= len(titles) else None

            runs = await until("every run completed", all_completed, fleet)
            assert sorted(r["alert_title"] for r in runs) == titles
            assert (await get(http, f"{base}/api/v1/ready"))[0] == 200
            # the scrape targets of deploy/prometheus.yml answer
            for url in (
                f"{base}/metrics",
                *(f"http://127.0.0.1:{ports[w]}/metrics" for w in workers),
            ):
                status, body = await get(http, url)
                assert status == 200, url
                assert "soar_" in body, url
            codes = fleet.stop()
            assert codes == {"api": 0, "w1": 0, "w2": 0}, fleet.logs()
        finally:
            fleet.kill()

        db = await asyncpg.connect(dsn)
        try:
            rows = await db.fetch("SELECT status, alert::json->>'title' AS title FROM runs")
        finally:
            await db.close()
        # exactly one run per alert, all completed; the workers took in every Kafka message
        assert sorted(r["title"] for r in rows) == titles
        assert {r["status"] for r in rows} == {"completed"}
        taken = [taken_in(tmp_path / f"{name}.log") for name in workers]
        print("messages taken in by each worker:", taken)
        assert sum(taken) >= ALERTS
        assert traces, "no trace reached the OTLP receiver"


def taken_in(log: Path) -> int:
    """What a worker's last words say it took in ("worker stopped: N message(s) taken in")."""
    found = re.findall(r"worker stopped: (\d+) message", log.read_text())
    assert found, log.read_text()[-3000:]
    return int(found[-1])
