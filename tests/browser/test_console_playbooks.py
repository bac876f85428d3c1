"""The playbook editor: live validation marked in place, dry runs against a pasted alert,
saving a new version; read-only for the roles that may not author."""

from __future__ import annotations

import json
import re

from soar.api.auth import Role
from soar.connectors import Registry
from soar.connectors.core import core
from soar.playbook.validate import validate_text
from tests.browser.console_support import an_alert, expect


def open_playbook(page, name):
    page.get_by_test_id("nav-playbooks").click()
    page.get_by_test_id("playbook-link").filter(has_text=name).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)


def put_caret(editor, offset):
    editor.focus()
    editor.evaluate("(el, at) => el.setSelectionRange(at, at)", offset)


def caret_line(editor):
    return editor.evaluate("el => el.value.slice(0, el.selectionStart).split('\\n').length")


def test_the_playbook_list_shows_each_loaded_playbook(page, login, shoot):
    login(page, Role.AUTHOR)
    page.get_by_test_id("nav-playbooks").click()
    rows = page.get_by_test_id("playbook-row")
    for playbook in ("contain-account", "note-alert", "quarantine-file"):
        expect(
            page.locator(f'[data-testid=playbook-row][data-playbook="{playbook}"]')
        ).to_be_visible()
    expect(rows.filter(has_text="contain-account")).to_contain_text("v1")
    expect(rows.filter(has_text="contain-account")).to_contain_text("alert.category")
    shoot(page, "playbooks")


def test_an_error_typed_in_the_editor_is_marked_at_its_line(page, login, console_server, shoot):
    login(page, Role.AUTHOR)
    open_playbook(page, "Contain a compromised account")
    status = page.get_by_test_id("validation-status")
    expect(status).to_have_text("✔ valid")
    editor = page.get_by_test_id("editor")
    source = editor.input_value()
    lines = source.split("\n")
    line = next(n for n, text in enumerate(lines, 1) if text.strip() == "action: core.log")
    offset = sum(len(text) + 1 for text in lines[: line - 1]) + lines[line - 1].index("core.log")

    put_caret(editor, offset + len("core.log"))
    page.keyboard.type("x")  # core.log → core.logx, an action no connector has

    expect(status).to_have_text("✖ 1 problem")
    diagnostic = page.get_by_test_id("diagnostic")
    expect(diagnostic).to_have_count(1)
    expect(diagnostic).to_contain_text("core.logx")
    assert diagnostic.get_attribute("data-line") == str(line)
    # Marked in place: the gutter's number and the line's highlight are at that line.
    marker = page.get_by_test_id("gutter-marker")
    expect(marker).to_have_count(1)
    expect(marker).to_have_text(str(line))
    assert marker.get_attribute("data-line") == str(line)
    assert page.get_by_test_id("marked-line").get_attribute("data-line") == str(line)
    expect(editor).to_have_attribute("aria-invalid", "true")
    # The same diagnostic `soar validate` gives for that text.
    [cli] = validate_text(
        editor.input_value(),
        file=console_server.playbooks_dir / "contain-account" / "playbook.yaml",
        registry=Registry.of([core]),
    ).diagnostics
    assert (cli.line, cli.col) == (line, int(diagnostic.get_attribute("data-column")))
    assert cli.message in diagnostic.inner_text()
    shoot(page, "editor")

    put_caret(editor, 0)
    diagnostic.click()  # jumps to the problem
    assert caret_line(editor) == line
    expect(editor).to_be_focused()

    page.keyboard.press("End")
    page.keyboard.press("Backspace")
    expect(status).to_have_text("✔ valid")
    expect(page.get_by_test_id("gutter-marker")).to_have_count(0)
    expect(page.get_by_test_id("diagnostic")).to_have_count(0)


def test_a_draft_is_dry_run_against_a_pasted_alert(page, login, shoot):
    login(page, Role.AUTHOR)
    open_playbook(page, "Contain a compromised account")
    expect(page.get_by_test_id("validation-status")).to_have_text("✔ valid")
    page.get_by_label("Alert JSON for a dry run").fill(
        json.dumps(an_alert("Impossible travel for ana", user="ana"), indent=2)
    )
    page.get_by_test_id("dry-run").click()

    result = page.get_by_test_id("dry-run-result")
    expect(result.get_by_test_id("dry-run-tag")).to_be_visible()
    expect(result.get_by_test_id("run-status")).to_have_text("completed")
    expect(result.get_by_test_id("alert-title")).to_have_text("Impossible travel for ana")
    steps = result.get_by_test_id("step")
    expect(steps).to_have_count(3)
    for key in ("summary", "approve-containment", "disable-account"):
        expect(steps.and_(page.locator(f'[data-step="{key}"]'))).to_have_attribute(
            "data-status", "succeeded"
        )
    expect(result.get_by_test_id("transition").first).to_have_attribute("data-kind", "run_started")
    expect(result.get_by_test_id("transition").last).to_have_attribute("data-kind", "run_finished")
    shoot(page, "dry-run", full_page=True)


def test_a_dry_run_reports_an_alert_it_cannot_read(page, login):
    login(page, Role.AUTHOR)
    open_playbook(page, "Contain a compromised account")
    alert = page.get_by_label("Alert JSON for a dry run")
    alert.fill("{not json")
    page.get_by_test_id("dry-run").click()
    expect(page.get_by_test_id("dry-run-error")).to_contain_text("not JSON")
    alert.fill('{"no": "title or severity"}')
    page.get_by_test_id("dry-run").click()
    expect(page.get_by_test_id("dry-run-error")).to_contain_text("rejected")


def test_a_new_version_is_saved_only_with_a_higher_version(page, login, console_server):
    login(page, Role.AUTHOR)
    open_playbook(page, "Note every low or medium alert")
    editor = page.get_by_test_id("editor")
    source = editor.input_value()
    editor.fill(source.replace("noted:", "noted again:"))
    page.get_by_test_id("save-version").click()
    expect(page.get_by_test_id("save-error")).to_contain_text("raise `version`")

    newer = source.replace("version: 1", "version: 2")
    editor.fill(newer)
    page.get_by_test_id("save-version").click()
    saved = page.get_by_test_id("save-ok")
    expect(saved).to_contain_text("version 2; not live yet")
    expect(page.get_by_role("heading", level=1)).to_contain_text("v1")  # the live one
    assert editor.input_value() == newer  # the saved draft stays in the editor
    status, body = console_server.request("GET", "/playbooks/note-alert/versions")
    assert status == 200
    assert {v["version"]: v["share"] for v in body["versions"]} == {1: 100, 2: 0}
    status, _ = console_server.request(
        "POST",
        "/playbooks/note-alert/rollout",
        role=Role.AUTHOR,
        body={"version": 2, "share": 100, "mode": "live"},
    )
    assert status == 200
    status, body = console_server.request("GET", "/playbooks/note-alert")
    assert (status, body["version"]) == (200, 2)


NEW_PLAYBOOK = """\
id: console-new
name: Written in the console
version: 1
trigger:
  match: alert.category == "impact"
steps:
  - id: note
    action: core.log
    with: { message: "{{ alert.title }}" }
"""


def test_a_new_draft_is_saved_as_a_new_playbook(page, login, console_server):
    login(page, Role.AUTHOR)
    page.get_by_test_id("nav-playbooks").click()
    page.get_by_test_id("new-draft").click()
    status = page.get_by_test_id("validation-status")
    expect(status).to_have_text("✔ valid")  # the starting draft is a valid playbook
    editor = page.get_by_test_id("editor")
    editor.fill(NEW_PLAYBOOK.replace("core.log", "core.lgo"))
    expect(status).to_have_text("✖ 1 problem")
    expect(page.get_by_test_id("diagnostic")).to_contain_text("draft.yaml:8:13")
    editor.fill(NEW_PLAYBOOK)
    expect(status).to_have_text("✔ valid")
    page.get_by_test_id("save-version").click()
    expect(page).to_have_url(page.url.split("#")[0] + "#/playbooks/console-new")
    expect(page.get_by_role("heading", level=1)).to_have_text("Written in the console v1")
    assert (console_server.playbooks_dir / "console-new" / "playbook.yaml").read_text() == (
        NEW_PLAYBOOK
    )


def test_readers_see_the_source_read_only(page, login):
    login(page, Role.AUDITOR)
    open_playbook(page, "Contain a compromised account")
    editor = page.get_by_test_id("editor")
    expect(editor).to_have_attribute("readonly", "")
    expect(editor).to_have_value(re.compile(r"^id: contain-account$", re.MULTILINE))
    expect(page.get_by_test_id("save-version")).to_have_count(0)
    expect(page.get_by_test_id("dry-run")).to_have_count(0)
    expect(page.get_by_test_id("validation-status")).to_have_count(0)


def test_tab_indents_in_the_editor_and_escape_then_tab_leaves_it(page, login):
    login(page, Role.AUTHOR)
    page.get_by_test_id("nav-playbooks").click()
    page.get_by_test_id("new-draft").click()
    editor = page.get_by_test_id("editor")
    expect(page.get_by_test_id("validation-status")).to_have_text("✔ valid")
    put_caret(editor, 0)
    page.keyboard.press("Tab")
    assert editor.input_value().startswith("  id: my-playbook")
    expect(editor).to_be_focused()
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    expect(editor).not_to_be_focused()
    assert editor.input_value().startswith("  id: my-playbook")
