// The console's entry point: the session, the role's navigation, and a hash router that shows
// one screen at a time (#/playbooks, #/runs/<id>, #/audit?run=…). Screens are modules exporting
// `render(root, ctx)`, which may return a cleanup function called when the screen is left.

import * as api from "./api.js";
import * as events from "./events.js";
import { h, replace, focusHeading, message, debounce } from "./dom.js";
import * as loginScreen from "./login.js";
import * as playbooksScreen from "./playbooks.js";
import * as runsScreen from "./runs.js";
import * as approvalsScreen from "./approvals.js";
import * as auditScreen from "./audit.js";

/** What each role may do in the console; mirrors the API's role matrix (docs/api.md). */
const PERMISSIONS = {
  admin: ["playbooks", "playbooks.edit", "runs", "runs.abort", "approvals", "audit"],
  author: ["playbooks", "playbooks.edit", "runs"],
  responder: ["playbooks", "runs", "runs.abort", "approvals"],
  auditor: ["playbooks", "runs", "audit"],
  ingest: [],
};

const SCREENS = [
  { name: "runs", label: "Runs", module: runsScreen, permission: "runs" },
  { name: "approvals", label: "Approvals", module: approvalsScreen, permission: "approvals" },
  { name: "playbooks", label: "Playbooks", module: playbooksScreen, permission: "playbooks" },
  { name: "audit", label: "Audit", module: auditScreen, permission: "audit" },
];

const main = document.getElementById("main");
const notice = document.getElementById("notice");
let session = null;
let cleanup = null;
let noticeTimer = null;

function can(permission) {
  return Boolean(session && (PERMISSIONS[session.role] ?? []).includes(permission));
}

function allowedScreens() {
  return SCREENS.filter((screen) => can(screen.permission));
}

/** `#/runs/abc?status=failed` → `{parts: ["runs", "abc"], query: URLSearchParams}`. */
function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, search = ""] = raw.split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(search) };
}

/** Go to a screen: `navigate("runs", id)` or `navigate("audit", null, {run: id})`. */
function navigate(...args) {
  let query = null;
  if (args.length && typeof args[args.length - 1] === "object") query = args.pop();
  const path = args.filter((part) => part !== null && part !== undefined)
    .map((part) => encodeURIComponent(part)).join("/");
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== null && value !== undefined && value !== "") params.set(key, value);
  }
  const hash = `#/${path}${params.size ? `?${params}` : ""}`;
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

/** A transient line under the header (`kind`: info | ok | error). */
function notify(text, kind = "info") {
  clearTimeout(noticeTimer);
  notice.dataset.kind = kind;
  notice.textContent = text;
  notice.hidden = false;
  noticeTimer = setTimeout(() => {
    notice.hidden = true;
  }, kind === "error" ? 10_000 : 4_000);
}

function renderNav(current) {
  const nav = document.querySelector("[data-testid=nav]");
  const links = document.getElementById("nav-links");
  const screens = session ? allowedScreens() : [];
  nav.hidden = screens.length === 0;
  replace(links, screens.map((screen) => h("li", {},
    h("a", {
      href: `#/${screen.name}`, "data-testid": `nav-${screen.name}`,
      "aria-current": screen.name === current ? "page" : null,
    }, screen.label,
    screen.name === "approvals" ? h("span", { class: "count", "data-testid": "approvals-count", hidden: true }) : null))));
  if (can("approvals")) refreshApprovalCount();
}

async function refreshApprovalCount() {
  const badge = document.querySelector("[data-testid=approvals-count]");
  if (!badge) return;
  try {
    const { approvals } = await api.get("/approvals");
    badge.textContent = String(approvals.length);
    badge.hidden = approvals.length === 0;
    badge.setAttribute("aria-label", `${approvals.length} pending`);
  } catch {
    badge.hidden = true;
  }
}

function renderSession() {
  const box = document.querySelector("[data-testid=session]");
  box.hidden = !session;
  if (!session) return;
  document.querySelector("[data-testid=user-name]").textContent = session.name;
  const role = document.querySelector("[data-testid=user-role]");
  role.textContent = session.role;
  role.dataset.role = session.role;
}

function show(screenModule, name, params) {
  if (cleanup) cleanup();
  cleanup = null;
  renderNav(name);
  main.replaceChildren();
  const ctx = { session, params, navigate, can, notify, refreshApprovalCount };
  cleanup = screenModule.render(main, ctx) ?? null;
  focusHeading(main);
}

function route() {
  const { parts, query } = parseHash();
  const [name, ...rest] = parts;
  if (!session) {
    show(loginScreen, "login", { onLogin: startSession, next: window.location.hash });
    return;
  }
  const screens = allowedScreens();
  if (screens.length === 0) {
    if (cleanup) cleanup();
    cleanup = null;
    renderNav(null);
    replace(main, h("section", { class: "screen narrow" },
      h("h1", {}, "Nothing to show"),
      message("info", `The role "${session.role}" sends alerts through the API; the console has no screen for it.`,
        "no-screens")));
    return;
  }
  const screen = screens.find((candidate) => candidate.name === name);
  if (!screen) {
    navigate(screens[0].name);
    return;
  }
  show(screen.module, screen.name, { parts: rest, query });
}

function startSession(newSession, next) {
  session = newSession;
  renderSession();
  events.connect();
  if (next && next !== "#/login" && next !== window.location.hash) window.location.hash = next;
  else route();
}

async function logout() {
  try {
    await api.logout();
  } catch {
    // The cookie may already be gone; the console forgets the session either way.
  }
  endSession("You are logged out.");
}

function endSession(text) {
  session = null;
  events.disconnect();
  renderSession();
  renderNav(null);
  if (text) notify(text, "info");
  route();
}

async function boot() {
  document.querySelector("[data-testid=logout]").addEventListener("click", logout);
  events.onState((state) => {
    const live = document.querySelector("[data-testid=live]");
    live.dataset.state = state;
    live.querySelector(".live-label").textContent = { on: "live", retry: "reconnecting", off: "offline" }[state];
  });
  // A new approval shows as a waiting step; a decided one as approval_decided or a finished run.
  const countSoon = debounce(refreshApprovalCount, 300);
  events.subscribe((event) => {
    const kind = String(event.kind ?? "");
    if (kind.startsWith("approval") || kind === "step_waiting" || kind === "run_finished") countSoon();
  });
  api.setUnauthorizedHandler(() => {
    if (session) endSession("Your session has ended; log in again.");
  });
  window.addEventListener("hashchange", route);
  try {
    session = await api.currentSession();
  } catch (exc) {
    notify(exc.message, "error");
  }
  renderSession();
  if (session) events.connect();
  route();
}

boot();
