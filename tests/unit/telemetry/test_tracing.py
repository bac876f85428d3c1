"""Spans through the in-memory exporter: parenting by `TraceRef`, a run's root span with the ids
soar stored, errors, tracing off, and the console exporter (OTLP over HTTP: tests/integration)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pydantic import ValidationError

from soar.telemetry.tracing import (
    ACTION,
    ATTEMPT,
    NO_TRACING,
    OUTCOME,
    RUN_ID,
    STEP,
    ActiveSpan,
    TraceRef,
    Tracing,
    TracingSettings,
    configure_tracing,
    in_memory_tracing,
    new_trace,
)

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
W3C_REF = TraceRef("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
HEX = "0123456789abcdef"


@pytest.fixture
def tracing() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    tracing, spans = in_memory_tracing()
    yield tracing, spans
    tracing.shutdown()


def ref_of(span: ReadableSpan) -> TraceRef:
    assert span.context is not None
    return TraceRef(f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")


def parent_of(span: ReadableSpan) -> TraceRef | None:
    if span.parent is None:
        return None
    return TraceRef(f"{span.parent.trace_id:032x}", f"{span.parent.span_id:016x}")


def by_name(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans.get_finished_spans()}


def test_a_child_span_is_in_its_parents_trace_and_its_ref_parents_the_next(
    tracing: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracer, spans = tracing
    run = new_trace()
    with tracer.span("soar.engine.step", run, {STEP: "isolate", ATTEMPT: 2}) as step:
        assert isinstance(step, TraceRef)
        with tracer.span("soar.connector.call", step, {ACTION: "edr.isolate"}) as call:
            pass
        step.set(OUTCOME, "succeeded")

    found = by_name(spans)
    assert ref_of(found["soar.engine.step"]) == step
    assert ref_of(found["soar.connector.call"]) == call
    assert step.trace_id == call.trace_id == run.trace_id
    assert len({run.span_id, step.span_id, call.span_id}) == 3
    assert parent_of(found["soar.engine.step"]) == run
    assert parent_of(found["soar.connector.call"]) == step
    assert found["soar.engine.step"].attributes == {
        STEP: "isolate",
        ATTEMPT: 2,
        OUTCOME: "succeeded",
    }
    assert step.ref == step
    assert type(step.ref) is TraceRef


def test_a_span_without_a_parent_starts_a_trace_and_ignores_the_ambient_one(
    tracing: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracer, spans = tracing
    with tracer.span("outer", None) as outer, tracer.span("inner", None) as inner:
        pass
    found = by_name(spans)
    assert parent_of(found["inner"]) is None  # not nested under `outer` by context variables
    assert outer.trace_id != inner.trace_id


def test_a_root_span_has_exactly_the_ids_soar_chose(
    tracing: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracer, spans = tracing
    ref = new_trace()
    with tracer.root_span("soar.engine.run", ref, attributes={RUN_ID: "r-1"}) as run:
        assert run == ref
    with tracer.span("after", None) as after:
        pass  # the chosen ids were used once, not kept for the next span

    found = by_name(spans)
    assert ref_of(found["soar.engine.run"]) == ref
    assert parent_of(found["soar.engine.run"]) is None
    assert found["soar.engine.run"].attributes == {RUN_ID: "r-1"}
    assert after.trace_id != ref.trace_id
    assert after.span_id != ref.span_id


def test_a_root_span_is_a_child_of_the_alerts_span_in_its_trace(
    tracing: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracer, spans = tracing
    alert = new_trace()
    ref = new_trace(alert.trace_id)
    with tracer.root_span("soar.engine.run", ref, alert):
        pass
    run = by_name(spans)["soar.engine.run"]
    assert ref_of(run) == ref
    assert parent_of(run) == alert
    assert run.links == ()


def test_a_root_span_links_a_parent_from_another_trace_and_keeps_its_own_ids(
    tracing: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracer, spans = tracing
    elsewhere, ref = new_trace(), new_trace()
    with tracer.root_span("soar.engine.run", ref, elsewhere):
        pass
    run = by_name(spans)["soar.engine.run"]
    assert ref_of(run) == ref
    assert parent_of(run) is None
    assert [f"{link.context.span_id:016x}" for link in run.links] == [elsewhere.span_id]


def fail_in_a_span(tracer: Tracing) -> None:
    with tracer.span("soar.engine.step", new_trace()):
        try:
            raise KeyError("api key hunter2")
        except KeyError as exc:
            raise ValueError("boom") from exc


def test_an_exception_is_recorded_without_its_causes_and_marks_the_span_failed(
    tracing: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracer, spans = tracing
    with pytest.raises(ValueError, match="boom"):
        fail_in_a_span(tracer)

    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: boom"
    (event,) = span.events
    assert event.name == "exception"
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "boom"
    assert "ValueError: boom" in str(attributes["exception.stacktrace"])
    assert "hunter2" not in str(attributes)


async def test_a_cancelled_span_ends_without_being_an_error(
    tracing: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracer, spans = tracing

    async def step() -> None:
        with tracer.span("soar.engine.step", new_trace()):
            await asyncio.sleep(3600)

    task = asyncio.create_task(step())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    assert [event.name for event in span.events] == ["exception"]


def test_tracing_off_still_makes_ids_and_records_nothing() -> None:
    parent = new_trace()
    assert not NO_TRACING.enabled
    assert NO_TRACING.provider is None
    with NO_TRACING.span("soar.engine.step", parent, {STEP: "x"}) as step:
        step.set(OUTCOME, "succeeded")  # accepted, and nowhere to go
    assert step.trace_id == parent.trace_id
    assert step.span_id != parent.span_id
    assert TraceRef.parse(step.traceparent()) == step
    with NO_TRACING.span("soar.alert", None) as alone:
        assert TraceRef.parse(alone.traceparent()) == alone
    assert alone.trace_id != parent.trace_id
    ref = new_trace()
    with NO_TRACING.root_span("soar.engine.run", ref, parent) as run:
        assert run == ref
    assert configure_tracing("none") is NO_TRACING
    assert configure_tracing(TracingSettings()) is NO_TRACING


def test_spans_after_shutdown_are_not_recorded() -> None:
    tracer, spans = in_memory_tracing()
    tracer.shutdown()
    tracer.shutdown()  # twice is fine
    assert not tracer.enabled
    with tracer.span("late", None):
        pass
    assert spans.get_finished_spans() == ()


def test_a_malformed_parent_is_ignored_rather_than_raising(
    tracing: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracer, spans = tracing
    with tracer.span("step", TraceRef("not hex", "zz")) as step:
        pass
    assert parent_of(by_name(spans)["step"]) is None
    assert TraceRef.parse(step.traceparent()) == step


def test_new_trace_keeps_a_valid_trace_id_and_replaces_a_bad_one() -> None:
    ref = new_trace()
    assert TraceRef.parse(ref.traceparent()) == ref
    assert new_trace(ref.trace_id).trace_id == ref.trace_id
    assert new_trace(ref.trace_id).span_id != ref.span_id
    for bad in ("", "0" * 32, ref.trace_id.upper(), ref.trace_id[:31], ref.trace_id + "0"):
        replaced = new_trace(bad)
        assert replaced.trace_id != bad
        assert TraceRef.parse(replaced.traceparent()) == replaced


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(VALID, W3C_REF, id="valid"),
        pytest.param(VALID[:-2] + "00", W3C_REF, id="not-sampled"),
        pytest.param(f" \t{VALID}\t ", W3C_REF, id="optional-whitespace"),
        pytest.param(f"cc{VALID[2:]}", W3C_REF, id="future-version"),
        pytest.param(f"cc{VALID[2:]}-what-the-future-holds", W3C_REF, id="future-fields"),
        pytest.param(f"cc{VALID[2:]}.future", None, id="future-no-dash"),
        pytest.param(f"{VALID}-extra", None, id="version-00-has-no-more-fields"),
        pytest.param(f"{VALID}.", None, id="trailing-character"),
        pytest.param(f"ff{VALID[2:]}", None, id="version-ff"),
        pytest.param(f".0{VALID[2:]}", None, id="version-not-hex"),
        pytest.param(f"0{VALID}", None, id="version-too-long"),
        pytest.param(VALID[1:], None, id="version-too-short"),
        pytest.param(VALID.replace("4bf92f", "4BF92F"), None, id="upper-case"),
        pytest.param(f"00-{'0' * 32}-00f067aa0ba902b7-01", None, id="zero-trace"),
        pytest.param(f"00-4bf92f3577b34da6a3ce929d0e0e4736-{'0' * 16}-01", None, id="zero-span"),
        pytest.param(VALID.replace("4736-", "47361-"), None, id="long-trace"),
        pytest.param(VALID.replace("4736-", "473-"), None, id="short-trace"),
        pytest.param(VALID.replace("02b7-", "02b-"), None, id="short-span"),
        pytest.param(VALID.replace("02b7-", "02b71-"), None, id="long-span"),
        pytest.param(VALID[:-1], None, id="short-flags"),
        pytest.param(VALID + "1", None, id="long-flags"),
        pytest.param(VALID[:-1] + ".", None, id="flags-not-hex"),
        pytest.param(VALID.replace("-", "_"), None, id="wrong-separator"),
        pytest.param(f"\n{VALID}", None, id="newline-is-not-whitespace-here"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="none"),
        pytest.param(VALID.encode(), None, id="bytes"),
    ],
)  # fmt: skip
def test_traceparent_rules(text: object, expected: TraceRef | None) -> None:
    assert TraceRef.parse(text) == expected


@given(
    st.text(alphabet=HEX, min_size=32, max_size=32), st.text(alphabet=HEX, min_size=16, max_size=16)
)
def test_a_traceparent_round_trips(trace_id: str, span_id: str) -> None:
    ref = TraceRef(trace_id, span_id)
    valid = set(trace_id) != {"0"} and set(span_id) != {"0"}
    assert TraceRef.parse(ref.traceparent()) == (ref if valid else None)


@given(st.text())
def test_parse_never_raises(text: str) -> None:
    found = TraceRef.parse(text)
    assert found is None or TraceRef.parse(found.traceparent()) == found


def test_refs_compare_by_their_ids() -> None:
    ref = new_trace()
    active = ActiveSpan(ref.trace_id, ref.span_id)
    assert active == ref
    assert ref == active
    assert hash(active) == hash(ref)
    assert len({ref, active, TraceRef(ref.trace_id, ref.span_id)}) == 1
    assert ref != new_trace(ref.trace_id)
    assert ref != ref.traceparent()


def test_settings_reject_unknown_exporters_and_keys() -> None:
    with pytest.raises(ValidationError):
        TracingSettings(exporter="jaeger")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        TracingSettings(endpoint="http://x")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        configure_tracing("zipkin")  # type: ignore[arg-type]


def test_the_console_exporter_writes_spans_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    tracer = configure_tracing(TracingSettings(exporter="console", service_name="soar-console"))
    try:
        ref = new_trace()
        with tracer.root_span("soar.engine.run", ref):
            pass
    finally:
        tracer.shutdown()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert '"name": "soar.engine.run"' in captured.err
    assert f'"trace_id": "0x{ref.trace_id}"' in captured.err
    assert '"service.name": "soar-console"' in captured.err
