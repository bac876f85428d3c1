"""W3C trace context through Kafka headers: the round trip, the spec's rules for duplicates and
`tracestate`, and hostile headers, which never make reading raise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soar.telemetry.propagation import extract, extract_state, inject
from soar.telemetry.tracing import TraceRef, new_trace

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
W3C_REF = TraceRef("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
OTHER = "00-12345678901234567890123456789012-1234567890123456-01"
MEMBERS_32 = ",".join(f"k{i}=v" for i in range(32))


def test_a_trace_goes_out_and_comes_back_through_headers() -> None:
    ref = new_trace()
    original = [("content-type", b"json"), ("TraceParent", VALID.encode()), ("TRACESTATE", b"x=1")]
    headers = inject(original, ref, "soar=1,congo=t61rcWkgMzE")
    assert headers == [
        ("content-type", b"json"),
        ("traceparent", ref.traceparent().encode()),
        ("tracestate", b"soar=1,congo=t61rcWkgMzE"),
    ]
    assert original[1] == ("TraceParent", VALID.encode())  # the caller's list is left alone
    assert extract(headers) == ref
    assert extract_state(headers) == "soar=1,congo=t61rcWkgMzE"


def test_inject_without_a_tracestate_drops_the_old_one_and_takes_no_headers() -> None:
    ref = new_trace()
    assert inject(None, ref) == [("traceparent", ref.traceparent().encode())]
    assert inject([("tracestate", b"a=1")], ref) == [("traceparent", ref.traceparent().encode())]
    assert inject([], ref, "not a list member") == [("traceparent", ref.traceparent().encode())]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param([("traceparent", VALID.encode())], W3C_REF, id="bytes"),
        pytest.param([("traceparent", VALID)], W3C_REF, id="str"),
        pytest.param([("TrAcEpArEnT", VALID.encode())], W3C_REF, id="any-case"),
        pytest.param([(b"traceparent", VALID.encode())], W3C_REF, id="bytes-name"),
        pytest.param([["traceparent", VALID.encode()]], W3C_REF, id="list-pair"),
        pytest.param(
            [("traceparent", VALID.encode()), ("traceparent", VALID.encode())], None, id="twice"
        ),
        pytest.param(
            [("traceparent", VALID.encode()), ("TRACEPARENT", OTHER.encode())],
            None,
            id="two-differing",
        ),
        pytest.param(
            [("traceparent", VALID.encode()), ("traceparent", b"\xff")], None, id="twice-one-bad"
        ),
        pytest.param([("trace-parent", VALID.encode())], None, id="wrong-name"),
        pytest.param([("traceparent", b"\xff\xfe")], None, id="not-ascii"),
        pytest.param([("traceparent", VALID[:-1] + "\u0661")], None, id="arabic-indic-digit"),
        pytest.param([("traceparent", None)], None, id="no-value"),
        pytest.param([("traceparent", 42)], None, id="number"),
        pytest.param([("traceparent",)], None, id="short-pair"),
        pytest.param([], None, id="none-at-all"),
        pytest.param(None, None, id="no-headers"),
        pytest.param(VALID, None, id="a-string"),
        pytest.param(42, None, id="a-number"),
        pytest.param({"traceparent": VALID}, None, id="a-dict"),
    ],
)  # fmt: skip
def test_extract_takes_exactly_one_valid_traceparent(headers: object, expected: object) -> None:
    assert extract(headers) == expected


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        pytest.param(["foo=1,bar=2"], "foo=1,bar=2", id="one"),
        pytest.param(["foo=1,bar=2", "rojo=1", "baz=3"], "foo=1,bar=2,rojo=1,baz=3", id="in-order"),
        pytest.param(["foo=1 \t , \t bar=2, \t baz=3"], "foo=1,bar=2,baz=3", id="whitespace"),
        pytest.param(["", "foo=1", ","], "foo=1", id="empty-members"),
        pytest.param(["t@vendor=x", "a-b_c*d/e=v w"], "t@vendor=x,a-b_c*d/e=v w", id="key-chars"),
        pytest.param([""], None, id="empty"),
        pytest.param(["foo=1,foo=2"], None, id="duplicate-key"),
        pytest.param(["foo=1", "foo=1"], None, id="duplicate-across-headers"),
        pytest.param(["FOO=1"], None, id="upper-case-key"),
        pytest.param(["foo =1"], None, id="space-in-key"),
        pytest.param(["foo@=1,bar=2"], None, id="empty-vendor"),
        pytest.param(["foo@bar@baz=1"], None, id="two-vendors"),
        pytest.param(["foo=a,b"], None, id="member-without-value"),
        pytest.param(["foo=a=b"], None, id="equals-in-value"),
        pytest.param([MEMBERS_32], MEMBERS_32, id="32-members"),
        pytest.param([",".join(f"k{i}=v" for i in range(33))], None, id="33-members"),
        pytest.param(["k=" + "v" * 256], "k=" + "v" * 256, id="value-256"),
        pytest.param(["k=" + "v" * 257], None, id="value-257"),
        pytest.param([",".join(f"key{i:02}=" + "v" * 40 for i in range(12))], None, id="over-512"),
    ],
)  # fmt: skip
def test_tracestate_is_read_as_the_spec_says(states: list[str], expected: str | None) -> None:
    headers = [("traceparent", VALID.encode()), *(("tracestate", s.encode()) for s in states)]
    assert extract_state(headers) == expected


def test_tracestate_is_not_read_without_a_valid_traceparent() -> None:
    assert extract_state([("tracestate", b"foo=1")]) is None
    assert extract_state([("traceparent", b"00-zz"), ("tracestate", b"foo=1")]) is None
    assert extract_state([("traceparent", VALID.encode()), ("tracestate", b"\xff=1")]) is None


HEADER_NAMES = st.one_of(
    st.sampled_from(["traceparent", "TRACEPARENT", "tracestate", "TraceState", "x"]),
    st.text(max_size=20),
    st.binary(max_size=20),
)
HEADER_VALUES = st.one_of(
    st.sampled_from([VALID, VALID.encode(), OTHER.encode(), b"foo=1", "k=v,k=w"]),
    st.binary(max_size=80),
    st.text(max_size=80),
    st.none(),
    st.integers(),
    st.lists(st.integers(), max_size=3),
)
PAIRS = st.one_of(
    st.tuples(HEADER_NAMES, HEADER_VALUES),
    st.lists(HEADER_VALUES, max_size=3).map(tuple),
    HEADER_VALUES,
)


@given(st.lists(PAIRS, max_size=8))
def test_hostile_headers_never_make_reading_raise(headers: list[object]) -> None:
    found = extract(headers)
    state = extract_state(headers)
    assert found is None or TraceRef.parse(found.traceparent()) == found
    assert state is None or (found is not None and len(state) <= 512)


@given(
    st.one_of(
        st.none(), st.integers(), st.text(), st.binary(), st.dictionaries(st.text(), st.text())
    )
)
def test_things_that_are_not_headers_are_no_trace(headers: object) -> None:
    assert extract(headers) is None
    assert extract_state(headers) is None


@given(st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=40)), max_size=6))
def test_inject_wins_over_whatever_headers_were_there(headers: list[tuple[str, bytes]]) -> None:
    ref = new_trace()
    injected = inject(headers, ref, "soar=1")
    assert extract(injected) == ref
    assert extract_state(injected) == "soar=1"
    kept = [(k, v) for k, v in headers if k.lower() not in ("traceparent", "tracestate")]
    assert injected[:-2] == kept
