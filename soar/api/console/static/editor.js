// A source editor small enough to read: a plain <textarea> (so the browser's own editing,
// undo and accessibility all work) over a backdrop that highlights lines, beside a gutter of
// line numbers that carries the diagnostics' markers. Lines never wrap, so line N of the
// textarea, the backdrop and the gutter share one height and stay aligned while scrolling.

import { h } from "./dom.js";

/**
 * Make an editor. Returns `{element, textarea, value, setValue, onChange, mark, goTo}`;
 * `mark(diagnostics)` marks each diagnostic's line (1-based) in the gutter and the text.
 */
export function createEditor({ id, label, value = "", readOnly = false, describedBy = null }) {
  const gutterInner = h("div", { class: "gutter-inner" });
  const backdropInner = h("div", { class: "backdrop-inner" });
  const textarea = h("textarea", {
    id, class: "code-input", wrap: "off", spellcheck: "false", autocomplete: "off",
    autocapitalize: "off", "data-testid": "editor", readonly: readOnly,
    "aria-describedby": describedBy, "aria-label": label,
  });
  textarea.value = value;
  const element = h("div", { class: `editor${readOnly ? " readonly" : ""}` },
    h("div", { class: "gutter", "aria-hidden": "true", "data-testid": "gutter" }, gutterInner),
    h("div", { class: "code" }, h("div", { class: "backdrop", "aria-hidden": "true" }, backdropInner), textarea));

  let lineCount = 0;
  let marks = [];
  const listeners = [];

  function renderLines() {
    const count = textarea.value.split("\n").length;
    if (count === lineCount) return;
    lineCount = count;
    const numbers = [];
    const lines = [];
    for (let line = 1; line <= count; line += 1) {
      numbers.push(h("div", { class: "ln", "data-line": line }, line));
      lines.push(h("div", { class: "bl", "data-line": line }));
    }
    gutterInner.replaceChildren(...numbers);
    backdropInner.replaceChildren(...lines);
    applyMarks();
  }

  function applyMarks() {
    for (const el of element.querySelectorAll(".marked")) {
      el.classList.remove("marked");
      el.removeAttribute("data-testid");
      el.removeAttribute("title");
    }
    const byLine = new Map();
    for (const diagnostic of marks) {
      const line = Math.min(Math.max(1, diagnostic.line || 1), lineCount);
      byLine.set(line, [...(byLine.get(line) ?? []), diagnostic.message]);
    }
    for (const [line, messages] of byLine) {
      const number = gutterInner.children[line - 1];
      const text = backdropInner.children[line - 1];
      number.classList.add("marked");
      number.dataset.testid = "gutter-marker";
      number.title = messages.join("\n");
      text.classList.add("marked");
      text.dataset.testid = "marked-line";
    }
  }

  function syncScroll() {
    gutterInner.style.transform = `translateY(${-textarea.scrollTop}px)`;
    backdropInner.style.transform = `translateY(${-textarea.scrollTop}px)`;
  }

  // Tab indents (YAML wants spaces); Escape then Tab leaves the editor, so focus is never trapped.
  let escaped = false;
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      escaped = true;
      return;
    }
    if (event.key === "Tab" && !escaped && !readOnly && !event.shiftKey && !event.ctrlKey && !event.altKey && !event.metaKey) {
      event.preventDefault();
      if (!document.execCommand("insertText", false, "  ")) {
        textarea.setRangeText("  ", textarea.selectionStart, textarea.selectionEnd, "end");
        textarea.dispatchEvent(new Event("input"));
      }
    }
    escaped = false;
  });
  textarea.addEventListener("input", () => {
    renderLines();
    for (const listener of listeners) listener(textarea.value);
  });
  textarea.addEventListener("scroll", syncScroll);
  renderLines();

  return {
    element,
    textarea,
    get value() {
      return textarea.value;
    },
    setValue(text) {
      textarea.value = text;
      renderLines();
      syncScroll();
    },
    onChange(listener) {
      listeners.push(listener);
    },
    mark(diagnostics) {
      marks = diagnostics;
      applyMarks();
      textarea.setAttribute("aria-invalid", String(diagnostics.length > 0));
    },
    /** Put the caret at a 1-based line and column and scroll it into view. */
    goTo(line, column = 1) {
      const lines = textarea.value.split("\n");
      const target = Math.min(Math.max(1, line), lines.length);
      let offset = 0;
      for (let i = 0; i < target - 1; i += 1) offset += lines[i].length + 1;
      offset += Math.min(Math.max(0, column - 1), lines[target - 1].length);
      textarea.focus();
      textarea.setSelectionRange(offset, offset);
      const lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 20;
      const top = (target - 1) * lineHeight;
      if (top < textarea.scrollTop || top > textarea.scrollTop + textarea.clientHeight - 2 * lineHeight) {
        textarea.scrollTop = Math.max(0, top - textarea.clientHeight / 3);
      }
      syncScroll();
    },
  };
}
