// Status bar: daemon state, counts, queue depth, paused roots and errors, from /api/status and live events.

import { api } from "./api.js";
import { $, h } from "./dom.js";
import { formatNumber } from "./format.js";

let lastErrors = [];
let lastState = null;

function pick(obj, ...paths) {
  for (const path of paths) {
    let value = obj;
    for (const key of path.split(".")) value = value == null ? undefined : value[key];
    if (value !== undefined && value !== null) return value;
  }
  return null;
}

/** Show a status document (from GET /api/status or a "status" event). */
export function showStatus(status) {
  if (!status || typeof status !== "object") return;
  const s = status.status && typeof status.status === "object" ? status.status : status;
  const state = pick(s, "state");
  if (state !== null) {
    const el = $("#st-state");
    el.textContent = state;
    el.className = `state-${state}`;
    if (lastState !== null && state !== lastState) $("#st-live").textContent = `Daemon is now ${state}`;
    lastState = state;
  }
  // The fields of GET /api/status (docs/api.md); a "status" event may carry only some of them.
  const files = pick(s, "counts.files");
  if (files !== null) $("#st-files").textContent = formatNumber(files);
  const groups = pick(s, "counts.groups");
  if (groups !== null) $("#st-groups").textContent = formatNumber(groups);
  const queue = pick(s, "queue_depth");
  if (queue !== null) $("#st-queue").textContent = formatNumber(queue);
  let paused = pick(s, "paused_roots");
  if (paused === null && Array.isArray(s.roots)) {
    paused = s.roots.filter((r) => r && r.state === "paused").map((r) => r.path);
  }
  if (paused !== null) {
    const n = Array.isArray(paused) ? paused.length : Number(paused);
    $("#st-paused").textContent = String(n);
    $("#st-paused-wrap").hidden = n === 0;
    $("#st-paused-wrap").title = Array.isArray(paused) ? paused.join("\n") : "";
  }
  const errors = pick(s, "last_errors");
  if (errors !== null) {
    lastErrors = Array.isArray(errors) ? errors : [];
    const count = pick(s, "error_count") ?? lastErrors.length;
    $("#st-errors").textContent = formatNumber(count);
    $("#st-errors-button").hidden = !count;
  }
}

export async function refreshStatus() {
  try {
    showStatus(await api.status());
  } catch {
    // the banner (401) or the connection dot tells the story
  }
}

export function showConnection(state) {
  const el = $("#st-conn");
  el.classList.toggle("live", state === "live");
  el.classList.toggle("down", state === "down");
  el.querySelector(".label").textContent = state === "live" ? "live" : state === "down" ? "reconnecting…" : "connecting…";
}

export function initStatus() {
  $("#st-errors-button").addEventListener("click", () => {
    $("#errors-body").replaceChildren(...(lastErrors.length ? lastErrors : ["No details."]).map((e) => {
      const text = typeof e === "string" ? e : [e.path, e.error ?? e.reason ?? e.message].filter(Boolean).join(": ") || JSON.stringify(e);
      return h("li", { text });
    }));
    $("#errors").showModal();
  });
}
