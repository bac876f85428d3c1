// Live updates: one EventSource on /api/v1/events for the whole console. Screens subscribe to
// `run` events while they are shown; the header's dot shows whether the stream is connected.

import { apiUrl } from "./api.js";

let source = null;
const listeners = new Set();
const stateListeners = new Set();

/** Open the stream (after login). EventSource reconnects by itself after a drop. */
export function connect() {
  if (source) return;
  source = new EventSource(apiUrl("/events"));
  source.addEventListener("open", () => setState("on"));
  source.addEventListener("error", () => setState(source?.readyState === EventSource.CLOSED ? "off" : "retry"));
  source.addEventListener("run", (event) => {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    for (const listener of listeners) listener(data);
  });
}

/** Close the stream (on logout). */
export function disconnect() {
  source?.close();
  source = null;
  setState("off");
}

/** Call `listener({run_id, status, step, kind, seq})` for each event; returns an unsubscribe. */
export function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Call `listener(state)` with "on" | "retry" | "off" as the connection changes. */
export function onState(listener) {
  stateListeners.add(listener);
}

function setState(state) {
  for (const listener of stateListeners) listener(state);
}
