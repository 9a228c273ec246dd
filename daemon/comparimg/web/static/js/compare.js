// Compare view: two members of a group, large, side by side or overlaid (slider or blink), with zoom.
// Overlays scale both images to the same box, so a resized copy lines up with its original; "align
// orientation" turns a flipped or rotated copy back into its leader's orientation.

import { $, h, pathText, toast } from "./dom.js";
import { formatBytes, formatDate, orientationLabel } from "./format.js";
import { keepOnly } from "./store.js";

const ZOOMS = [1, 1.5, 2, 3, 4, 6, 8];
const QUARTER_TURNS = new Set(["rot90", "rot270", "transpose", "transverse"]);
// CSS transform that undoes each orientation (member = orientation(leader), so leader = inverse(member)).
const UNDO_TRANSFORM = {
  identity: "",
  rot90: "rotate(90deg)",
  rot180: "rotate(180deg)",
  rot270: "rotate(-90deg)",
  flip_h: "scaleX(-1)",
  flip_v: "scaleY(-1)",
  transpose: "rotate(-90deg) scaleX(-1)",
  transverse: "rotate(90deg) scaleX(-1)",
};

const state = { group: null, a: 0, b: 1, mode: "side", zoom: 0, split: 50, blinkTimer: 0, blinkShowB: false, align: true, onChange: null };

function dialog() {
  return $("#compare");
}

export function isCompareOpen() {
  return dialog().open;
}

/** Open the compare view on members `a` and `b` of `group`; `onChange` runs after a decision made here. */
export function openCompare(group, a, b, onChange) {
  state.group = group;
  state.a = a;
  state.b = b;
  state.zoom = 0;
  state.split = 50;
  state.onChange = onChange || null;
  fillSelects();
  if (!dialog().open) dialog().showModal();
  render();
  $("#cmp-close").focus();
}

export function closeCompare() {
  stopBlink();
  if (dialog().open) dialog().close();
}

function fillSelects() {
  for (const [id, which] of [["#cmp-a", "a"], ["#cmp-b", "b"]]) {
    const select = $(id);
    select.replaceChildren(...state.group.members.map((m, i) => h("option", { value: i, text: `${i + 1}. ${m.name}${m.suggested ? " (suggested)" : ""}`, selected: i === state[which] })));
  }
}

function orientedSize(member) {
  const w = Number(member.width) || 4;
  const hgt = Number(member.height) || 3;
  return state.align && QUARTER_TURNS.has(member.orientation) ? [hgt, w] : [w, hgt];
}

function makeImage(member, role) {
  const img = h("img", { src: member.content, alt: `${role}: ${member.name}`, draggable: "false", decoding: "async" });
  img.dataset.orientation = member.orientation;
  img.dataset.role = role;
  return img;
}

/** Size the canvas to fit (times zoom) its view, and place the images in it. */
function layoutCanvas(view, canvas, member) {
  const [w, hgt] = orientedSize(member);
  const boxW = Math.max(50, view.clientWidth - 4);
  const boxH = Math.max(50, view.clientHeight - 4);
  const fit = Math.min(boxW / w, boxH / hgt);
  const zoom = ZOOMS[state.zoom];
  const cw = Math.round(w * fit * zoom);
  const ch = Math.round(hgt * fit * zoom);
  canvas.style.width = `${cw}px`;
  canvas.style.height = `${ch}px`;
  canvas.style.marginTop = ch < boxH ? `${Math.floor((boxH - ch) / 2)}px` : "0";
  for (const img of canvas.querySelectorAll("img")) {
    const o = img.dataset.orientation;
    const turn = state.align ? UNDO_TRANSFORM[o] || "" : "";
    if (state.align && QUARTER_TURNS.has(o)) {
      Object.assign(img.style, { width: `${ch}px`, height: `${cw}px`, left: `${(cw - ch) / 2}px`, top: `${(ch - cw) / 2}px` });
    } else {
      Object.assign(img.style, { width: "100%", height: "100%", left: "0", top: "0" });
    }
    img.style.transform = turn;
  }
}

function caption(member, role) {
  const bits = [`${member.width ?? "?"}×${member.height ?? "?"}`, formatBytes(member.size), (member.format || "").toUpperCase(), formatDate(member.mtime)];
  if (state.group.kind === "near") bits.push(`distance ${member.distance}`, orientationLabel(member.orientation));
  return h("div", { class: "cmp-caption" },
    h("strong", { text: `${role}: ${member.name}` }), member.suggested ? " · suggested keeper" : "", h("br"),
    h("span", { class: "cmp-folder", title: member.folder }, pathText(member.folder)), ` · ${bits.join(" · ")}`);
}

function render() {
  stopBlink();
  const stage = $("#cmp-stage");
  const A = state.group.members[state.a];
  const B = state.group.members[state.b];
  stage.className = `compare-stage ${state.mode}`;
  $("#compare-title").textContent = `Compare — group ${state.group.id} (${state.group.kind})`;
  $("#cmp-zoom-level").textContent = state.zoom === 0 ? "fit" : `${ZOOMS[state.zoom]}×`;
  for (const input of document.querySelectorAll('input[name="cmp-mode"]')) input.checked = input.value === state.mode;
  $("#cmp-align").checked = state.align;

  const panes = [];
  if (state.mode === "side") {
    for (const [member, role] of [[A, "Left"], [B, "Right"]]) {
      const canvas = h("div", { class: "cmp-canvas" }, makeImage(member, role));
      const view = h("div", { class: "cmp-view", tabindex: "0", "aria-label": `${role} image, scroll to pan` }, canvas);
      panes.push({ pane: h("div", { class: "cmp-pane" }, view, caption(member, role)), view, canvas, member });
    }
    // Panning one side pans the other.
    const [p, q] = panes;
    let syncing = false;
    const sync = (from, to) => () => {
      if (syncing) return;
      syncing = true;
      to.view.scrollLeft = from.view.scrollLeft;
      to.view.scrollTop = from.view.scrollTop;
      requestAnimationFrame(() => { syncing = false; });
    };
    p.view.addEventListener("scroll", sync(p, q));
    q.view.addEventListener("scroll", sync(q, p));
  } else {
    const imgA = makeImage(A, "Left");
    const imgB = makeImage(B, "Right");
    imgB.classList.add("cmp-top");
    const canvas = h("div", { class: "cmp-canvas" }, imgA, imgB);
    const view = h("div", { class: "cmp-view", tabindex: "0", "aria-label": "Overlaid images, scroll to pan" }, canvas);
    const extras = [];
    if (state.mode === "slider") {
      const divider = h("div", { class: "cmp-divider", "aria-hidden": "true" });
      canvas.append(divider);
      const slider = h("input", { type: "range", class: "cmp-slider", min: "0", max: "100", value: String(state.split), "aria-label": "Slider position: left image on the left, right image on the right" });
      const apply = () => {
        imgB.style.clipPath = `inset(0 0 0 ${state.split}%)`;
        divider.style.left = `${state.split}%`;
        slider.value = String(state.split);
      };
      slider.addEventListener("input", () => { state.split = Number(slider.value); apply(); });
      canvas.addEventListener("pointerdown", (event) => {
        const move = (e) => {
          const rect = canvas.getBoundingClientRect();
          state.split = Math.max(0, Math.min(100, ((e.clientX - rect.left) / rect.width) * 100));
          apply();
        };
        move(event);
        canvas.setPointerCapture(event.pointerId);
        canvas.addEventListener("pointermove", move);
        canvas.addEventListener("pointerup", () => canvas.removeEventListener("pointermove", move), { once: true });
      });
      apply();
      extras.push(slider);
    } else {
      const label = h("div", { class: "cmp-caption", role: "status", "aria-live": "off" });
      const show = () => {
        imgB.style.visibility = state.blinkShowB ? "visible" : "hidden";
        label.textContent = `Showing ${state.blinkShowB ? "right" : "left"} image`;
      };
      show();
      state.blinkTimer = setInterval(() => { state.blinkShowB = !state.blinkShowB; show(); }, 700);
      extras.push(label);
    }
    panes.push({ pane: h("div", { class: "cmp-pane" }, view, ...extras, h("div", { class: "cmp-captions" }, caption(A, "Left"), caption(B, "Right"))), view, canvas, member: A });
  }
  stage.replaceChildren(...panes.map((p) => p.pane));
  const layout = () => panes.forEach((p) => layoutCanvas(p.view, p.canvas, p.member));
  layout();
  requestAnimationFrame(layout);
  state.relayout = layout;
  renderFoot(A, B);
}

function renderFoot(A, B) {
  const others = state.group.members.length - 1;
  const keep = (member) => async () => {
    try {
      await keepOnly(state.group, member);
      toast(`Keep ${member.name}, trash ${others}`);
      if (state.onChange) state.onChange();
      closeCompare();
    } catch (err) {
      toast(`Failed: ${err.message}`, 5000);
    }
  };
  $("#cmp-foot").replaceChildren(
    h("button", { type: "button", class: "btn btn-keep", onclick: keep(A), "aria-keyshortcuts": "a" }, `Keep left, trash ${others === 1 ? "right" : `the other ${others}`}`),
    h("button", { type: "button", class: "btn btn-keep", onclick: keep(B), "aria-keyshortcuts": "d" }, `Keep right, trash ${others === 1 ? "left" : `the other ${others}`}`),
    h("span", { class: "cmp-caption", text: "Keys: 1 side by side · 2 slider · 3 blink · + − 0 zoom · ← → slider · o orientation · Esc close" }),
  );
}

function stopBlink() {
  clearInterval(state.blinkTimer);
  state.blinkTimer = 0;
}

function setMode(mode) {
  state.mode = mode;
  render();
}

function setZoom(index) {
  state.zoom = Math.max(0, Math.min(ZOOMS.length - 1, index));
  $("#cmp-zoom-level").textContent = state.zoom === 0 ? "fit" : `${ZOOMS[state.zoom]}×`;
  if (state.relayout) state.relayout();
}

function nudge(delta) {
  if (state.mode !== "slider") return;
  state.split = Math.max(0, Math.min(100, state.split + delta));
  const slider = document.querySelector("#cmp-stage .cmp-slider");
  if (slider) {
    slider.value = String(state.split);
    slider.dispatchEvent(new Event("input"));
  }
}

export function initCompare(bind) {
  const dlg = dialog();
  dlg.addEventListener("close", stopBlink);
  $("#cmp-close").addEventListener("click", closeCompare);
  $("#cmp-zoom-in").addEventListener("click", () => setZoom(state.zoom + 1));
  $("#cmp-zoom-out").addEventListener("click", () => setZoom(state.zoom - 1));
  $("#cmp-zoom-fit").addEventListener("click", () => setZoom(0));
  $("#cmp-align").addEventListener("change", (e) => { state.align = e.target.checked; render(); });
  for (const input of document.querySelectorAll('input[name="cmp-mode"]')) input.addEventListener("change", () => setMode(input.value));
  $("#cmp-a").addEventListener("change", (e) => { state.a = Number(e.target.value); render(); });
  $("#cmp-b").addEventListener("change", (e) => { state.b = Number(e.target.value); render(); });
  $("#cmp-stage").addEventListener("wheel", (event) => {
    if (!event.ctrlKey) return;
    event.preventDefault();
    setZoom(state.zoom + (event.deltaY < 0 ? 1 : -1));
  }, { passive: false });
  window.addEventListener("resize", () => { if (dlg.open && state.relayout) state.relayout(); });

  bind("compare", ["Escape", "c"], "Close the compare view", () => closeCompare(), "Esc c");
  bind("compare", ["1"], "Side by side", () => setMode("side"));
  bind("compare", ["2"], "Overlay with a slider", () => setMode("slider"));
  bind("compare", ["3", "b"], "Blink between the two images", () => setMode("blink"), "3 b");
  bind("compare", ["+", "="], "Zoom in", () => setZoom(state.zoom + 1), "+");
  bind("compare", ["-"], "Zoom out", () => setZoom(state.zoom - 1), "−");
  bind("compare", ["0"], "Fit to the window", () => setZoom(0));
  bind("compare", ["ArrowLeft"], "Move the slider left", () => nudge(-5), "←");
  bind("compare", ["ArrowRight"], "Move the slider right", () => nudge(5), "→");
  bind("compare", ["o"], "Toggle orientation alignment", () => { state.align = !state.align; render(); });
  bind("compare", ["a"], "Keep the left image, trash the others", () => $("#cmp-foot .btn-keep")?.click());
  bind("compare", ["d"], "Keep the right image, trash the others", () => document.querySelectorAll("#cmp-foot .btn-keep")[1]?.click());
}
