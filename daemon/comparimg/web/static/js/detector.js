// Detector panel: launch a scan job on a folder with its parameters, watch its progress live, cancel it.

import { api, normalizeJob } from "./api.js";
import { $, h, pathText, toast } from "./dom.js";
import { formatDate, formatNumber } from "./format.js";
import { store } from "./store.js";

const jobs = new Map(); // id → job
const ACTIVE = new Set(["queued", "pending", "running", "scanning", "starting"]);
let pollTimer = 0;

function isActive(job) {
  return ACTIVE.has(String(job.state).toLowerCase());
}

function renderJobs() {
  const list = $("#job-list");
  const all = Array.from(jobs.values()).sort((a, b) => (Number(b.id) || 0) - (Number(a.id) || 0));
  const active = all.filter(isActive).length;
  $("#tab-jobs-count").textContent = active ? String(active) : "";
  if (!all.length) {
    list.replaceChildren(h("p", { class: "empty", text: "No scan job yet." }));
    return;
  }
  list.replaceChildren(...all.map((job) => {
    const known = job.total !== null && job.total !== undefined && Number(job.total) > 0;
    const progress = h("progress", { max: known ? String(job.total) : null, value: known ? String(job.done ?? 0) : null,
      "aria-label": `Progress of the scan of ${job.path}` });
    if (!isActive(job) && !known) {
      progress.max = 1;
      progress.value = 1;
    }
    const counts = [
      known ? `${formatNumber(job.done ?? 0)} / ${formatNumber(job.total)} files` : job.done !== null ? `${formatNumber(job.done)} files` : null,
      job.groups !== null ? `${formatNumber(job.groups)} groups` : null,
      job.errors ? `${formatNumber(job.errors)} errors` : null,
      `threshold ${job.threshold ?? "default"}`,
      job.recursive ? "recursive" : "this folder only",
      job.orientations ? "flips/rotations" : "no flips/rotations",
      job.started ? `started ${formatDate(job.started)}` : null,
    ].filter(Boolean);
    return h("div", { class: "job", dataset: { jobId: job.id, state: job.state } },
      h("div", {},
        h("div", { class: "job-path", title: job.path }, pathText(job.path)),
        h("div", { class: "job-meta", text: counts.join(" · ") }),
        job.error && !isActive(job) ? h("div", { class: "job-meta action-trash", text: String(job.error) }) : null,
      ),
      h("span", { class: `job-state ${String(job.state).toLowerCase()}`, text: job.state }),
      progress,
      isActive(job)
        ? h("button", { type: "button", class: "btn btn-small", "aria-label": `Cancel the scan of ${job.path}`, onclick: () => cancel(job) }, "Cancel")
        : h("span"),
    );
  }));
}

/** Merge a job (from the API or an event) into the list. */
export function updateJob(raw) {
  const data = raw?.job ?? raw;
  if (!data || (data.id === undefined && data.job_id === undefined)) return;
  const job = normalizeJob(data);
  const previous = jobs.get(job.id) || {};
  const merged = { ...previous };
  for (const [key, value] of Object.entries(job)) if (value !== null && value !== undefined && value !== "") merged[key] = value;
  jobs.set(job.id, merged);
  renderJobs();
  schedulePoll();
}

export async function refreshJobs() {
  try {
    const list = await api.jobs();
    jobs.clear();
    for (const job of list) jobs.set(job.id, job);
    renderJobs();
  } catch (err) {
    if (err.status !== 401) toast(`Jobs: ${err.message}`, 5000);
  }
  schedulePoll();
}

// Events carry progress; a slow poll covers a dropped event stream.
function schedulePoll() {
  clearTimeout(pollTimer);
  if (Array.from(jobs.values()).some(isActive)) pollTimer = setTimeout(refreshJobs, 3000);
}

async function cancel(job) {
  try {
    const result = await api.cancelJob(job.id);
    if (result && typeof result === "object") updateJob(result);
    toast(`Cancelled the scan of ${job.path}`);
  } catch (err) {
    toast(`Cancel failed: ${err.message}`, 5000);
  }
  refreshJobs();
}

function fillRoots() {
  const roots = [
    ...(store.config?.http?.allowed_scan_roots ?? []),
    ...(store.config?.roots ?? []).map((r) => (typeof r === "string" ? r : r.path)),
  ];
  $("#scan-roots").replaceChildren(...Array.from(new Set(roots)).map((r) => h("option", { value: r })));
  const input = $("#job-path");
  if (!input.value && roots.length) input.placeholder = roots[0];
  const threshold = store.config?.matching?.threshold;
  if (threshold !== undefined && !fillRoots.done) {
    $("#job-threshold").value = String(threshold);
    $("#threshold-out").textContent = String(threshold);
  }
  if (store.config?.matching?.orientations === false && !fillRoots.done) $("#job-form").orientations.checked = false;
  fillRoots.done = store.config !== null;
}

export function initDetector() {
  const form = $("#job-form");
  form.threshold.addEventListener("input", () => { $("#threshold-out").textContent = form.threshold.value; });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const params = {
      path: form.path.value.trim(),
      recursive: form.recursive.checked,
      threshold: Number(form.threshold.value),
      orientations: form.orientations.checked,
    };
    if (!params.path) return;
    const button = $("#job-launch");
    button.disabled = true;
    $("#job-form-result").textContent = "Launching…";
    try {
      const job = await api.launchJob(params);
      jobs.set(job.id, { ...job, path: job.path || params.path });
      renderJobs();
      schedulePoll();
      $("#job-form-result").textContent = `Scan ${job.id} launched.`;
    } catch (err) {
      $("#job-form-result").textContent = `Refused: ${err.message}`;
    } finally {
      button.disabled = false;
    }
  });
  renderJobs();
}

export { fillRoots };
