"""Runs and approvals in the console: the live run list, a run's timeline (steps, attempts,
compensations, transitions), approving and denying, aborting; alert text shown as text."""

from __future__ import annotations

import json

from soar.api.auth import Role
from tests.browser.console_support import XSS, an_alert, expect


def approval_card(page, run_id):
    return page.locator(f'[data-testid=approval][data-run="{run_id}"]')


def open_run(page, run_id):
    page.get_by_test_id("nav-runs").click()
    page.locator(f'[data-testid=run-row][data-run="{run_id}"]').get_by_test_id("run-link").click()
    expect(page.get_by_test_id("run-id")).to_have_text(run_id)


def test_approving_a_pending_step_lets_the_run_complete(page, login, console_server, shoot):
    [run_id] = console_server.post_alert(an_alert("Impossible travel for ana", user="ana"))
    login(page, Role.RESPONDER)
    expect(page.get_by_test_id("approvals-count")).not_to_have_text("0")
    page.get_by_test_id("nav-approvals").click()
    card = approval_card(page, run_id)
    expect(card.get_by_test_id("approval-message")).to_have_text(
        "Disable the account ana? (Impossible travel for ana)"
    )
    expect(card.get_by_test_id("guarded-action")).to_have_text("core.log")
    guarded = json.loads(card.get_by_test_id("guarded-inputs").inner_text())
    assert guarded == {"message": "disabling ana", "level": "warning"}
    card.get_by_label("Comment").fill("confirmed with ana's manager")
    shoot(page, "approvals")

    card.get_by_test_id("approve").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Approved")
    expect(card).to_have_count(0)

    open_run(page, run_id)
    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    steps = page.get_by_test_id("step")
    expect(steps).to_have_count(3)
    for step in steps.all():
        expect(step).to_have_attribute("data-status", "succeeded")
    approval = steps.and_(page.locator('[data-step="approve-containment"]'))
    expect(approval.get_by_test_id("step-output")).to_contain_text("confirmed with ana's manager")
    expect(page.get_by_test_id("transition").last).to_have_attribute("data-kind", "run_finished")
    expect(page.locator('[data-testid=transition][data-kind="approval_decided"]')).to_have_count(1)
    shoot(page, "run", full_page=True)


def test_a_denied_step_skips_what_it_guards(page, login, console_server):
    [run_id] = console_server.post_alert(an_alert("Odd login for bo", user="bo"))
    login(page, Role.RESPONDER)
    page.get_by_test_id("nav-approvals").click()
    card = approval_card(page, run_id)
    card.get_by_label("Comment").fill("bo is travelling")
    card.get_by_test_id("deny").click()
    expect(card).to_have_count(0)
    open_run(page, run_id)
    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    expect(page.locator('[data-testid=step][data-step="disable-account"]')).to_have_attribute(
        "data-status", "skipped"
    )


def test_a_changed_approval_is_shown_again_before_it_is_decided(page, login, console_server):
    """The server answers 409 approval_changed when the digest no longer matches what was
    asked; the console reloads the approval and asks again. The stale digest is simulated by
    rewriting the request on its way out."""
    [run_id] = console_server.post_alert(an_alert("Token theft for cy", user="cy"))
    login(page, Role.RESPONDER)
    page.get_by_test_id("nav-approvals").click()
    card = approval_card(page, run_id)
    expect(card).to_be_visible()

    def stale(route):
        body = json.loads(route.request.post_data)
        route.continue_(post_data=json.dumps({**body, "digest": "sha256:" + "0" * 64}))

    page.route("**/api/v1/approvals/*/*", stale)
    card.get_by_test_id("approve").click()
    expect(card.get_by_test_id("approval-changed")).to_be_visible()
    expect(card.get_by_test_id("approve")).to_be_enabled()
    assert console_server.request("GET", f"/runs/{run_id}")[1]["run"]["status"] == "running"

    page.unroute("**/api/v1/approvals/*/*")
    card.get_by_test_id("approve").click()
    expect(card).to_have_count(0)
    console_server.wait_run(run_id, {"completed"})


def test_the_open_run_and_the_run_list_follow_the_engine_live(page, login, console_server):
    login(page, Role.ADMIN)
    expect(page.get_by_test_id("live")).to_have_attribute("data-state", "on")
    [run_id] = console_server.post_alert(an_alert("Password spray on vpn", user="dee"))
    row = page.locator(f'[data-testid=run-row][data-run="{run_id}"]')
    expect(row).to_have_attribute("data-status", "running")  # appeared without a reload
    pending = len(console_server.request("GET", "/approvals")[1]["approvals"])
    expect(page.get_by_test_id("approvals-count")).to_have_text(str(pending))

    open_run(page, run_id)
    expect(page.get_by_test_id("run-status")).to_have_text("running")
    waiting = page.locator('[data-testid=step][data-step="approve-containment"]')
    expect(waiting).to_have_attribute("data-status", "waiting")
    [approval] = [
        a
        for a in console_server.request("GET", "/approvals")[1]["approvals"]
        if a["run_id"] == run_id
    ]
    status, _ = console_server.request(
        "POST",
        f"/approvals/{run_id}/approve-containment",
        body={"decision": "approve", "digest": approval["digest"], "comment": "from a script"},
    )
    assert status == 200
    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    expect(waiting).to_have_attribute("data-status", "succeeded")


def test_the_run_list_filters_by_status(page, login, console_server, shoot):
    [done] = console_server.post_alert(an_alert("Port scan from 10.0.0.5", severity="medium"))
    [waiting] = console_server.post_alert(an_alert("Mailbox rule created for eve", user="eve"))
    console_server.wait_run(done, {"completed"})
    login(page, Role.AUDITOR)
    expect(page.locator(f'[data-testid=run-row][data-run="{waiting}"]')).to_be_visible()
    shoot(page, "runs")
    page.get_by_label("Status").select_option("completed")
    expect(page).to_have_url(page.url.split("#")[0] + "#/runs?status=completed")
    expect(page.locator(f'[data-testid=run-row][data-run="{done}"]')).to_be_visible()
    expect(page.locator(f'[data-testid=run-row][data-run="{waiting}"]')).to_have_count(0)
    statuses = page.get_by_test_id("run-row").evaluate_all(
        "rows => rows.map(r => r.dataset.status)"
    )
    assert set(statuses) == {"completed"}


def test_a_failed_run_shows_its_compensations(page, login, console_server, shoot):
    [run_id] = console_server.post_alert(
        an_alert("Ransomware binary on ws-12", category="execution", host="ws-12")
    )
    console_server.wait_run(run_id, {"failed"})
    login(page, Role.AUDITOR)
    open_run(page, run_id)
    expect(page.get_by_test_id("run-status")).to_have_text("failed")
    expect(page.get_by_test_id("run-error")).to_contain_text("the EDR refused the quarantine")
    failed = page.locator('[data-testid=step][data-step="quarantine"]')
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed.get_by_test_id("step-error")).to_contain_text("the EDR refused the quarantine")
    undone = page.locator('[data-testid=step][data-step="tag-host"]')
    expect(undone).to_have_attribute("data-status", "compensated")
    expect(undone.get_by_test_id("compensation")).to_contain_text("step_compensated")
    expect(page.locator('[data-testid=transition][data-kind="step_compensated"]')).to_have_count(1)
    shoot(page, "run-compensated", full_page=True)


def test_a_responder_aborts_a_waiting_run(page, login, console_server):
    [run_id] = console_server.post_alert(an_alert("Suspicious OAuth grant for fay", user="fay"))
    login(page, Role.RESPONDER)
    open_run(page, run_id)
    page.get_by_test_id("abort").click()
    page.get_by_test_id("abort-confirm").click()
    expect(page.get_by_test_id("abort-error")).to_contain_text("Give a reason")
    page.get_by_label("Reason").fill("false positive: fay's new phone")
    page.get_by_test_id("abort-confirm").click()
    expect(page.get_by_test_id("run-status")).to_have_text("aborted")
    expect(page.get_by_test_id("run-error")).to_contain_text("false positive")
    expect(page.get_by_test_id("abort")).to_have_count(0)


def test_readers_cannot_abort(page, login, console_server):
    [run_id] = console_server.post_alert(an_alert("Unusual admin login for gus", user="gus"))
    login(page, Role.AUDITOR)
    open_run(page, run_id)
    expect(page.get_by_test_id("run-status")).to_have_text("running")
    expect(page.get_by_test_id("abort")).to_have_count(0)


def test_attacker_controlled_alert_text_is_shown_as_text(page, login, console_server):
    [noted] = console_server.post_alert(an_alert(XSS, severity="low"))
    [gated] = console_server.post_alert(an_alert(f"Login as {XSS}", user=XSS))
    console_server.wait_run(noted, {"completed"})
    login(page, Role.ADMIN)
    row = page.locator(f'[data-testid=run-row][data-run="{noted}"]')
    expect(row.get_by_test_id("run-alert-title")).to_have_text(XSS)
    page.get_by_test_id("nav-approvals").click()
    card = approval_card(page, gated)
    expect(card.get_by_test_id("approval-message")).to_have_text(
        f"Disable the account {XSS}? (Login as {XSS})"
    )
    open_run(page, noted)
    expect(page.get_by_test_id("alert-title")).to_have_text(XSS)
    expect(page.get_by_test_id("step-inputs")).to_contain_text(XSS)
    # Nothing from the alert became markup: the only images are the console's own logo.
    sources = page.locator("img").evaluate_all("imgs => imgs.map(i => i.getAttribute('src'))")
    assert sources == ["favicon.svg"]
