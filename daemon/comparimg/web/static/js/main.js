// Entry point: routes (#/groups, #/queue, #/detector), live events, and the wiring between the views.

import { onApiError } from "./api.js";
import { initBulk } from "./bulk.js";
import { $, $$, banner, debounce } from "./dom.js";
import { closeCompare, initCompare, isCompareOpen, openCompare } from "./compare.js";
import { fillRoots, initDetector, refreshJobs, updateJob } from "./detector.js";
import { connect, on, onConnection } from "./events.js";
import { currentGroup, focusGroups, groupsChanged, initGroups, loadGroups, setCompareOpener } from "./groups.js";
import { bind, installKeys, renderHelp, setScopeProvider } from "./keys.js";
import { initModel, refreshModel } from "./model.js";
import { initQueue, refreshJournal, setAfterApply } from "./queue.js";
import { initStatus, refreshStatus, showConnection, showStatus } from "./status.js";
import { loadConfig, queuedSummary, refreshDecisions, subscribe } from "./store.js";

const VIEWS = ["groups", "queue", "detector"];

function currentView() {
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1];
  return VIEWS.includes(name) ? name : "groups";
}

function showView() {
  const name = currentView();
  for (const v of VIEWS) $(`#view-${v}`).hidden = v !== name;
  for (const a of $$(".tabs a")) {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `ComparImg — ${name}`;
  if (name === "queue") {
    refreshDecisions().catch(() => {});
    refreshJournal();
    refreshModel();
  } else if (name === "detector") refreshJobs();
  else focusGroups();
}

function go(name) {
  location.hash = `#/${name}`;
}

function openHelp() {
  renderHelp($("#help-body"));
  $("#help").showModal();
}

function scope() {
  if (isCompareOpen()) return "compare";
  if ($$("dialog[open]").length) return "dialog";
  return currentView();
}

function init() {
  installKeys();
  setScopeProvider(scope);
  initStatus();
  initGroups(bind);
  initBulk(bind);
  initCompare(bind);
  initQueue(bind);
  initModel();
  initDetector();

  setCompareOpener((group, a, b) => openCompare(group, a, b, () => loadGroups()));
  setAfterApply(() => {
    loadGroups();
    refreshStatus();
  });

  bind("global", ["?"], "Show the keyboard shortcuts", openHelp);
  bind("global", ["g"], "Go to the groups", () => go("groups"));
  bind("global", ["q"], "Go to the queue", () => go("queue"));
  bind("global", ["d"], "Go to the detector", () => go("detector"));
  bind("global", ["/"], "Filter groups by folder", () => {
    go("groups");
    $('#group-filters input[name="folder"]').focus();
  });
  bind("dialog", ["Escape"], "Close the dialog", () => $$("dialog[open]").forEach((d) => d.close()), "Esc");
  $("#help-button").addEventListener("click", openHelp);

  onApiError((error) => {
    if (error.status === 401) {
      banner("You are not logged in. Open the login link that the daemon printed when it started (it carries the token).");
    } else if (error.status === 0) {
      banner("The daemon cannot be reached. Retrying…");
    }
  });

  // Live updates.
  const statusSoon = debounce(refreshStatus, 300);
  const decisionsSoon = debounce(() => refreshDecisions().catch(() => {}), 300);
  onConnection((state) => {
    showConnection(state);
    if (state === "live") {
      banner(null);
      refreshStatus();
    }
  });
  on("status", (data) => (data && data.state ? showStatus(data) : statusSoon()));
  on("hello", (data) => showStatus(data.status));
  on(["group", "group_new", "group_added", "groups", "group_changed", "group_removed"], () => {
    groupsChanged();
    statusSoon();
  });
  const groupsSeen = new Map(); // job id → groups it had found at its last event
  on(["job", "job_progress", "job_done", "job_finished", "job_cancelled"], (data) => {
    updateJob(data);
    const job = data?.job ?? data;
    // Results appear while the job runs: a batch that found groups reloads the groups view.
    const found = Number(job?.groups ?? 0);
    if (found > 0 && found !== groupsSeen.get(job?.id)) groupsChanged();
    groupsSeen.set(job?.id, found);
    if (["done", "finished", "completed", "cancelled"].includes(String(job?.state))) groupsChanged();
    statusSoon();
  });
  on(["decision", "decision_queued", "decisions", "decision_applied", "applied", "undo", "undone", "action"], (data, type) => {
    decisionsSoon();
    statusSoon();
    if (currentView() === "queue") refreshModel(); // decisions leave labels
    if (type !== "decision" && type !== "decision_queued") {
      if (currentView() === "queue") refreshJournal();
      groupsChanged();
    }
  });
  on("batch", (data) => {
    if (!data?.batch?.running) {
      decisionsSoon();
      statusSoon();
    }
  });
  on("error", statusSoon);
  on("model", () => currentView() === "queue" && refreshModel());

  subscribe((reason) => {
    if (reason === "config") fillRoots();
    if (reason === "decisions") $("#st-decisions").textContent = String(queuedSummary().total);
  });

  window.addEventListener("hashchange", () => {
    if (isCompareOpen()) closeCompare();
    showView();
  });
  showView();

  // First load: configuration, decisions, then the groups that depend on them.
  refreshStatus();
  loadConfig().then(fillRoots);
  refreshDecisions().catch(() => {}).finally(() => loadGroups());
  refreshJobs();
  connect();
  window.comparimg = { currentGroup }; // handy from the console
}

init();
