"""Connection options for real clusters: TLS with an own CA and client certificates, SASL PLAIN
and SCRAM, shared by the worker's consumer and its dead-letter producer; and starting a client
so that a refused login reads as one."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from aiokafka.conn import collect_hosts, create_conn  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context  # type: ignore[import-untyped]

from soar.config import KafkaSettings
from soar.errors import ConfigError

_LOGIN_REFUSED = (SaslAuthenticationFailed, UnsupportedSaslMechanismError, IllegalSaslStateError)
_SASL_EXCHANGE = ("SaslAuthenticateRequest", "SaslAuthenticateResponse")


class _HideSaslExchange(logging.Filter):
    """aiokafka logs every request and response at DEBUG, the SASL exchange too: PLAIN's holds
    the password, SCRAM's what an offline guess at it needs. Such a record keeps its text with
    the exchange left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(map(_is_sasl_exchange, record.args)):
            record.args = tuple(
                "<SASL exchange not shown>" if _is_sasl_exchange(arg) else arg
                for arg in record.args
            )
        return True


def _is_sasl_exchange(value: object) -> bool:
    return type(value).__name__.startswith(_SASL_EXCHANGE)


_HIDE_SASL_EXCHANGE = _HideSaslExchange()


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments every aiokafka client of the worker takes. With SASL, aiokafka's
    DEBUG log of requests stops showing the login exchange (PLAIN's holds the password).

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
        logging.getLogger("aiokafka.conn").addFilter(_HIDE_SASL_EXCHANGE)  # once: a set
    if settings.security_protocol.endswith("SSL"):
        options["ssl_context"] = _ssl_context(settings)
    return options


async def start_client(client: Any, settings: KafkaSettings) -> None:
    """Start an aiokafka producer or consumer made with `client_options(settings)`. A client
    that fails to start is stopped again (no socket or task is left behind).

    aiokafka reports a refused SASL login or a failed TLS handshake only as "Unable to
    bootstrap"; when a start fails so, one connection is opened to find out why, and what the
    settings got wrong is raised as such. No error carries the password.

    Raises:
        ConfigError: a broker refused the login (wrong username, password or mechanism), or the
            TLS handshake failed (the broker's certificate is not signed by `ssl_cafile`, ...).
        KafkaError: no broker could be reached, or one refused a request.
    """
    try:
        await client.start()
    except BaseException as exc:
        await client.stop()
        if isinstance(exc, KafkaConnectionError):
            found = await _settings_fault(settings)
            if found is not None:
                what, cause = found
                raise ConfigError(f"kafka: {what}: {cause}") from cause
        raise


async def _settings_fault(settings: KafkaSettings) -> tuple[str, Exception] | None:
    """Why one connection to the first broker that answers fails, when the settings are to
    blame: a refused login or a failed TLS handshake. None when it works, or fails otherwise."""
    if settings.security_protocol == "PLAINTEXT":
        return None
    options = client_options(settings)
    servers = options.pop("bootstrap_servers")
    for host, port, _ in collect_hosts(servers, randomize=False):
        try:
            connection = await create_conn(host, port, **options)
        except _LOGIN_REFUSED as exc:
            login = f"the {settings.sasl_mechanism} login of user {settings.sasl_username!r}"
            return f"{host}:{port} refused {login}", exc
        except ssl.SSLError as exc:
            return f"TLS with {host}:{port} failed (is kafka.ssl_cafile its CA?)", exc
        except (KafkaError, OSError, TimeoutError):
            continue
        connection.close()
        return None
    return None


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
