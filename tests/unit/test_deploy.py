"""deploy/ checked against the code, since Docker is not here to run it: every YAML file parses,
the Kubernetes objects hang together (selectors, probe and Service ports, volumes), and every
image is pinned, every command and option is a real `soar` command, every SOAR_* variable a real
setting (and the values validate), every port the one the settings use."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml
from pydantic import BaseModel

from soar import __version__
from soar.api.routes import ROUTES
from soar.cli.main import cli
from soar.config import ApiSettings, KafkaSettings, SecretsSettings, Settings, TelemetrySettings
from tests.apache_kafka import KAFKA_VERSION

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
SOAR_SERVICES = ("worker", "api")
DRAIN_S = KafkaSettings().drain_timeout
API_PORT = ApiSettings().port
METRICS_PORT = TelemetrySettings().metrics_port
NAMESPACED = {"ConfigMap", "Secret", "Deployment", "Service"}


# ---- helpers: the settings tree, the CLI tree, the files -------------------------------------


def _setting_names(model: type[BaseModel], prefix: str) -> tuple[set[str], set[str]]:
    """(every leaf variable, every prefix under which any key goes: the dict settings)."""
    leaves: set[str] = set()
    open_prefixes: set[str] = set()
    for name, field in model.model_fields.items():
        var = f"{prefix}{name.upper()}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            inner, more = _setting_names(annotation, f"{var}__")
            leaves |= inner
            open_prefixes |= more
            continue
        leaves.add(var)
        if getattr(annotation, "__origin__", None) is dict:
            open_prefixes.add(f"{var}__")
    return leaves, open_prefixes


LEAVES, OPEN_PREFIXES = _setting_names(Settings, "SOAR_")
OTHER_VARIABLES = {"SOAR_CONFIG", SecretsSettings().key_env}


def is_setting(name: str) -> bool:
    """Whether soar reads this SOAR_* variable: a setting, the config path, the secret-store key,
    or a connector secret (`SOAR_SECRET_<CONNECTOR>_<NAME>`, docs/secrets.md)."""
    return (
        name in LEAVES
        or name in OTHER_VARIABLES
        or any(name.startswith(p) and len(name) > len(p) for p in OPEN_PREFIXES)
        or (name.startswith("SOAR_SECRET_") and not name.startswith("SOAR_SECRETS_"))
    )


def command_problems(argv: list[str]) -> list[str]:
    """What in `soar ARGV` the CLI does not have: an unknown command or option."""
    command: click.Command = cli
    words = list(argv)
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        name = words.pop(0)
        found = command.commands.get(name)
        if found is None:
            return [f"no command {name!r} under {command.name!r}"]
        command = found
    if isinstance(command, click.Group):
        return [f"{command.name!r} needs a subcommand"]
    options = {o for p in command.params for o in getattr(p, "opts", [])}
    return [
        f"{command.name!r} has no option {w.split('=')[0]!r}"
        for w in words
        if w.startswith("-") and w.split("=")[0] not in options
    ]


def unauthenticated_gets() -> set[str]:
    return {r.full_path for r in ROUTES if r.method == "GET" and r.roles is None}


def _yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


def _interpolate(value: str) -> str:
    """Compose's `${VAR:?message}` and `${VAR:-default}`, with a stand-in for the unset ones."""
    return re.sub(
        r"\$\{(\w+)(?::([?-])([^}]*))?\}",
        lambda m: m.group(3) if m.group(2) == "-" else f"stand-in-{m.group(1).lower()}",
        value,
    )


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def service_env(service: str) -> dict[str, str]:
    """The environment a compose service gets, `${...}` filled in with stand-ins."""
    env = compose()["services"][service]["environment"]
    return {name: _interpolate(str(value)) for name, value in env.items()}


def k8s_objects() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path, doc


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in k8s_objects() if d["kind"] == "Deployment"}


def config_toml() -> dict[str, Any]:
    (config,) = [d for _, d in k8s_objects() if d["kind"] == "ConfigMap"]
    return tomllib.loads(config["data"]["soar.toml"])


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def image_entrypoint() -> list[str]:
    (entry,) = [arg for op, arg in dockerfile_instructions() if op == "ENTRYPOINT"]
    words: list[str] = json.loads(entry)
    return words


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def unit_values(path: Path, key: str) -> list[str]:
    """Every value of a key systemd allows several times (configparser keeps the last)."""
    return [
        line.split("=", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.split("=", 1)[0].strip() == key
    ]


def seconds(value: str) -> float:
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|m|min)?", value.strip())
    assert found, value
    number, unit_ = float(found.group(1)), found.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "min": 60}[unit_]


def assert_pinned(image: str) -> None:
    name, _, tag = image.rpartition(":")
    assert name, f"{image}: no tag"
    assert "/" not in tag, f"{image}: no tag"
    assert tag not in {"latest", "stable", "main"}, f"{image}: a moving tag"
    assert re.search(r"\d", tag), f"{image}: a tag without a version"


# ---- every file parses ------------------------------------------------------------------------


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs
    assert all(isinstance(d, dict) for d in docs)


def test_the_yaml_checked_is_the_yaml_there() -> None:
    names = {str(p.relative_to(DEPLOY)) for p in _yaml_files()}
    assert {"compose.yaml", "otel-collector.yaml", "prometheus.yml"} <= names
    assert {f"k8s/{n}.yaml" for n in ("namespace", "configmap", "secret", "worker", "api")} <= names


# ---- docker compose ---------------------------------------------------------------------------


def test_compose_has_the_production_shape() -> None:
    services = compose()["services"]
    assert {"kafka", "kafka-init", "postgres", "otel-collector", "prometheus"} <= set(services)
    assert set(SOAR_SERVICES) <= set(services)
    assert services["worker"]["deploy"]["replicas"] >= 2
    kafka_env = services["kafka"]["environment"]
    assert set(kafka_env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}


def test_every_compose_image_is_pinned_and_soar_is_this_version() -> None:
    services = compose()["services"]
    for service in services.values():
        assert_pinned(service["image"])
    for name in SOAR_SERVICES:
        assert services[name]["image"] == f"soar:{__version__}"
        build = services[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    # the broker the suite tests against (tests/apache_kafka.py) is the one deployed
    for name in ("kafka", "kafka-init"):
        assert services[name]["image"] == f"apache/kafka:{KAFKA_VERSION}"


@pytest.mark.parametrize("service", SOAR_SERVICES)
def test_compose_soar_variables_are_settings_that_validate(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = service_env(service)
    assert [name for name in env if not is_setting(name)] == []
    monkeypatch.chdir(tmp_path)  # no ./soar.toml
    for name in [n for n in os.environ if n.startswith("SOAR_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.kafka.topics
    assert settings.store.startswith("postgresql://")


@pytest.mark.parametrize("service", SOAR_SERVICES)
def test_compose_commands_are_soar_commands(service: str) -> None:
    assert image_entrypoint() == ["soar"]
    assert command_problems(compose()["services"][service]["command"]) == []


def test_compose_ports_are_the_settings_ports() -> None:
    services = compose()["services"]
    api, worker = service_env("api"), service_env("worker")
    assert int(api["SOAR_API__PORT"]) == API_PORT
    assert int(worker["SOAR_TELEMETRY__METRICS_PORT"]) == METRICS_PORT
    assert worker["SOAR_TELEMETRY__METRICS"] == "prometheus"
    # published and listened on every interface inside the container
    assert api["SOAR_API__HOST"] == worker["SOAR_TELEMETRY__METRICS_HOST"] == "0.0.0.0"  # noqa: S104
    assert [p.rsplit(":", 1)[1] for p in services["api"]["ports"]] == [str(API_PORT)]
    # the health checks ask the port the service listens on, on a route that needs no token
    checks = {
        "api": (API_PORT, unauthenticated_gets()),
        "worker": (METRICS_PORT, {"/metrics"}),
    }
    for name, (port, paths) in checks.items():
        (url,) = re.findall(r"http://[^'\"]+", " ".join(services[name]["healthcheck"]["test"]))
        assert urlsplit(url).port == port
        assert urlsplit(url).path in paths


def test_compose_kafka_settings_match_the_broker_and_its_topics() -> None:
    services = compose()["services"]
    env = service_env("worker")
    host, port = env["SOAR_KAFKA__BOOTSTRAP_SERVERS"].split(":")
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"PLAINTEXT://{host}:{port}" in advertised.split(",")
    assert host in services
    created = re.findall(r"--topic (\S+)", " ".join(services["kafka-init"]["command"]))
    topics = json.loads(env["SOAR_KAFKA__TOPICS"])
    assert sorted(created) == sorted([*topics, env["SOAR_KAFKA__DEAD_LETTER_TOPIC"]])
    assert services["worker"]["depends_on"]["kafka-init"]["condition"] == (
        "service_completed_successfully"
    )


def test_compose_store_is_the_postgres_service() -> None:
    services = compose()["services"]
    url = urlsplit(service_env("worker")["SOAR_STORE"])
    assert url.hostname == "postgres"
    assert url.hostname in services
    postgres = services["postgres"]["environment"]
    assert url.username == postgres["POSTGRES_USER"]
    assert url.path == f"/{postgres['POSTGRES_DB']}"
    # the password is interpolated from deploy/.env, never written in the file
    assert "${SOAR_DB_PASSWORD" in services["worker"]["environment"]["SOAR_STORE"]


def test_compose_traces_go_to_the_collector_it_runs() -> None:
    endpoint = urlsplit(service_env("worker")["SOAR_TELEMETRY__OTLP_ENDPOINT"])
    assert endpoint.hostname == "otel-collector"
    assert endpoint.path == "/v1/traces"
    collector = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert int(http.rsplit(":", 1)[1]) == endpoint.port
    pipeline = collector["service"]["pipelines"]["traces"]
    assert "otlp" in pipeline["receivers"]
    assert set(pipeline["exporters"]) <= set(collector["exporters"])
    assert set(pipeline["processors"]) <= set(collector["processors"])
    mounted = {v.split(":")[1] for v in compose()["services"]["otel-collector"]["volumes"]}
    assert any(
        f"--config={m}" in compose()["services"]["otel-collector"]["command"] for m in mounted
    )


def test_prometheus_scrapes_the_api_and_every_worker() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api, worker = jobs["soar-api"], jobs["soar-worker"]
    assert api["static_configs"][0]["targets"] == [f"api:{API_PORT}"]
    assert api["metrics_path"] in unauthenticated_gets()
    (discovery,) = worker["dns_sd_configs"]
    assert discovery["names"] == ["worker"]
    assert discovery["port"] == METRICS_PORT
    assert worker["metrics_path"] == "/metrics"


@pytest.mark.parametrize("service", SOAR_SERVICES)
def test_compose_key_material_is_mounted_not_baked(service: str) -> None:
    spec = compose()["services"][service]
    env = service_env(service)
    declared = compose()["secrets"]
    for name in spec["secrets"]:
        assert declared[name]["file"].startswith("./local/"), name
    targets = [volume.split(":")[1] for volume in spec["volumes"]]
    for name, value in env.items():
        if value.startswith("/run/secrets/"):
            assert value.removeprefix("/run/secrets/") in spec["secrets"], name
        elif value.startswith("/etc/soar/"):
            assert any(value == t or value.startswith(t + "/") for t in targets), name
    for volume in spec["volumes"]:
        assert volume.endswith(":ro"), volume
    assert "local/" in (DEPLOY / ".gitignore").read_text().split()
    assert spec["read_only"] is True


def test_compose_stops_slower_than_a_worker_drains() -> None:
    for name in SOAR_SERVICES:
        service = compose()["services"][name]
        assert service["stop_signal"] == "SIGTERM"
        assert seconds(service["stop_grace_period"]) > DRAIN_S


# ---- the image ------------------------------------------------------------------------------


def test_the_image_is_pinned_slim_python_311_run_by_a_user() -> None:
    instructions = dockerfile_instructions()
    bases = [arg.split()[0] for op, arg in instructions if op == "FROM"]
    assert bases
    assert all(b.startswith("python:3.11") and "slim" in b for b in bases)
    for base in bases:
        assert_pinned(base)
    (user,) = [arg for op, arg in instructions if op == "USER"]
    assert user.split(":")[0] not in {"0", "root"}
    assert [arg for op, arg in instructions if op == "CMD"] == ['["worker"]']


def test_the_image_copies_only_sources_and_installs_every_connector() -> None:
    instructions = dockerfile_instructions()
    sources = [
        word
        for op, arg in instructions
        if op == "COPY" and not arg.startswith("--from")
        for word in shlex.split(arg)[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not re.search(r"key|secret|\.env|local", source), source
    install = " ".join(arg for op, arg in instructions if op == "RUN" and "pip install" in arg)
    assert " . " in f"{install} "
    assert "./connectors/*/" in install
    assert all(
        (c / "pyproject.toml").is_file() for c in (ROOT / "connectors").iterdir() if c.is_dir()
    )
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line for line in ignore if line and not line.startswith("#")]
    assert patterns[0] == "**"  # the build context is what is named after it, nothing else


# ---- Kubernetes -------------------------------------------------------------------------------


def test_every_k8s_object_is_well_formed() -> None:
    kinds = []
    for path, doc in k8s_objects():
        assert {"apiVersion", "kind", "metadata"} <= set(doc), path
        assert doc["metadata"]["name"], path
        kinds.append(doc["kind"])
        if doc["kind"] in NAMESPACED:
            assert doc["metadata"]["namespace"] == "soar", path
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service"} <= set(kinds)


def test_kustomization_applies_everything_but_the_secret_placeholders() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present - {"secret.yaml"}


def test_k8s_secrets_hold_placeholders_only() -> None:
    secrets = [d for _, d in k8s_objects() if d["kind"] == "Secret"]
    assert {s["metadata"]["name"] for s in secrets} == {
        "soar-keys",
        "soar-audit-keyring",
        "soar-db",
    }
    for secret in secrets:
        assert "data" not in secret
        assert all(value == "REPLACE-ME" for value in secret["stringData"].values())


def test_k8s_config_is_settings_that_validate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("SOAR_")]:
        monkeypatch.delenv(name)
    settings = Settings(**config_toml())
    assert settings.api.port == API_PORT
    assert settings.kafka.drain_timeout == DRAIN_S


@pytest.mark.parametrize("name", ["soar-worker", "soar-api"])
def test_k8s_deployment_hangs_together(name: str) -> None:
    deployment = deployments()[name]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] >= 2
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] > DRAIN_S
    volumes = {v["name"]: v for v in pod["volumes"]}
    objects = {(d["kind"], d["metadata"]["name"]) for _, d in k8s_objects()}
    for volume in volumes.values():
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in objects
        if "secret" in volume:
            assert ("Secret", volume["secret"]["secretName"]) in objects
    (container,) = pod["containers"]
    assert_pinned(container["image"])
    assert container["image"] == f"soar:{__version__}"
    assert command_problems(container["args"]) == []
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert set(ports.values()) == {config_toml()["api"]["port"]}
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] in ports or get["port"] in ports.values()
        assert get["path"] in unauthenticated_gets()
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/v1/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/ready"
    for env in container["env"]:
        assert is_setting(env["name"]), env["name"]
        if "secretKeyRef" in env.get("valueFrom", {}):
            assert ("Secret", env["valueFrom"]["secretKeyRef"]["name"]) in objects
    config_path = next(e["value"] for e in container["env"] if e["name"] == "SOAR_CONFIG")
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert all(m["name"] in volumes for m in mounts.values())
    assert str(Path(config_path).parent) in mounts
    # every file soar.toml names is in a mounted volume (or baked: the playbooks)
    toml = config_toml()
    for path in (
        toml["audit"]["keys"],
        toml["secrets"]["key_file"],
        toml["api"]["session_key_file"],
    ):
        assert any(path.startswith(m + "/") or path == m for m in mounts), path
    assert {"requests", "limits"} <= set(container["resources"])
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_the_workers_consume_and_answer_probes_in_one_process() -> None:
    args = deployments()["soar-worker"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["serve", "--with-worker"]


def test_k8s_service_reaches_the_api_pods_port() -> None:
    (service,) = [d for _, d in k8s_objects() if d["kind"] == "Service"]
    selected = [
        d
        for d in deployments().values()
        if service["spec"]["selector"].items()
        <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert [d["metadata"]["name"] for d in selected] == ["soar-api"]
    (container,) = selected[0]["spec"]["template"]["spec"]["containers"]
    names = {p["name"] for p in container["ports"]} | {
        p["containerPort"] for p in container["ports"]
    }
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in names


# ---- systemd ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "argv"),
    [(SYSTEMD / "soar-worker@.service", ["worker"]), (SYSTEMD / "soar-api.service", ["serve"])],
    ids=["worker", "api"],
)
def test_systemd_unit_runs_a_real_soar_command_hardened(path: Path, argv: list[str]) -> None:
    service = unit(path)["Service"]
    executable, *words = shlex.split(service["ExecStart"])
    assert executable == "/opt/soar/.venv/bin/soar"
    assert words == argv
    assert command_problems(words) == []
    assert "/etc/soar/soar.env" in unit_values(path, "EnvironmentFile")
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert seconds(service["TimeoutStopSec"]) > DRAIN_S
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service.get("DynamicUser") == "yes" or service.get("User") == "soar"
    for value in unit_values(path, "Environment"):
        assert is_setting(value.split("=", 1)[0])
    assert unit(path)["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_environment_file_example_is_settings_that_validate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lines = (SYSTEMD / "soar.env.example").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert [name for name in env if not is_setting(name)] == []
    assert int(env["SOAR_API__PORT"]) == API_PORT
    assert int(env["SOAR_TELEMETRY__METRICS_PORT"]) == METRICS_PORT
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("SOAR_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().kafka.topics == ["soar.alerts"]


# ---- the checks themselves --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["wroker"], "no command 'wroker'"),
        (["serve", "--with-workers"], "no option '--with-workers'"),
        (["tokens"], "needs a subcommand"),
    ],
    ids=["command", "option", "group"],
)
def test_a_command_the_cli_lacks_is_caught(argv: list[str], problem: str) -> None:
    assert problem in " ".join(command_problems(argv))


@pytest.mark.parametrize(
    ("name", "known"),
    [
        ("SOAR_KAFKA__BOOTSTRAP_SERVERS", True),
        ("SOAR_LIMITS__EDR__RATE", True),
        ("SOAR_SECRET_LDAP_BIND_PASSWORD", True),
        ("SOAR_KAFKA__BOOTSTRAP", False),
        ("SOAR_API_PORT", False),
        ("SOAR_LIMITS__", False),
    ],
)
def test_a_variable_soar_does_not_read_is_caught(name: str, known: bool) -> None:
    assert is_setting(name) is known
