// Formatting of sizes, dates and paths for people.

const UNITS = ["B", "KB", "MB", "GB", "TB"];

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || Number.isNaN(Number(bytes))) return "—";
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${UNITS[unit]}`;
}

/** Accepts seconds, milliseconds, nanoseconds since the epoch or an ISO string. */
export function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "string" && !/^\d+(\.\d+)?$/.test(value)) {
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  let n = Number(value);
  if (n > 1e17) n /= 1e6; // ns
  else if (n > 1e14) n /= 1e3; // µs
  else if (n < 1e11) n *= 1e3; // s
  return new Date(n);
}

export function formatDate(value) {
  const d = toDate(value);
  if (!d) return "—";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function splitPath(path) {
  const p = String(path || "");
  const cut = p.lastIndexOf("/");
  return cut < 0 ? { folder: "", name: p } : { folder: p.slice(0, cut) || "/", name: p.slice(cut + 1) };
}

export function formatNumber(n) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString();
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(Number(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

const ORIENTATION_LABELS = {
  identity: "same orientation",
  rot90: "rotated 90° left",
  rot180: "rotated 180°",
  rot270: "rotated 90° right",
  flip_h: "flipped left–right",
  flip_v: "flipped upside down",
  transpose: "flipped on the diagonal",
  transverse: "flipped on the anti-diagonal",
};
export const ORIENTATIONS = Object.keys(ORIENTATION_LABELS);

export function orientationName(value) {
  if (typeof value === "number") return ORIENTATIONS[value] || "identity";
  return value || "identity";
}

export function orientationLabel(value) {
  return ORIENTATION_LABELS[orientationName(value)] || String(value);
}
