// Groups view: one page of duplicate groups at a time (server-side paging keeps 10 000 groups cheap),
// each member with its facts and keep / trash / move buttons; a "current" group and member that the
// keyboard acts on.

import { api } from "./api.js";
import { $, h, debounce, toast } from "./dom.js";
import { formatNumber } from "./format.js";
import { renderGroup } from "./group_card.js";
import { clearDecision, decide, keepOnly, notDuplicates, store, subscribe } from "./store.js";

const view = {
  filters: { kind: "", state: "pending", folder: "", sort: "size", limit: 50 },
  offset: 0,
  total: 0,
  groups: [],
  current: 0,
  member: 0,
  loading: null,
  loaded: false, // no answer yet: say "loading", not "no duplicates"
  hasNew: false,
};
let openCompare = () => {};

export function setCompareOpener(fn) {
  openCompare = fn;
}

export function currentGroup() {
  return view.groups[view.current] || null;
}

function currentMember() {
  const group = currentGroup();
  return group ? group.members[Math.min(view.member, group.members.length - 1)] : null;
}

// --- loading ------------------------------------------------------------------------------------------

/** Load the page at the current offset; keep the current group if it is still there. */
export async function loadGroups({ keepFocus = true } = {}) {
  const list = $("#group-list");
  const previousId = keepFocus ? currentGroup()?.id : null;
  list.setAttribute("aria-busy", "true");
  const request = api.groups({ ...view.filters, offset: view.offset });
  view.loading = request;
  let page;
  try {
    page = await request;
  } catch (err) {
    if (view.loading === request) {
      list.setAttribute("aria-busy", "false");
      list.replaceChildren(h("p", { class: "empty", text: `Could not load groups: ${err.message}` }));
    }
    return;
  }
  if (view.loading !== request) return; // a newer request won
  view.loading = null;
  view.loaded = true;
  view.groups = page.groups;
  view.total = page.total;
  if (view.offset > 0 && view.groups.length === 0 && view.total > 0) {
    view.offset = Math.max(0, Math.floor((view.total - 1) / view.filters.limit) * view.filters.limit);
    return loadGroups({ keepFocus });
  }
  for (const g of view.groups) for (const m of g.members) if (m.size !== null) store.sizes.set(m.id, m.size);
  const again = view.groups.findIndex((g) => g.id === previousId);
  view.current = again >= 0 ? again : Math.min(view.current, Math.max(0, view.groups.length - 1));
  if (again < 0) view.member = 0;
  view.hasNew = false;
  $("#new-groups").hidden = true;
  list.setAttribute("aria-busy", "false");
  const hadFocus = list.contains(document.activeElement);
  render();
  if (hadFocus) focusMember(false); // a live reload must not drop the keyboard user's place
  const count = document.getElementById("tab-groups-count");
  count.textContent = view.total ? formatNumber(view.total) : "";
}

/** A new group was found (server-sent event): reload at once if the page has room, else offer to. */
export function groupsChanged() {
  const roomOnPage = view.offset === 0 && view.groups.length < view.filters.limit;
  if (roomOnPage || view.groups.length === 0) reloadSoon();
  else {
    view.hasNew = true;
    $("#new-groups").hidden = false;
  }
}
const reloadSoon = debounce(() => loadGroups(), 400);

// --- rendering ----------------------------------------------------------------------------------------

function render() {
  const list = $("#group-list");
  if (!view.loaded) {
    list.setAttribute("aria-busy", "true");
    list.replaceChildren(h("p", { class: "empty loading", text: "Loading groups…" }));
  } else if (!view.groups.length) {
    const filtered = view.filters.kind || view.filters.folder || view.filters.state !== "pending";
    list.replaceChildren(h("div", { class: "empty" },
      h("p", { text: filtered ? "No group matches these filters." : "No duplicates to review." }),
      filtered ? null : h("p", {}, "Launch a scan from the ", h("a", { href: "#/detector", text: "Detector" }), " or wait for the watcher."),
    ));
  } else {
    list.replaceChildren(...view.groups.map((g, i) => renderGroup(g, i, cardActions)));
  }
  renderPager($("#pager-top"));
  renderPager($("#pager-bottom"));
  markCurrent(false);
}

function renderPager(el) {
  const { offset, total } = view;
  const limit = view.filters.limit;
  if (total <= 0) {
    el.replaceChildren();
    return;
  }
  const page = Math.floor(offset / limit) + 1;
  const pages = Math.max(1, Math.ceil(total / limit));
  const jump = h("input", { type: "number", class: "page-input", min: "1", max: String(pages), value: String(page),
    "aria-label": `Page number, 1 to ${pages}` });
  jump.addEventListener("change", () => goToPage(Number(jump.value)));
  el.replaceChildren(
    h("button", { type: "button", class: "btn btn-small", disabled: page <= 1, "aria-label": "First page", onclick: () => goToPage(1) }, "«"),
    h("button", { type: "button", class: "btn btn-small", disabled: page <= 1, "aria-label": "Previous page", onclick: () => goPage(-1) }, "‹ Prev"),
    h("span", { class: "pager-text", text: `Groups ${formatNumber(offset + 1)}–${formatNumber(Math.min(offset + limit, total))} of ${formatNumber(total)} · page` }),
    jump,
    h("span", { text: `of ${formatNumber(pages)}` }),
    h("button", { type: "button", class: "btn btn-small", disabled: page >= pages, "aria-label": "Next page", onclick: () => goPage(1) }, "Next ›"),
    h("button", { type: "button", class: "btn btn-small", disabled: page >= pages, "aria-label": "Last page", onclick: () => goToPage(pages) }, "»"),
  );
}

/** Re-render one group card in place (after a decision) and keep focus where it was. */
function rerenderGroup(index) {
  const old = document.querySelector(`#group-list .group[data-index="${index}"]`);
  if (!old || !view.groups[index]) return;
  const hadFocus = old.contains(document.activeElement);
  const focusedLabel = hadFocus ? document.activeElement.getAttribute("aria-label") : null;
  const fresh = renderGroup(view.groups[index], index, cardActions);
  old.replaceWith(fresh);
  if (index === view.current) {
    fresh.classList.add("is-current");
    const again = focusedLabel && Array.from(fresh.querySelectorAll("button")).find((b) => b.getAttribute("aria-label") === focusedLabel);
    if (again) again.focus({ preventScroll: true });
    else if (hadFocus) focusMember(false);
  }
  updateRoving();
}

// --- current group / member -----------------------------------------------------------------------------

function setCurrent(groupIndex, memberIndex, focus = true) {
  if (!view.groups.length) return;
  view.current = Math.max(0, Math.min(groupIndex, view.groups.length - 1));
  const group = view.groups[view.current];
  view.member = Math.max(0, Math.min(memberIndex, group.members.length - 1));
  markCurrent(focus);
}

function markCurrent(focus) {
  for (const el of document.querySelectorAll("#group-list .group.is-current")) el.classList.remove("is-current");
  const card = document.querySelector(`#group-list .group[data-index="${view.current}"]`);
  if (card) card.classList.add("is-current");
  updateRoving();
  if (focus) focusMember(true);
}

function updateRoving() {
  for (const fig of document.querySelectorAll("#group-list .member[tabindex='0']")) fig.setAttribute("tabindex", "-1");
  const fig = document.querySelector(`#group-list .group[data-index="${view.current}"] .member[data-index="${view.member}"]`);
  if (fig) fig.setAttribute("tabindex", "0");
}

function focusMember(scroll) {
  const fig = document.querySelector(`#group-list .group[data-index="${view.current}"] .member[data-index="${view.member}"]`);
  if (!fig) return;
  fig.focus({ preventScroll: true });
  if (scroll) {
    const card = fig.closest(".group");
    card.scrollIntoView({ block: "nearest", behavior: "auto" });
  }
}

// --- actions ------------------------------------------------------------------------------------------

async function run(what, fn) {
  try {
    return await fn();
  } catch (err) {
    toast(`${what} failed: ${err.message}`, 5000);
    return undefined;
  }
}

function indexOfMember(member) {
  return view.groups.findIndex((g) => g.id === member.group || g.members.includes(member));
}

async function toggle(member, action, target = null) {
  const current = store.byFile.get(member.id);
  await run(`Marking ${member.name}`, () => (current && current.action === action && (action !== "move" || current.target === target)
    ? clearDecision(member) : decide(member, action, target)));
  rerenderGroup(indexOfMember(member));
}

export async function keepSuggested(index = view.current, advance = true) {
  const group = view.groups[index];
  if (!group) return;
  const keeper = group.members.find((m) => m.suggested) || group.members[0];
  await run("Keeping the suggested image", () => keepOnly(group, keeper));
  rerenderGroup(index);
  toast(`Group ${group.id}: keep ${keeper.name}, trash ${group.members.length - 1}`);
  if (advance) nextGroup();
}

async function keepNumber(n) {
  const group = currentGroup();
  if (!group || n >= group.members.length) return;
  const index = view.current;
  const keeper = group.members[n];
  await run("Choosing the keeper", () => keepOnly(group, keeper));
  rerenderGroup(index);
  toast(`Group ${group.id}: keep ${keeper.name}, trash ${group.members.length - 1}`);
  nextGroup();
}

async function markNotDuplicates(index = view.current) {
  const group = view.groups[index];
  if (!group) return;
  const ok = await run("Marking not duplicates", () => notDuplicates(group));
  if (ok === undefined) return;
  view.groups.splice(index, 1);
  view.total = Math.max(0, view.total - 1);
  toast(`Group ${group.id} marked as not duplicates`);
  render();
  setCurrent(Math.min(index, view.groups.length - 1), 0, true);
  if (!view.groups.length && view.total) loadGroups({ keepFocus: false });
}

async function clearGroup(index = view.current) {
  const group = view.groups[index];
  if (!group) return;
  await run("Clearing decisions", async () => {
    for (const m of group.members) await clearDecision(m);
  });
  rerenderGroup(index);
}

function compareGroup(index = view.current, memberIndex = null) {
  const group = view.groups[index];
  if (!group || group.members.length < 2) return;
  setCurrent(index, memberIndex ?? view.member, false);
  const keeperIndex = Math.max(0, group.members.findIndex((m) => m.suggested));
  let a = keeperIndex;
  let b = memberIndex ?? (view.member !== keeperIndex ? view.member : (keeperIndex + 1) % group.members.length);
  if (a === b) b = (a + 1) % group.members.length;
  openCompare(group, a, b);
}

function filterFolder(folder) {
  const input = document.querySelector('#group-filters input[name="folder"]');
  input.value = folder;
  input.form.dispatchEvent(new Event("change"));
}

function nextGroup() {
  if (view.current < view.groups.length - 1) setCurrent(view.current + 1, 0);
  else focusMember(true);
}

function goPage(delta) {
  goToPage(Math.floor(view.offset / view.filters.limit) + 1 + delta);
}

function goToPage(page) {
  const limit = view.filters.limit;
  const pages = Math.max(1, Math.ceil(view.total / limit));
  if (!Number.isFinite(page)) return;
  const target = Math.max(1, Math.min(pages, Math.round(page)));
  const next = (target - 1) * limit;
  if (next === view.offset) return;
  view.offset = next;
  view.current = 0;
  view.member = 0;
  loadGroups({ keepFocus: false }).then(() => {
    window.scrollTo({ top: 0 });
    focusMember(false);
  });
}

const cardActions = {
  keepSuggested,
  compareGroup,
  markNotDuplicates,
  clearGroup,
  toggle,
  filterFolder,
  focused: (index, memberIndex) => setCurrent(index, memberIndex ?? (view.current === index ? view.member : 0), false),
};

// --- wiring -------------------------------------------------------------------------------------------

export function initGroups(bind) {
  render(); // the loading state until the first page arrives
  const form = $("#group-filters");
  const readFilters = () => {
    const data = new FormData(form);
    view.filters = {
      kind: data.get("kind") || "",
      state: data.get("state") || "",
      folder: (data.get("folder") || "").trim(),
      sort: data.get("sort") || "size",
      limit: Number(data.get("limit") || 50),
    };
    view.offset = 0;
    view.current = 0;
    view.member = 0;
    loadGroups({ keepFocus: false });
  };
  form.addEventListener("change", readFilters);
  form.addEventListener("input", debounce((event) => {
    if (event.target.name === "folder") readFilters();
  }, 350));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    readFilters();
  });
  $("#new-groups-button").addEventListener("click", () => loadGroups());
  subscribe((reason) => {
    if (reason === "config") render();
  });

  const member = () => currentMember();
  bind("groups", ["ArrowDown", "j"], "Next group", () => setCurrent(view.current + 1, 0), "↓ j");
  bind("groups", ["ArrowUp"], "Previous group", () => setCurrent(view.current - 1, 0), "↑");
  bind("groups", ["ArrowRight", "l"], "Next image in the group", () => setCurrent(view.current, view.member + 1), "→ l");
  bind("groups", ["ArrowLeft", "h"], "Previous image in the group", () => setCurrent(view.current, view.member - 1), "← h");
  bind("groups", ["s", "Enter"], "Keep the suggested image, trash the rest, go to the next group", () => keepSuggested(), "s Enter");
  bind("groups", ["1", "2", "3", "4", "5", "6", "7", "8", "9"], "Keep image N, trash the rest", (e) => keepNumber(Number(e.key) - 1), "1…9");
  bind("groups", ["k"], "Keep the current image", () => member() && toggle(member(), "keep"));
  bind("groups", ["t", "x", "Delete"], "Trash the current image", () => member() && toggle(member(), "trash"), "t x Del");
  bind("groups", ["m"], "Move the current image to the first move target", () => {
    if (member() && store.moveTargets.length) toggle(member(), "move", store.moveTargets[0]);
    else toast("No move target is configured");
  });
  bind("groups", ["u"], "Clear the current group's decisions", () => clearGroup());
  bind("groups", ["n"], "Not duplicates: never group these images again", () => markNotDuplicates());
  bind("groups", ["c", " "], "Compare the current image with the suggested keeper", () => compareGroup(), "c Space");
  bind("groups", ["]", "PageDown"], "Next page", () => goPage(1), "] PgDn");
  bind("groups", ["[", "PageUp"], "Previous page", () => goPage(-1), "[ PgUp");
  bind("groups", ["Home"], "First page", () => goToPage(1));
  bind("groups", ["End"], "Last page", () => goToPage(Number.MAX_SAFE_INTEGER));
  bind("groups", ["r"], "Reload groups", () => loadGroups());
}

export function focusGroups() {
  focusMember(false);
}
