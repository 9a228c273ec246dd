// The only module that talks to the daemon's HTTP API. Authentication is the session cookie that the
// login link sets; every request is same-origin, JSON in and out.

import { orientationName, splitPath } from "./format.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

const listeners = new Set();
/** Be told of every failed request (the page shows a banner on 401). */
export function onApiError(fn) {
  listeners.add(fn);
}

async function request(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    const error = new ApiError(0, "network", "The daemon cannot be reached.");
    listeners.forEach((fn) => fn(error));
    throw error;
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const e = (data && data.error) || {};
    const error = new ApiError(response.status, e.code || String(response.status), e.message || response.statusText);
    listeners.forEach((fn) => fn(error));
    throw error;
  }
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    q.set(key, String(value));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** Pick the first array found under one of `keys` (or the value itself when it is an array). */
function listOf(data, ...keys) {
  if (Array.isArray(data)) return data;
  for (const key of keys) if (data && Array.isArray(data[key])) return data[key];
  return [];
}

// --- normalisation: the page works on these shapes only ---------------------------------------------

export function normalizeMember(m, group, kind = "") {
  const id = m.file_id ?? m.id;
  const path = m.path ?? "";
  const { folder, name } = splitPath(path);
  const decision = m.decision ?? null;
  return {
    id,
    path,
    folder,
    name,
    size: m.size ?? null,
    width: m.width ?? null,
    height: m.height ?? null,
    format: m.format ?? "",
    mtime: m.mtime_ns ?? m.mtime ?? m.modified ?? null,
    distance: m.distance ?? 0,
    orientation: orientationName(m.orientation ?? 0),
    // In a `similar` group every shot is kept; the suggested one is the pick, the one with a reason.
    suggested: kind === "similar" ? Boolean(m.reason) : m.suggested === "keep" || m.suggested === true,
    verdict: m.verdict ?? null, // the learned verifier's, on the edge to the leader
    confidence: typeof m.confidence === "number" ? m.confidence : null,
    reason: m.reason ?? null,
    reference: Boolean(m.reference),
    fileState: m.state ?? "ok", // ok | error | missing (the file row's state)
    thumbnail: m.thumbnail_url ?? `/api/files/${id}/thumbnail`,
    content: m.content_url ?? `/api/files/${id}/content`,
    decision: decision && typeof decision === "object" ? normalizeDecision(decision) : null,
    group: group ?? null,
  };
}

export function normalizeGroup(g) {
  const group = {
    id: g.id ?? g.group_id,
    kind: g.kind ?? "exact",
    leader: g.leader ?? null,
    state: g.state ?? null,
    created: g.created ?? null,
    members: [],
  };
  group.members = listOf(g.members).map((m) => normalizeMember(m, group.id, group.kind));
  return group;
}

export function normalizeDecision(d) {
  return {
    id: d.id,
    action: d.action === "not_duplicate" ? "not_duplicates" : d.action,
    fileId: d.file_id ?? null,
    fileIds: Array.isArray(d.file_ids) ? d.file_ids : typeof d.file_ids === "string" && d.file_ids ? safeJson(d.file_ids) : [],
    groupId: d.group_id ?? null,
    target: d.target ?? null,
    path: d.path ?? "",
    size: d.size ?? null,
    state: d.state ?? "queued",
    reason: d.reason ?? null,
    actionId: d.action_id ?? null,
    created: d.created ?? null,
  };
}

export function normalizeAction(a) {
  return {
    id: a.id,
    kind: a.kind,
    decisionId: a.decision_id ?? null,
    undoOf: a.undo_of ?? null,
    fileId: a.file_id ?? null,
    source: a.source ?? "",
    dest: a.dest ?? "",
    size: a.size ?? null,
    state: a.state ?? "",
    reason: a.reason ?? null,
    updated: a.updated ?? a.created ?? null,
  };
}

function safeJson(text) {
  try {
    const v = JSON.parse(text);
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

export function normalizeJob(j) {
  const total = j.total ?? j.files_total ?? j.progress?.total ?? null;
  const done = j.done ?? j.processed ?? j.files_done ?? j.progress?.done ?? null;
  return {
    id: j.id ?? j.job_id,
    path: j.path ?? "",
    state: j.state ?? j.status ?? "queued",
    recursive: j.recursive ?? j.params?.recursive ?? true,
    threshold: j.threshold ?? j.params?.threshold ?? null,
    orientations: j.orientations ?? j.params?.orientations ?? true,
    total,
    done,
    groups: j.groups ?? j.groups_found ?? j.new_groups ?? null,
    errors: j.errors ?? j.error_count ?? null,
    error: j.error ?? j.message ?? null,
    started: j.started ?? j.created ?? null,
    finished: j.finished ?? null,
  };
}

// --- endpoints ---------------------------------------------------------------------------------------

export const api = {
  status: () => request("GET", "/api/status"),
  config: () => request("GET", "/api/config"),

  /** Return {groups, total} for a page of groups. */
  async groups({ kind, state, folder, sort, offset, limit } = {}) {
    const data = await request("GET", `/api/groups${query({ kind, state, folder, sort, offset, limit })}`);
    const groups = listOf(data, "groups", "items").map(normalizeGroup);
    const total = data?.total ?? data?.count ?? groups.length;
    return { groups, total };
  },
  group: async (id) => normalizeGroup(await request("GET", `/api/groups/${id}`)),

  async decisions({ state = "queued", limit = 1000, offset = 0 } = {}) {
    const data = await request("GET", `/api/decisions${query({ state, limit, offset })}`);
    return { decisions: listOf(data, "decisions", "items").map(normalizeDecision), total: data?.total ?? null };
  },
  /** Queue one decision: {action: keep|trash|move, file_id, target?} or {action: not_duplicates, group_id}. */
  decide: (body) => request("POST", "/api/decisions", body),
  cancelDecision: (id) => request("DELETE", `/api/decisions/${id}`),
  apply: (ids) => request("POST", "/api/decisions/apply", ids ? { ids } : {}),
  undo: (actionId) => request("POST", `/api/undo/${actionId}`, {}),
  async actions({ limit = 100, offset = 0 } = {}) {
    const data = await request("GET", `/api/actions${query({ limit, offset })}`);
    return listOf(data, "actions", "items").map(normalizeAction);
  },

  async jobs() {
    const data = await request("GET", "/api/jobs");
    return listOf(data, "jobs", "items").map(normalizeJob);
  },
  job: async (id) => normalizeJob(await request("GET", `/api/jobs/${id}`)),
  launchJob: async (params) => normalizeJob(await request("POST", "/api/jobs", params)),
  cancelJob: (id) => request("DELETE", `/api/jobs/${id}`),

  /** Decisions by rule: preview (dry run), apply the previewed set, follow, cancel / discard, undo. */
  bulkPreview: (rule) => request("POST", "/api/decisions/bulk", { dry_run: true, rule }),
  bulkApply: (previewId) => request("POST", "/api/decisions/bulk", { dry_run: false, preview_id: previewId }),
  bulkBatch: (id) => request("GET", `/api/decisions/bulk/${id}`),
  bulkCancel: (id) => request("DELETE", `/api/decisions/bulk/${id}`),
  bulkUndo: (id) => request("POST", `/api/undo/batch/${id}`, {}),

  /** The duplicate verifier: what is in use and its labels; retrain from them; restore the previous one. */
  model: () => request("GET", "/api/model"),
  retrain: () => request("POST", "/api/model/retrain", {}),
  restoreModel: () => request("POST", "/api/model/restore", {}),
};
