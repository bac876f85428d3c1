// Building the page safely. Everything the server sends (alert titles, step inputs, audit
// bodies) is attacker-controlled, so text only ever reaches the page as a text node: there is
// no innerHTML anywhere in the console.

/**
 * Create an element. `attrs` keys: `class`, `text`, `on<Event>` (a listener), `dataset`
 * (an object), boolean `hidden`/`disabled`/..., anything else through setAttribute.
 * Children may be nodes, strings (become text nodes), null/false (skipped) or arrays.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.append(child);
    else el.append(document.createTextNode(String(child)));
  }
}

/** Replace every child of `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A status pill; its colour comes from `data-status` in the stylesheet. */
export function statusBadge(status, testid = "status") {
  return h("span", { class: "badge", "data-status": status ?? "unknown", "data-testid": testid },
    status ?? "unknown");
}

/** A severity pill (informational … critical). */
export function severityBadge(severity) {
  if (!severity) return h("span", { class: "muted" }, "—");
  return h("span", { class: "sev", "data-severity": String(severity).toLowerCase() }, severity);
}

/** JSON, indented, in a <pre>: the server has already redacted secrets. */
export function jsonBlock(value, testid) {
  const text = value === undefined ? "" : JSON.stringify(value, null, 2);
  return h("pre", { class: "json", "data-testid": testid }, text);
}

/** A UTC timestamp as `2025-06-02 07:08:52Z`; the full ISO text goes in a tooltip. */
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("span", {}, iso);
  const text = date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  return h("time", { datetime: date.toISOString(), title: iso }, text);
}

/** Milliseconds as `850 ms`, `12.4 s`, `3 min 5 s`. */
export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** The first `n` characters of a digest, with the whole one as a tooltip. */
export function shortHash(hash, n = 12) {
  if (!hash) return h("span", { class: "muted" }, "—");
  return h("code", { title: hash, class: "hash" }, hash.length > n ? `${hash.slice(0, n)}…` : hash);
}

/** An inline message box; `kind` is error | ok | info. */
export function message(kind, text, testid) {
  return h("div", { class: `msg msg-${kind}`, role: kind === "error" ? "alert" : "status",
    "data-testid": testid }, text);
}

/** Focus the page's heading after a screen change, so keyboard and screen-reader users land on it. */
export function focusHeading(root) {
  if (root.contains(document.activeElement) && document.activeElement !== root) return;
  const heading = root.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

/** Call `fn` once `ms` after the last of a burst of calls. */
export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}
