"""Traces: one per alert, with a span for each run, step attempt and connector call.

soar owns trace identity: a run's trace id and root span id are chosen when the run is recorded
and kept with it, so a resumed run continues the same trace, audit records name it, and ids
exist even with tracing off. Spans are parented explicitly by `TraceRef`, not by context
variables, because a run's steps outlive any one task.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

PLAYBOOK: Final = "soar.playbook"
VERSION: Final = "soar.playbook.version"
RUN_ID: Final = "soar.run_id"
STEP: Final = "soar.step"
ACTION: Final = "soar.action"
ATTEMPT: Final = "soar.attempt"
OUTCOME: Final = "soar.outcome"
ALERT_ID: Final = "soar.alert_id"

Attributes = Mapping[str, str | int | bool]
_NONE: Final[Attributes] = MappingProxyType({})
_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


@dataclass(frozen=True, slots=True)
class TraceRef:
    """A span's identity: its trace id (32 hex digits) and span id (16)."""

    trace_id: str
    span_id: str

    def traceparent(self) -> str:
        """The W3C `traceparent` header value (sampled)."""
        return f"00-{self.trace_id}-{self.span_id}-01"

    @staticmethod
    def parse(text: str | None) -> TraceRef | None:
        """The span a W3C `traceparent` names, or None when it is not a valid one."""
        if not isinstance(text, str):
            return None
        match = _TRACEPARENT.fullmatch(text.strip())
        if match is None:
            return None
        version, trace_id, span_id, _, rest = match.groups()
        if version == "ff" or (version == "00" and rest) or (rest and not rest.startswith("-")):
            return None
        if trace_id == "0" * 32 or span_id == "0" * 16:
            return None
        return TraceRef(trace_id, span_id)


def new_trace(trace_id: str | None = None) -> TraceRef:
    """A new span id, in trace `trace_id` or in a new trace."""
    return TraceRef(trace_id or os.urandom(16).hex(), os.urandom(8).hex())


class ActiveSpan:
    """A started span: `ref` parents its children; `set` adds attributes after the start."""

    __slots__ = ("_span", "ref")

    def __init__(self, ref: TraceRef, span: trace.Span | None = None) -> None:
        self.ref = ref
        self._span = span

    def set(self, key: str, value: str | int | bool) -> None:
        if self._span is not None:
            self._span.set_attribute(key, value)


class _ChosenIds(IdGenerator):
    """Random ids, except the ids soar chose for a root span about to start (per thread)."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._next = threading.local()

    def choose(self, ref: TraceRef) -> None:
        self._next.trace_id = int(ref.trace_id, 16)
        self._next.span_id = int(ref.span_id, 16)

    def clear(self) -> None:
        self._next.trace_id = self._next.span_id = None

    def generate_span_id(self) -> int:
        chosen: int | None = getattr(self._next, "span_id", None)
        self._next.span_id = None
        return chosen if chosen is not None else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        chosen: int | None = getattr(self._next, "trace_id", None)
        self._next.trace_id = None
        return chosen if chosen is not None else self._random.generate_trace_id()


class Tracing:
    """Spans to an exporter, or (`NO_TRACING`) only the ids, at next to no cost."""

    def __init__(
        self, provider: TracerProvider | None = None, ids: _ChosenIds | None = None
    ) -> None:
        self._provider = provider
        self._ids = ids
        self._tracer = provider.get_tracer("soar") if provider is not None else None
        self.enabled = provider is not None

    @contextlib.contextmanager
    def span(
        self, name: str, parent: TraceRef | None, attributes: Attributes = _NONE
    ) -> Iterator[ActiveSpan]:
        """A child of `parent` (or a new trace's root), ended when the block ends; an
        exception escaping the block is recorded on it with status ERROR."""
        if self._tracer is None:
            yield ActiveSpan(new_trace(parent.trace_id if parent is not None else None))
            return
        with self._start(name, parent, attributes) as active:
            yield active

    @contextlib.contextmanager
    def root_span(
        self, name: str, ref: TraceRef, parent: TraceRef | None, attributes: Attributes = _NONE
    ) -> Iterator[ActiveSpan]:
        """A span whose own ids are `ref` (a run's root span, whose ids soar stored): a child
        of `parent` when given (the alert's span), else the root of its trace."""
        if self._tracer is None or self._ids is None:
            yield ActiveSpan(ref)
            return
        self._ids.choose(ref)
        with self._start(name, parent, attributes) as active:
            yield active

    @contextlib.contextmanager
    def _start(
        self, name: str, parent: TraceRef | None, attributes: Attributes
    ) -> Iterator[ActiveSpan]:
        assert self._tracer is not None  # noqa: S101
        context = Context()  # never the ambient span: parents are explicit
        if parent is not None:
            parent_context = SpanContext(
                trace_id=int(parent.trace_id, 16),
                span_id=int(parent.span_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
            context = trace.set_span_in_context(NonRecordingSpan(parent_context))
        span = self._tracer.start_span(name, context=context, attributes=dict(attributes))
        if self._ids is not None:
            self._ids.clear()  # a chosen trace id goes unused when the span has a parent
        own = span.get_span_context()
        active = ActiveSpan(TraceRef(f"{own.trace_id:032x}", f"{own.span_id:016x}"), span)
        try:
            yield active
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            span.end()

    def shutdown(self) -> None:
        """Export what is buffered and stop."""
        if self._provider is not None:
            self._provider.shutdown()


NO_TRACING: Final = Tracing()


def configure_tracing(
    exporter: Literal["none", "console", "otlp"],
    *,
    otlp_endpoint: str | None = None,
    service_name: str = "soar",
) -> Tracing:
    """Tracing to the chosen exporter. The global tracer provider is left alone."""
    if exporter == "none":
        return NO_TRACING
    processor: SpanProcessor
    if exporter == "console":
        processor = SimpleSpanProcessor(ConsoleSpanExporter())
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint))
    return _tracing(processor, service_name)


def in_memory_tracing() -> tuple[Tracing, InMemorySpanExporter]:
    """Tracing into memory, for tests: every finished span lands in the exporter at once."""
    exporter = InMemorySpanExporter()
    return _tracing(SimpleSpanProcessor(exporter), "soar-test"), exporter


def _tracing(processor: SpanProcessor, service_name: str) -> Tracing:
    ids = _ChosenIds()
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), id_generator=ids
    )
    provider.add_span_processor(processor)
    return Tracing(provider, ids)


__all__ = [
    "ACTION",
    "ALERT_ID",
    "ATTEMPT",
    "NO_TRACING",
    "OUTCOME",
    "PLAYBOOK",
    "RUN_ID",
    "STEP",
    "VERSION",
    "ActiveSpan",
    "SpanExporter",
    "TraceRef",
    "Tracing",
    "configure_tracing",
    "in_memory_tracing",
    "new_trace",
]
