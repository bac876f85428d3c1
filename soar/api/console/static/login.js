// Log in by pasting an API token (made with `soar tokens create`). The token goes once to
// POST /session, which sets an HttpOnly cookie; the console never stores the token itself.

import * as api from "./api.js";
import { h, replace, message } from "./dom.js";

export function render(root, { params }) {
  const token = h("input", {
    id: "token", name: "token", type: "password", autocomplete: "off", spellcheck: "false",
    required: true, "data-testid": "login-token", "aria-describedby": "token-help",
  });
  const errors = h("div", { "data-testid": "login-error-box" });
  const submit = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "login-submit" }, "Log in");
  const form = h("form", { class: "card login-form", novalidate: true },
    h("label", { for: "token" }, "API token"),
    token,
    h("p", { id: "token-help", class: "hint" },
      "Paste a token from ", h("code", {}, "soar tokens create"),
      ". It is exchanged for a session cookie and not kept by the browser."),
    errors,
    submit);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = token.value.trim();
    if (!value) {
      replace(errors, message("error", "Paste an API token first.", "login-error"));
      token.focus();
      return;
    }
    submit.disabled = true;
    replace(errors);
    try {
      const session = await api.login(value);
      token.value = "";
      params.onLogin(session, params.next);
    } catch (exc) {
      const text = exc.status === 401 || exc.status === 403
        ? "That token is not valid (unknown, revoked or expired)."
        : exc.message;
      replace(errors, message("error", text, "login-error"));
      token.select();
    } finally {
      submit.disabled = false;
    }
  });

  root.append(h("section", { class: "screen narrow login" },
    h("h1", {}, "Log in to the soar console"),
    form));
  token.focus();
}
