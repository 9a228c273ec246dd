// Shared page state: the queued decisions (by file and by group) and the daemon's configuration.
// Views read from here and call the actions below; every change notifies the subscribers.

import { api, normalizeDecision } from "./api.js";

const PAGE = 1000;
const subscribers = new Set();
export const store = {
  decisions: [], // queued decisions, oldest first
  byFile: new Map(), // file id → queued decision
  config: null,
  moveTargets: [], // names of configured move targets
  sizes: new Map(), // file id → size in bytes, learnt from the groups seen
};

export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

function notify(reason) {
  for (const fn of subscribers) fn(reason);
}

function index() {
  store.byFile = new Map();
  for (const d of store.decisions) if (d.fileId !== null) store.byFile.set(d.fileId, d);
}

/** Reload the queued decisions from the daemon. */
export async function refreshDecisions() {
  const all = [];
  for (let offset = 0; ; offset += PAGE) { // the API pages by at most 1000
    const { decisions, total } = await api.decisions({ state: "queued", limit: PAGE, offset });
    all.push(...decisions);
    if (decisions.length < PAGE || all.length >= (total ?? 0) || offset > 200_000) break;
  }
  store.decisions = all.filter((d) => d.state === "queued").sort((a, b) => a.id - b.id);
  index();
  notify("decisions");
  return store.decisions;
}

export async function loadConfig() {
  try {
    store.config = await api.config();
  } catch {
    store.config = null;
  }
  const targets = store.config?.sorter?.move_targets ?? store.config?.sorter?.targets ?? {};
  store.moveTargets = Array.isArray(targets) ? targets.map(String) : Object.keys(targets || {});
  notify("config");
  return store.config;
}

function decisionFrom(response) {
  const raw = response?.decision ?? (Array.isArray(response?.decisions) ? response.decisions[0] : response);
  return raw && raw.id !== undefined ? normalizeDecision(raw) : null;
}

/** Queue `action` ("keep" | "trash" | "move") for one member; replaces its previous decision. */
export async function decide(member, action, target = null) {
  const current = store.byFile.get(member.id);
  if (current && current.action === action && current.target === target) return current;
  const body = { action, file_id: member.id };
  if (member.group !== null && member.group !== undefined) body.group_id = member.group;
  if (action === "move") body.target = target;
  const response = await api.decide(body);
  const decision = decisionFrom(response) ?? { id: null, action, fileId: member.id, target, state: "queued", path: member.path, size: member.size };
  decision.size ??= member.size;
  decision.path ||= member.path;
  store.decisions = store.decisions.filter((d) => d.fileId !== member.id);
  if (decision.state === "queued") store.decisions.push(decision);
  index();
  notify("decisions");
  return decision;
}

/** Withdraw a member's queued decision, if any. */
export async function clearDecision(member) {
  const current = store.byFile.get(member.id);
  if (!current) return;
  if (current.id !== null) {
    try {
      await api.cancelDecision(current.id);
    } catch (err) {
      if (err.status !== 404 && err.status !== 409) throw err;
    }
  }
  store.decisions = store.decisions.filter((d) => d !== current);
  index();
  notify("decisions");
}

/** Keep `keeper` (a member) and trash every other member of `group`. */
export async function keepOnly(group, keeper) {
  await decide(keeper, "keep");
  for (const member of group.members) {
    if (member.id !== keeper.id) await decide(member, "trash");
  }
}

/** Remember that the members of `group` are not duplicates of each other. */
export async function notDuplicates(group) {
  for (const member of group.members) {
    if (store.byFile.has(member.id)) await clearDecision(member);
  }
  const response = await api.decide({ action: "not_duplicates", group_id: group.id, file_ids: group.members.map((m) => m.id) });
  const decision = decisionFrom(response);
  if (decision && decision.state === "queued") {
    store.decisions.push(decision);
    index();
  }
  notify("decisions");
  return decision;
}

/** Total bytes the queued trash and move decisions take out of the watched folders. */
export function queuedSummary() {
  const counts = { keep: 0, trash: 0, move: 0, not_duplicates: 0 };
  let freed = 0;
  for (const d of store.decisions) {
    counts[d.action] = (counts[d.action] || 0) + 1;
    if (d.action === "trash" || d.action === "move") freed += Number(d.size ?? store.sizes.get(d.fileId) ?? 0);
  }
  return { counts, freed, total: store.decisions.length };
}
