"""How long to wait before the next attempt of a failed step."""

from __future__ import annotations

import random
from datetime import timedelta

from soar.playbook.schema import Retry

# the longest a system's own Retry-After may park a step: a hostile or broken answer must not
# hold a response for days
MAX_RETRY_AFTER = timedelta(hours=1)


def retry_delay(
    policy: Retry,
    failed_attempts: int,
    *,
    rng: random.Random | None = None,
    retry_after: float | None = None,
) -> timedelta:
    """The wait after the `failed_attempts`-th failure: `backoff`, doubled per earlier retry when
    exponential, capped at `max_backoff`; with jitter, a uniform pick in [half, all] of that.
    When the system said when to come back (`retry_after`, seconds), no sooner than that, up to
    `MAX_RETRY_AFTER`."""
    base = policy.backoff.total_seconds()
    if policy.exponential:
        base *= 2 ** max(failed_attempts - 1, 0)
    base = min(base, policy.max_backoff.total_seconds())
    if policy.jitter:
        base *= (rng or random).uniform(0.5, 1.0)
    delay = timedelta(seconds=base)
    if retry_after is None:
        return delay
    asked = min(retry_after, MAX_RETRY_AFTER.total_seconds())  # inf too
    return max(delay, timedelta(seconds=asked))
