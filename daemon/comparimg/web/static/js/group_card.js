// One group card of the groups view: the members side by side with their facts, the suggested keeper
// highlighted, keep / trash / move buttons. Pure rendering: the actions come in as callbacks.

import { h, pathText } from "./dom.js";
import { formatBytes, formatDate, orientationLabel } from "./format.js";
import { store } from "./store.js";

export function memberState(member) {
  const d = store.byFile.get(member.id) || (member.decision && member.decision.state === "queued" ? member.decision : null);
  return d ? d.action : null;
}

function groupSummary(group) {
  const sizes = group.members.map((m) => Number(m.size || 0));
  const keeper = group.members.find((m) => m.suggested) || group.members[0];
  const freed = sizes.reduce((a, b) => a + b, 0) - Number(keeper?.size || 0);
  const decided = group.members.filter((m) => memberState(m)).length;
  return { freed, decided };
}

/**
 * Return the card of `group` (at `index` on the page). `on` holds the actions its controls call:
 * keepSuggested, compareGroup, markNotDuplicates, clearGroup, toggle, filterFolder, focused.
 */
export function renderGroup(group, index, on) {
  const { freed, decided } = groupSummary(group);
  const title = `Group ${group.id}`;
  const headingId = `group-${group.id}-title`;
  return h("article", {
    class: `group${decided === group.members.length ? " is-decided" : ""}`,
    "aria-labelledby": headingId,
    dataset: { groupId: group.id, index },
    onfocusin: (event) => {
      const fig = event.target.closest(".member");
      on.focused(index, fig ? Number(fig.dataset.index) : null);
    },
  },
    h("div", { class: "group-head" },
      h("h3", { id: headingId, text: title }),
      h("span", { class: `kind kind-${group.kind}`, text: group.kind,
        title: group.kind === "similar" ? "Shots of one scene, not duplicates: nothing is suggested for the trash" : null }),
      h("span", { class: "group-meta", text: `${group.members.length} images · ${group.kind === "similar" ? "shots of one scene, nothing suggested for the trash" : `${formatBytes(freed)} to free`}${decided ? ` · ${decided}/${group.members.length} decided` : ""}` }),
      h("div", { class: "group-actions" },
        h("button", { type: "button", class: "btn btn-small", "aria-keyshortcuts": "s", title: "Keep the suggested image, trash the rest (s)",
          onclick: () => on.keepSuggested(index) }, group.kind === "similar" ? "Keep best shot, trash rest" : "Keep suggested, trash rest"),
        h("button", { type: "button", class: "btn btn-small", "aria-keyshortcuts": "c", title: "Compare two images (c)",
          onclick: () => on.compareGroup(index) }, "Compare"),
        h("button", { type: "button", class: "btn btn-small", "aria-keyshortcuts": "n", title: "These are not duplicates (n)",
          onclick: () => on.markNotDuplicates(index) }, "Not duplicates"),
        decided ? h("button", { type: "button", class: "btn btn-small", "aria-keyshortcuts": "u", title: "Clear this group's decisions (u)",
          onclick: () => on.clearGroup(index) }, "Clear") : null,
      ),
    ),
    h("div", { class: "members", role: "list" }, group.members.map((m, i) => renderMember(group, index, m, i, on))),
  );
}

function renderMember(group, groupIndex, member, i, on) {
  const state = memberState(member);
  const classes = ["member"];
  if (member.suggested) classes.push("is-suggested");
  if (member.fileState !== "ok") classes.push("is-gone");
  if (state) classes.push(`is-${state === "not_duplicates" ? "keep" : state}`);
  const facts = [
    ["Size", `${member.width ?? "?"}×${member.height ?? "?"} · ${formatBytes(member.size)}`],
    ["Format", (member.format || "—").toUpperCase()],
    ["Date", formatDate(member.mtime)],
  ];
  if (member.reference) facts.push(["Folder", "reference (always kept)"]);
  if (member.fileState !== "ok") facts.push(["File", member.fileState === "missing" ? "missing from disk" : member.fileState]);
  if (group.kind !== "exact") {
    facts.push(["Distance", String(member.distance)]);
    facts.push(["Turned", orientationLabel(member.orientation)]);
  }
  if (member.verdict) facts.push(["Verifier", verdictText(member)]);
  if (member.reason) facts.push(["Pick", member.reason]);
  const suggestion = group.kind === "similar" ? ", suggested pick" : ", suggested keeper";
  const label = `Image ${i + 1} of ${group.members.length}: ${member.name}${member.suggested ? suggestion : ""}${state ? `, marked ${state}` : ""}`;
  const pressed = (action) => (state === action ? "true" : "false");
  const moveControl = renderMoveControl(member, state, on);
  return h("figure", {
    class: classes.join(" "),
    role: "listitem",
    tabindex: "-1",
    "aria-label": label,
    dataset: { fileId: member.id, index: i },
  },
    member.suggested ? h("span", { class: "badge", text: group.kind === "similar" ? "Best shot" : "Suggested" }) : null,
    state ? h("span", { class: "decision-badge", "aria-hidden": "true", text: state === "not_duplicates" ? "not dup" : state }) : null,
    h("button", { type: "button", class: "thumb", "aria-label": `Compare ${member.name}`, onclick: () => on.compareGroup(groupIndex, i) },
      h("img", { src: member.thumbnail, alt: "", loading: "lazy", decoding: "async",
        onerror: (event) => event.target.replaceWith(h("span", { class: "thumb-missing", text: "no preview" })) })),
    h("figcaption", {},
      h("div", { class: "name", title: member.path }, h("span", { class: "index-key", "aria-hidden": "true", text: i < 9 ? `${i + 1} ` : "" }), pathText(member.name)),
      h("button", { type: "button", class: "folder linklike", title: `Show only groups in ${member.folder}`,
        "aria-label": `Show only groups in folder ${member.folder}`, onclick: () => on.filterFolder(member.folder) }, pathText(shortFolder(member.folder))),
    ),
    h("dl", { class: "facts" }, facts.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])),
    h("div", { class: "member-actions" },
      h("button", { type: "button", class: "btn btn-keep", "aria-pressed": pressed("keep"), "aria-keyshortcuts": "k",
        "aria-label": `Keep ${member.name}`, onclick: () => on.toggle(member, "keep") }, "Keep"),
      h("button", { type: "button", class: "btn btn-trash", "aria-pressed": pressed("trash"), "aria-keyshortcuts": "t",
        "aria-label": `Trash ${member.name}`, onclick: () => on.toggle(member, "trash") }, "Trash"),
      moveControl,
    ),
  );
}

function renderMoveControl(member, state, on) {
  const targets = store.moveTargets;
  if (!targets.length) return null;
  if (targets.length === 1) {
    return h("button", { type: "button", class: "btn btn-move", "aria-pressed": state === "move" ? "true" : "false", "aria-keyshortcuts": "m",
      "aria-label": `Move ${member.name} to ${targets[0]}`, title: `Move to ${targets[0]}`, onclick: () => on.toggle(member, "move", targets[0]) }, "Move");
  }
  const current = store.byFile.get(member.id);
  return h("select", { class: "btn btn-move", "aria-label": `Move ${member.name} to…`,
    onchange: (event) => event.target.value && on.toggle(member, "move", event.target.value) },
    h("option", { value: "", text: "Move to…" }),
    targets.map((t) => h("option", { value: t, text: t, selected: current?.action === "move" && current.target === t })),
  );
}

/** "duplicate, 97 % sure": the learned verifier's verdict on the member's pair with the group's leader. */
export function verdictText(member) {
  const sure = member.confidence === null ? "" : `, ${Math.round(member.confidence * 100)} % sure`;
  return `${member.verdict}${sure}`;
}

/** The end of a long folder path (the part that tells copies apart); the whole path is in the title. */
function shortFolder(folder, max = 36) {
  if (folder.length <= max) return folder;
  const tail = folder.slice(-(max - 1));
  const cut = tail.indexOf("/");
  return `…${cut > 0 && cut < 20 ? tail.slice(cut) : tail}`;
}
