"""The groups view stays smooth with 10 000 groups.

The page is the real one, served and logged in by the real daemon; only `GET /api/groups` is answered by
the test with synthetic pages of a 10 000-group collection, so what is measured is the page: it renders one
page at a time, turns pages quickly and keeps the keyboard responsive, whatever the total.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from page_driver import login, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

TOTAL = 10_000
PIXEL = "data:image/gif;base64,R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw=="


def synthetic_page(offset: int, limit: int) -> dict:
    groups = []
    for group_id in range(offset + 1, min(offset + limit, TOTAL) + 1):
        members = []
        for k in range(2 + group_id % 3):
            file_id = group_id * 10 + k
            members.append(
                {
                    "file_id": file_id,
                    "path": f"/photos/album{group_id % 50}/IMG_{file_id:06d}.jpg",
                    "size": 2_000_000 - k * 300_000,
                    "width": 4000 - k * 800,
                    "height": 3000 - k * 600,
                    "format": "JPEG",
                    "mtime_ns": 1_700_000_000_000_000_000 + file_id * 10**9,
                    "distance": 0 if k == 0 else k + 1,
                    "orientation": "identity" if k < 2 else "flip_h",
                    "suggested": "keep" if k == 0 else "trash",
                    "state": "ok",
                    "reference": False,
                    "decision": None,
                    "thumbnail_url": PIXEL,
                    "content_url": PIXEL,
                }
            )
        groups.append(
            {
                "id": group_id,
                "kind": "near" if group_id % 3 else "exact",
                "leader": group_id * 10,
                "state": "pending",
                "created": 1_700_000_000.0,
                "decided": 0,
                "freed": 0,
                "members": members,
            }
        )
    return {"groups": groups, "total": TOTAL, "limit": limit, "offset": offset}


def test_ten_thousand_groups_page_smoothly(guarded_page, daemon):
    page = guarded_page.page
    requests: list[str] = []

    def groups_route(route, request):
        query = parse_qs(urlsplit(request.url).query)
        requests.append(request.url)
        body = synthetic_page(int(query.get("offset", ["0"])[0]), int(query.get("limit", ["50"])[0]))
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route(re.compile(r".*/api/groups(\?.*)?$"), groups_route)
    login(guarded_page, daemon)
    page.select_option('#group-filters select[name="limit"]', "100")
    wait_for(lambda: page.locator("#group-list .group").count() == 100, what="a page of 100 groups")
    assert "of 10,000" in page.locator("#pager-top").inner_text()

    # Ten page turns from the keyboard: each one replaces the page, nothing accumulates.
    page.locator("#group-list .member").first.focus()
    started = time.monotonic()
    for n in range(2, 12):
        page.keyboard.press("]")
        wait_for(
            lambda n=n: (
                page.locator("#group-list .group h3").first.inner_text() == f"Group {(n - 1) * 100 + 1}"
            ),
            timeout=10,
            what=f"page {n}",
        )
    turns = time.monotonic() - started
    assert page.locator("#group-list .group").count() == 100
    nodes = page.evaluate("document.querySelectorAll('#group-list *').length")
    assert nodes < 12_000, nodes
    assert turns < 10, f"ten page turns took {turns:.1f}s"

    # Jump to the last page with the End key; the last group is there.
    page.keyboard.press("End")
    wait_for(
        lambda: page.locator("#group-list .group h3").last.text_content() == f"Group {TOTAL}",
        timeout=10,
        what="the last page",
    )

    # Moving through a page with the arrow keys stays quick.
    page.keyboard.press("Home")
    wait_for(
        lambda: page.locator("#group-list .group h3").first.inner_text() == "Group 1",
        timeout=10,
        what="the first page",
    )
    page.locator("#group-list .member").first.focus()
    started = time.monotonic()
    for _ in range(60):
        page.keyboard.press("ArrowDown")
    assert page.locator("#group-list .group.is-current h3").inner_text() == "Group 61"
    assert time.monotonic() - started < 10
    assert all("limit=100" in url for url in requests[-3:])
    assert guarded_page.blocked == []
