// Model panel (Queue view): which duplicate verifier is in use, the labels the decisions left, retrain
// and restore buttons with their outcome. GET /api/model, POST /api/model/retrain, POST /api/model/restore.

import { api } from "./api.js";
import { $, h } from "./dom.js";

function labelSummary(labels) {
  const kinds = Object.entries(labels.by_label || {}).map(([kind, count]) => `${count} ${kind}`);
  return `${labels.total} label${labels.total === 1 ? "" : "s"}${kinds.length ? ` (${kinds.join(", ")})` : ""}`;
}

function outcomeText(last) {
  if (!last) return "Not retrained yet.";
  return `Last retraining, ${last.labels} labels: ${last.adopted ? "adopted" : "not adopted"} — ${last.reason}`;
}

/** Show a GET /api/model document in the panel. */
export function showModel(model) {
  const verifier = model.verifier;
  const which = verifier.source === "user" ? "your retrained model" : "the shipped model";
  $("#model-in-use").textContent = which;
  $("#model-in-use").dataset.source = verifier.source;
  $("#model-labels").textContent = `${labelSummary(model.labels)}; a retraining needs ${model.labels.needed}.`;
  $("#model-problem").textContent = verifier.problem || "";
  $("#model-problem").hidden = !verifier.problem;
  $("#model-outcome").textContent = model.retraining.running ? "Retraining…" : outcomeText(model.retraining.last);
  $("#model-retrain").disabled = model.retraining.running;
  $("#model-restore").hidden = !model.previous;
  $("#model-restore").textContent = model.previous === "user" ? "Restore your previous model" : "Restore the shipped model";
}

export async function refreshModel() {
  try {
    showModel(await api.model());
  } catch {
    // the banner (401) or the connection dot tells the story
  }
}

async function run(button, call, busy) {
  button.disabled = true;
  $("#model-outcome").textContent = busy;
  try {
    await call();
  } catch (error) {
    $("#model-outcome").replaceChildren(h("span", { class: "error", text: error.message }));
    button.disabled = false;
    return;
  }
  await refreshModel();
  button.disabled = false;
}

export function initModel() {
  $("#model-retrain").addEventListener("click", () => run($("#model-retrain"), api.retrain, "Retraining…"));
  $("#model-restore").addEventListener("click", () => run($("#model-restore"), api.restoreModel, "Restoring…"));
}
