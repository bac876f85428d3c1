"""Expression language throughput: compiles/s and evals/s for the design doc's C1, C2 and T1.

Run: .venv/bin/python bench/bench_expr.py
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from soar.models.alert import Alert
from soar.playbook.expr import compile_expression, compile_template
from soar.playbook.expr.expression import _compile_cached as _expression_cache
from soar.playbook.expr.template import _compile_cached as _template_cache

C1 = (
    'alert.category == "credential_access" and alert.raw.severity_id >= 4 '
    "and not steps.user.output.is_service_account"
)
C2 = C1 + ' and sev_rank(alert.severity) >= sev_rank("high") and alert.severity >= "high"'
T1 = "Account {{ alert.users[0].name }} contained"


def context() -> dict[str, object]:
    alert = Alert.model_validate(
        {
            "id": "f3b1c2d4",
            "source": "splunk-es",
            "format": "splunk",
            "title": "Impossible travel for bob",
            "rule": "Impossible travel",
            "rule_id": "ES-0042",
            "description": "Logins from two countries within 10 minutes",
            "severity": "high",
            "source_severity": "high",
            "category": "credential_access",
            "time": "2024-05-01T12:00:00Z",
            "tactics": ["TA0006"],
            "techniques": ["T1078"],
            "tags": ["vip", "travel"],
            "users": [{"name": "bob", "domain": "corp", "id": "S-1-5-21", "email": "bob@corp"}],
            "hosts": [
                {"id": "h1", "name": "laptop-1", "ips": ["10.0.0.5"], "os": "windows"},
                {"id": "h2", "name": "vpn-1", "ips": ["10.0.0.9"], "os": "linux"},
            ],
            "ips": [{"address": "203.0.113.7", "role": "src"}, {"address": "10.0.0.5"}],
            "hashes": [{"algorithm": "sha256", "value": "ab" * 32}],
            "urls": [{"url": "https://example.com/login"}],
            "emails": [{"address": "bob@corp", "role": "to"}],
            "raw": {
                "severity_id": 4,
                "src": {"country": "FR", "city": "Paris"},
                "dst": {"country": "BR", "city": "Recife"},
                "count": 2,
                "fields": {f"f{i}": i for i in range(20)},
            },
        }
    )
    return {
        "alert": alert.context(),
        "steps": {"user": {"output": {"dn": "cn=bob", "is_service_account": False}}},
        "run": {"status": "running"},
    }


def rate(action: Callable[[], object], seconds: float = 0.5) -> float:
    """Calls per second of `action`, measured over about `seconds`."""
    count, batch = 0, 1000
    started = time.perf_counter()
    while True:
        for _ in range(batch):
            action()
        count += batch
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return count / elapsed


def main() -> None:
    variables = context()
    clock: Callable[[], datetime] = lambda: datetime(2024, 5, 1, 13, tzinfo=UTC)  # noqa: E731

    def compile_c1() -> object:
        _expression_cache.cache_clear()
        return compile_expression(C1)

    def compile_c2() -> object:
        _expression_cache.cache_clear()
        return compile_expression(C2)

    def compile_t1() -> object:
        _expression_cache.cache_clear()
        _template_cache.cache_clear()
        return compile_template(T1)

    c1, c2, t1 = compile_expression(C1), compile_expression(C2), compile_template(T1)
    assert c1.evaluate(variables) is True
    assert c2.evaluate(variables) is True
    assert t1.evaluate(variables) == "Account bob contained"
    conditions = [c1, c2] * 5
    templates = [t1] * 10

    def per_alert() -> object:
        for condition in conditions:
            condition.evaluate(variables, clock=clock)
        for template in templates:
            template.evaluate(variables, clock=clock)
        return None

    rows = [
        ("C1 compile/s", rate(compile_c1)),
        ("C2 compile/s", rate(compile_c2)),
        ("T1 compile/s", rate(compile_t1)),
        ("C1 eval/s", rate(lambda: c1.evaluate(variables))),
        ("C2 eval/s", rate(lambda: c2.evaluate(variables))),
        ("T1 eval/s", rate(lambda: t1.evaluate(variables))),
        ("alerts/s (10 conditions + 10 templates)", rate(per_alert)),
    ]
    for name, value in rows:
        print(f"{name:42} {value:>12,.0f}")


if __name__ == "__main__":
    main()
