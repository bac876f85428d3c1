"""Dead letters: a message soar cannot take in goes, byte for byte, to the dead-letter topic with
why and where it came from, before its offset is committed (docs/ingestion.md, "Dead letters").

The record's value is the original bytes and its key the original key. Its headers are, first,
`soar-dead-letter`, a JSON envelope:

    {"error": {"code": "not_json", "message": "...", "field": null, "index": null},
     "source": {"topic": "alerts", "partition": 3, "offset": 1042, "timestamp": 1764000000000},
     "time": "2026-11-29T10:00:00.000000Z", "worker": "soar-worker"}

then `soar-error-code`, `soar-source-topic`, `soar-source-partition` and `soar-source-offset` as
plain UTF-8 (to filter on without parsing), then the original message's own headers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from soar.engine.evidence import rfc3339
from soar.errors import AlertRejected

ENVELOPE_HEADER = "soar-dead-letter"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message was read: enough to find it again, and the same on every delivery."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None = None

    def origin(self) -> str:
        """`kafka:TOPIC/PARTITION@OFFSET`, as the audit log and run ids name it."""
        return f"kafka:{self.topic}/{self.partition}@{self.offset}"


def dead_letter_headers(
    rejection: AlertRejected,
    source: Source,
    at: datetime,
    *,
    worker: str,
    message: str,
    original: tuple[tuple[str, bytes], ...] = (),
) -> list[tuple[str, bytes]]:
    """The headers of the dead letter for a message refused with `rejection`; `message` is the
    refusal's text as it may be shown (secrets hidden)."""
    envelope: dict[str, Any] = {
        "error": {
            "code": rejection.code.value,
            "message": message,
            "field": rejection.field,
            "index": rejection.index,
        },
        "source": {
            "topic": source.topic,
            "partition": source.partition,
            "offset": source.offset,
            "timestamp": source.timestamp,
        },
        "time": rfc3339(at),
        "worker": worker,
    }
    return [
        (ENVELOPE_HEADER, json.dumps(envelope, ensure_ascii=False).encode()),
        ("soar-error-code", rejection.code.value.encode()),
        ("soar-source-topic", source.topic.encode()),
        ("soar-source-partition", str(source.partition).encode()),
        ("soar-source-offset", str(source.offset).encode()),
        *original,
    ]
