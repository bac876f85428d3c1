// One run shown in full: its summary, each step (status, attempts, duration, inputs, output,
// error, compensation) and the raw transition timeline. Used by the run screen and by the
// playbook editor's dry run, which shows the planned run the same way.

import { h, statusBadge, severityBadge, jsonBlock, time, duration } from "./dom.js";

const COMPENSATION_KINDS = new Set(["compensation_started", "step_compensated", "compensation_failed"]);

/** The whole RunDetail `{run, steps, timeline}` as one element. */
export function runDetail(detail, { playbookLink = true } = {}) {
  const { run, steps = [], timeline = [] } = detail;
  return h("div", { class: "run-detail", "data-testid": "run-detail", "data-run": run.id },
    runSummary(run, { playbookLink }),
    h("h2", {}, "Steps"),
    steps.length
      ? h("ol", { class: "steps", "data-testid": "steps" }, steps.map((step) => stepItem(step, timeline)))
      : h("p", { class: "muted" }, "No step has started yet."),
    h("h2", {}, "Timeline"),
    timelineTable(timeline));
}

export function runSummary(run, { playbookLink = true } = {}) {
  const playbook = `${run.playbook_id} v${run.playbook_version}`;
  const rows = [
    ["Status", h("span", {}, statusBadge(run.status, "run-status"),
      run.dry_run ? h("span", { class: "tag", "data-testid": "dry-run-tag" }, "dry run") : null)],
    ["Playbook", playbookLink ? h("a", { href: `#/playbooks/${encodeURIComponent(run.playbook_id)}` }, playbook) : playbook],
    ["Alert", run.alert_title ? h("span", { "data-testid": "alert-title" }, run.alert_title) : h("span", { class: "muted" }, "—")],
    ["Severity", severityBadge(run.severity)],
    ["Trigger", run.trigger ?? "—"],
    ["Started", time(run.created_at)],
    ["Updated", time(run.updated_at)],
  ];
  if (run.error) rows.push(["Error", h("span", { class: "error-text", "data-testid": "run-error" }, run.error)]);
  return h("dl", { class: "summary" }, rows.map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]));
}

function stepItem(step, timeline) {
  const compensations = timeline.filter((entry) => entry.step === step.key && COMPENSATION_KINDS.has(entry.kind));
  const compensated = step.status === "compensated" || step.status === "compensating" || compensations.length > 0;
  const details = [];
  if (step.error) {
    details.push(h("div", { class: "step-error", "data-testid": "step-error" },
      h("strong", {}, "Error: "), typeof step.error === "string" ? step.error : JSON.stringify(step.error)));
  }
  if (compensated) {
    details.push(h("div", { class: "compensation", "data-testid": "compensation" },
      h("strong", {}, "↩ Compensation"),
      compensations.length
        ? h("ul", {}, compensations.map((entry) => h("li", {}, time(entry.at), " ", kindChip(entry.kind),
            entry.data && Object.keys(entry.data).length ? h("code", { class: "inline-json" }, ` ${JSON.stringify(entry.data)}`) : null)))
        : h("span", {}, ` ${step.status}`)));
  }
  details.push(section("Inputs", step.inputs, "step-inputs"));
  if (step.output !== null && step.output !== undefined) details.push(section("Output", step.output, "step-output"));

  return h("li", {
    class: `step${compensated ? " step-compensated" : ""}`,
    "data-testid": "step", "data-step": step.key, "data-status": step.status,
  },
  h("div", { class: "step-head" },
    statusBadge(step.status, "step-status"),
    h("span", { class: "step-key" }, step.key),
    h("span", { class: "step-meta" },
      h("span", { title: "attempt" }, `attempt ${step.attempt ?? 0}`),
      h("span", { title: "duration", "data-testid": "step-duration" }, duration(step.duration_ms)),
      h("span", { title: "started" }, time(step.started_at)),
      step.due_at ? h("span", { class: "due" }, "due ", time(step.due_at)) : null)),
  details);
}

function section(label, value, testid) {
  const empty = value === null || value === undefined || (typeof value === "object" && Object.keys(value).length === 0);
  // Small values are shown open; a large one stays folded so the steps stay scannable.
  const small = empty || JSON.stringify(value).length <= 600;
  return h("details", { class: "step-section", open: small },
    h("summary", {}, label, empty ? h("span", { class: "muted" }, " (none)") : null),
    empty ? null : jsonBlock(value, testid));
}

function kindChip(kind) {
  const family = COMPENSATION_KINDS.has(kind) ? "compensation"
    : kind.endsWith("failed") ? "failed"
    : kind.endsWith("succeeded") || kind === "run_finished" ? "succeeded"
    : kind.startsWith("approval") ? "approval" : "neutral";
  return h("span", { class: "kind", "data-family": family }, kind);
}

/** The raw transitions, oldest first. */
export function timelineTable(timeline) {
  if (!timeline.length) return h("p", { class: "muted" }, "No transition recorded.");
  return h("div", { class: "table-wrap" },
    h("table", { class: "table timeline", "data-testid": "timeline" },
      h("thead", {}, h("tr", {}, ["#", "At", "Kind", "Step", "Attempt", "Data"].map((label) => h("th", { scope: "col" }, label)))),
      h("tbody", {}, timeline.map((entry) => h("tr", { "data-testid": "transition", "data-kind": entry.kind },
        h("td", { class: "num" }, entry.seq),
        h("td", {}, time(entry.at)),
        h("td", {}, kindChip(entry.kind)),
        h("td", {}, entry.step ?? ""),
        h("td", { class: "num" }, entry.attempt ?? ""),
        h("td", {}, entry.data && Object.keys(entry.data).length
          ? h("code", { class: "inline-json" }, JSON.stringify(entry.data)) : ""))))));
}
