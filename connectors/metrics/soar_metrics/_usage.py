"""`metrics.server_usage`: CPU, memory and disk use per node exporter target, from three instant
queries, each value compared with its threshold. The monthly server check reads this."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from soar_metrics._prometheus import Prometheus, PrometheusError
from soar_metrics._results import (
    alternatives,
    check_label_value,
    check_target,
    duration,
    host_of,
    labels_of,
    number,
)

DEFAULT_EXCLUDED_FSTYPES: Final = ("tmpfs", "overlay", "squashfs", "devtmpfs", "ramfs")
_MAX_SERVERS: Final = 1000

Metric = Literal["cpu", "memory", "disk"]


class UsageCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: list[str] = Field(
        default_factory=list,
        max_length=_MAX_SERVERS,
        description="node exporter targets (`host:port`) or hosts (any port); empty: every "
        "target that has node exporter CPU metrics",
    )
    job: str | None = Field(default=None, description="only targets of this scrape job")
    cpu_threshold: float = Field(default=90.0, ge=0, le=100, description="percent")
    memory_threshold: float = Field(default=90.0, ge=0, le=100, description="percent")
    disk_threshold: float = Field(default=90.0, ge=0, le=100, description="percent, per mount")
    cpu_window: timedelta = Field(
        default=timedelta(minutes=5),
        ge=timedelta(seconds=1),
        le=timedelta(days=1),
        description="CPU use is the average over this window before now",
    )
    exclude_fstypes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDED_FSTYPES),
        max_length=50,
        description="file system types left out of the disk figures",
    )

    @field_validator("instances")
    @classmethod
    def _targets(cls, values: list[str]) -> list[str]:
        return [check_target(v) for v in values]

    @field_validator("cpu_window", mode="before")
    @classmethod
    def _window(cls, value: object) -> object:
        return duration(value)

    @field_validator("job")
    @classmethod
    def _job(cls, value: str | None) -> str | None:
        return None if value is None else check_label_value(value)

    @field_validator("exclude_fstypes")
    @classmethod
    def _fstypes(cls, values: list[str]) -> list[str]:
        return [check_label_value(v) for v in values]


class DiskUsage(BaseModel):
    mountpoint: str
    device: str
    fstype: str
    used_percent: float
    breach: bool = Field(description="used_percent is above disk_threshold")


class Breach(BaseModel):
    instance: str
    metric: Metric
    mountpoint: str | None = Field(default=None, description="for disk breaches")
    value: float = Field(description="percent")
    threshold: float = Field(description="percent")


class ServerUsage(BaseModel):
    instance: str = Field(description="the target as Prometheus names it (`host:port`)")
    host: str = Field(description="the instance without its port")
    cpu_percent: float | None = Field(description="null when Prometheus has no figure")
    memory_percent: float | None
    disks: list[DiskUsage]
    breaches: list[Breach]


class UsageReport(BaseModel):
    checked_at: datetime
    servers: list[ServerUsage] = Field(description="one per target, sorted by instance")
    breaches: list[Breach] = Field(description="every server's breaches, in server order")
    missing: list[str] = Field(
        description="instances asked for that Prometheus has no node exporter data about"
    )


def _selector(params: UsageCheck, *extra: str) -> str:
    matchers = list(extra)
    if params.instances:
        matchers.append(f'instance=~"{alternatives(params.instances, any_port=True)}"')
    if params.job is not None:
        matchers.append(f'job="{params.job}"')
    return ", ".join(matchers)


def _seconds(window: timedelta) -> str:
    return f"{int(window.total_seconds())}s"


def queries(params: UsageCheck) -> dict[Metric, str]:
    """The three PromQL expressions, each a percentage per instance (per mount for disks)."""
    idle = _selector(params, 'mode="idle"')
    plain = _selector(params)
    fs_matchers = ['fstype!~"' + alternatives(params.exclude_fstypes) + '"']
    if not params.exclude_fstypes:
        fs_matchers = []
    fs = _selector(params, *fs_matchers)
    window = _seconds(params.cpu_window)
    return {
        "cpu": f"100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{{{idle}}}[{window}])))",
        "memory": (
            f"100 * (1 - node_memory_MemAvailable_bytes{{{plain}}}"
            f" / node_memory_MemTotal_bytes{{{plain}}})"
        ),
        "disk": (
            f"100 * (1 - node_filesystem_avail_bytes{{{fs}}}"
            f" / (node_filesystem_size_bytes{{{fs}}} > 0))"
        ),
    }


def _vector(data: dict[str, JsonValue]) -> list[tuple[dict[str, str], float | None]]:
    result = data.get("result")
    if data.get("resultType") != "vector" or not isinstance(result, list):
        raise PrometheusError("Prometheus' answer is not an instant vector", retryable=False)
    found = []
    for item in result:
        value = item.get("value") if isinstance(item, dict) else None
        figure = number(value[1]) if isinstance(value, list) and len(value) == 2 else None
        found.append((labels_of(item), figure))
    return found


def _matches(asked: str, instance: str) -> bool:
    return asked == instance or host_of(instance) == asked


async def check_usage(api: Prometheus, params: UsageCheck, *, now: datetime) -> UsageReport:
    """Run the three queries and compare each figure with its threshold (above it is a breach).

    Raises:
        PrometheusError: as `Prometheus.get`.
    """
    answers = {metric: await api.query(text) for metric, text in queries(params).items()}
    cpu: dict[str, float | None] = {}
    memory: dict[str, float | None] = {}
    disks: dict[str, list[DiskUsage]] = {}
    for labels, value in _vector(answers["cpu"]):
        cpu[labels.get("instance", "")] = _round(value)
    for labels, value in _vector(answers["memory"]):
        memory[labels.get("instance", "")] = _round(value)
    for labels, value in _vector(answers["disk"]):
        if value is None:
            continue
        used = _round(value) or 0.0
        disks.setdefault(labels.get("instance", ""), []).append(
            DiskUsage(
                mountpoint=labels.get("mountpoint", ""),
                device=labels.get("device", ""),
                fstype=labels.get("fstype", ""),
                used_percent=used,
                breach=used > params.disk_threshold,
            )
        )
    servers = []
    for instance in sorted(set(cpu) | set(memory) | set(disks)):
        breaches = []
        for metric, figures, threshold in (
            ("cpu", cpu, params.cpu_threshold),
            ("memory", memory, params.memory_threshold),
        ):
            value = figures.get(instance)
            if value is not None and value > threshold:
                breaches.append(
                    Breach(instance=instance, metric=metric, value=value, threshold=threshold)
                )
        mounts = sorted(disks.get(instance, []), key=lambda d: d.mountpoint)
        breaches += [
            Breach(
                instance=instance,
                metric="disk",
                mountpoint=d.mountpoint,
                value=d.used_percent,
                threshold=params.disk_threshold,
            )
            for d in mounts
            if d.breach
        ]
        servers.append(
            ServerUsage(
                instance=instance,
                host=host_of(instance),
                cpu_percent=cpu.get(instance),
                memory_percent=memory.get(instance),
                disks=mounts,
                breaches=breaches,
            )
        )
    missing = [
        asked for asked in params.instances if not any(_matches(asked, s.instance) for s in servers)
    ]
    return UsageReport(
        checked_at=now,
        servers=servers,
        breaches=[b for s in servers for b in s.breaches],
        missing=missing,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(min(max(value, 0.0), 100.0), 2)
