"""Traces: one per alert, with a span for each run, step attempt and connector call.

soar owns trace identity: a run's trace id and root span id are chosen when the run is recorded
and kept with it, so a resumed run continues the same trace, audit records name it, and ids
exist even with tracing off. Spans are parented explicitly by `TraceRef`, not by context
variables, because a run's steps outlive any one task.
"""

from __future__ import annotations

import os
import random
import re
import sys
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags
from pydantic import BaseModel, ConfigDict

# Span attribute keys (the engine sets them; dashboards and tests read them).
PLAYBOOK: Final = "soar.playbook"
VERSION: Final = "soar.playbook.version"
RUN_ID: Final = "soar.run_id"
STEP: Final = "soar.step"
ACTION: Final = "soar.action"
ATTEMPT: Final = "soar.attempt"
OUTCOME: Final = "soar.outcome"
ALERT_ID: Final = "soar.alert_id"

Attributes = Mapping[str, str | bool | int | float]

_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16
_HEX32: Final = re.compile(r"[0-9a-f]{32}")
# The first 55 characters of any version's traceparent: version, trace id, parent id, flags.
_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_OWS: Final = " \t"


class TracingSettings(BaseModel):
    """Where spans go. `otlp` sends OTLP over HTTP (protobuf) to `otlp_endpoint`, e.g.
    `http://127.0.0.1:4318/v1/traces` (unset: the `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    environment variable, else that default); `console` writes each span to stderr."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exporter: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str | None = None
    service_name: str = "soar"


@dataclass(frozen=True, slots=True, eq=False)
class TraceRef:
    """A span's identity: its trace id (32 lowercase hex digits) and span id (16). Make one
    with `new_trace` or `TraceRef.parse`; two refs are equal when their ids are."""

    trace_id: str
    span_id: str

    def traceparent(self) -> str:
        """The W3C `traceparent` header value (version 00, sampled)."""
        return f"00-{self.trace_id}-{self.span_id}-01"

    @staticmethod
    def parse(text: object) -> TraceRef | None:
        """The span a W3C `traceparent` value names, or None when it is not a valid one.

        Follows https://www.w3.org/TR/trace-context/: lowercase hex only, ids not all zero,
        version `ff` invalid, version `00` exactly 55 characters; a higher version is read
        from its first 55 characters when the 56th is a `-`. Spaces and tabs around the
        value are ignored (HTTP's optional whitespace). Never raises.
        """
        if not isinstance(text, str):
            return None
        text = text.strip(_OWS)
        if len(text) < 55 or (len(text) > 55 and (text[:2] == "00" or text[55] != "-")):
            return None
        match = _TRACEPARENT.fullmatch(text, 0, 55)
        if match is None:
            return None
        version, trace_id, span_id = match.groups()
        if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return None
        return TraceRef(trace_id, span_id)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TraceRef):
            return self.trace_id == other.trace_id and self.span_id == other.span_id
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.trace_id, self.span_id))


def new_trace(trace_id: str | None = None) -> TraceRef:
    """A fresh span id in trace `trace_id`, or in a new trace when it is None (or not 32
    lowercase hex digits, not all zero). Trace ids come from `os.urandom`."""
    if trace_id is None or trace_id == _ZERO_TRACE or not _HEX32.fullmatch(trace_id):
        trace_id = os.urandom(16).hex()
        while trace_id == _ZERO_TRACE:  # pragma: no cover - one chance in 2**128
            trace_id = os.urandom(16).hex()
    return TraceRef(trace_id, _span_id())


def _span_id() -> str:
    # `random` (reseeded after fork) is unique enough within one trace and faster than
    # os.urandom, which matters while tracing is off and only the ids are made.
    value = random.getrandbits(64)
    while not value:  # pragma: no cover - one chance in 2**64
        value = random.getrandbits(64)
    return f"{value:016x}"


class ActiveSpan(TraceRef):
    """A started span. It is the span's `TraceRef` (pass it as the parent of children, across
    awaits), a context manager that ends the span, and takes attributes known only later.

    An exception leaving the `with` block is recorded on the span (without the exceptions
    chained to it, whose messages may quote what a connector was given) and an `Exception`
    sets status ERROR; a cancellation is recorded but is not an error.
    """

    __slots__ = ("_span",)

    _span: trace.Span | None

    def __init__(self, trace_id: str, span_id: str, span: trace.Span | None = None) -> None:
        object.__setattr__(self, "trace_id", trace_id)
        object.__setattr__(self, "span_id", span_id)
        object.__setattr__(self, "_span", span)

    @property
    def ref(self) -> TraceRef:
        """The span's identity as a plain `TraceRef` (holds no span)."""
        return TraceRef(self.trace_id, self.span_id)

    def set(self, key: str, value: str | bool | int | float) -> None:
        """Add an attribute (nothing when tracing is off or the span has ended)."""
        if self._span is not None:
            self._span.set_attribute(key, value)

    def __enter__(self) -> ActiveSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        if span is None:
            return
        object.__setattr__(self, "_span", None)
        if exc is not None:
            stack = "".join(traceback.format_exception(exc, chain=False))
            span.record_exception(exc, {"exception.stacktrace": stack}, escaped=True)
            if isinstance(exc, Exception):
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()


class _ChosenIds(IdGenerator):
    """The provider's ids: those soar chose for the span about to start (per thread, set just
    before `start_span` and taken by it), else the wrapped generator's."""

    def __init__(self, fallback: IdGenerator) -> None:
        self._fallback = fallback
        self._next = threading.local()

    def choose(self, trace_id: int, span_id: int) -> None:
        self._next.ids = (trace_id, span_id)

    def clear(self) -> None:
        self._next.ids = None

    def generate_trace_id(self) -> int:
        ids: tuple[int, int] | None = getattr(self._next, "ids", None)
        return ids[0] if ids is not None else self._fallback.generate_trace_id()

    def generate_span_id(self) -> int:
        ids: tuple[int, int] | None = getattr(self._next, "ids", None)
        return ids[1] if ids is not None else self._fallback.generate_span_id()

    def is_trace_id_random(self) -> bool:
        return True  # soar's own trace ids come from os.urandom, the fallback's from `random`


class Tracing:
    """Spans to an exporter, or (`NO_TRACING`, `enabled` False) only the ids, at next to no
    cost. `provider` and `tracer` are None when disabled. The process-global tracer provider
    is never set or read: each `Tracing` is independent.
    """

    def __init__(self, provider: TracerProvider | None = None) -> None:
        """Spans through `provider` (None: disabled), whose id generator is wrapped so that
        `root_span` can give a span the ids soar chose."""
        self.provider = provider
        self.enabled = provider is not None
        self._ids: _ChosenIds | None = None
        self.tracer: trace.Tracer | None = None
        if provider is not None:
            self._ids = _ChosenIds(provider.id_generator)
            provider.id_generator = self._ids  # type: ignore[assignment]  # typed too narrowly
            self.tracer = provider.get_tracer("soar")

    def span(
        self, name: str, parent: TraceRef | None, attributes: Attributes | None = None
    ) -> ActiveSpan:
        """A new span, child of `parent` (None: the root of a new trace), to use as a context
        manager: it ends with the block. A `parent` whose ids are not hex is ignored.
        Disabled: only a fresh span id in the parent's trace."""
        tracer = self.tracer
        if tracer is None:
            if parent is None:
                ref = new_trace()
                return ActiveSpan(ref.trace_id, ref.span_id)
            return ActiveSpan(parent.trace_id, _span_id())
        span = tracer.start_span(name, context=_context_of(parent), attributes=attributes)
        return _active(span)

    def root_span(
        self,
        name: str,
        ref: TraceRef,
        parent: TraceRef | None = None,
        attributes: Attributes | None = None,
    ) -> ActiveSpan:
        """A span whose own ids are exactly `ref`'s (a run's root span, whose ids soar stored
        with the run), as a context manager. `parent` (the alert's span, when known) is its
        parent if it is in the same trace, else it is linked, since a span's trace id comes
        from its parent (a `ref` whose ids are not hex gets fresh ones). Disabled: `ref`
        itself, as an `ActiveSpan`."""
        tracer, ids = self.tracer, self._ids
        if tracer is None or ids is None:
            return ActiveSpan(ref.trace_id, ref.span_id)
        chosen = _ints(ref)
        parent_context = _span_context(parent) if parent is not None else None
        links: list[Link] = []
        if parent_context is not None and chosen is not None:
            other_trace = parent_context.trace_id != chosen[0]
            if other_trace:
                links.append(Link(parent_context))
                parent_context = None
        context = Context()  # never the ambient span: parents are explicit
        if parent_context is not None:
            context = trace.set_span_in_context(NonRecordingSpan(parent_context), Context())
        if chosen is not None:
            ids.choose(*chosen)
        try:
            span = tracer.start_span(name, context=context, attributes=attributes, links=links)
        finally:
            ids.clear()
        return _active(span)

    def shutdown(self) -> None:
        """Export what is buffered and stop; later spans are not recorded. Idempotent."""
        if self.provider is not None and self.enabled:
            self.enabled = False
            self.tracer = None
            self.provider.shutdown()


NO_TRACING: Final = Tracing()
"""Tracing off: ids only. Shared, so its `shutdown` does nothing."""


def configure_tracing(
    settings: TracingSettings | Literal["none", "console", "otlp"],
    *,
    otlp_endpoint: str | None = None,
    service_name: str = "soar",
) -> Tracing:
    """Tracing to the exporter `settings` name (`NO_TRACING` for `none`). A plain exporter
    name with the keywords is shorthand for the same `TracingSettings`. The process-global
    tracer provider is left alone.

    Raises:
        pydantic.ValidationError: the shorthand names no known exporter.
    """
    if isinstance(settings, str):
        settings = TracingSettings(
            exporter=settings, otlp_endpoint=otlp_endpoint, service_name=service_name
        )
    if settings.exporter == "none":
        return NO_TRACING
    processor: SpanProcessor
    if settings.exporter == "console":
        # stderr: `soar run --json` prints its result on stdout
        processor = SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
    return _tracing(processor, settings.service_name, flush_at_exit=True)


def in_memory_tracing() -> tuple[Tracing, InMemorySpanExporter]:
    """Tracing into memory, for tests: each span is in the exporter as soon as it ends."""
    exporter = InMemorySpanExporter()
    return _tracing(SimpleSpanProcessor(exporter), "soar-test", flush_at_exit=False), exporter


def _tracing(processor: SpanProcessor, service_name: str, *, flush_at_exit: bool) -> Tracing:
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), shutdown_on_exit=flush_at_exit
    )
    provider.add_span_processor(processor)
    return Tracing(provider)


def _ints(ref: TraceRef) -> tuple[int, int] | None:
    """`ref`'s ids as integers, or None when they are not valid ones."""
    try:
        trace_id, span_id = int(ref.trace_id, 16), int(ref.span_id, 16)
    except ValueError:
        return None
    if not (0 < trace_id < 1 << 128 and 0 < span_id < 1 << 64):
        return None
    return trace_id, span_id


def _span_context(ref: TraceRef) -> SpanContext | None:
    ids = _ints(ref)
    if ids is None:
        return None
    return SpanContext(
        trace_id=ids[0], span_id=ids[1], is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )


def _context_of(parent: TraceRef | None) -> Context:
    """A context holding only `parent`: never the ambient span, since parents are explicit."""
    span_context = _span_context(parent) if parent is not None else None
    if span_context is None:
        return Context()
    return trace.set_span_in_context(NonRecordingSpan(span_context), Context())


def _active(span: trace.Span) -> ActiveSpan:
    own = span.get_span_context()
    return ActiveSpan(f"{own.trace_id:032x}", f"{own.span_id:016x}", span)


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
    "Attributes",
    "TraceRef",
    "Tracing",
    "TracingSettings",
    "configure_tracing",
    "in_memory_tracing",
    "new_trace",
]
