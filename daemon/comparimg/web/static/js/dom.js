// Tiny DOM helpers. Text always goes through textContent: file names are hostile input.

/**
 * Create an element. `attrs` keys: "class", "text", "on<event>" (listener), "dataset" (object),
 * booleans set/remove the attribute, anything else is setAttribute. Children may be nodes or strings.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/**
 * A path as nodes that wrap only after a "/": each name (with its slash) is a span that never breaks
 * inside (`.seg`, white-space: nowrap), and a <wbr> after each slash is where a line may end.
 */
export function pathText(path) {
  const text = String(path ?? "");
  const parts = text.split(/(?<=\/)/);
  return parts.flatMap((part, i) => [h("span", { class: "seg", text: part }), i < parts.length - 1 ? h("wbr") : null]);
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function $$(selector, root = document) {
  return Array.from(root.querySelectorAll(selector));
}

let toastTimer = 0;
/** Show a short message at the bottom of the page (also read by screen readers). */
export function toast(message, ms = 2600) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove("show"), ms);
}

/** Show (or with null, hide) the banner at the top of the page. */
export function banner(message) {
  const el = document.getElementById("banner");
  el.textContent = message || "";
  el.hidden = !message;
}

/** Return a function that runs `fn` once, `ms` after the last call. */
export function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
