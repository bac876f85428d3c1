"""The audit browser: the chain's verification badge, filters, and paging with next_after."""

from __future__ import annotations

import re

from soar.api.auth import Role
from tests.browser.console_support import an_alert, expect


def seqs(page):
    return page.get_by_test_id("audit-row").evaluate_all("rows => rows.map(r => +r.dataset.seq)")


def test_the_audit_browser_shows_the_log_verified(page, login, console_server, shoot):
    runs = console_server.post_alert(
        [an_alert(f"Beacon to 203.0.113.{n}", severity="low") for n in range(15)]
    )
    for run in runs:
        console_server.wait_run(run, {"completed"})
    status, head = console_server.request("GET", "/audit/verify", role=Role.AUDITOR)
    assert status == 200
    assert head["verified"]

    login(page, Role.AUDITOR)
    page.get_by_test_id("nav-audit").click()
    badge = page.get_by_test_id("audit-verify")
    expect(badge).to_have_attribute("data-verified", "true")
    expect(badge.get_by_test_id("audit-verified")).to_have_text("✔ verified")
    expect(badge).to_contain_text(re.compile(r"\d+ records · \d+ checkpoints · head"))
    expect(page.get_by_test_id("audit-row").first).to_be_visible()
    page.get_by_test_id("audit-toggle").first.click()
    expect(page.get_by_test_id("audit-body-json").first).to_be_visible()
    shoot(page, "audit")

    # Paging: 50 a page, oldest first, on with next_after and back from memory.
    first = seqs(page)
    assert len(first) == 50
    assert first == sorted(first)
    page.get_by_test_id("audit-next").click()
    expect(page.get_by_test_id("audit-prev")).to_be_enabled()
    second = seqs(page)
    assert second
    assert min(second) > max(first)
    page.get_by_test_id("audit-prev").click()
    expect(page.get_by_test_id("audit-prev")).to_be_disabled()
    assert seqs(page) == first


def test_the_audit_browser_filters_by_run(page, login, console_server):
    [run_id] = console_server.post_alert(an_alert("DNS tunnelling from ws-3", severity="low"))
    console_server.wait_run(run_id, {"completed"})
    login(page, Role.AUDITOR)
    page.get_by_test_id("nav-audit").click()
    page.get_by_label("run").fill(run_id)
    page.get_by_test_id("audit-apply").click()
    expect(page).to_have_url(page.url.split("#")[0] + f"#/audit?run={run_id}")
    expect(page.get_by_test_id("audit-row").first).to_be_visible()
    runs = page.get_by_test_id("audit-row").evaluate_all(
        "rows => rows.map(r => r.querySelector('a[href^=\"#/runs/\"]')?.getAttribute('href'))"
    )
    assert set(runs) == {f"#/runs/{run_id}"}
    kinds = set(page.get_by_test_id("audit-row").evaluate_all("rs => rs.map(r => r.dataset.kind)"))
    assert kinds  # the run's own records, whatever their kinds

    page.get_by_label("kind").fill("no-such-kind")
    page.get_by_test_id("audit-apply").click()
    expect(page.get_by_test_id("audit-empty")).to_be_visible()
    # The export is the whole, verifiable log whatever the filters.
    expect(page.get_by_test_id("audit-export")).to_have_attribute("href", "/api/v1/audit/export")


def test_a_run_links_to_its_audit_records(page, login, console_server):
    [run_id] = console_server.post_alert(an_alert("Credential dump on ws-9", severity="medium"))
    login(page, Role.ADMIN)
    page.get_by_test_id("nav-runs").click()
    page.locator(f'[data-testid=run-row][data-run="{run_id}"]').get_by_test_id("run-link").click()
    page.get_by_test_id("run-audit-link").click()
    expect(page.get_by_label("run")).to_have_value(run_id)
    expect(page.get_by_test_id("audit-row").first).to_be_visible()
