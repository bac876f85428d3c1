"""W3C trace context through Kafka headers (hostile ones too), and the Prometheus exposition
scraped over real HTTP."""

from __future__ import annotations

import urllib.request

from hypothesis import given
from hypothesis import strategies as st

from soar.telemetry.metrics import NO_INSTRUMENTS, configure_metrics
from soar.telemetry.propagation import extract, inject
from soar.telemetry.tracing import TraceRef, new_trace

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_trace_goes_out_and_comes_back_through_headers() -> None:
    ref = new_trace()
    headers = inject([("content-type", b"json"), ("TraceParent", b"stale")], ref, "soar=1")
    assert ("content-type", b"json") in headers
    assert [k for k, _ in headers].count("traceparent") == 1
    assert "TraceParent" not in [k for k, _ in headers]
    assert extract(headers) == ref


def test_traceparent_rules() -> None:
    assert TraceRef.parse(VALID) == TraceRef("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    for bad in (
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        VALID + "-extra",  # version 00 has no more fields
        "",
    ):
        assert TraceRef.parse(bad) is None, bad
    assert TraceRef.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x") is not None
    assert extract([("traceparent", VALID.encode()), ("traceparent", VALID.encode())]) is None
    assert extract([("traceparent", b"\xff\xfe")]) is None


@given(
    st.lists(
        st.tuples(
            st.one_of(st.text(), st.binary()),
            st.one_of(st.binary(), st.text(), st.none(), st.integers()),
        )
    )
)
def test_extract_never_raises(headers: list[tuple[object, object]]) -> None:
    found = extract(headers)
    assert found is None or isinstance(found, TraceRef)


@given(st.one_of(st.none(), st.integers(), st.text(), st.binary()))
def test_extract_survives_things_that_are_not_headers(headers: object) -> None:
    assert extract(headers) is None or isinstance(extract(headers), TraceRef)


def test_metrics_are_scraped_over_http_on_loopback() -> None:
    metrics = configure_metrics("prometheus")
    other = configure_metrics("prometheus")
    try:
        i = metrics.instruments
        i.run_finished("contain", 3, "completed")
        i.run_finished("contain", 3, "completed")
        i.run_finished("contain", 3, "failed")
        i.step_finished("contain", 3, "isolate", "succeeded", 0.25)
        i.approval_waited("contain", "ask", "timed_out", 900.0)
        port = metrics.serve(port=0)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        metrics.shutdown()
        other.shutdown()
    lines = [
        line.replace('otel_scope_name="soar",otel_scope_schema_url="",otel_scope_version="",', "")
        for line in text.splitlines()
    ]
    assert (
        'soar_runs_finished_total{playbook="contain",status="completed",version="3"} 2.0' in lines
    )
    assert 'soar_runs_finished_total{playbook="contain",status="failed",version="3"} 1.0' in lines
    labels = 'outcome="succeeded",playbook="contain",step="isolate",version="3"'
    assert f'soar_step_duration_seconds_bucket{{le="0.1",{labels}}} 0.0' in lines
    assert f'soar_step_duration_seconds_bucket{{le="0.25",{labels}}} 1.0' in lines
    assert f"soar_step_duration_seconds_count{{{labels}}} 1.0" in lines
    assert f"soar_steps_total{{{labels}}} 1.0" in lines
    assert any(line.startswith("soar_approval_wait_seconds_count{") for line in lines)
    assert b"soar_runs_finished_total" not in other.exposition()  # registries are separate


def test_metrics_off_records_nothing() -> None:
    metrics = configure_metrics("none")
    assert metrics.instruments is NO_INSTRUMENTS
    NO_INSTRUMENTS.step_finished("p", 1, "s", "succeeded", 1.0)
    assert b"soar_" not in metrics.exposition()
