"""RFC 8785: the number vectors of its Appendix B, its sorting example, and the fast path
(orjson) agreeing byte for byte with the exact one on arbitrary values."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soar.audit.canonical import _encode, canonical, number

VECTORS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), VECTORS)
def test_numbers_as_rfc_8785_appendix_b(bits: str, text: str) -> None:
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert number(value) == text
    assert canonical([value]) == f"[{text}]".encode()


def test_members_sort_by_utf16_code_units() -> None:
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    encoded = canonical({k: i for i, k in enumerate(keys)}).decode()
    assert list(json.loads(encoded)) == [
        "\r",
        "1",
        "\u0080",
        "\u00f6",
        "\u20ac",
        "\U0001f600",
        "\ufb33",
    ]


def test_strings_escape_only_what_the_rfc_escapes() -> None:
    text = '\x00\x01\x1f\x7f\u2028"\\/\b\f\n\r\t é 😀'
    expected = '"\\u0000\\u0001\\u001f\x7f\u2028\\"\\\\/\\b\\f\\n\\r\\t é 😀"'
    assert canonical(text) == expected.encode()
    assert canonical({"k": text}) == ('{"k":' + expected + "}").encode()


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), 2**53 + 1, -(2**60) - 1, {1: "x"}, {1, 2}]
)
def test_values_without_a_canonical_form_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"JSON|string|exactly|form"):
        canonical(bad)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(JSON)
def test_the_fast_path_writes_exactly_the_exact_path_bytes(value: object) -> None:
    assert canonical(value) == _encode(value).encode()
    assert json.loads(canonical(value)) == value


@given(
    st.recursive(
        st.floats(allow_nan=False, allow_infinity=False) | st.text(),
        lambda i: st.lists(i, max_size=4),
        max_leaves=10,
    )
)
def test_floats_round_trip_through_their_canonical_text(value: object) -> None:
    text = canonical(value)
    assert canonical(json.loads(text)) == text
