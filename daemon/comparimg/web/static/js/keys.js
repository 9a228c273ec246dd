// Keyboard shortcuts: one registry, one keydown listener, and the `?` help dialog built from the registry
// (so the list shown to people is the list that works).

import { h } from "./dom.js";

const bindings = []; // {scope, keys: [string], label, help, run}
let activeScope = () => "groups";

/**
 * Register a shortcut. `keys` are KeyboardEvent.key values ("ArrowDown", "k", "?", "Shift+A" for a
 * capital with an explicit modifier). `scope` is "global" or a view name ("groups", "compare"…).
 */
export function bind(scope, keys, help, run, label) {
  bindings.push({ scope, keys: [].concat(keys), help, run, label });
}

/** Tell the registry how to find the current scope (the visible view, or "compare" when it is open). */
export function setScopeProvider(fn) {
  activeScope = fn;
}

function isTyping(target) {
  if (!target || !(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  const tag = target.tagName;
  if (tag === "TEXTAREA" || tag === "SELECT") return true;
  if (tag === "INPUT") {
    const type = (target.getAttribute("type") || "text").toLowerCase();
    return !["checkbox", "radio", "range", "button", "submit"].includes(type);
  }
  return false;
}

function keyName(event) {
  if (event.key.length === 1 && event.key !== "?" && event.shiftKey && /[A-Z]/.test(event.key)) return `Shift+${event.key}`;
  return event.key;
}

function onKeyDown(event) {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  if (isTyping(event.target) && event.key !== "Escape") return;
  const scope = activeScope();
  const name = keyName(event);
  // A modal dialog takes the keyboard: only its own scope applies.
  const scopes = scope === "compare" || scope === "dialog" ? [scope] : [scope, "global"];
  for (const s of scopes) {
    const binding = bindings.find((b) => b.scope === s && b.keys.includes(name));
    if (binding) {
      // Let buttons and links keep Enter and Space.
      if ((name === "Enter" || name === " ") && event.target instanceof Element && event.target.closest("button, a, summary")) return;
      const handled = binding.run(event);
      if (handled !== false) event.preventDefault();
      return;
    }
  }
}

export function installKeys() {
  document.addEventListener("keydown", onKeyDown);
}

const SCOPE_TITLES = { global: "Everywhere", groups: "Groups view", queue: "Queue", detector: "Detector", compare: "Compare view" };

function prettyKey(key) {
  const names = { ArrowDown: "↓", ArrowUp: "↑", ArrowLeft: "←", ArrowRight: "→", " ": "Space", Escape: "Esc" };
  return names[key] || key;
}

/** Fill the help dialog from the registry. */
export function renderHelp(container) {
  container.replaceChildren();
  for (const scope of Object.keys(SCOPE_TITLES)) {
    const rows = bindings.filter((b) => b.scope === scope);
    if (!rows.length) continue;
    const table = h("table", {},
      h("caption", { class: "sr-only", text: SCOPE_TITLES[scope] }),
      h("tbody", {}, rows.map((b) => h("tr", {},
        h("td", {}, (b.label ? [b.label] : b.keys).flatMap((k, i) => [i ? " " : "", h("kbd", { text: prettyKey(k) })])),
        h("td", { text: b.help }),
      ))),
    );
    container.append(h("section", { class: "help-section" }, h("h3", { text: SCOPE_TITLES[scope] }), table));
  }
}
