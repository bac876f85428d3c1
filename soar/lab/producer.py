"""The lab's alert source and its stand-in for the people who close alerts.

`Producer` sends the shipped sample messages at a gentle rate, as a SIEM would: to the broker's
alert topic (or, without a broker, straight to the engine), the originals first and then copies
with fresh alert ids, round after round. `Resolver` plays the ticket system that reports an
alert resolved: some seconds after a run starts waiting for an event about its alert, it
attaches `{"id": <alert id>, "status": "resolved"}` to the run, as the shipped triage playbook
waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from pydantic import JsonValue

from soar.engine import Engine
from soar.errors import AlertRejected, ConflictError
from soar.ingest.normalize import normalize
from soar.lab.shipped import Sample
from soar.models import Alert

__all__ = ["Producer", "Resolver", "Send", "direct_sender", "fresh_copy", "kafka_sender"]

_log = logging.getLogger("soar.lab")
_COPY_FIELD = "soar_lab_copy"

Send = Callable[[bytes], Awaitable[None]]
Line = Callable[[str], None]


@contextlib.asynccontextmanager
async def kafka_sender(bootstrap: str, topic: str) -> Any:
    """A `Send` that publishes each message to `topic` and returns once the broker has it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=10_000)
    await producer.start()
    try:

        async def send(data: bytes) -> None:
            await producer.send_and_wait(topic, value=data)

        yield send
    finally:
        await producer.stop()


def direct_sender(engine: Engine) -> Send:
    """A `Send` for a lab without a broker: each message is normalised and handed to the engine
    as the Kafka worker would."""

    async def send(data: bytes) -> None:
        for alert in normalize(data):
            await engine.submit_alert(alert, actor="lab")

    return send


def fresh_copy(sample: Sample, round_: int) -> tuple[bytes, tuple[Alert, ...]]:
    """`sample` again with a new id for each alert in it: the source's own id with
    `-lab<round>` added wherever it appears, or, for an id soar derived from the content, a
    `soar_lab_copy` field that changes the content. The original, when that fails."""
    document = json.loads(sample.data)
    items = document if isinstance(document, list) else [document]
    if sample.alerts and sample.alerts[0].format == "alertmanager":
        _fire_again(items, round_)
        items = []
    for item, alert in zip(items, sample.alerts, strict=False):
        if not isinstance(item, dict):
            continue
        if alert.id.startswith("sha256:"):
            item[_COPY_FIELD] = round_
        else:
            _replace_text(item, alert.id, f"{alert.id}-lab{round_}")
    data = json.dumps(document).encode()
    try:
        alerts = tuple(normalize(data))
    except AlertRejected as exc:
        _log.warning("%s: no fresh copy (%s); sending the original", sample.path, exc)
        return sample.data, sample.alerts
    if {a.id for a in alerts} & {a.id for a in sample.alerts}:
        return sample.data, sample.alerts
    return data, alerts


def _fire_again(notifications: list[JsonValue], round_: int) -> None:
    """Alertmanager's alert id is its fingerprint and `startsAt`: the same alert firing again
    later is a new alert, so each round's copy starts `round_` hours later."""
    for notification in notifications:
        alerts = notification.get("alerts") if isinstance(notification, dict) else None
        for alert in alerts if isinstance(alerts, list) else []:
            starts = alert.get("startsAt") if isinstance(alert, dict) else None
            if not isinstance(alert, dict) or not isinstance(starts, str):
                continue
            with contextlib.suppress(ValueError):
                moved = datetime.fromisoformat(starts) + timedelta(hours=round_)
                alert["startsAt"] = moved.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _replace_text(value: JsonValue, old: str, new: str) -> JsonValue:
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _replace_text(item, old, new)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            value[index] = _replace_text(item, old, new)
    elif value == old:
        return new
    return value


class Producer:
    """Sends the samples, `rate` messages a second, until stopped; with `once`, each sample
    once (no copies). `sent` lists the ids of the alerts sent, in order."""

    def __init__(
        self, samples: list[Sample], send: Send, line: Line, *, rate: float, once: bool
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.samples = samples
        self.send = send
        self.line = line
        self.interval = 1.0 / rate
        self.once = once
        self.sent: list[str] = []
        self.done = asyncio.Event()
        """set once `once` has sent every sample"""

    async def run(self, stop: asyncio.Event) -> None:
        round_ = 0
        while not stop.is_set():
            for sample in self.samples:
                if stop.is_set():
                    return
                data, alerts = (
                    (sample.data, sample.alerts) if round_ == 0 else fresh_copy(sample, round_)
                )
                await self.send(data)
                self.sent.extend(alert.id for alert in alerts)
                formats = ", ".join(sorted({alert.format.value for alert in alerts}))
                self.line(f"published {_name(sample.path)} ({formats}, {len(alerts)} alert(s))")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
            if self.once:
                self.done.set()
                return
            round_ += 1


def _name(path: Path) -> str:
    return f"{path.parent.parent.name}/{path.name}"


class Resolver:
    """Resolves alerts `after` seconds after a run starts waiting for an event about them."""

    def __init__(self, engine: Engine, line: Line, *, after: float) -> None:
        self.engine = engine
        self.line = line
        self.after = after
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, run_id: str, alert_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._resolve(run_id, alert_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, run_id: str, alert_id: str) -> None:
        await asyncio.sleep(self.after)
        event: dict[str, JsonValue] = {"id": alert_id, "status": "resolved", "source": "soar-lab"}
        try:
            await self.engine.attach(run_id, event, actor="lab")
        except ConflictError as exc:  # the run ended, or is held elsewhere
            _log.info("resolution of %s not attached to run %s: %s", alert_id, run_id, exc)
            return
        self.line(f"alert {alert_id[:24]} resolved (the lab's stand-in for the ticket system)")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
