"""Logging in and out of the console, and what each role is shown."""

from __future__ import annotations

import pytest

from soar.api.auth import Role
from tests.browser.console_support import expect

SCREENS = {
    Role.ADMIN: ["runs", "approvals", "playbooks", "audit"],
    Role.AUTHOR: ["runs", "playbooks"],
    Role.RESPONDER: ["runs", "approvals", "playbooks"],
    Role.AUDITOR: ["runs", "playbooks", "audit"],
    Role.INGEST: [],
}


def test_a_wrong_token_is_refused_inline(page, console_server, shoot):
    page.goto(f"{console_server.url}/")  # redirects to /console/
    expect(page.get_by_role("heading", name="Log in to the soar console")).to_be_visible()
    page.get_by_label("API token").fill("soar_0000_not-a-real-token")
    page.keyboard.press("Enter")  # the form submits from the keyboard
    expect(page.get_by_test_id("login-error")).to_contain_text("not valid")
    expect(page.get_by_test_id("nav")).to_be_hidden()
    page.get_by_label("API token").fill("")
    shoot(page, "login")


def test_the_session_is_an_httponly_cookie_and_the_token_is_not_kept(
    page, context, console_server, login
):
    login(page, Role.AUDITOR)
    expect(page.get_by_test_id("user-name")).to_have_text("auditor")
    [cookie] = [c for c in context.cookies() if c["name"] == "soar_session"]
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    token = console_server.tokens[Role.AUDITOR]
    stored = page.evaluate(
        "() => JSON.stringify([localStorage, sessionStorage, document.cookie, location.href])"
    )
    assert token not in stored
    assert "soar_session" not in stored
    assert page.get_by_test_id("login-token").count() == 0  # the form, and the token, are gone

    page.reload()  # the cookie alone brings the session back
    expect(page.get_by_test_id("user-role")).to_have_text("auditor")


def test_logging_out_ends_the_session(page, console_server, login):
    login(page, Role.RESPONDER)
    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login-token")).to_be_visible()
    expect(page.get_by_test_id("notice")).to_contain_text("logged out")
    assert page.request.get(f"{console_server.url}/api/v1/session").status == 401
    page.reload()
    expect(page.get_by_test_id("login-token")).to_be_visible()


@pytest.mark.parametrize("role", list(SCREENS), ids=[r.value for r in SCREENS])
def test_each_role_sees_only_its_screens(page, login, role):
    login(page, role)
    expect(page.get_by_test_id("user-role")).to_have_text(role.value)
    shown = page.locator("[data-testid=nav] a").evaluate_all(
        "links => links.map(a => a.dataset.testid.replace('nav-', ''))"
    )
    assert shown == SCREENS[role]
    if not SCREENS[role]:
        expect(page.get_by_test_id("no-screens")).to_be_visible()
    else:
        # The first screen opens by itself, and asking for another one falls back to it.
        expect(page.get_by_role("heading", level=1)).to_have_text("Runs")
        hidden = {"approvals", "audit", "playbooks"} - set(SCREENS[role])
        for screen in sorted(hidden):
            page.evaluate("screen => { location.hash = '#/' + screen; }", screen)
            expect(page).to_have_url(page.url.split("#")[0] + "#/runs")


def test_an_ended_session_returns_to_the_login_form(page, context, login):
    login(page, Role.ADMIN)
    expect(page.get_by_role("heading", level=1)).to_have_text("Runs")
    context.clear_cookies()  # as when the session expires
    page.get_by_test_id("nav-audit").click()
    expect(page.get_by_test_id("login-token")).to_be_visible()
    expect(page.get_by_test_id("notice")).to_contain_text("session has ended")
