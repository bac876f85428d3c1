"""The worker's bookkeeping and message shapes, without a broker: which offset may be committed
while messages finish out of order, the dead letter's headers, and the client's security
options."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from soar.config import KafkaSettings
from soar.errors import AlertRejected, ConfigError, RejectionCode
from soar.ingest.dead_letters import ENVELOPE_HEADER, Source, dead_letter_headers
from soar.ingest.kafka import client_options
from soar.ingest.worker import Offsets

P0 = TopicPartition("alerts", 0)
P1 = TopicPartition("alerts", 1)
PASSWORD = secrets.token_hex(8)  # a fresh one each run


def offsets_of(committable: dict[object, object]) -> dict[object, int]:
    return {tp: meta.offset for tp, meta in committable.items()}  # type: ignore[attr-defined]


def test_the_lowest_unfinished_offset_is_what_may_be_committed() -> None:
    offsets = Offsets()
    for offset in (10, 11, 12, 13):
        offsets.fetched(P0, offset)
    offsets.fetched(P1, 5)
    assert offsets_of(offsets.committable()) == {P0: 10, P1: 5}
    offsets.finished(P0, 12)  # out of order: 10 and 11 are not durable yet
    offsets.finished(P0, 11)
    assert offsets_of(offsets.committable()) == {P0: 10, P1: 5}
    offsets.finished(P0, 10)
    offsets.finished(P1, 5)
    assert offsets_of(offsets.committable()) == {P0: 13, P1: 6}
    offsets.finished(P0, 13)
    committable = offsets.committable()
    assert offsets_of(committable) == {P0: 14, P1: 6}
    offsets.committed(committable)
    assert offsets.committable() == {}  # nothing moved since
    assert offsets.in_flight() == 0


def test_a_revoked_partition_is_forgotten_and_its_late_finishes_ignored() -> None:
    offsets = Offsets()
    offsets.fetched(P0, 1)
    offsets.fetched(P1, 1)
    assert offsets_of(offsets.committable([P1])) == {P1: 1}
    offsets.forget([P0])
    offsets.finished(P0, 1)  # the message finished after the partition went elsewhere
    assert set(offsets.committable()) == {P1}
    assert offsets.in_flight() == 1


def test_a_dead_letter_says_why_and_where_and_keeps_the_message_headers() -> None:
    rejection = AlertRejected(
        RejectionCode.INVALID_FIELD, "severity: not a level", field="severity"
    )
    source = Source("alerts", 3, 1042, timestamp=1_764_000_000_000)
    at = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    headers = dead_letter_headers(
        rejection, source, at, worker="w1", message="severity: not a level", original=(("x", b"1"),)
    )
    names = [name for name, _ in headers]
    assert names == [
        ENVELOPE_HEADER,
        "soar-error-code",
        "soar-source-topic",
        "soar-source-partition",
        "soar-source-offset",
        "x",
    ]
    envelope = json.loads(headers[0][1])
    assert envelope == {
        "error": {
            "code": "invalid_field",
            "message": "severity: not a level",
            "field": "severity",
            "index": None,
        },
        "source": {"topic": "alerts", "partition": 3, "offset": 1042, "timestamp": 1764000000000},
        "time": "2026-11-29T10:00:00.000000Z",
        "worker": "w1",
    }
    assert dict(headers)["soar-source-offset"] == b"1042"
    assert source.origin() == "kafka:alerts/3@1042"


def test_plaintext_needs_no_security_options() -> None:
    options = client_options(KafkaSettings(bootstrap_servers="k1:9092,k2:9092"))
    assert options["bootstrap_servers"] == "k1:9092,k2:9092"
    assert options["security_protocol"] == "PLAINTEXT"
    assert "sasl_mechanism" not in options
    assert "ssl_context" not in options


def test_sasl_scram_over_tls_with_an_own_ca(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "soar test CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now.replace(year=now.year + 1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    ca = tmp_path / "ca.pem"
    ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    settings = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="soar",
        sasl_password=SecretStr(PASSWORD),
        ssl_cafile=ca,
    )
    options = client_options(settings)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == PASSWORD
    context = options["ssl_context"]
    assert context.check_hostname is True
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "soar test CA"),),)]
    assert PASSWORD not in repr(settings)  # the password is not shown with the settings


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (KafkaSettings(security_protocol="SASL_PLAINTEXT"), "sasl_mechanism"),
        (
            KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN"),
            "sasl_username",
        ),
        (KafkaSettings(security_protocol="SSL", ssl_cafile=Path("/nonexistent/ca.pem")), "TLS"),
    ],
)
def test_incomplete_security_settings_are_config_errors(
    settings: KafkaSettings, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        client_options(settings)
