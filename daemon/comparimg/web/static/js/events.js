// Live updates: one EventSource on /api/events, fanned out to the views by event type.
// An event's type is its SSE `event:` name, or the `type` field of its JSON data for unnamed events.

const handlers = new Map();
const stateHandlers = new Set();
const KNOWN_TYPES = [
  "status", "group", "group_new", "group_added", "groups", "group_removed", "group_changed", "job", "job_progress",
  "job_done", "job_finished", "job_cancelled", "decision", "decision_queued", "decision_applied", "decisions",
  "applied", "undo", "undone", "action", "batch", "model", "error", "hello", "ping",
];

let source = null;
let retry = 1000;

/** Call `fn(data, type)` for each event whose type is one of `types` ("*" for all). */
export function on(types, fn) {
  for (const type of [].concat(types)) {
    if (!handlers.has(type)) handlers.set(type, new Set());
    handlers.get(type).add(fn);
  }
}

/** Call `fn("live" | "down" | "connecting")` whenever the connection changes. */
export function onConnection(fn) {
  stateHandlers.add(fn);
}

function emit(type, data) {
  for (const key of [type, "*"]) {
    const set = handlers.get(key);
    if (set) for (const fn of set) {
      try {
        fn(data, type);
      } catch (err) {
        console.error("event handler failed", type, err);
      }
    }
  }
}

function setState(state) {
  for (const fn of stateHandlers) fn(state);
}

function parse(event) {
  try {
    return event.data ? JSON.parse(event.data) : {};
  } catch {
    return { raw: event.data };
  }
}

export function connect() {
  if (source) source.close();
  setState("connecting");
  source = new EventSource("/api/events", { withCredentials: true });
  source.onopen = () => {
    retry = 1000;
    setState("live");
  };
  source.onerror = () => {
    // EventSource retries by itself while CONNECTING; when CLOSED (e.g. 401) we retry with back-off.
    setState("down");
    if (source.readyState === EventSource.CLOSED) {
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    }
  };
  source.onmessage = (event) => {
    const data = parse(event);
    emit(data.type || data.event || "message", data);
  };
  for (const type of KNOWN_TYPES) {
    source.addEventListener(type, (event) => emit(type, parse(event)));
  }
}
