"""How long to wait before the next attempt of a failed step."""

from __future__ import annotations

import random
from datetime import timedelta

from soar.playbook.schema import Retry


def retry_delay(
    policy: Retry, failed_attempts: int, *, rng: random.Random | None = None
) -> timedelta:
    """The wait after the `failed_attempts`-th failure: `backoff`, doubled per earlier retry when
    exponential, capped at `max_backoff`; with jitter, a uniform pick in [half, all] of that."""
    base = policy.backoff.total_seconds()
    if policy.exponential:
        base *= 2 ** max(failed_attempts - 1, 0)
    base = min(base, policy.max_backoff.total_seconds())
    if policy.jitter:
        base *= (rng or random).uniform(0.5, 1.0)
    return timedelta(seconds=base)
