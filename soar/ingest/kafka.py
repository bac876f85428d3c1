"""Connection options for real clusters: TLS with an own CA and client certificates, SASL PLAIN
and SCRAM, shared by the worker's consumer and its dead-letter producer."""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context  # type: ignore[import-untyped]

from soar.config import KafkaSettings
from soar.errors import ConfigError


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments every aiokafka client of the worker takes.

    Raises:
        ConfigError: SASL without a mechanism or credentials, or TLS files that cannot be read.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
    }
    if settings.security_protocol.startswith("SASL"):
        if settings.sasl_mechanism is None:
            raise ConfigError("kafka.sasl_mechanism is needed with a SASL security_protocol")
        if settings.sasl_username is None or settings.sasl_password is None:
            raise ConfigError("kafka.sasl_username and kafka.sasl_password are needed for SASL")
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    if settings.security_protocol.endswith("SSL"):
        options["ssl_context"] = _ssl_context(settings)
    return options


def _ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
            certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
            keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"kafka TLS files: {exc}") from exc
    context.check_hostname = settings.ssl_check_hostname
    return context
