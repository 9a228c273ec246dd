"""Driving the review page from tests: log in, wait, find groups, move with the keyboard."""

from __future__ import annotations

import re
import time


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def login(guarded, daemon):
    page = guarded.page
    page.goto(daemon.login_url)
    page.wait_for_url(re.compile(r"^[^?]*/(#.*)?$"))
    assert "token" not in page.url, "the token stays in the address bar"
    page.wait_for_selector("#st-conn.live", timeout=15_000)
    return page


def group_card(page, file_name: str):
    """Return the group card that holds a member named `file_name`."""
    return page.locator(
        "#group-list .group",
        has=page.locator(".member .name", has_text=re.compile(rf"\b{re.escape(file_name)}$")),
    )


def focus_group_with_keyboard(page, file_name: str) -> None:
    """Press ↓ / ↑ until the current group is the one holding `file_name`."""
    page.locator("#group-list .member").first.focus()
    for key in ["ArrowUp"] * 20 + ["ArrowDown"] * 20:
        current = page.locator("#group-list .group.is-current")
        if current.count() and current.locator(".member .name", has_text=file_name).count():
            return
        page.keyboard.press(key)
    raise AssertionError(f"no group with {file_name} reached with the keyboard")


def images_loaded(page, selector: str = "#cmp-stage img") -> None:
    """Wait until every image matching `selector` is decoded (polled from Python: the page's CSP forbids
    the eval that page.wait_for_function needs)."""
    script = (
        f"Array.from(document.querySelectorAll({selector!r})).every(i => i.complete && i.naturalWidth > 0)"
    )
    wait_for(lambda: page.evaluate(script), timeout=20, what=f"{selector} loaded")


def member_names(card) -> list[str]:
    return [re.sub(r"^\d+\s*", "", n.strip()) for n in card.locator(".member .name").all_inner_texts()]
