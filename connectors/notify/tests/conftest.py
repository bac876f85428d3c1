"""The notify tests' servers (soar_notify.testing), started per test on loopback with the
canary credentials of notify_support."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from notify_support import SMTP_PASSWORD, CanaryVendor
from soar_notify.testing import (
    Certificate,
    Mailbox,
    SmtpServer,
    Vendor,
    make_certificate,
    running_smtp,
    running_vendor,
)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, made with `cryptography`."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server(certificate: Certificate) -> Iterator[SmtpServer]:
    """aiosmtpd requiring STARTTLS before AUTH, and AUTH before mail."""
    with running_smtp(certificate, Mailbox(password=SMTP_PASSWORD)) as server:
        yield server


@pytest.fixture
async def vendor() -> AsyncIterator[Vendor]:
    async with running_vendor(CanaryVendor()) as server:
        yield server
