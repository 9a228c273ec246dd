// Queue view: the pending decisions (counts, space they free), apply, and the journal of applied actions
// with undo.

import { api } from "./api.js";
import { $, h, pathText, toast } from "./dom.js";
import { formatBytes, formatDate, formatNumber, splitPath } from "./format.js";
import { clearDecision, queuedSummary, refreshDecisions, store, subscribe } from "./store.js";

let afterApply = () => {};
let journal = [];

export function setAfterApply(fn) {
  afterApply = fn;
}

function renderSummary() {
  const { counts, freed, total } = queuedSummary();
  const stat = (label, value, cls = "") => h("div", { class: `stat ${cls}` }, h("strong", { text: value }), label);
  $("#queue-summary").replaceChildren(
    stat("decisions queued", formatNumber(total)),
    stat("to trash", formatNumber(counts.trash), "action-trash"),
    stat("to move", formatNumber(counts.move), "action-move"),
    stat("to keep", formatNumber(counts.keep), "action-keep"),
    stat("not duplicates", formatNumber(counts.not_duplicates)),
    stat("to free", formatBytes(freed)), // nothing is freed before the queue is applied
  );
  if (store.config?.sorter?.apply === "on-decide") {
    $("#queue-summary").append(h("p", { class: "stat", text: "This daemon applies each decision at once (sorter.apply: on-decide); undo is in the journal below." }));
  }
  const actionable = counts.trash + counts.move + counts.keep + counts.not_duplicates;
  $("#apply-button").disabled = actionable === 0;
  $("#tab-queue-count").textContent = total ? formatNumber(total) : "";
}

function renderQueue() {
  renderSummary();
  const rows = store.decisions;
  if (!rows.length) {
    $("#queue-list").replaceChildren(h("p", { class: "empty", text: "Nothing queued. Mark images in the Groups view." }));
    return;
  }
  const shown = rows.slice(0, 500);
  $("#queue-list").replaceChildren(h("table", {},
    h("caption", { class: "sr-only", text: "Pending decisions" }),
    h("thead", {}, h("tr", {}, ["Action", "File", "Size", "Group", ""].map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, shown.map((d) => {
      const target = d.action === "move" && d.target ? ` → ${d.target}` : "";
      const who = d.action === "not_duplicates" ? `${(d.fileIds || []).length || "?"} files` : d.path || `file ${d.fileId}`;
      return h("tr", { dataset: { decisionId: d.id } },
        h("td", { class: `action-${d.action}`, text: `${d.action.replace("_", " ")}${target}` }),
        h("td", { class: "path", title: d.path }, pathText(who)),
        h("td", { text: formatBytes(d.size ?? store.sizes.get(d.fileId)) }),
        h("td", { text: d.groupId ?? "—" }),
        h("td", {}, h("button", { type: "button", class: "btn btn-small", "aria-label": `Cancel ${d.action} of ${splitPath(who).name}`,
          onclick: () => cancel(d) }, "Cancel")),
      );
    })),
    rows.length > shown.length ? h("caption", { text: `…and ${formatNumber(rows.length - shown.length)} more` }) : null,
  ));
}

async function cancel(decision) {
  try {
    await clearDecision({ id: decision.fileId, name: decision.path });
    if (decision.fileId === null && decision.id !== null) {
      await api.cancelDecision(decision.id);
      await refreshDecisions();
    }
  } catch (err) {
    toast(`Cancel failed: ${err.message}`, 5000);
  }
}

function renderJournal() {
  if (!journal.length) {
    $("#journal-list").replaceChildren(h("p", { class: "empty", text: "No action applied yet." }));
    return;
  }
  const undone = new Set(journal.filter((a) => a.undoOf).map((a) => a.undoOf));
  $("#journal-list").replaceChildren(h("table", {},
    h("caption", { class: "sr-only", text: "Applied actions" }),
    h("thead", {}, h("tr", {}, ["#", "Action", "From", "To", "State", "When", ""].map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, journal.map((a) => {
      const canUndo = a.state === "done" && a.kind !== "restore" && !undone.has(a.id);
      return h("tr", { dataset: { actionId: a.id } },
        h("td", { text: a.id }),
        h("td", { class: `action-${a.kind}`, text: a.kind }),
        h("td", { class: "path", title: a.source }, pathText(a.source)),
        h("td", { class: "path", title: a.dest }, pathText(a.dest)),
        h("td", { text: a.reason ? `${a.state}: ${a.reason}` : a.state }),
        h("td", { text: formatDate(a.updated) }),
        h("td", {}, canUndo ? h("button", { type: "button", class: "btn btn-small", "aria-label": `Undo ${a.kind} of ${splitPath(a.source).name}`,
          onclick: (event) => undo(a, event.currentTarget) }, "Undo") : null),
      );
    })),
  ));
}

export async function refreshJournal() {
  try {
    journal = await api.actions({ limit: 200 });
  } catch (err) {
    if (err.status !== 404) toast(`Journal: ${err.message}`, 5000);
  }
  renderJournal();
}

async function undo(action, button) {
  if (button) button.disabled = true; // one click, one undo
  try {
    await api.undo(action.id);
    toast(`Restored ${splitPath(action.source).name}`);
  } catch (err) {
    toast(`Undo failed: ${err.message}`, 6000);
  }
  await refreshJournal();
  afterApply();
}

export async function applyQueue() {
  const { total } = queuedSummary();
  if (!total) return;
  const sizeOf = new Map(store.decisions.map((d) => [d.id, Number(d.size ?? store.sizes.get(d.fileId) ?? 0)]));
  const button = $("#apply-button");
  button.disabled = true;
  $("#apply-result").textContent = `Applying ${formatNumber(total)} decisions…`;
  try {
    const result = await api.apply();
    const outcomes = Array.isArray(result?.outcomes) ? result.outcomes : [];
    const refused = outcomes.filter((o) => o.state === "refused" || o.state === "failed");
    const applied = result?.applied ?? outcomes.length - refused.length;
    const freed = outcomes
      .filter((o) => o.state === "applied" && (o.action === "trash" || o.action === "move"))
      .reduce((sum, o) => sum + (sizeOf.get(o.decision_id) || 0), 0);
    let message = `Applied ${formatNumber(applied)} decisions, ${formatBytes(freed)} freed.`;
    if (refused.length) {
      message += ` ${refused.length} refused and sent back to review: `;
      message += refused.map((o) => `${splitPath(o.source || "").name || `decision ${o.decision_id}`} (${o.reason || o.state})`).join("; ");
    }
    $("#apply-result").textContent = message;
  } catch (err) {
    $("#apply-result").textContent = `Apply failed: ${err.message}`;
  }
  await refreshDecisions().catch(() => {});
  await refreshJournal();
  afterApply();
}

export function initQueue(bind) {
  $("#apply-button").addEventListener("click", () => applyQueue());
  $("#queue-refresh").addEventListener("click", () => {
    refreshDecisions().catch(() => {});
    refreshJournal();
  });
  subscribe((reason) => {
    if (reason === "decisions" || reason === "config") renderQueue();
  });
  renderQueue();
  bind("global", ["Shift+A"], "Apply the queued decisions", () => {
    if (!queuedSummary().total) return toast("Nothing to apply");
    if (window.confirm(`Apply ${queuedSummary().total} queued decisions?`)) applyQueue();
    return true;
  }, "Shift+A");
}
