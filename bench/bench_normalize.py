"""How fast messages become alerts, per format, against the floor of merely parsing the JSON.

Run: .venv/bin/python bench/bench_normalize.py [seconds-per-case]
Prints messages/s for `normalize` on each real sample, and the ratio to `json.loads` of the same
bytes (the work no mapping can avoid), so a regression in a mapping shows up as a lower ratio.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from soar.ingest import normalize

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of `fn`, measured for about `seconds`."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    print(f"{'sample':<52} {'bytes':>7} {'normalize/s':>12} {'json.loads/s':>13} {'ratio':>6}")
    for path in sorted(FIXTURES.glob("*/*.json")):
        if path.parent.name == "playbooks":  # playbook fixtures, not alerts
            continue
        data = path.read_bytes()
        alerts = rate(lambda data=data: normalize(data), seconds)
        floor = rate(lambda data=data: json.loads(data), seconds)
        name = f"{path.parent.name}/{path.name}"
        print(f"{name:<52} {len(data):>7} {alerts:>12,.0f} {floor:>13,.0f} {alerts / floor:>6.2f}")


if __name__ == "__main__":
    main()
