"""The review page end to end: real daemon, real photos, Debian's Chromium.

Log in through the printed URL, launch a scan job from the Detector, see the groups appear, choose a keeper
with the keyboard, apply, check the files on disk, undo, and mark a group "not duplicates" for good.
Screenshots of the groups and compare views go to the artifacts folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from page_driver import focus_group_with_keyboard, group_card, images_loaded, login, member_names, wait_for
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def make_corpus(album: Path, write_photo) -> dict[str, bytes]:
    """Write real duplicates into `album`; return {relative path: bytes} of every file written."""
    write_photo(album / "cat.jpg", "chelsea", quality=95)  # 451×300, the original
    write_photo(album / "cat_small.jpg", "chelsea", size=(226, 150), quality=90)  # resized
    write_photo(album / "cat_q50.jpg", "chelsea", quality=50)  # re-encoded
    write_photo(album / "cat_flipped.jpg", "chelsea", quality=95, transpose=Image.Transpose.FLIP_LEFT_RIGHT)
    write_photo(album / "coffee.png", "coffee")
    (album / "copies").mkdir()
    (album / "copies" / "coffee.png").write_bytes((album / "coffee.png").read_bytes())  # exact copy
    write_photo(album / "astronaut.jpg", "astronaut")  # no duplicate
    return {str(p.relative_to(album)): p.read_bytes() for p in sorted(album.rglob("*")) if p.is_file()}


def test_review_flow(guarded_page, daemon, write_photo, artifacts_dir):
    album = daemon.root / "album"
    originals = make_corpus(album, write_photo)
    page = login(guarded_page, daemon)

    # Detector: launch a scan job on the folder; progress shows; the job ends.
    page.keyboard.press("d")
    page.wait_for_selector("#view-detector:not([hidden])")
    page.fill("#job-path", str(album))
    page.check('#job-form input[name="recursive"]')
    page.click("#job-launch")
    page.wait_for_selector("#job-list .job")
    page.wait_for_selector('#job-list .job[data-state="done"]', timeout=60_000)
    # The status bar follows through the event stream: seven files indexed, two groups.
    wait_for(
        lambda: page.inner_text("#st-files") == "7" and page.inner_text("#st-groups") == "2",
        what="live status",
    )

    # Groups appear: the four cats together, the two coffees together, the astronaut alone.
    page.keyboard.press("g")
    cats = group_card(page, "cat.jpg")
    cats.wait_for(timeout=30_000)
    wait_for(lambda: len(member_names(cats)) == 4, what="the four cats in one group")
    assert sorted(member_names(cats)) == ["cat.jpg", "cat_flipped.jpg", "cat_q50.jpg", "cat_small.jpg"]
    coffees = group_card(page, "coffee.png")
    coffees.wait_for()
    assert member_names(coffees) == ["coffee.png", "coffee.png"]
    assert page.locator("#group-list .member .name", has_text="astronaut.jpg").count() == 0
    assert cats.locator(".member.is-suggested").count() == 1
    images_loaded(page, "#group-list .thumb img")
    page.set_viewport_size({"width": 1400, "height": 1250})  # both groups, facts included
    page.screenshot(path=str(artifacts_dir / "groups-view.png"))
    page.set_viewport_size({"width": 1400, "height": 900})

    # Compare view from the keyboard: side by side, then the slider overlay.
    focus_group_with_keyboard(page, "cat.jpg")
    page.keyboard.press("c")
    page.wait_for_selector("#compare[open] .cmp-view img")
    images_loaded(page)
    page.screenshot(path=str(artifacts_dir / "compare-side-by-side.png"))
    page.keyboard.press("2")
    page.wait_for_selector("#cmp-stage .cmp-slider")
    images_loaded(page)
    page.screenshot(path=str(artifacts_dir / "compare-slider.png"))
    # Zoom doubles the canvas; blink alternates the two images; 0 fits again.
    width = page.evaluate("document.querySelector('#cmp-stage .cmp-canvas').offsetWidth")
    page.keyboard.press("+")
    page.keyboard.press("+")
    assert page.inner_text("#cmp-zoom-level") == "2×"
    zoomed = page.evaluate("document.querySelector('#cmp-stage .cmp-canvas').offsetWidth")
    assert abs(zoomed - 2 * width) <= 2, (width, zoomed)
    page.keyboard.press("3")
    shown = {page.inner_text("#cmp-stage [role=status]")}
    wait_for(lambda: shown.add(page.inner_text("#cmp-stage [role=status]")) or len(shown) == 2, what="blink")
    page.keyboard.press("0")
    assert page.inner_text("#cmp-zoom-level") == "fit"
    page.keyboard.press("Escape")
    page.wait_for_selector("#compare:not([open])", state="attached")

    # Choose the original as keeper with the keyboard: its number keeps it and trashes the rest.
    focus_group_with_keyboard(page, "cat.jpg")
    names = member_names(cats)
    page.keyboard.press(str(names.index("cat.jpg") + 1))
    wait_for(
        lambda: (
            cats.locator(".member.is-trash").count() == 3 and cats.locator(".member.is-keep").count() == 1
        ),
        what="keep 1 / trash 3 marked",
    )
    assert "cat.jpg" in cats.locator(".member.is-keep .name").inner_text()

    # Queue: counts, apply, journal.
    page.keyboard.press("q")
    page.wait_for_selector("#view-queue:not([hidden])")
    wait_for(lambda: page.locator("#queue-list tbody tr").count() == 4, what="four queued decisions")
    summary = page.locator("#queue-summary").inner_text()
    assert re.search(r"\b3\s+to trash", summary), summary
    page.click("#apply-button")
    undo_buttons = page.locator("#journal-list button", has_text="Undo")
    wait_for(lambda: undo_buttons.count() == 3, what="three undoable actions in the journal")

    # On disk: the keeper is in place, byte for byte; the three others are in the trash, byte for byte.
    assert (album / "cat.jpg").read_bytes() == originals["cat.jpg"]
    for name in ("cat_small.jpg", "cat_q50.jpg", "cat_flipped.jpg"):
        assert not (album / name).exists(), f"{name} is still in place"
        in_trash = [p for p in daemon.trash.rglob(name) if p.is_file()]
        assert len(in_trash) == 1, f"{name} not (once) in the trash: {in_trash}"
        assert in_trash[0].read_bytes() == originals[name]

    # Undo puts every file back, byte-identical.
    for left in (2, 1, 0):
        undo_buttons.first.click()
        wait_for(lambda left=left: undo_buttons.count() == left, what=f"{left} undoable actions left")
    wait_for(
        lambda: all((album / n).exists() for n in ("cat_small.jpg", "cat_q50.jpg", "cat_flipped.jpg")),
        what="files restored by undo",
    )
    for name, content in originals.items():
        assert (album / name).read_bytes() == content, f"{name} differs after undo"
    assert not [p for p in daemon.trash.rglob("*.jpg") if p.is_file()]

    # Move: "m" sends the current image to the configured move target; apply; undo brings it back.
    page.keyboard.press("g")
    wait_for(lambda: len(member_names(cats)) == 4, what="the cats regrouped after undo")
    focus_group_with_keyboard(page, "cat.jpg")
    for _ in range(member_names(cats).index("cat_small.jpg")):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("m")
    wait_for(lambda: cats.locator(".member.is-move").count() == 1, what="one image marked to move")
    assert "cat_small.jpg" in cats.locator(".member.is-move .name").inner_text()
    page.keyboard.press("q")
    wait_for(lambda: page.locator("#queue-list tbody tr").count() == 1, what="one queued move")
    page.click("#apply-button")
    wait_for(lambda: undo_buttons.count() == 1, what="the move in the journal")
    moved = [p for p in daemon.archive.rglob("cat_small.jpg") if p.is_file()]
    assert len(moved) == 1 and moved[0].read_bytes() == originals["cat_small.jpg"]
    assert not (album / "cat_small.jpg").exists()
    undo_buttons.first.click()
    wait_for(lambda: (album / "cat_small.jpg").exists(), what="the moved file restored")
    assert (album / "cat_small.jpg").read_bytes() == originals["cat_small.jpg"]

    # "Not duplicates": the coffee group disappears, and stays gone after a reload.
    page.keyboard.press("g")
    coffees.wait_for()
    # A key pressed while the list re-renders (the cats' regrouping after the undo) can be lost: that is a
    # known race of the page (see the closing note of 2026-12-08), so the key is pressed again until it
    # takes, at most three times; "not duplicates" twice on one group is the same decision.
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # here: without it the tests skip

    for attempt in range(3):
        focus_group_with_keyboard(page, "coffee.png")
        page.keyboard.press("n")
        try:
            coffees.wait_for(state="detached", timeout=8_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    page.reload()
    page.wait_for_selector("#st-conn.live")
    group_card(page, "cat.jpg").wait_for(timeout=30_000)
    assert group_card(page, "coffee.png").count() == 0
    page.select_option('#group-filters select[name="state"]', "")  # all states
    page.wait_for_timeout(800)
    assert group_card(page, "coffee.png").count() == 0

    # ... and after another scan of the folder.
    page.keyboard.press("d")
    page.fill("#job-path", str(album))
    page.click("#job-launch")
    wait_for(
        lambda: page.locator('#job-list .job[data-state="done"]').count() == 2, timeout=60, what="second scan"
    )
    page.keyboard.press("g")
    group_card(page, "cat.jpg").wait_for()
    page.wait_for_timeout(800)
    assert group_card(page, "coffee.png").count() == 0

    # Nothing was loaded from anywhere but the daemon, and the page raised no error.
    assert guarded_page.blocked == []
    assert [e for e in guarded_page.errors if "pageerror" in e] == []


def test_shortcuts_focus_and_labels(guarded_page, daemon, artifacts_dir):
    # Without the login link the page says how to log in, and the API stays closed.
    page = guarded_page.page
    page.goto(daemon.base_url + "/")
    page.wait_for_selector("#banner:not([hidden])")
    assert "login link" in page.locator("#banner").inner_text()
    assert page.locator("#group-list .group").count() == 0

    page = login(guarded_page, daemon)
    page.wait_for_selector("#banner", state="hidden")
    page.keyboard.press("?")
    page.wait_for_selector("#help[open]")
    help_text = page.locator("#help-body").inner_text()
    for words in (
        "Keep the suggested image",
        "Not duplicates",
        "Compare",
        "Apply the queued decisions",
        "Zoom in",
    ):
        assert words in help_text
    page.keyboard.press("Escape")
    page.wait_for_selector("#help:not([open])", state="attached")

    # Every control has a name a screen reader can read.
    unnamed = page.evaluate(
        """() => Array.from(document.querySelectorAll('button, input, select, a[href]'))
            .filter(el => !el.closest('dialog:not([open])') && el.offsetParent !== null)
            .filter(el => !(el.getAttribute('aria-label') || el.labels?.length
                             || el.textContent.trim() || el.title))
            .map(el => el.outerHTML.slice(0, 80))"""
    )
    assert unnamed == []

    # Focus is visible: a tabbed-to control draws an outline.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")

    # Tablet width: nothing overflows sideways.
    page.set_viewport_size({"width": 820, "height": 1180})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert guarded_page.blocked == []
