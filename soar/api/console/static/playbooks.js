// Playbooks: the list, and the editor with live validation (the same file:line:col
// diagnostics as `soar validate`, listed and marked at their line), a dry run against a pasted
// alert, and "Save as new version". Readers without the author role see the source read-only.

import * as api from "./api.js";
import { h, replace, message, shortHash, debounce } from "./dom.js";
import { createEditor } from "./editor.js";
import { runDetail } from "./runview.js";

const NEW_DRAFT = `id: my-playbook
name: My playbook
version: 1
trigger:
  match: alert.severity >= "high"
steps:
  - id: tell
    action: core.log
    with: { message: "{{ alert.title }}" }
`;

// Unsaved edits, kept while the console stays open (memory only), keyed by playbook id.
const drafts = new Map();
let lastAlert = "";

export function render(root, ctx) {
  const [id] = ctx.params.parts;
  if (!id) return renderList(root, ctx);
  return renderEditor(root, ctx, id === "new" ? null : id);
}

/** The `id:` of a draft's top level, read without a YAML parser (the server checks the rest). */
function draftId(source) {
  const match = /^id:[ \t]*["']?([A-Za-z0-9_.-]+)["']?[ \t]*(#.*)?$/m.exec(source);
  return match ? match[1] : null;
}

/**
 * The name a playbook's file is validated and shown under: its directory and file name
 * (`contain-account/playbook.yaml`), as `soar validate` prints a path given relative to the
 * playbooks directory, rather than wherever the server keeps it.
 */
function shortFile(path) {
  if (!path) return "draft.yaml";
  return path.split("/").filter(Boolean).slice(-2).join("/");
}

function triggerText(trigger) {
  if (!trigger || typeof trigger !== "object") return "";
  if (trigger.match) return trigger.match;
  if (trigger.cron) return `cron ${trigger.cron}`;
  return Object.keys(trigger).join(", ");
}

function renderList(root, { navigate, can }) {
  const body = h("tbody", { "data-testid": "playbooks-body" });
  const state = h("div");
  root.append(h("section", { class: "screen" },
    h("div", { class: "screen-head" }, h("h1", {}, "Playbooks"),
      can("playbooks.edit") ? h("a", { class: "btn", href: "#/playbooks/new", "data-testid": "new-draft" }, "New draft") : null),
    state,
    h("div", { class: "table-wrap" },
      h("table", { class: "table playbooks", "data-testid": "playbooks-table" },
        h("thead", {}, h("tr", {}, ["Playbook", "Version", "Steps", "Trigger", "Digest"]
          .map((label) => h("th", { scope: "col" }, label)))),
        body))));

  api.get("/playbooks").then(({ playbooks }) => {
    replace(state, playbooks.length ? null : message("info", "No playbook is loaded.", "playbooks-empty"));
    replace(body, playbooks.map((playbook) => {
      const row = h("tr", { class: "clickable", "data-testid": "playbook-row", "data-playbook": playbook.id },
        h("td", {},
          h("a", { href: `#/playbooks/${encodeURIComponent(playbook.id)}`, "data-testid": "playbook-link" }, playbook.name || playbook.id),
          h("div", { class: "muted small" }, h("code", {}, playbook.id), playbook.description ? ` — ${playbook.description}` : "")),
        h("td", { class: "num" }, `v${playbook.version}`),
        h("td", { class: "num" }, playbook.steps),
        h("td", {}, h("code", { class: "trigger" }, triggerText(playbook.trigger))),
        h("td", {}, shortHash(playbook.digest)));
      row.addEventListener("click", (event) => {
        if (!event.target.closest("a")) navigate("playbooks", playbook.id);
      });
      return row;
    }));
  }).catch((exc) => replace(state, message("error", exc.message, "playbooks-error")));
}

function renderEditor(root, { can, notify, navigate }, id) {
  const editable = can("playbooks.edit");
  const draftKey = id ?? "new";
  let file = "draft.yaml";
  let playbook = null;

  const title = h("h1", {}, id ? "Playbook " : "New draft", id ? h("code", {}, id) : null);
  const meta = h("p", { class: "muted", "data-testid": "playbook-meta" });
  const status = h("span", { class: "validation", "data-testid": "validation-status", "data-state": "idle", role: "status" });
  const diagnosticsList = h("ul", { id: "diagnostics", class: "diagnostics", "data-testid": "diagnostics" });
  const editor = createEditor({ id: "source", label: "Playbook source (YAML)", readOnly: !editable, describedBy: "diagnostics" });
  const saveFeedback = h("div", { "data-testid": "save-feedback" });
  const save = h("button", { type: "button", class: "btn btn-primary", "data-testid": "save-version" },
    id ? "Save as new version" : "Save as new playbook");
  const alertInput = h("textarea", { id: "dry-run-alert", class: "code-input plain", rows: 12, spellcheck: "false",
    "data-testid": "dry-run-alert", placeholder: '{"title": "Multiple logon failures", "severity": "high", …}' });
  alertInput.value = lastAlert;
  const dryRunButton = h("button", { type: "button", class: "btn", "data-testid": "dry-run" }, "Dry run");
  const dryRunResult = h("div", { class: "dry-run-result", "data-testid": "dry-run-result", "aria-live": "polite" });

  let controller = null;

  function showDiagnostics(valid, diagnostics) {
    const inPlace = diagnostics.filter((d) => !d.file || d.file === file || d.file.endsWith(`/${file}`) || file.endsWith(`/${d.file}`));
    editor.mark(inPlace);
    status.dataset.state = valid ? "valid" : "invalid";
    status.textContent = valid ? "✔ valid" : `✖ ${diagnostics.length} problem${diagnostics.length === 1 ? "" : "s"}`;
    replace(diagnosticsList, diagnostics.map((d) => h("li", {},
      h("button", {
        type: "button", class: "diagnostic", "data-testid": "diagnostic",
        "data-line": d.line, "data-column": d.column,
        onclick: () => editor.goTo(d.line, d.column),
      },
      h("span", { class: "where" }, `${d.file}:${d.line}:${d.column}`), " ", h("span", {}, d.message)))));
  }

  async function validate() {
    controller?.abort();
    controller = new AbortController();
    status.dataset.state = "pending";
    status.textContent = "validating…";
    try {
      const result = await api.post("/playbooks/validate", { source: editor.value, file }, { signal: controller.signal });
      showDiagnostics(result.valid, result.diagnostics);
    } catch (exc) {
      if (exc.name === "AbortError") return;
      status.dataset.state = "error";
      status.textContent = `validation unavailable: ${exc.message}`;
    }
  }
  const validateSoon = debounce(validate, 350);

  editor.onChange((text) => {
    drafts.set(draftKey, text);
    if (editable) {
      status.dataset.state = "pending";
      status.textContent = "editing…";
      validateSoon();
    }
  });

  save.addEventListener("click", async () => {
    const target = id ?? draftId(editor.value);
    if (!target) {
      replace(saveFeedback, message("error", "The draft needs an `id:` line to be saved.", "save-error"));
      return;
    }
    save.disabled = true;
    replace(saveFeedback);
    try {
      const result = await api.post(`/playbooks/${encodeURIComponent(target)}/versions`, { source: editor.value });
      drafts.delete(draftKey);
      notify(`Saved ${result.id} v${result.version} (${result.digest.slice(0, 12)}…).`, "ok");
      if (id && result.live) {
        replace(saveFeedback, message("ok", `Saved version ${result.version}; it is live.`, "save-ok"));
        await loadPlaybook();
      } else if (id) {
        // a new version of a live playbook starts nothing until it is rolled out: keep it here
        const rollout = `soar playbooks rollout ${result.id} --version ${result.version} --share 10`;
        replace(saveFeedback, message(
          "ok",
          `Saved version ${result.version}; not live yet. Roll it out to a share of the alerts (${rollout}) or promote it.`,
          "save-ok",
        ));
      } else {
        navigate("playbooks", result.id);
      }
    } catch (exc) {
      if (exc.code === "invalid_playbook" && Array.isArray(exc.details)) showDiagnostics(false, exc.details);
      replace(saveFeedback, message("error", exc.message, "save-error"));
    } finally {
      save.disabled = false;
    }
  });

  dryRunButton.addEventListener("click", async () => {
    lastAlert = alertInput.value;
    let alert;
    try {
      alert = JSON.parse(alertInput.value);
    } catch (exc) {
      replace(dryRunResult, message("error", `The alert is not JSON: ${exc.message}`, "dry-run-error"));
      alertInput.focus();
      return;
    }
    dryRunButton.disabled = true;
    replace(dryRunResult, h("p", { class: "muted" }, "Running…"));
    try {
      const result = await api.post("/playbooks/dry-run", { source: editor.value, alert, file });
      showDiagnostics(result.valid, result.diagnostics);
      if (!result.valid) {
        replace(dryRunResult, message("error", "The draft does not validate; fix the problems listed under the editor.", "dry-run-error"));
      } else if (!result.run) {
        replace(dryRunResult, message("info", "The draft is valid but planned no run for this alert.", "dry-run-none"));
      } else {
        replace(dryRunResult,
          message("info", "Dry run: planned effects only; nothing was changed.", "dry-run-note"),
          runDetail(result.run, { playbookLink: false }));
      }
    } catch (exc) {
      const text = exc.code === "alert_rejected" ? `The alert was rejected: ${exc.message}` : exc.message;
      replace(dryRunResult, message("error", text, "dry-run-error"));
    } finally {
      dryRunButton.disabled = false;
    }
  });

  async function loadPlaybook() {
    if (!id) {
      editor.setValue(drafts.get(draftKey) ?? NEW_DRAFT);
      meta.textContent = "Not saved yet: validate and dry-run it here; saving adds it to the playbooks directory under its id.";
      if (editable) validate();
      return;
    }
    try {
      playbook = await api.get(`/playbooks/${encodeURIComponent(id)}`);
    } catch (exc) {
      replace(meta, message("error", exc.status === 404 ? `No playbook ${id}.` : exc.message, "playbook-error"));
      return;
    }
    file = shortFile(playbook.file);
    replace(title, playbook.name || playbook.id, " ", h("span", { class: "muted" }, `v${playbook.version}`));
    replace(meta, h("code", {}, playbook.id), ` · ${playbook.steps} steps · `, h("span", { title: playbook.file }, file),
      " · digest ", shortHash(playbook.digest),
      playbook.description ? h("span", {}, ` — ${playbook.description}`) : null);
    const draft = drafts.get(draftKey);
    editor.setValue(draft ?? playbook.source ?? "");
    if (editable) validate();
  }

  root.append(h("section", { class: "screen" },
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/playbooks" }, "Playbooks"), " / ", id ?? "new draft"),
    h("div", { class: "screen-head" }, title, editable ? h("div", { class: "actions" }, saveFeedback, save) : null),
    meta,
    h("div", { class: "editor-layout" },
      h("div", { class: "editor-pane" },
        h("div", { class: "pane-head" }, h("label", { for: "source" }, "Source"), editable ? status : h("span", { class: "muted" }, "read-only")),
        editor.element,
        h("h2", { class: "visually-hidden" }, "Diagnostics"),
        diagnosticsList),
      editable
        ? h("div", { class: "dry-run-pane" },
            h("div", { class: "pane-head" }, h("label", { for: "dry-run-alert" }, "Alert JSON for a dry run")),
            alertInput,
            h("p", { class: "hint" }, "Paste a raw alert (OCSF, ECS, Splunk or generic). The draft runs in dry-run mode: steps are planned, nothing is changed."),
            dryRunButton)
        : null),
    editable ? h("section", { class: "dry-run-section", "aria-label": "Dry run result" }, dryRunResult) : null));
  loadPlaybook();
  return () => {
    validateSoon.cancel();
    controller?.abort();
  };
}
