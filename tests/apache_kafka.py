"""A real Apache Kafka broker for the suite: one KRaft node (broker and controller in one JVM)
run from the Maven Central jars on free loopback ports, started once per session. Besides
PLAINTEXT it listens for SASL logins (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) in the clear and over
TLS, and for TLS with client certificates (mutual TLS), with a CA made for the session.
docs/test-servers.md has the recipe and its pitfalls.

Registered for the whole suite in tests/conftest.py (`pytest_plugins`). Tests that use it are
marked `kafka` and `slow`. Without java or mvn, or when the jars cannot be fetched, they are
skipped, unless SOAR_REQUIRE_SERVERS=1 (CI), in which case they fail. With
KAFKA_BOOTSTRAP_SERVERS set the fixture hands out that cluster instead (no SASL or TLS
listener, no restart). Data lives in the session's temp dir and survives `restart()`; tests use
fresh topic and group names rather than cleaning up.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.client import AIOKafkaClient  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.servers import tail, unavailable

KAFKA_VERSION = "4.4.0"
SLF4J_VERSION = "2.0.17"
# What the cache was fetched for: .ci/install-kafka writes the same line, and a cache whose
# line differs is fetched again.
COORDINATES = (
    f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION} org.slf4j:slf4j-api:{SLF4J_VERSION} "
    f"org.slf4j:slf4j-simple:{SLF4J_VERSION}"
)
SASL_USERNAME = "soar"
SASL_PASSWORD = "soar-secret"  # noqa: S105 - a test broker's throwaway login
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SCRAM = tuple(m for m in SASL_MECHANISMS if m.startswith("SCRAM"))

FETCH_TIMEOUT = 600.0  # seconds for mvn: a cold ~/.m2 downloads about 45 MB
START_TIMEOUT = 60.0  # seconds until a metadata request succeeds; ~2 s on an idle 2-core box
STOP_TIMEOUT = 30.0  # seconds for a controlled shutdown (~2 s) before SIGKILL
# A small heap; the serial collector and C1 only: a start-up ~0.8 s faster on 2 cores, and the
# suite's traffic never needs C2.
JVM_OPTIONS = (
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
)

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>soar.test</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <!-- kafka-clients pins slf4j-api 1.7, which ignores a 2.x binding: name 2.x first -->
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>{slf4j}</version>
    </dependency>
  </dependencies>
</project>
"""


class KafkaUnavailable(Exception):
    """java, mvn or the jars are missing: the tests skip (or fail under SOAR_REQUIRE_SERVERS)."""


class KafkaFailed(Exception):
    """The broker was there to run but did not format, start or stop in time."""


def cache_dir() -> Path:
    """Where the jars of KAFKA_VERSION are kept between runs (also .ci/install-kafka's)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "soar" / f"kafka-{KAFKA_VERSION}"


def fetch_libs() -> Path:
    """The directory of broker jars, fetched from Maven Central with a throwaway pom the first
    time and reused after.

    Raises:
        KafkaUnavailable: no cache and no mvn, or mvn could not resolve the jars.
    """
    cache = cache_dir()
    libs, stamp = cache / "libs", cache / "coordinates"
    if stamp.is_file() and stamp.read_text().strip() == COORDINATES and libs.is_dir():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaUnavailable(f"mvn not found and no Kafka jars in {cache} (.ci/install-kafka)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="fetch-") as work:
        (Path(work) / "pom.xml").write_text(_POM.format(kafka=KAFKA_VERSION, slf4j=SLF4J_VERSION))
        fetched = Path(work) / "libs"
        command = [
            mvn,
            "-q",
            "-B",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={fetched}",
        ]
        try:
            done = subprocess.run(  # noqa: S603 - fixed arguments
                command, cwd=work, capture_output=True, text=True, timeout=FETCH_TIMEOUT
            )
        except subprocess.TimeoutExpired as exc:
            raise KafkaUnavailable(f"mvn took over {FETCH_TIMEOUT:.0f}s to fetch Kafka") from exc
        if done.returncode != 0 or not any(fetched.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
            output = tail(done.stdout + done.stderr)
            raise KafkaUnavailable(f"mvn could not fetch Kafka {KAFKA_VERSION}:\n{output}")
        shutil.rmtree(libs, ignore_errors=True)
        fetched.rename(libs)
    stamp.write_text(COORDINATES + "\n")
    return libs


def java_binary() -> str:
    """The java that runs the broker: JAVA_HOME's, else the one on PATH; Kafka 4 needs 17+.

    Raises:
        KafkaUnavailable: no java, or one older than 17.
    """
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if java is None or not Path(java).is_file():
        raise KafkaUnavailable("java not found (install a JDK 17+, see .ci/install-kafka)")
    done = subprocess.run(  # noqa: S603 - fixed arguments
        [java, "-version"], capture_output=True, text=True, timeout=30
    )
    found = re.search(r'version "(\d+)', done.stderr)
    if found is None or int(found.group(1)) < 17:
        raise KafkaUnavailable(f"Kafka {KAFKA_VERSION} needs Java 17+, {java} is: {done.stderr}")
    return java


class ApacheKafka:
    """A Kafka cluster for tests: `bootstrap` (PLAINTEXT) always; the SASL and TLS listeners,
    the login, the TLS files and `restart()` only for the broker the suite runs itself
    (`is_local`)."""

    def __init__(self, bootstrap: str, node: KraftNode | None = None) -> None:
        self.bootstrap = bootstrap
        self._node = node

    @property
    def is_local(self) -> bool:
        return self._node is not None

    @property
    def sasl_bootstrap(self) -> str | None:
        """A SASL_PLAINTEXT listener taking every one of SASL_MECHANISMS for `username`."""
        return None if self._node is None else f"127.0.0.1:{self._node.sasl_port}"

    @property
    def ssl_bootstrap(self) -> str | None:
        """An SSL listener that wants a client certificate signed by `tls.ca` (mutual TLS)."""
        return None if self._node is None else f"127.0.0.1:{self._node.ssl_port}"

    @property
    def sasl_ssl_bootstrap(self) -> str | None:
        """A SASL_SSL listener: TLS (no client certificate) and then the SASL login."""
        return None if self._node is None else f"127.0.0.1:{self._node.sasl_ssl_port}"

    @property
    def tls(self) -> TlsFiles | None:
        """The session's CA and the client certificate it signed, as PEM files."""
        return None if self._node is None else self._node.tls

    @property
    def username(self) -> str | None:
        return None if self._node is None else SASL_USERNAME

    @property
    def password(self) -> str | None:
        return None if self._node is None else SASL_PASSWORD

    @property
    def log(self) -> Path | None:
        return None if self._node is None else self._node.log

    def restart(self) -> None:
        """Stop the JVM (a controlled shutdown) and start it on the same ports and data."""
        if self._node is None:
            raise KafkaUnavailable("KAFKA_BOOTSTRAP_SERVERS names an external cluster")
        self._node.stop()
        self._node.start()

    def stop(self) -> None:
        """Stop the JVM; `restart()` brings it back."""
        if self._node is not None:
            self._node.stop()


class KraftNode:
    """One `kafka.Kafka` JVM with process.roles=broker,controller and its files in `home`."""

    def __init__(self, java: str, libs: Path, home: Path) -> None:
        self.java, self.libs, self.home = java, libs, home
        ports = _free_ports(5)
        self.port, self.controller_port, self.sasl_port, self.ssl_port, self.sasl_ssl_port = ports
        self.tls = write_tls(home / "tls")
        self.config = home / "server.properties"
        self.log = home / "broker.log"
        self._process: subprocess.Popen[bytes] | None = None

    def format(self) -> None:
        """Write server.properties and format the log dir, with the SCRAM user in it (one
        credential per SCRAM mechanism)."""
        self.config.write_text(_server_properties(self))
        command = [
            self.java,
            "-cp",
            f"{self.libs}/*",
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            _cluster_id(),
            "--config",
            str(self.config),
            "--standalone",
        ]
        for mechanism in _SCRAM:
            command += [
                "--add-scram",
                f"{mechanism}=[name={SASL_USERNAME},password={SASL_PASSWORD}]",
            ]
        done = subprocess.run(  # noqa: S603 - fixed arguments
            command, capture_output=True, text=True, timeout=START_TIMEOUT
        )
        (self.home / "format.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise KafkaFailed(f"kafka storage format failed:\n{tail(done.stdout + done.stderr)}")

    def start(self) -> None:
        """Start the JVM and wait until a metadata request succeeds.

        Raises:
            KafkaFailed: the JVM exited, or was not ready within START_TIMEOUT (it is killed).
        """
        command = [
            self.java,
            *JVM_OPTIONS,
            "-cp",
            f"{self.libs}/*",
            "kafka.Kafka",
            str(self.config),
        ]
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(  # noqa: S603 - fixed arguments
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise KafkaFailed(f"Kafka exited with {code}:\n{tail(self.log.read_text())}")
            if _metadata_answers(f"127.0.0.1:{self.port}"):
                return
            time.sleep(0.2)
        self._kill()
        raise KafkaFailed(
            f"Kafka not ready within {START_TIMEOUT:.0f}s:\n{tail(self.log.read_text())}"
        )

    def stop(self) -> None:
        """SIGTERM (a controlled shutdown), then SIGKILL after STOP_TIMEOUT."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


def _server_properties(node: KraftNode) -> str:
    # controller.quorum.bootstrap.servers (not controller.quorum.voters): `format --standalone`
    # refuses a static voter list.
    listeners = {
        "PLAINTEXT": node.port,
        "SASL_PLAINTEXT": node.sasl_port,
        "SSL": node.ssl_port,
        "SASL_SSL": node.sasl_ssl_port,
    }
    advertised = ",".join(f"{name}://127.0.0.1:{port}" for name, port in listeners.items())
    protocols = ",".join(f"{name}:{name}" for name in listeners)
    logins = "".join(
        f"listener.name.{listener}.{mechanism.lower()}.sasl.jaas.config={_jaas(mechanism)}\n"
        for listener in ("sasl_plaintext", "sasl_ssl")
        for mechanism in SASL_MECHANISMS
    )
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{node.controller_port}
listeners={advertised},CONTROLLER://127.0.0.1:{node.controller_port}
advertised.listeners={advertised}
listener.security.protocol.map={protocols},CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs={node.home / "kafka-logs"}
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=3
sasl.enabled.mechanisms={",".join(SASL_MECHANISMS)}
ssl.keystore.type=PEM
ssl.keystore.location={node.tls.broker}
ssl.truststore.type=PEM
ssl.truststore.location={node.tls.ca}
listener.name.ssl.ssl.client.auth=required
{logins}"""


def _jaas(mechanism: str) -> str:
    if mechanism == "PLAIN":
        return (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_{SASL_USERNAME}="{SASL_PASSWORD}";'
        )
    return "org.apache.kafka.common.security.scram.ScramLoginModule required;"


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA, the broker's key and chain (one file, Kafka's PEM keystore), and a
    client certificate and key for mutual TLS, all valid for a day, for 127.0.0.1."""

    ca: Path
    broker: Path
    client_cert: Path
    client_key: Path


def write_tls(directory: Path) -> TlsFiles:
    """Make a CA and the certificates it signs (EC P-256; ~10 ms) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "soar test CA")])
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]),
        broker_key,
        ca_name,
        ca_key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "soar-worker")]),
        client_key,
        ca_name,
        ca_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    files = TlsFiles(
        ca=directory / "ca.pem",
        broker=directory / "broker.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    files.ca.write_bytes(_pem(ca))
    # Kafka's PEM keystore: an unencrypted PKCS#8 key, then the chain
    files.broker.write_bytes(_pkcs8(broker_key) + _pem(broker) + _pem(ca))
    files.client_cert.write_bytes(_pem(client))
    files.client_key.write_bytes(_pkcs8(client_key))
    return files


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cluster_id() -> str:
    # What `kafka-storage random-uuid` prints: 16 random bytes, URL-safe base64, unpadded; one
    # that starts with "-" would read as an option.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _metadata_answers(bootstrap: str) -> bool:
    """Whether a metadata request lists a broker. aiokafka runs on its own thread and loop, so
    the test's event loop (pytest-asyncio's) is never touched from this sync fixture."""

    async def probe() -> bool:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2_000)
        try:
            await client.bootstrap()
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            await client.close()
        return bool(client.cluster.brokers())

    answer: list[bool] = []
    thread = threading.Thread(target=lambda: answer.append(asyncio.run(probe())), daemon=True)
    thread.start()
    thread.join(timeout=10)
    return answer == [True]


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield ApacheKafka(external)
        return
    try:
        java, libs = java_binary(), fetch_libs()
    except KafkaUnavailable as exc:
        unavailable(str(exc))
    node = KraftNode(java, libs, tmp_path_factory.mktemp("apache-kafka"))
    node.format()
    node.start()
    try:
        yield ApacheKafka(f"127.0.0.1:{node.port}", node)
    finally:
        node.stop()
