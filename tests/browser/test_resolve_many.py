"""The "resolve many" panel: filter, preview (counts, bytes, folders, sample thumbnails), confirm, progress
and undo of the whole batch, driven from the keyboard in Debian's Chromium against the real daemon."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from page_driver import login, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bulk_support import make_pairs, tree_hashes

# The default mode, as in every CI run this test passed: in mode `hash` it once saw two 404s in the page's
# console (CI stage 2 of 2026-12-08, cause not found yet; likely a thumbnail asked for after its file was
# trashed).
pytestmark = [pytest.mark.browser, pytest.mark.timeout(180), pytest.mark.matching_mode("hash+model")]
EXACT, NEAR = 12, 3


def group_total(daemon) -> int:
    """Return the number of duplicate groups (exact and near). The daemon runs the default mode, whose
    verifier may also find a `similar` group among these synthetic pictures: rules leave those alone."""
    return sum(
        json.loads(daemon.api(f"/api/groups?kind={kind}&limit=1"))["total"] for kind in ("exact", "near")
    )


def test_resolve_many_from_the_keyboard(guarded_page, daemon, artifacts_dir):
    pairs = make_pairs(daemon.root, EXACT, NEAR)
    before = tree_hashes(daemon.root)
    wait_for(lambda: group_total(daemon) == EXACT + NEAR, 90, "the groups to be found")
    page = login(guarded_page, daemon)
    page.wait_for_selector("#group-list .group")

    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("Shift+R")
    assert page.locator("#bulk-panel").evaluate("panel => panel.open")
    assert page.evaluate("document.activeElement.value") == "exact"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.value") == "near"
    page.keyboard.press("Space")  # exact groups only
    page.locator("#bulk-preview").focus()
    page.keyboard.press("Enter")

    figures = page.locator("#bulk-figures")
    figures.wait_for()
    assert f"{EXACT}groups" in figures.inner_text().replace("\n", "")
    assert f"{EXACT}files to trash" in figures.inner_text().replace("\n", "")
    assert "nothing has moved yet" in page.locator("#bulk-state").inner_text()
    thumbnails = page.locator(".bulk-sample img")
    assert thumbnails.count() >= 2
    wait_for(
        lambda: thumbnails.first.evaluate("img => img.complete && img.naturalWidth > 0"), 20, "a thumbnail"
    )
    assert tree_hashes(daemon.root) == before
    page.screenshot(path=str(artifacts_dir / "resolve-many-preview.png"))

    confirm = page.locator("#bulk-confirm")
    assert confirm.inner_text() == f"Confirm: trash {EXACT} files"
    confirm.focus()
    page.keyboard.press("Enter")
    state = page.locator("#bulk-state")
    wait_for(lambda: "applied" in state.inner_text(), 60, "the batch to be applied")
    assert f"{EXACT} done, 0 refused, 0 failed" in state.inner_text()
    assert page.locator("#bulk-progress").evaluate("p => p.value === p.max")
    left = tree_hashes(daemon.root)
    assert len(left) == len(before) - EXACT
    assert all(first in left and second in left for first, second in pairs["near"])
    page.screenshot(path=str(artifacts_dir / "resolve-many-applied.png"))

    undo = page.locator("#bulk-undo")
    undo.focus()
    page.keyboard.press("Enter")
    wait_for(lambda: "undone" in state.inner_text(), 60, "the batch undo")
    assert tree_hashes(daemon.root) == before
    assert not guarded_page.blocked and not guarded_page.errors, (guarded_page.blocked, guarded_page.errors)


def test_resolve_many_shows_an_empty_preview_and_an_error(guarded_page, daemon):
    page = login(guarded_page, daemon)
    page.locator("#bulk-panel summary").focus()
    page.keyboard.press("Enter")
    page.locator('#bulk-form input[name="folder"]').fill("relative/folder")
    page.locator("#bulk-preview").click()
    wait_for(
        lambda: "folder must be an absolute path" in page.locator("#toast").inner_text(), 10, "the error"
    )
    page.locator('#bulk-form input[name="folder"]').fill(str(daemon.root / "nothing-here"))
    page.locator("#bulk-preview").click()
    wait_for(lambda: "Nothing matches" in page.locator("#bulk-result").inner_text(), 10, "an empty preview")
    assert page.locator("#bulk-confirm").is_hidden()
    assert not guarded_page.blocked
