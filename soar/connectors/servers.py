"""What the product-side test servers of the connector packages share (`soar_<name>.testing`,
used by their tests and by `soar lab`): a free loopback port, and how a server that cannot be had
or did not start is reported."""

from __future__ import annotations

import socket


class ServerMissing(Exception):
    """The server's binaries are not installed here."""


class ServerFailed(Exception):
    """The server was installed but did not start; the message ends with its log."""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def tail(text: str, lines: int = 30) -> str:
    """The last `lines` lines of a server's log, for an error message."""
    return "\n".join(text.splitlines()[-lines:])
