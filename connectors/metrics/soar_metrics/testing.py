"""Real monitoring servers on free loopback ports, for the metrics connector's tests and `soar lab`:
a node exporter, a Prometheus scraping it (optionally with alert rules and an Alertmanager), and
an Alertmanager posting its webhooks to a URL. Debian's packages (`.ci/install-prometheus`); the
recipe is docs/connectors/metrics.md ("How it is tested").

Each server runs in a process group of its own, in a new directory under the caller's, and is
stopped (and its directory removed) when its `with` block ends.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import JsonValue

from soar.connectors.servers import ServerFailed, ServerMissing, free_port

__all__ = [
    "ALERTMANAGER",
    "NODE_EXPORTER",
    "PROMETHEUS",
    "Alertmanager",
    "NodeExporter",
    "PrometheusServer",
    "ServerFailed",
    "ServerMissing",
    "free_port",
    "monitoring_installed",
    "running_alertmanager",
    "running_node_exporter",
    "running_prometheus",
    "stop_process",
    "wait_for_data",
]

PROMETHEUS: Final = "/usr/bin/prometheus"
NODE_EXPORTER: Final = "/usr/bin/prometheus-node-exporter"
ALERTMANAGER: Final = "/usr/bin/prometheus-alertmanager"
START_TIMEOUT_S: Final = 15.0
STOP_TIMEOUT_S: Final = 5.0
#: the collectors a test or lab needs; the rest only add noise (and systemd errors without systemd)
NODE_COLLECTORS: Final = ("cpu", "meminfo", "filesystem", "loadavg", "uname")


def monitoring_installed(*binaries: str) -> bool:
    """Whether the given binaries (default: all three servers) are installed."""
    return all(Path(b).exists() for b in binaries or (PROMETHEUS, NODE_EXPORTER, ALERTMANAGER))


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def stop_process(process: subprocess.Popen[bytes], grace: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; returns once the process is reaped."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _http_ok(url: str) -> bool:
    with (
        suppress(OSError, urllib.error.URLError),
        urllib.request.urlopen(url, timeout=1) as answer,  # noqa: S310 - our loopback URL
    ):
        return bool(answer.status == 200)
    return False


def _wait_ready(process: subprocess.Popen[bytes], ready_url: str) -> bool:
    """Whether *our* server came up: it is alive and answers 200 on `ready_url` (a port check
    alone may hit somebody else's server; a dead process means the port was taken)."""
    end = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < end:
        if process.poll() is not None:
            return False
        if _http_ok(ready_url):
            return process.poll() is None
        time.sleep(0.05)
    return False


@contextmanager
def _serve(
    name: str, binary: str, directory: Path, *, args: Sequence[str], ready_path: str
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Start `binary` with `args` (`{port}` standing for a free port) in `directory`, logging to
    `<name>.log` there, until it answers 200 on `ready_path`; stop it at the end."""
    if not Path(binary).exists():
        raise ServerMissing(f"{binary} is not installed (.ci/install-prometheus)")
    log_path = directory / f"{name}.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(5):  # another program may take the port between the probe and the server
            port = free_port()
            with log_path.open("wb") as log:
                process = subprocess.Popen(  # noqa: S603 - fixed binary, our own arguments
                    [binary, *[a.replace("{port}", str(port)) for a in args]],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=directory,
                    process_group=0,
                )
            if _wait_ready(process, f"http://127.0.0.1:{port}{ready_path}"):
                yield port, process
                return
            stop_process(process)
            process = None
        raise ServerFailed(f"{name} did not start:\n{_tail(_read(log_path))}")
    finally:
        if process is not None:
            stop_process(process)


@contextmanager
def _with_dir(parent: Path, name: str) -> Iterator[Path]:
    """A new directory for one server's files, removed at the end."""
    directory = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class NodeExporter:
    """A running node exporter; `target` is its `127.0.0.1:PORT`, as Prometheus names it."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextmanager
def running_node_exporter(
    parent: Path, *, collectors: Sequence[str] = NODE_COLLECTORS
) -> Iterator[NodeExporter]:
    """A node exporter on a free loopback port, with only `collectors` enabled.

    Raises:
        ServerMissing: it is not installed.
        ServerFailed: it would not start (the message has its log).
    """
    args = [
        "--web.listen-address=127.0.0.1:{port}",
        "--collector.disable-defaults",
        *(f"--collector.{c}" for c in collectors),
    ]
    with (
        _with_dir(parent, "node-exporter") as directory,
        _serve("node-exporter", NODE_EXPORTER, directory, args=args, ready_path="/metrics") as (
            port,
            process,
        ),
    ):
        yield NodeExporter(port=port, directory=directory, process=process)


@dataclass
class PrometheusServer:
    """A running Prometheus: `url` is `http://127.0.0.1:PORT`; `rules` the rule file it reads
    (rewrite it and call `reload()` to change the rules)."""

    url: str
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def settings(self) -> dict[str, JsonValue]:
        """The metrics connector's settings for this server (credentials are secrets)."""
        return {"url": self.url, "timeout": 5}

    @property
    def rules(self) -> Path:
        return self.directory / "rules.yml"

    def log(self) -> str:
        return _read(self.directory / "prometheus.log")

    def reload(self) -> None:
        """Read the configuration and rules again (`POST /-/reload`)."""
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - our loopback URL
            pass

    def query(self, promql: str) -> list[JsonValue]:
        """An instant query's result list (for test set-up, synchronously)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - our loopback URL
            body = json.loads(answer.read())
        result = body.get("data", {}).get("result", [])
        return result if isinstance(result, list) else []


_PROMETHEUS_CONFIG = """\
global: {{ scrape_interval: {interval}, evaluation_interval: {interval} }}
rule_files: ['{{dir}}/rules.yml']
scrape_configs:
  - job_name: node
    static_configs: [ {{ targets: {targets} }} ]
{alerting}"""


@contextmanager
def running_prometheus(
    parent: Path,
    *,
    targets: Sequence[str],
    rules: str = "groups: []\n",
    alertmanager: str | None = None,
    scrape_interval: str = "1s",
) -> Iterator[PrometheusServer]:
    """A Prometheus on a free loopback port scraping `targets` (`host:port`, job `node`) every
    `scrape_interval`, evaluating `rules` (YAML), and sending alerts to `alertmanager`
    (`host:port`) when given. Its lifecycle API is on (`reload()`), and alerts are re-sent every
    second, so a change of state reaches Alertmanager within seconds of a reload.

    Raises:
        ServerMissing: it is not installed.
        ServerFailed: it would not start (the message has its log).
    """
    alerting = ""
    if alertmanager is not None:
        alerting = (
            "alerting:\n  alertmanagers: [ { static_configs: [ { targets: ['"
            + alertmanager
            + "'] } ] } ]\n"
        )
    config = _PROMETHEUS_CONFIG.format(
        interval=scrape_interval, targets=json.dumps(list(targets)), alerting=alerting
    )
    args = [
        "--config.file={dir}/prometheus.yml",
        "--storage.tsdb.path={dir}/data",
        "--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--rules.alert.resend-delay=1s",
    ]
    with _with_dir(parent, "prometheus") as directory:
        (directory / "prometheus.yml").write_text(config.replace("{dir}", str(directory)))
        (directory / "rules.yml").write_text(rules)
        args = [a.replace("{dir}", str(directory)) for a in args]
        with _serve("prometheus", PROMETHEUS, directory, args=args, ready_path="/-/ready") as (
            port,
            process,
        ):
            yield PrometheusServer(
                url=f"http://127.0.0.1:{port}", directory=directory, process=process
            )


@dataclass
class Alertmanager:
    """A running Alertmanager; `address` (`127.0.0.1:PORT`) is what Prometheus is given."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


_ALERTMANAGER_CONFIG = """\
route:
  receiver: hook
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs: [ {{ url: '{url}', send_resolved: true }} ]
"""


@contextmanager
def running_alertmanager(parent: Path, *, webhook_url: str) -> Iterator[Alertmanager]:
    """An Alertmanager on a free loopback port posting every notification, firing and resolved,
    to `webhook_url` within about a second (alerts grouped by `alertname`). No cluster gossip.

    Raises:
        ServerMissing: it is not installed.
        ServerFailed: it would not start (the message has its log).
    """
    with _with_dir(parent, "alertmanager") as directory:
        config = directory / "alertmanager.yml"
        config.write_text(_ALERTMANAGER_CONFIG.format(url=webhook_url))
        args = [
            f"--config.file={config}",
            f"--storage.path={directory}/data",
            "--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]
        with _serve("alertmanager", ALERTMANAGER, directory, args=args, ready_path="/-/ready") as (
            port,
            process,
        ):
            yield Alertmanager(port=port, directory=directory, process=process)


def wait_for_data(server: PrometheusServer, promql: str, *, deadline: float = 20.0) -> None:
    """Block until `promql` has a result: targets appear on a fixed 5 s cycle, so the first
    node exporter sample comes about 6 s after Prometheus starts.

    Raises:
        ServerFailed: none within `deadline` seconds (the message has Prometheus' log).
    """
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with suppress(OSError, ValueError):
            if server.query(promql):
                return
        time.sleep(0.2)
    raise ServerFailed(f"no data for {promql} after {deadline:g}s:\n{_tail(server.log())}")
