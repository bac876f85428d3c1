"""Ids for alerts whose source gives none: a digest of the content, so a resend gets the same id."""

from __future__ import annotations

import hashlib
import json

from pydantic import JsonValue


def mint_id(raw: JsonValue) -> str:
    """`sha256:` and the hex digest of `raw` as canonical JSON (sorted keys, no spaces, ASCII).

    Key order and whitespace in the message do not change the id; any value change does.
    """
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()
