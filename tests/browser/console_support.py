"""What the console's browser tests share: Playwright's `expect`, and sample alerts for the
playbooks of tests/browser/playbooks."""

from __future__ import annotations

import itertools
from typing import Any

try:
    from playwright.sync_api import expect
except ImportError:  # the `playwright` fixture then skips (or fails) every test before it runs
    expect = None  # type: ignore[assignment]

__all__ = ["XSS", "an_alert", "expect"]

XSS = "<img src=x onerror=alert(1)>"
_serial = itertools.count(1)


def an_alert(
    title: str,
    *,
    severity: str = "high",
    category: str | None = "credential_access",
    user: str = "ana",
    host: str = "ws-12",
) -> dict[str, Any]:
    """A generic-form alert. The defaults start `contain-account` (which waits for an
    approval); `category="execution"` starts `quarantine-file` (which fails and compensates);
    a severity below high starts `note-alert` (which completes at once). Each alert gets its
    own id, so no two are deduplicated."""
    alert: dict[str, Any] = {
        "id": f"console-test-{next(_serial)}-{title[:20]}",
        "source": "console-tests",
        "title": title,
        "severity": severity,
        "time": "2025-06-02T07:08:52.979Z",
        "users": [user],
        "hosts": [host],
    }
    if category is not None:
        alert["category"] = category
    return alert
