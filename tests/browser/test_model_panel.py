"""The duplicate verifier's panel on the review page (Queue view), in Chromium: which model is in use, the
labels the decisions left, and the retrain button with its outcome."""

from __future__ import annotations

import json
import urllib.request

import pytest
from page_driver import login, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180), pytest.mark.matching_mode("hash+model")]


def post(daemon, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        daemon.base_url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {daemon.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_the_panel_shows_the_model_its_labels_and_a_retraining(guarded_page, daemon, write_photo):
    write_photo(daemon.root / "coffee.jpg", "coffee", size=(300, 200))
    write_photo(daemon.root / "coffee-small.png", "coffee", size=(150, 100), fmt="PNG")
    group = wait_for(
        lambda: json.loads(daemon.api("/api/groups"))["groups"], timeout=60, what="the coffees grouped"
    )[0]
    page = login(guarded_page, daemon)
    page.keyboard.press("q")
    page.wait_for_selector("#view-queue:not([hidden])")
    wait_for(lambda: page.inner_text("#model-in-use") == "the shipped model", what="the model in use")
    assert page.inner_text("#model-labels") == "0 labels; a retraining needs 10."
    assert page.inner_text("#model-outcome") == "Not retrained yet."
    assert not page.is_visible("#model-restore") and not page.is_visible("#model-problem")

    # A "not duplicates" mark is a label: the panel follows the decision event.
    ids = [member["file_id"] for member in group["members"]]
    post(daemon, "/api/decisions", {"action": "not_duplicates", "file_ids": ids})
    wait_for(lambda: page.inner_text("#model-labels").startswith("1 label (1 different)"), what="the label")

    page.click("#model-retrain")
    wait_for(lambda: "too few labels" in page.inner_text("#model-outcome"), what="the retraining's outcome")
    outcome = page.inner_text("#model-outcome")
    assert outcome.startswith("Last retraining, 1 labels: not adopted — too few labels: 1 (at least 10)")
    assert page.inner_text("#model-in-use") == "the shipped model"
    assert page.is_enabled("#model-retrain") and not page.is_visible("#model-restore")
    assert not guarded_page.errors, guarded_page.errors
