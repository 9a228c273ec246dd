"""The `similar` tier on the review page, in Chromium: a burst found by the daemon's learned verifier shows
as a `similar` group (badge, best shot with its reason, nothing suggested for the trash), the kind filter
shows it alone, and every judged pair shows the verifier's verdict and confidence."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from page_driver import group_card, login, wait_for

from comparimg.config import MatchingSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import verifier_pairs

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.matching_mode("hash+model"),
    pytest.mark.skipif(
        "mode" not in MatchingSettings.__dataclass_fields__,
        reason="the daemon has no matching.mode setting yet (the model stage's configuration)",
    ),
]


def write_burst(folder: Path) -> None:
    """Two synthetic shots of one scene (the verifier's training kind `burst`, from scikit-image's cat)."""
    photos = verifier_pairs.load_photos(None)
    pairs = verifier_pairs.similar_pairs("ski_chelsea", photos["ski_chelsea"], np.random.default_rng(0))
    shots = next(p for p in pairs if p.kind == "burst")
    folder.mkdir(parents=True)
    shots.a.save(folder / "shot-1.jpg", quality=90)
    shots.b.save(folder / "shot-2.jpg", quality=90)


def test_a_burst_is_a_similar_group_with_a_badge_a_filter_and_verdicts(
    guarded_page, daemon, write_photo, artifacts_dir
):
    write_photo(daemon.root / "astronaut.jpg", "astronaut")
    write_photo(daemon.root / "copies" / "astronaut-small.png", "astronaut", size=(256, 256))
    write_burst(daemon.root / "burst")

    def totals():
        every = json.loads(daemon.api("/api/groups"))["total"]
        similar = json.loads(daemon.api("/api/groups?kind=similar"))
        return every == 2 and similar["total"] == 1 and similar

    similar = wait_for(totals, timeout=180, what="one near and one similar group")
    shots = similar["groups"][0]["members"]
    assert {m["suggested"] for m in shots} == {"keep"}
    assert sum(1 for m in shots if m["reason"]) == 1
    assert [m["verdict"] for m in shots if m["verdict"]] == ["similar"]

    page = login(guarded_page, daemon)
    burst = group_card(page, "shot-1.jpg")
    burst.wait_for(timeout=30_000)
    assert burst.locator(".kind").inner_text().lower() == "similar"
    assert "kind-similar" in burst.locator(".kind").get_attribute("class")
    assert burst.locator(".badge", has_text="Best shot").count() == 1
    assert "to free" not in burst.locator(".group-meta").inner_text()
    assert burst.locator(".member.is-suggested").count() == 1, "one pick, not a keeper among trash"
    facts = " ".join(burst.locator(".facts").all_inner_texts())
    assert re.search(r"similar, \d+ % sure", facts), facts
    assert "shots" in facts, "the pick says why"
    copies = group_card(page, "astronaut-small.png")
    assert re.search(r"duplicate, \d+ % sure", " ".join(copies.locator(".facts").all_inner_texts()))
    page.screenshot(path=str(artifacts_dir / "similar-group.png"), full_page=True)

    page.select_option('#group-filters select[name="kind"]', "similar")
    wait_for(lambda: page.locator("#group-list .group").count() == 1, what="only the similar group")
    assert [t.lower() for t in page.locator("#group-list .group .kind").all_inner_texts()] == ["similar"]
    assert group_card(page, "shot-2.jpg").count() == 1
    page.select_option('#group-filters select[name="kind"]', "near")
    wait_for(lambda: group_card(page, "astronaut.jpg").count() == 1, what="the near group alone")
    assert page.locator("#group-list .group").count() == 1
    assert not guarded_page.errors, guarded_page.errors
