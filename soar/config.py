"""Settings, loaded once from a TOML file and `SOAR_*` environment variables (which win)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from soar.errors import ConfigError
from soar.models import AlertFormat

CONFIG_ENV = "SOAR_CONFIG"
DEFAULT_CONFIG = Path("soar.toml")


class IngestSettings(BaseModel):
    """Bounds on inbound messages and how each input's messages are read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_message_bytes: int = Field(default=1_048_576, ge=2)
    max_depth: int = Field(default=64, ge=2, le=512)
    max_batch: int = Field(default=1000, ge=1)
    formats: dict[str, AlertFormat] = Field(
        default_factory=dict,
        description="input (Kafka topic, HTTP source) -> format; unlisted inputs are detected",
    )


class KafkaSettings(BaseModel):
    """How `soar worker` reads alerts from Kafka (docs/ingestion.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_servers: str = "127.0.0.1:9092"
    topics: list[str] = Field(default_factory=lambda: ["soar.alerts"], min_length=1)
    group: str = Field(default="soar", min_length=1, description="the consumer group")
    dead_letter_topic: str = "soar.dead-letters"
    idempotent_dead_letters: bool = Field(
        default=True,
        description="write dead letters with an idempotent producer, so that a broker retry "
        "never writes one twice; a broker that refuses one (the embedded tansu) gets a "
        "warning at start and a plain acks=all producer",
    )
    client_id: str = "soar-worker"
    max_in_flight: int = Field(
        default=256, ge=1, description="messages being turned into runs at once, per worker"
    )
    max_poll_records: int = Field(default=500, ge=1)
    fetch_max_wait_ms: int = Field(
        default=50, ge=0, description="how long a fetch may wait for data: latency when idle"
    )
    commit_interval: float = Field(
        default=0.5, gt=0, description="seconds between offset commits (of durable messages)"
    )
    drain_timeout: float = Field(
        default=30.0, gt=0, description="seconds a stopping worker waits for messages in flight"
    )
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    request_timeout_ms: int = Field(default=30_000, ge=1000)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(default=None, description="CA bundle for the brokers")
    ssl_certfile: Path | None = Field(default=None, description="client certificate (mTLS)")
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True


class AuditSettings(BaseModel):
    """The audit log: whether it is written, the signing keys, how often checkpoints are signed
    and where they are published besides the store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    keys: Path = Field(
        default=Path("keys"), description="the keyring directory (`soar keys create`)"
    )
    checkpoint_every: timedelta = Field(default=timedelta(minutes=1), gt=timedelta(0))
    checkpoint_records: int = Field(
        default=10_000, ge=1, description="also sign once this many records are unsigned"
    )
    publish_file: Path | None = Field(
        default=None, description="append each signed checkpoint to this JSON Lines file"
    )
    publish_url: str | None = Field(
        default=None, description="POST each signed checkpoint (JSON) to this URL"
    )
    publish_kafka_bootstrap: str | None = Field(
        default=None, description="send each signed checkpoint to Kafka at host:port..."
    )
    publish_kafka_topic: str = "soar.audit.checkpoints"
    log_id: str = Field(default="soar", min_length=1, description="the log's name in checkpoints")


class ConnectorLimits(BaseModel):
    """How hard one connector may be driven (docs/connectors.md, "Fewer calls")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cache_ttl: dict[str, timedelta] | None = Field(
        default=None,
        description="per action: how long its output is reused (only actions that declare a "
        "cache_ttl, i.e. read-only ones; 0 turns it off)",
    )
    rate: float | None = Field(default=None, gt=0, description="calls per second at most")
    burst: int | None = Field(default=None, ge=1, description="calls at once (default: rate)")
    breaker_calls: int | None = Field(
        default=None, ge=1, description="the last N calls the circuit breaker looks at"
    )
    breaker_ratio: float = Field(
        default=0.5, gt=0, le=1, description="the share of those that failed to open it"
    )
    breaker_open: timedelta = Field(
        default=timedelta(seconds=30), gt=timedelta(0), description="how long it stays open"
    )


class SecretsSettings(BaseModel):
    """The encrypted secret store (`soar secrets`); environment variables `SOAR_SECRET_<CONNECTOR>_
    <NAME>` are the second source, for secrets the store does not hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: Path = Field(
        default=Path("secrets.json"), description="the store file (sealed values, no key)"
    )
    key_file: Path | None = Field(
        default=None, description="the key (base64, 32 bytes; `soar secrets keygen PATH`)"
    )
    key_env: str = Field(
        default="SOAR_SECRETS_KEY",
        description="the environment variable holding the key, when key_file is not set",
    )


class ApiSettings(BaseModel):
    """`[api]` in the config file; `SOAR_API__PORT=8080` in the environment (`soar serve`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="the largest request body read (413 past it)"
    )
    request_timeout: float = Field(
        default=30.0, gt=0, description="seconds a request may take (streams excepted)"
    )
    session_ttl: timedelta = Field(default=timedelta(hours=12), gt=timedelta(0))
    session_key_file: Path | None = Field(
        default=None,
        description="32+ random bytes shared by API replicas; a fresh key per process if unset "
        "(sessions then end with the process)",
    )
    secure_cookies: bool = Field(
        default=False, description="mark the session cookie Secure (behind an HTTPS proxy)"
    )
    decision_wait: float = Field(
        default=5.0, ge=0, description="seconds to wait for another worker to apply a decision"
    )


class TelemetrySettings(BaseModel):
    """Traces and metrics (OpenTelemetry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    traces: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces"
    )
    metrics: Literal["none", "prometheus"] = "none"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535)


class Settings(BaseSettings):
    """Everything soar is configured with. Nested keys in the environment use `__`:
    `SOAR_INGEST__MAX_MESSAGE_BYTES=2097152`."""

    model_config = SettingsConfigDict(
        env_prefix="SOAR_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    playbooks: Path = Path("playbooks")
    store: str = Field(
        default="sqlite:///soar.db",
        description="sqlite:///PATH, postgresql://USER:PASS@HOST/DB, or memory:// (nothing kept)",
    )
    worker_name: str = Field(
        default="soar",
        min_length=1,
        pattern=r"^[^@\s]+$",
        description="this worker's name in run leases and logs (host and pid are added)",
    )
    lease_ttl: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="seconds without a heartbeat after which a worker's runs are taken over",
    )
    ingest: IngestSettings = IngestSettings()
    kafka: KafkaSettings = KafkaSettings()
    audit: AuditSettings = AuditSettings()
    secrets: SecretsSettings = SecretsSettings()
    limits: dict[str, ConnectorLimits] = Field(
        default_factory=dict,
        description="per connector: output cache, rate limit and circuit breaker",
    )
    telemetry: TelemetrySettings = TelemetrySettings()
    api: ApiSettings = ApiSettings()
    connectors: dict[str, dict[str, JsonValue]] = Field(
        default_factory=dict, description="per connector: its settings (URLs, base DNs, ...)"
    )
    directory: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="what playbooks read as `directory`: executives, on-call schedules, ...",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_path()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def _config_path() -> Path | None:
    named = os.environ.get(CONFIG_ENV)
    if named:
        return Path(named)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def load_settings() -> Settings:
    """Read `$SOAR_CONFIG` (or `./soar.toml` when present) and the environment.

    Raises:
        ConfigError: the file is missing, not TOML, or holds a value that does not fit.
    """
    path = _config_path()
    if path is not None and not path.is_file():
        raise ConfigError(f"{CONFIG_ENV} names {path}, which is not a file")
    try:
        return Settings()
    except ValueError as exc:  # pydantic's ValidationError and TOML decode errors
        raise ConfigError(f"bad settings{f' in {path}' if path else ''}: {exc}") from exc
