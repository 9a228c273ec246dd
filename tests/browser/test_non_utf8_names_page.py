"""The review page shows a file name that is not valid UTF-8: real daemon, real inotify, Debian's Chromium.

The API sends the name's odd byte as a JSON `\\udce9` escape; `JSON.parse` gives the page a string with that
lone surrogate, which the page puts in the DOM as text, where Chromium draws it as U+FFFD (`caf�.jpg`);
the exact path stays in the member's title.
"""

from __future__ import annotations

import os

import pytest
from page_driver import group_card, login, member_names, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def test_a_non_utf8_name_is_shown_in_its_group(guarded_page, daemon, write_photo, artifacts_dir):
    album = daemon.root / "album"
    original = write_photo(album / "cat.jpg", "chelsea")
    with open(os.fsencode(album) + b"/caf\xe9.jpg", "wb") as copy:  # Latin-1 "café.jpg", dropped in
        copy.write(original.read_bytes())
    page = login(guarded_page, daemon)
    page.keyboard.press("g")
    card = group_card(page, "cat.jpg")
    card.wait_for(timeout=30_000)
    wait_for(lambda: len(member_names(card)) == 2, what="the copy joins the group")
    assert sorted(member_names(card)) == ["caf\udce9.jpg", "cat.jpg"]  # the DOM text holds the surrogate
    titles = card.locator(".member .name").evaluate_all(
        "nodes => nodes.map(n => Array.from(n.title, c => c.codePointAt(0).toString(16)).join(' '))"
    )
    assert any(t.endswith("63 61 66 dce9 2e 6a 70 67") for t in titles), titles  # caf\udce9.jpg, exact
    page.screenshot(path=str(artifacts_dir / "non-utf8-name.png"))
    assert guarded_page.errors == []
