// The approvals inbox: each pending approval with its message and what it guards (the action
// and its exact inputs). A decision is bound to the digest of what was shown; when the server
// answers 409 approval_changed, the inbox reloads and asks again.

import * as api from "./api.js";
import * as events from "./events.js";
import { h, replace, time, message, jsonBlock, debounce } from "./dom.js";

export function render(root, { notify, refreshApprovalCount }) {
  const list = h("div", { class: "approvals", "data-testid": "approvals" });
  const state = h("div", { "data-testid": "approvals-state" });
  // Per-approval notes kept across reloads (the "changed, decide again" warning).
  const notes = new Map();

  async function load() {
    try {
      const { approvals } = await api.get("/approvals");
      replace(state, approvals.length ? null : message("info", "No approval is waiting.", "approvals-empty"));
      // Keep comments being typed when the list refreshes live.
      const drafts = new Map([...list.querySelectorAll("[data-testid=approval]")]
        .map((card) => [card.dataset.key, card.querySelector("textarea")?.value ?? ""]));
      replace(list, approvals.map((approval) => card(approval, drafts.get(keyOf(approval)) ?? "")));
      refreshApprovalCount();
    } catch (exc) {
      replace(state, message("error", exc.message, "approvals-error"));
    }
  }

  function card(approval, draft) {
    const key = keyOf(approval);
    const id = `c-${key.replace(/[^a-zA-Z0-9_-]/g, "_")}`;
    const comment = h("textarea", { id, rows: 2, "data-testid": "approval-comment",
      placeholder: "optional; recorded in the audit log" });
    comment.value = draft;
    const feedback = h("div", { "data-testid": "approval-feedback" }, notes.get(key) ?? null);
    const approve = h("button", { type: "button", class: "btn btn-ok", "data-testid": "approve" }, "Approve");
    const deny = h("button", { type: "button", class: "btn btn-danger", "data-testid": "deny" }, "Deny");

    async function decide(decision) {
      approve.disabled = deny.disabled = true;
      try {
        const result = await api.post(`/approvals/${encodeURIComponent(approval.run_id)}/${encodeURIComponent(approval.step)}`, {
          decision, digest: approval.digest, comment: comment.value.trim() || null,
        });
        notes.delete(key);
        const verb = decision === "approve" ? "Approved" : "Denied";
        notify(result.applied === false
          ? `${verb}: your vote on ${approval.playbook_id} / ${approval.step} is recorded; more approvers are needed.`
          : `${verb}: ${approval.playbook_id} / ${approval.step}.`, "ok");
        await load();
      } catch (exc) {
        if (exc.code === "approval_changed") {
          notes.set(key, message("error",
            "What this approval guards changed since it was shown. Review it again, then decide.", "approval-changed"));
          await load();
        } else {
          replace(feedback, message("error", exc.message, "approval-error"));
          approve.disabled = deny.disabled = false;
        }
      }
    }
    approve.addEventListener("click", () => decide("approve"));
    deny.addEventListener("click", () => decide("deny"));

    const guards = approval.guards;
    return h("article", { class: "card approval", "data-testid": "approval", "data-key": key,
      "data-run": approval.run_id, "data-step": approval.step, "aria-labelledby": `${id}-title` },
    h("header", { class: "approval-head" },
      h("h2", { id: `${id}-title` }, approval.playbook_id, h("span", { class: "muted" }, " / "), approval.step),
      h("a", { href: `#/runs/${encodeURIComponent(approval.run_id)}`, "data-testid": "approval-run-link" }, "open run")),
    h("p", { class: "approval-message", "data-testid": "approval-message" }, approval.message ?? ""),
    h("dl", { class: "summary compact" },
      h("dt", {}, "Group"), h("dd", {}, approval.group ?? "—"),
      h("dt", {}, "Approvers"), h("dd", {}, (approval.approvers ?? []).join(", ") || "—"),
      approval.approved_by?.length ? [h("dt", {}, "Approved by"), h("dd", { "data-testid": "approved-by" }, approval.approved_by.join(", "))] : null,
      h("dt", {}, "Asked"), h("dd", {}, time(approval.asked_at)),
      h("dt", {}, "Due"), h("dd", {}, time(approval.due_at))),
    guards
      ? h("div", { class: "guards", "data-testid": "approval-guards" },
          h("h3", {}, "Approving lets this run: ", h("code", { "data-testid": "guarded-action" }, guards.action),
            h("span", { class: "muted" }, ` (step ${guards.step})`)),
          jsonBlock(guards.inputs, "guarded-inputs"))
      : h("p", { class: "muted" }, "This approval does not guard a single action."),
    h("label", { for: id }, "Comment"),
    comment,
    feedback,
    h("div", { class: "actions" }, approve, deny));
  }

  const refresh = debounce(load, 250);
  const unsubscribe = events.subscribe((event) => {
    if (String(event.kind ?? "").startsWith("approval") || event.kind === "step_waiting" || event.kind === "run_finished") refresh();
  });

  root.append(h("section", { class: "screen" },
    h("div", { class: "screen-head" }, h("h1", {}, "Approvals")),
    state, list));
  load();
  return () => {
    unsubscribe();
    refresh.cancel();
  };
}

function keyOf(approval) {
  return `${approval.run_id}/${approval.step}`;
}
