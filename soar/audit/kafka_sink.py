"""A checkpoint sink that appends each signed checkpoint line to a Kafka topic.

Every line of one log carries the same key (the log id), so all checkpoints of that log land
in one partition and a consumer reads them in the order they were published. A line counts
as taken only once every in-sync replica has it (`acks="all"`). The producer is not
idempotent: some Kafka-protocol brokers (tansu) refuse InitProducerId, and a checkpoint sent
twice after a retry is harmless, since verifiers compare checkpoints, they do not count them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

_log = logging.getLogger("soar.audit")

# Time granted beyond request_timeout_ms before a publish or a close is abandoned: the
# client bounds each request by request_timeout_ms, this bounds the whole operation.
_MARGIN_S = 1.0


class KafkaSink:
    """Sends each checkpoint line as a UTF-8 record keyed by the log id and waits for the
    broker to acknowledge it; raises OSError when the line could not be delivered."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        key: str = "soar",
        client_id: str = "soar-audit",
        request_timeout_ms: int = 10_000,
    ) -> None:
        if not bootstrap.strip():
            raise ValueError("Kafka bootstrap servers are empty")
        if not topic:
            raise ValueError("Kafka topic is empty")
        if request_timeout_ms <= 0:
            raise ValueError(f"request_timeout_ms must be positive, got {request_timeout_ms}")
        self.bootstrap = bootstrap
        self.topic = topic
        self.key = key
        self.name = f"kafka:{bootstrap}/{topic}"
        self._client_id = client_id
        self._request_timeout_ms = request_timeout_ms
        self._producer: Any = None
        self._lock = asyncio.Lock()

    @property
    def _deadline_s(self) -> float:
        return self._request_timeout_ms / 1000 + _MARGIN_S

    async def publish(self, line: str) -> None:
        async with self._lock:
            try:
                async with asyncio.timeout(self._deadline_s):
                    producer = await self._started()
                    await producer.send_and_wait(
                        self.topic, value=line.encode("utf-8"), key=self.key.encode("utf-8")
                    )
            except (KafkaError, TimeoutError) as exc:
                await self._discard()
                raise OSError(f"{self.name}: checkpoint not delivered: {_describe(exc)}") from exc

    async def close(self) -> None:
        """Flushes and closes the producer; the next publish opens a new one."""
        async with self._lock:
            await self._discard()

    async def _started(self) -> Any:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id=self._client_id,
                acks="all",
                enable_idempotence=False,
                request_timeout_ms=self._request_timeout_ms,
                linger_ms=0,
            )
            # Set before start() so a failed start is still stopped by _discard.
            self._producer = producer
            await producer.start()
        return self._producer

    async def _discard(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            async with asyncio.timeout(self._deadline_s):
                await producer.stop()
        except (KafkaError, TimeoutError) as exc:
            _log.warning("Kafka producer for %s did not close cleanly: %s", self.name, exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not isinstance(exc, KafkaError):
        return "timed out"
    return str(exc) or type(exc).__name__
