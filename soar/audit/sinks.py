"""Where signed checkpoints are published besides the store: whoever controls the database
must not control these too, or they could rewrite the records and the checkpoints together."""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

_log = logging.getLogger("soar.audit")


class Sink(Protocol):
    """Receives each signed checkpoint line. Raises OSError when it could not take it."""

    name: str

    async def publish(self, line: str) -> None: ...


class FileSink:
    """Appends each checkpoint line to a JSON Lines file and syncs it to disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"file:{path}"

    async def publish(self, line: str) -> None:
        await asyncio.to_thread(self._append, line)

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
            out.flush()
            os.fsync(out.fileno())


class HttpSink:
    """POSTs each checkpoint line as `application/json`; any 2xx status is taken."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"checkpoint URL {url!r} is not http(s)")
        self.url = url
        self.name = f"http:{url}"
        self._timeout = timeout

    async def publish(self, line: str) -> None:
        await asyncio.to_thread(self._post, line)

    def _post(self, line: str) -> None:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            self.url,
            data=line.encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                if not 200 <= response.status < 300:
                    raise OSError(f"{self.url} answered {response.status}")
        except urllib.error.HTTPError as exc:
            raise OSError(f"{self.url} answered {exc.code}") from None
        except urllib.error.URLError as exc:
            raise OSError(f"{self.url}: {exc.reason}") from None


class Publisher:
    """Publishes to every sink; a line a sink refused is offered again, in order, next time,
    so an outage delays publication but loses nothing while the worker runs."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks
        self._backlog: dict[str, list[str]] = {s.name: [] for s in sinks}

    @property
    def backlog(self) -> int:
        """Lines not yet taken by some sink."""
        return sum(len(lines) for lines in self._backlog.values())

    async def publish(self, line: str) -> None:
        for sink in self.sinks:
            pending = self._backlog[sink.name]
            pending.append(line)
            while pending:
                try:
                    await sink.publish(pending[0])
                except OSError as exc:
                    _log.warning(
                        "checkpoint not published to %s (%d waiting): %s",
                        sink.name,
                        len(pending),
                        exc,
                    )
                    break
                pending.pop(0)

    async def close(self) -> None:
        """Release the sinks' connections (a Kafka producer)."""
        for sink in self.sinks:
            closing = getattr(sink, "close", None)
            if closing is not None:
                await closing()
