"""What every server fixture of the suite shares: how a missing server is reported."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    """Skip the tests that need a server that cannot be had here; with SOAR_REQUIRE_SERVERS=1
    (CI, where every server is installed) fail them instead."""
    if os.environ.get("SOAR_REQUIRE_SERVERS") == "1":
        pytest.fail(f"SOAR_REQUIRE_SERVERS=1 but {message}", pytrace=False)
    pytest.skip(message)


def tail(text: str, lines: int = 40) -> str:
    """The last lines of a server's log, for an error message."""
    return "\n".join(text.splitlines()[-lines:])
