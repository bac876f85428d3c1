// Runs: the list (newest first, filtered by status and playbook, refreshed live) and one run's
// timeline (refreshed live while it is open), with Abort for responders.

import * as api from "./api.js";
import * as events from "./events.js";
import { h, replace, statusBadge, severityBadge, time, message, debounce } from "./dom.js";
import { runDetail } from "./runview.js";

const STATUSES = ["running", "waiting", "compensating", "completed", "failed", "aborted"];
const TERMINAL = new Set(["completed", "failed", "aborted"]);
const PAGE = 50;

export function render(root, ctx) {
  const [id] = ctx.params.parts;
  return id ? renderRun(root, ctx, id) : renderList(root, ctx);
}

function renderList(root, { params, navigate }) {
  const status = params.query.get("status") ?? "";
  const playbook = params.query.get("playbook") ?? "";

  const statusSelect = h("select", { id: "run-status", "data-testid": "runs-status-filter" },
    h("option", { value: "" }, "any status"),
    STATUSES.map((value) => h("option", { value, selected: value === status }, value)));
  const playbookInput = h("input", { id: "run-playbook", type: "search", value: playbook,
    placeholder: "playbook id", "data-testid": "runs-playbook-filter" });
  const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter runs" },
    h("label", { for: "run-status" }, "Status"), statusSelect,
    h("label", { for: "run-playbook" }, "Playbook"), playbookInput,
    h("button", { type: "submit", class: "btn" }, "Filter"));
  const apply = () => navigate("runs", { status: statusSelect.value, playbook: playbookInput.value.trim() });
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  statusSelect.addEventListener("change", apply);

  const body = h("tbody", { "data-testid": "runs-body" });
  const state = h("div", { "data-testid": "runs-state" });
  const more = h("button", { type: "button", class: "btn", hidden: true, "data-testid": "runs-more" }, "Older runs");
  let runs = [];

  async function load({ append = false } = {}) {
    const query = { status, playbook, limit: PAGE };
    if (append && runs.length) query.before = runs[runs.length - 1].created_at;
    try {
      const page = (await api.get("/runs", { query })).runs;
      runs = append ? runs.concat(page) : page;
      more.hidden = page.length < PAGE;
      replace(state, runs.length ? null : message("info", "No run matches.", "runs-empty"));
      replace(body, runs.map((run) => runRow(run, navigate)));
    } catch (exc) {
      replace(state, message("error", exc.message, "runs-error"));
    }
  }
  more.addEventListener("click", () => load({ append: true }));
  const refresh = debounce(() => load(), 250);
  const unsubscribe = events.subscribe(refresh);

  root.append(h("section", { class: "screen" },
    h("div", { class: "screen-head" }, h("h1", {}, "Runs"), filters),
    state,
    h("div", { class: "table-wrap" },
      h("table", { class: "table runs", "data-testid": "runs-table" },
        h("thead", {}, h("tr", {}, ["Status", "Playbook", "Alert", "Severity", "Trigger", "Started", "Updated"]
          .map((label) => h("th", { scope: "col" }, label)))),
        body)),
    more));
  load();
  return () => {
    unsubscribe();
    refresh.cancel();
  };
}

function runRow(run, navigate) {
  const open = () => navigate("runs", run.id);
  const link = h("a", { href: `#/runs/${encodeURIComponent(run.id)}`, "data-testid": "run-link" },
    `${run.playbook_id} v${run.playbook_version}`);
  const row = h("tr", { class: "clickable", "data-testid": "run-row", "data-run": run.id, "data-status": run.status },
    h("td", {}, statusBadge(run.status, "run-row-status"),
      run.dry_run ? h("span", { class: "tag" }, "dry run") : null),
    h("td", {}, link),
    h("td", { class: "alert-title", "data-testid": "run-alert-title" }, run.alert_title ?? ""),
    h("td", {}, severityBadge(run.severity)),
    h("td", {}, run.trigger ?? ""),
    h("td", {}, time(run.created_at)),
    h("td", {}, time(run.updated_at)));
  row.addEventListener("click", (event) => {
    if (event.target.closest("a")) return;
    open();
  });
  return row;
}

function renderRun(root, { can, notify }, id) {
  const container = h("div", { "data-testid": "run-container" }, h("p", { class: "muted" }, "Loading…"));
  const actions = h("div", { class: "actions" });
  let current = null;

  async function load() {
    try {
      current = await api.get(`/runs/${encodeURIComponent(id)}`);
      replace(container, runDetail(current));
      renderActions();
    } catch (exc) {
      replace(container, message("error", exc.status === 404 ? `No run ${id}.` : exc.message, "run-load-error"));
    }
  }

  function renderActions() {
    replace(actions);
    if (!current || !can("runs.abort") || TERMINAL.has(current.run.status)) return;
    const reason = h("input", { id: "abort-reason", type: "text", "aria-required": "true",
      placeholder: "why (recorded in the audit log)", "data-testid": "abort-reason" });
    const error = h("div");
    const form = h("form", { class: "abort-form", hidden: true, novalidate: true },
      h("label", { for: "abort-reason" }, "Reason"), reason,
      h("button", { type: "submit", class: "btn btn-danger", "data-testid": "abort-confirm" }, "Abort and compensate"),
      h("button", { type: "button", class: "btn btn-quiet", onclick: () => { form.hidden = true; open.hidden = false; } }, "Cancel"),
      error);
    const open = h("button", { type: "button", class: "btn btn-danger", "data-testid": "abort" }, "Abort run…");
    open.addEventListener("click", () => {
      form.hidden = false;
      open.hidden = true;
      reason.focus();
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!reason.value.trim()) {
        replace(error, message("error", "Give a reason.", "abort-error"));
        return;
      }
      try {
        const result = await api.post(`/runs/${encodeURIComponent(id)}/abort`, { reason: reason.value.trim() });
        notify(`Abort requested; run is ${result.status}.`, "ok");
        load();
      } catch (exc) {
        replace(error, message("error", exc.message, "abort-error"));
      }
    });
    actions.append(open, form);
  }

  const refresh = debounce(load, 200);
  const unsubscribe = events.subscribe((event) => {
    if (event.run_id === id) refresh();
  });

  root.append(h("section", { class: "screen" },
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/runs" }, "Runs"), " / ", h("code", {}, id)),
    h("div", { class: "screen-head" }, h("h1", {}, "Run ", h("code", { "data-testid": "run-id" }, id)), actions),
    can("audit") ? h("p", {}, h("a", { href: `#/audit?run=${encodeURIComponent(id)}`, "data-testid": "run-audit-link" }, "Audit records of this run")) : null,
    container));
  load();
  return () => {
    unsubscribe();
    refresh.cancel();
  };
}
