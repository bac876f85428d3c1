// The audit browser: the hash-chained log, filtered (run, actor, kind, action, target, time) and
// paged with next_after, under a badge saying whether the whole chain verifies.

import * as api from "./api.js";
import { h, replace, time, message, jsonBlock, shortHash } from "./dom.js";

const FIELDS = ["run", "actor", "kind", "action", "target"];
const PAGE = 50;

export function render(root, { params, navigate }) {
  const query = params.query;
  const inputs = {};
  const fields = FIELDS.map((name) => {
    inputs[name] = h("input", { id: `audit-${name}`, name, type: "search", value: query.get(name) ?? "",
      "data-testid": `audit-filter-${name}`, autocomplete: "off" });
    return h("div", { class: "field" }, h("label", { for: `audit-${name}` }, name), inputs[name]);
  });
  for (const name of ["since", "until"]) {
    inputs[name] = h("input", { id: `audit-${name}`, name, type: "datetime-local", step: 1,
      value: toLocalInput(query.get(name)), "data-testid": `audit-filter-${name}` });
    fields.push(h("div", { class: "field" }, h("label", { for: `audit-${name}` }, `${name} (UTC)`), inputs[name]));
  }
  const filters = { ...Object.fromEntries(FIELDS.map((name) => [name, query.get(name) ?? ""])),
    since: query.get("since") ?? "", until: query.get("until") ?? "" };

  const form = h("form", { class: "filters audit-filters", role: "search", "aria-label": "Filter audit records" },
    fields,
    h("div", { class: "field buttons" },
      h("button", { type: "submit", class: "btn btn-primary", "data-testid": "audit-apply" }, "Apply"),
      h("button", { type: "button", class: "btn btn-quiet", onclick: () => navigate("audit") }, "Clear")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = {};
    for (const name of FIELDS) next[name] = inputs[name].value.trim();
    for (const name of ["since", "until"]) next[name] = fromLocalInput(inputs[name].value);
    navigate("audit", next);
  });

  const badge = h("div", { class: "verify", "data-testid": "audit-verify", "data-verified": "pending", role: "status" }, "verifying…");
  const reverify = h("button", { type: "button", class: "btn btn-quiet", "data-testid": "audit-reverify" }, "Verify again");
  // The export is always the whole log with its checkpoints: the file `soar audit verify` checks.
  const exportLink = h("a", { class: "btn", href: api.apiUrl("/audit/export"), download: "audit.jsonl",
    "data-testid": "audit-export", title: "The whole log with its signed checkpoints, for soar audit verify" },
  "Export log");
  const body = h("tbody", { "data-testid": "audit-body" });
  const state = h("div", { "data-testid": "audit-state" });
  const pageInfo = h("span", { class: "muted", "data-testid": "audit-page" });
  const previous = h("button", { type: "button", class: "btn", "data-testid": "audit-prev", disabled: true }, "← Earlier");
  const next = h("button", { type: "button", class: "btn", "data-testid": "audit-next", disabled: true }, "Later →");
  // `after` values of the pages already seen, so "back" needs no reverse query.
  const stack = [];
  let after = null;
  let nextAfter = null;

  async function verify() {
    badge.dataset.verified = "pending";
    replace(badge, "verifying…");
    try {
      const result = await api.get("/audit/verify");
      badge.dataset.verified = String(result.verified);
      if (result.verified) {
        replace(badge, h("strong", { "data-testid": "audit-verified" }, "✔ verified"),
          h("span", {}, ` ${result.size} records · ${result.checkpoints} checkpoints · head `), shortHash(result.head));
      } else {
        replace(badge, h("strong", { "data-testid": "audit-broken" }, "✖ chain broken"),
          h("span", {}, ` at record #${result.first_bad ?? "?"}: `),
          h("span", { "data-testid": "audit-broken-reason" }, result.reason ?? "unknown reason"));
      }
    } catch (exc) {
      badge.dataset.verified = "error";
      replace(badge, `verification unavailable: ${exc.message}`);
    }
  }
  reverify.addEventListener("click", verify);

  async function load() {
    try {
      const result = await api.get("/audit", { query: { ...filters, after, limit: PAGE } });
      nextAfter = result.next_after;
      replace(state, result.records.length ? null : message("info", "No audit record matches.", "audit-empty"));
      replace(body, result.records.flatMap(recordRows));
      previous.disabled = stack.length === 0;
      next.disabled = nextAfter === null || nextAfter === undefined;
      pageInfo.textContent = result.records.length
        ? `records #${result.records[0].seq}–#${result.records[result.records.length - 1].seq}` : "";
    } catch (exc) {
      replace(state, message("error", exc.message, "audit-error"));
    }
  }
  next.addEventListener("click", () => {
    stack.push(after);
    after = nextAfter;
    load();
  });
  previous.addEventListener("click", () => {
    after = stack.pop() ?? null;
    load();
  });

  root.append(h("section", { class: "screen" },
    h("div", { class: "screen-head" }, h("h1", {}, "Audit log"), h("div", { class: "actions" }, badge, reverify, exportLink)),
    form, state,
    h("div", { class: "table-wrap" },
      h("table", { class: "table audit", "data-testid": "audit-table" },
        h("thead", {}, h("tr", {}, ["#", "Time", "Kind", "Actor", "Run", "Step", "Action", "Target", ""]
          .map((label) => h("th", { scope: "col" }, label)))),
        body)),
    h("div", { class: "pager" }, previous, pageInfo, next)));
  verify();
  load();
}

function recordRows(record) {
  const detailId = `audit-detail-${record.seq}`;
  const toggle = h("button", { type: "button", class: "btn btn-quiet btn-small", "aria-expanded": "false",
    "aria-controls": detailId, "data-testid": "audit-toggle" }, "details");
  const detail = h("tr", { id: detailId, class: "detail", hidden: true },
    h("td", { colspan: 9 },
      h("dl", { class: "summary compact" },
        h("dt", {}, "Hash"), h("dd", {}, h("code", { class: "hash" }, record.hash ?? "")),
        h("dt", {}, "Trace"), h("dd", {}, record.trace_id ?? "—"),
        h("dt", {}, "Alert"), h("dd", {}, record.alert_id ?? "—")),
      jsonBlock(record.body ?? {}, "audit-body-json")));
  toggle.addEventListener("click", () => {
    detail.hidden = !detail.hidden;
    toggle.setAttribute("aria-expanded", String(!detail.hidden));
  });
  return [
    h("tr", { "data-testid": "audit-row", "data-seq": record.seq, "data-kind": record.kind },
      h("td", { class: "num" }, record.seq),
      h("td", {}, time(record.time)),
      h("td", {}, h("span", { class: "kind" }, record.kind)),
      h("td", {}, record.actor ?? ""),
      h("td", {}, record.run_id ? h("a", { href: `#/runs/${encodeURIComponent(record.run_id)}` }, h("code", {}, record.run_id.slice(0, 12))) : ""),
      h("td", {}, record.step ?? ""),
      h("td", {}, record.action ?? ""),
      h("td", { class: "target" }, record.target ?? ""),
      h("td", {}, toggle)),
    detail,
  ];
}

/** ISO UTC (`2025-06-02T07:08:52Z`) → the datetime-local input's `2025-06-02T07:08:52`. */
function toLocalInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString().slice(0, 19);
}

/** The datetime-local input's value, read as UTC → ISO with Z. */
function fromLocalInput(value) {
  if (!value) return "";
  const withSeconds = value.length === 16 ? `${value}:00` : value;
  return `${withSeconds}Z`;
}
