"""Checkpoints published outside the store: a file, and an HTTP endpoint on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from soar.audit.sinks import FileSink, HttpSink, Publisher


class Collector:
    """A loopback HTTP server that keeps what is POSTed, or fails while `down` is set."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str | None]] = []
        self.down = False
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                if collector.down:
                    self.send_response(503)
                else:
                    collector.received.append((body, self.headers.get("Content-Type")))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/checkpoints"


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()


async def test_the_file_sink_appends_one_line_per_checkpoint(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "published" / "checkpoints.jsonl")
    await sink.publish('{"type":"checkpoint","n":1}')
    await sink.publish('{"type":"checkpoint","n":2}')
    lines = (tmp_path / "published" / "checkpoints.jsonl").read_text().splitlines()
    assert lines == ['{"type":"checkpoint","n":1}', '{"type":"checkpoint","n":2}']


async def test_the_http_sink_posts_json(collector: Collector) -> None:
    await HttpSink(collector.url).publish('{"type":"checkpoint"}')
    assert collector.received == [('{"type":"checkpoint"}', "application/json")]


async def test_a_sink_that_is_down_gets_the_missed_lines_in_order_later(
    collector: Collector, tmp_path: Path
) -> None:
    publisher = Publisher([HttpSink(collector.url), FileSink(tmp_path / "c.jsonl")])
    collector.down = True
    await publisher.publish("one")
    await publisher.publish("two")
    assert publisher.backlog == 2
    assert (tmp_path / "c.jsonl").read_text().splitlines() == ["one", "two"]
    collector.down = False
    await publisher.publish("three")
    assert [body for body, _ in collector.received] == ["one", "two", "three"]
    assert publisher.backlog == 0


async def test_an_unreachable_endpoint_is_an_os_error_not_a_crash() -> None:
    with pytest.raises(OSError, match=r"127\.0\.0\.1:9"):
        await HttpSink("http://127.0.0.1:9/none", timeout=2).publish("x")
    with pytest.raises(ValueError, match="not http"):
        HttpSink("file:///etc/passwd")
