"""From the bytes of one message to alerts, or one structured refusal: the dead-letter decision.

Every check is bounded before any parsing that could recurse or allocate without limit: size
first, then nesting depth by a linear scan that skips string contents, then strict JSON.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate

from pydantic import JsonValue, ValidationError

from soar.errors import AlertRejected, RejectionCode
from soar.ingest.limits import Limits
from soar.ingest.mappings import GROUP_MAPPINGS, MAPPINGS, detect_format
from soar.ingest.mappings.document import json_kind
from soar.models.alert import Alert, AlertFormat

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_BOM = "\ufeff"


def normalize(
    data: bytes | str,
    *,
    format: AlertFormat | None = None,
    limits: Limits | None = None,
) -> list[Alert]:
    """Read one message as one alert (a JSON object) or a batch (a JSON array of objects).

    `format` None detects each alert's format from its content. A batch is all or nothing: if
    any element is refused the whole message is, with `index` naming the element. An object of a
    group format (an Alertmanager notification) is one alert per member of its group, and counts
    as that many towards `max_batch`.

    Raises:
        AlertRejected: the only exception raised; its `code` says why, `field` names the
            offending field (a dotted path) and `index` the batch element, when there is one.
    """
    limits = limits or Limits()
    text = _decode(data, limits)
    _check_depth(text, limits)
    value = _parse(text)
    if isinstance(value, dict):
        return _counted(_map(value, format, None), limits)
    if isinstance(value, list):
        if not value:
            raise AlertRejected(RejectionCode.EMPTY_BATCH, "an empty array carries no alert")
        if len(value) > limits.max_batch:
            raise AlertRejected(
                RejectionCode.BATCH_TOO_LARGE,
                f"a batch of {len(value)} alerts is over the limit of {limits.max_batch}",
            )
        return _counted(
            [alert for index, item in enumerate(value) for alert in _map(item, format, index)],
            limits,
        )
    raise AlertRejected(
        RejectionCode.NOT_AN_OBJECT,
        f"the message is a JSON {json_kind(value)}, not an object or an array of objects",
    )


def _decode(data: bytes | str, limits: Limits) -> str:
    if isinstance(data, str):
        if len(data) > limits.max_bytes:
            raise _too_large(len(data), limits)
        try:
            size = len(data.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise AlertRejected(
                RejectionCode.NOT_UTF8,
                f"unpaired surrogate at character offset {exc.start} cannot be UTF-8",
            ) from None
        if size > limits.max_bytes:
            raise _too_large(size, limits)
        text = data
    else:
        if len(data) > limits.max_bytes:
            raise _too_large(len(data), limits)
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AlertRejected(
                RejectionCode.NOT_UTF8, f"invalid UTF-8 at byte offset {exc.start}"
            ) from None
    return text.removeprefix(_BOM)


def _too_large(size: int, limits: Limits) -> AlertRejected:
    return AlertRejected(
        RejectionCode.TOO_LARGE,
        f"message of at least {size} bytes is over the limit of {limits.max_bytes}",
    )


def _check_depth(text: str, limits: Limits) -> None:
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if len(brackets) <= limits.max_depth:
        return
    depth = max(accumulate(map(_STEP.__getitem__, brackets)))
    if depth > limits.max_depth:
        raise AlertRejected(
            RejectionCode.TOO_DEEP,
            f"nesting reaches depth {depth}, over the limit of {limits.max_depth}",
        )


def _parse(text: str) -> JsonValue:
    try:
        value: JsonValue = json.loads(
            text,
            object_pairs_hook=_object,
            parse_constant=_constant,
            parse_float=_float,
        )
    except json.JSONDecodeError as exc:
        raise AlertRejected(
            RejectionCode.NOT_JSON,
            f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})",
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise AlertRejected(RejectionCode.NOT_JSON, f"not JSON: {exc}"[:300]) from None
    return value


def _object(pairs: list[tuple[str, JsonValue]]) -> dict[str, JsonValue]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise AlertRejected(
            RejectionCode.DUPLICATE_KEY,
            f"key {key[:80]!r} appears twice in one object; which one counts is ambiguous",
            field=key[:200],
        )
    return obj


def _constant(name: str) -> JsonValue:
    raise AlertRejected(RejectionCode.NOT_JSON, f"not JSON: {name} is not a JSON number")


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise AlertRejected(RejectionCode.NOT_JSON, f"not JSON: {text[:40]} is out of range")
    return number


def _counted(alerts: list[Alert], limits: Limits) -> list[Alert]:
    if len(alerts) > limits.max_batch:
        raise AlertRejected(
            RejectionCode.BATCH_TOO_LARGE,
            f"a batch of {len(alerts)} alerts is over the limit of {limits.max_batch}",
        )
    return alerts


def _map(item: JsonValue, format: AlertFormat | None, index: int | None) -> list[Alert]:
    where = "" if index is None else f"alert {index}: "
    if not isinstance(item, dict):
        raise AlertRejected(
            RejectionCode.NOT_AN_OBJECT,
            f"{where}a JSON {json_kind(item)} is not an alert object",
            index=index,
        )
    try:
        chosen = format or detect_format(item)
        group = GROUP_MAPPINGS.get(chosen)
        return group(item) if group is not None else [MAPPINGS[chosen](item)]
    except AlertRejected as exc:
        raise AlertRejected(exc.code, where + exc.message, field=exc.field, index=index) from None
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or None
        raise AlertRejected(
            RejectionCode.INVALID_FIELD,
            f"{where}{field}: {error['msg']}",
            field=field,
            index=index,
        ) from None
