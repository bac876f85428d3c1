"""The lab's Kafka-protocol broker: the tansu binary of `soar.ingest.embedded_broker`, started in
a process group of its own (a Ctrl-C in the terminal reaches the lab, which stops the broker
last, not the broker first) with the lab's directory as its working directory."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.errors import TopicAlreadyExistsError  # type: ignore[import-untyped]

from soar.ingest.embedded_broker import READY, START_TIMEOUT_S, stop_broker, tansu_binary

__all__ = ["Broker", "create_topic", "start_broker", "stop_broker", "tansu_binary"]

_PORT_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Broker:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_broker(binary: Path, directory: Path) -> Broker:
    """tansu on 127.0.0.1, a free port, in memory, once it reports ready; its log is
    `directory/tansu.log`. A port taken between the probe and tansu's bind is tried again.

    Raises:
        RuntimeError: it did not become ready in time, or found no free port.
    """
    log = directory / "tansu.log"
    for _ in range(_PORT_ATTEMPTS):
        port = _free_port()
        url = f"tcp://127.0.0.1:{port}"
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603 - fixed binary, fixed arguments
                [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=directory,
                process_group=0,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        text = ""
        while time.monotonic() < deadline:
            text = log.read_text(encoding="utf-8", errors="replace")
            if READY in text:
                return Broker(process, port, log)
            if "AddrInUse" in text or process.poll() is not None:
                break
            time.sleep(0.02)
        stop_broker(process)
        if "AddrInUse" not in text:
            raise RuntimeError(
                f"tansu did not report {READY!r} within {START_TIMEOUT_S} s "
                f"(exit status {process.returncode}); log {log}:\n{text[-2000:]}"
            )
    raise RuntimeError(f"tansu found no free port in {_PORT_ATTEMPTS} tries")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    """Create `topic` (one that exists already is left as it is)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        result = await admin.create_topics([NewTopic(topic, partitions, replication_factor=1)])
        for _name, code, *_ in getattr(result, "topic_errors", []):
            if code not in (0, TopicAlreadyExistsError.errno):
                raise RuntimeError(f"creating topic {topic} failed with error code {code}")
    finally:
        await admin.close()
