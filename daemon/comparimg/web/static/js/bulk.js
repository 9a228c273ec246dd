// "Resolve many": decide every group matching a filter at once. Preview first (counts, bytes, folders, a few
// sample groups with thumbnails), then confirm exactly that set; progress arrives as `batch` events; the
// whole batch can be cancelled between chunks and undone in one go.

import { api } from "./api.js";
import { $, h, pathText, toast } from "./dom.js";
import { on } from "./events.js";
import { formatBytes, formatNumber } from "./format.js";
import { groupsChanged } from "./groups.js";
import { store, subscribe } from "./store.js";

let batch = null; // the preview or batch shown in the panel

function ruleFromForm() {
  const form = $("#bulk-form");
  const kinds = Array.from(form.querySelectorAll('input[name="kinds"]:checked')).map((input) => input.value);
  const rule = { kinds, action: form.elements.action.value };
  const folder = form.elements.folder.value.trim();
  if (folder) rule.folder = folder;
  if (form.elements.reference_only.checked) rule.reference_only = true;
  const sure = form.elements.min_confidence.value.trim();
  if (sure) rule.min_confidence = Number(sure);
  if (rule.action === "move") rule.target = form.elements.target.value;
  return rule;
}

function fillTargets() {
  const select = $("#bulk-form").elements.target;
  select.replaceChildren(...store.moveTargets.map((name) => h("option", { value: name, text: name })));
  const move = $('#bulk-form select[name="action"] option[value="move"]');
  move.disabled = store.moveTargets.length === 0;
}

function stat(label, value) {
  return h("div", { class: "stat" }, h("strong", { text: value }), label);
}

function sampleGroup(group, verb) {
  const file = (f, fate) =>
    h("figure", { class: `bulk-file bulk-${fate}` },
      h("img", { src: f.thumbnail_url, alt: "", loading: "lazy", width: 64, height: 64 }),
      h("figcaption", { title: f.path }, h("span", { class: "fate", text: fate === "keep" ? "keep" : verb }), " ", pathText(f.path)));
  return h("li", { class: "bulk-group", dataset: { groupId: group.group_id } },
    h("span", { class: "bulk-group-id", text: `group ${group.group_id}` }),
    group.keep.map((f) => file(f, "keep")),
    group.remove.map((f) => file(f, "remove")));
}

function render() {
  const out = $("#bulk-result");
  if (!batch) {
    out.replaceChildren();
    setButtons();
    return;
  }
  const verb = batch.rule.action === "move" ? `move to ${batch.rule.target}` : "trash";
  const progress = batch.progress;
  const done = progress.applied + progress.refused + progress.failed + progress.undone;
  const skipped = Object.entries(batch.skipped || {}).map(([why, n]) => `${formatNumber(n)} ${why.replaceAll("_", " ")}`);
  const parts = [
    h("div", { class: "queue-summary", id: "bulk-figures" },
      stat("groups", formatNumber(batch.groups)),
      stat(`files to ${verb}`, formatNumber(batch.files)),
      stat("to free", formatBytes(batch.bytes)),
      stat("folders", formatNumber(batch.folders))),
    skipped.length ? h("p", { class: "muted", text: `Left alone: ${skipped.join(", ")}.` }) : null,
    batch.per_folder.length
      ? h("table", { class: "bulk-folders" },
          h("caption", { text: "Per folder (most space first)" }),
          h("thead", {}, h("tr", {}, ["Folder", "Files", "Size"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, batch.per_folder.slice(0, 10).map((f) =>
            h("tr", {}, h("td", { class: "path" }, pathText(f.folder)), h("td", { text: formatNumber(f.files) }), h("td", { text: formatBytes(f.bytes) })))))
      : null,
    batch.sample.length ? h("h4", { text: "Sample groups" }) : null,
    h("ul", { class: "bulk-sample", role: "list" }, batch.sample.map((g) => sampleGroup(g, verb))),
    h("p", { id: "bulk-state", role: "status" }, stateText(batch, done)),
    batch.state === "previewed" ? null : h("progress", { id: "bulk-progress", max: progress.total || 1, value: done }),
  ];
  out.replaceChildren(...parts.filter(Boolean));
  setButtons();
}

function stateText(b, done) {
  const p = b.progress;
  const counts = `${formatNumber(p.applied)} done, ${formatNumber(p.refused)} refused, ${formatNumber(p.failed)} failed`;
  switch (b.state) {
    case "previewed":
      return b.files ? `Preview ${b.id}: nothing has moved yet. Confirm to apply exactly this set.` : "Nothing matches this filter.";
    case "applying":
      return b.running ? `Applying… ${formatNumber(done)} of ${formatNumber(p.total)} (${counts})` : `Stopped half-way (${counts}). Confirm to finish, or undo.`;
    case "cancelled":
      return `Cancelled: ${counts}. Confirm to finish, or undo.`;
    case "applied":
      return `Batch ${b.id} applied: ${counts}.`;
    case "undoing":
      return b.running ? `Undoing… ${formatNumber(p.undone)} put back` : "Undo stopped half-way; undo again to finish.";
    case "undone":
      return `Batch ${b.id} undone: ${formatNumber(p.undone)} files put back.${b.reason ? ` ${b.reason}` : ""}`;
    default:
      return `Preview ${b.id} ${b.state}.`;
  }
}

function setButtons() {
  const state = batch?.state;
  const running = Boolean(batch?.running);
  const confirm = $("#bulk-confirm");
  confirm.hidden = !batch || running || !["previewed", "applying", "cancelled"].includes(state) || !batch.files;
  confirm.textContent = state === "previewed" ? `Confirm: ${batch?.rule.action === "move" ? "move" : "trash"} ${formatNumber(batch?.files ?? 0)} files` : "Finish the batch";
  $("#bulk-discard").hidden = !batch || state !== "previewed";
  $("#bulk-cancel").hidden = !running;
  $("#bulk-undo").hidden = !batch || running || !["applying", "cancelled", "applied", "undoing"].includes(state);
  $("#bulk-preview").disabled = running;
}

async function act(work, failure) {
  try {
    batch = await work();
    render();
  } catch (error) {
    $("#bulk-state")?.replaceChildren(`${failure}: ${error.message}`);
    toast(`${failure}: ${error.message}`, 5000);
  }
}

export function initBulk(bind) {
  const form = $("#bulk-form");
  // Inside the panel, keys belong to its fields and buttons (Space ticks a box, Enter presses a button),
  // not to the group list's shortcuts; Escape still closes the panel.
  $("#bulk-panel").addEventListener("keydown", (event) => {
    if (event.key === "Escape" && $("#bulk-panel").open) {
      $("#bulk-panel").open = false;
      $("#bulk-panel summary").focus();
    }
    event.stopPropagation();
  });
  fillTargets();
  subscribe((reason) => reason === "config" && fillTargets());
  form.elements.action.addEventListener("change", () => {
    form.elements.target.disabled = form.elements.action.value !== "move";
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(() => api.bulkPreview(ruleFromForm()), "Preview failed");
  });
  $("#bulk-confirm").addEventListener("click", () => act(() => api.bulkApply(batch.id), "Apply failed"));
  $("#bulk-discard").addEventListener("click", () => act(() => api.bulkCancel(batch.id), "Discard failed"));
  $("#bulk-cancel").addEventListener("click", () => act(() => api.bulkCancel(batch.id), "Cancel failed"));
  $("#bulk-undo").addEventListener("click", () => act(() => api.bulkUndo(batch.id), "Undo failed"));
  on("batch", (data) => {
    const update = data?.batch;
    if (!update || !batch || update.id !== batch.id) return;
    batch = { ...update, sample: batch.sample };
    render();
    if (!update.running) groupsChanged();
  });
  bind("groups", ["Shift+R"], "Resolve many groups at once (by rule)", () => {
    const panel = $("#bulk-panel");
    panel.open = true;
    const folder = $('#group-filters input[name="folder"]').value.trim();
    if (folder && !form.elements.folder.value) form.elements.folder.value = folder;
    form.querySelector("input, select").focus();
  });
  render();
}
