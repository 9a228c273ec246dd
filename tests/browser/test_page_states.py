"""What the page says while it waits, how it wraps paths and how it names space (issue 10), in Chromium.

The page must not claim "No duplicates to review" before its first answer; a path may wrap only after a
"/" (never inside a name); the queue's space is "to free" until the queue is applied.
"""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from page_driver import group_card, login, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

# Folder names with spaces and long words: a break inside any of them is a break inside a name.
DEEP = ("Holiday photos 2024", "Summer in Brittany", "Saint-Malo and Cancale", "best shots selected")

# For each element matching the selector: its text, split at "/", and whether each name lies on one line
# (a Range over the name's characters has client rects on one line only). Returns the names that broke.
BROKEN_NAMES = """(selector) => {
  const broken = [];
  let wrapped = 0;
  for (const el of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    const chars = [];
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      for (let i = 0; i < n.data.length; i++) chars.push([n, i]);
    }
    const text = chars.map(([n, i]) => n.data[i]).join("");
    const lines = (a, b) => {
      const range = document.createRange();
      range.setStart(chars[a][0], chars[a][1]);
      range.setEnd(chars[b - 1][0], chars[b - 1][1] + 1);
      // A rect that starts below the bottom of the line so far starts a new line (rects of one line may
      // have different tops: a smaller font, a badge).
      const rects = Array.from(range.getClientRects()).filter((r) => r.width > 0);
      rects.sort((p, q) => p.top - q.top);
      let count = 0;
      let bottom = -Infinity;
      for (const r of rects) {
        if (r.top >= bottom - 1) {
          count += 1;
          bottom = r.bottom;
        } else bottom = Math.max(bottom, r.bottom);
      }
      return count;
    };
    if (text.length && lines(0, text.length) > 1) wrapped += 1;
    let start = 0;
    for (let i = 0; i <= text.length; i++) {
      if (i === text.length || text[i] === "/") {
        if (i > start && lines(start, i) > 1) broken.push(text.slice(start, i));
        start = i + 1;
      }
    }
  }
  return { broken, wrapped };
}"""


def api_json(daemon, method: str, path: str, body=None):
    request = urllib.request.Request(
        daemon.base_url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {daemon.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_loading_then_the_truth_paths_wrap_at_slashes_and_space_is_to_free(
    guarded_page, daemon, write_photo, artifacts_dir
):
    folder = daemon.root.joinpath(*DEEP)
    original = write_photo(folder / "cat.jpg", "chelsea", quality=95)
    (folder / "cat copy.jpg").write_bytes(original.read_bytes())
    wait_for(lambda: json.loads(daemon.api("/api/groups"))["total"] == 1, what="the group indexed")

    # Hold every answer of /api/groups until the page has drawn its first state.
    held = []

    def hold(route):
        held.append(route)

    guarded_page.page.route(re.compile(r".*/api/groups(\?.*)?$"), hold)
    page = login(guarded_page, daemon)
    wait_for(lambda: page.inner_text("#st-groups") == "1" and held, what="status shown, groups asked for")
    text = page.inner_text("#group-list")
    assert "No duplicates" not in text and "Loading" in text, text
    page.unroute(re.compile(r".*/api/groups(\?.*)?$"))
    for route in held:
        route.continue_()
    card = group_card(page, "cat.jpg")
    card.wait_for(timeout=30_000)
    assert "Loading" not in page.inner_text("#group-list")

    # Narrow window: paths wrap, but only after a slash.
    page.set_viewport_size({"width": 520, "height": 900})
    result = page.evaluate(BROKEN_NAMES, "#group-list .folder, #group-list .name")
    assert result["broken"] == [], result

    # The queue: a trash decision frees nothing yet.
    member = api_json(daemon, "GET", "/api/groups")["groups"][0]["members"][-1]
    api_json(daemon, "POST", "/api/decisions", {"action": "trash", "file_id": member["file_id"]})
    page.keyboard.press("q")
    page.wait_for_selector("#view-queue:not([hidden])")
    wait_for(lambda: page.locator("#queue-list td.path").count() == 1, what="the queued decision")
    summary = page.inner_text("#queue-summary")
    assert "to free" in summary and "freed" not in summary, summary
    result = page.evaluate(BROKEN_NAMES, "#queue-list td.path")
    assert result["broken"] == [] and result["wrapped"] == 1, result
    page.screenshot(path=str(artifacts_dir / "queue-narrow.png"))

    page.click("#apply-button")
    wait_for(lambda: "freed" in page.inner_text("#apply-result"), what="the apply result")
    wait_for(lambda: page.locator("#journal-list td.path").count() == 2, what="the journal")
    result = page.evaluate(BROKEN_NAMES, "#journal-list td.path")
    assert result["broken"] == [] and result["wrapped"] >= 1, result
    assert not guarded_page.errors, guarded_page.errors
