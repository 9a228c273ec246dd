"""Accuracy on the benchmark corpora and the cost of hashing and verification.

Run: pytest -m benchmark tests/benchmarks/test_accuracy_corpus.py -s
Corpora (built by ../shared/bench): COMPARIMG_CORPUS_PUB, COMPARIMG_CORPUS_HARD, COMPARIMG_CORPUS_CAMERA
(default /work/corpus/pub, /work/corpus/hard, /work/corpus/camera/jpg); a missing corpus skips its test.
"""

from __future__ import annotations

import collections
import csv
import itertools
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import imagehash
import pytest
from PIL import Image

from comparimg import hashing
from comparimg.matching import HashIndex, group_matches
from comparimg.model import Candidate, FileFacts, Match

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(3600)]

PUB = Path(os.environ.get("COMPARIMG_CORPUS_PUB", "/work/corpus/pub"))
HARD = Path(os.environ.get("COMPARIMG_CORPUS_HARD", "/work/corpus/hard"))
CAMERA = Path(os.environ.get("COMPARIMG_CORPUS_CAMERA", "/work/corpus/camera/jpg"))
PROCESSES = 2
MUST_BE_PERFECT = ("resize", "jpeg", "bright", "contrast", "gray", "bmp", "flip", "rot")


def manifest(corpus: Path) -> list[dict[str, str]]:
    if not (corpus / "manifest.tsv").exists():
        pytest.skip(f"no corpus at {corpus}")
    with open(corpus / "manifest.tsv") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def verify(args: tuple[str, str, Candidate]) -> tuple[bool, float]:
    start = time.perf_counter()
    verdict = hashing.verify_pair(*args)
    return verdict.matched, time.perf_counter() - start


def run_engine(paths: list[str], verified: bool = True) -> tuple[list[set[str]], list[float]]:
    """Given paths, return the duplicate groups (sets of paths) and the seconds each verification took.
    Without `verified`: global hashes only, every candidate accepted (the engine before issue 6)."""
    with ProcessPoolExecutor(PROCESSES) as pool:
        prints = dict(enumerate(pool.map(hashing.fingerprint_file, paths, chunksize=8)))
    facts = {
        i: FileFacts(i, paths[i], 0, fp.width, fp.height, 0, fp.format, fp.content_hash)
        for i, fp in prints.items()
    }
    index = HashIndex() if verified else HashIndex(window_threshold=-1)
    matches, to_verify = [], []
    for i, fp in prints.items():
        for candidate in index.query(fp):
            pair = (min(i, candidate.file_id), max(i, candidate.file_id))
            if prints[candidate.file_id].content_hash == fp.content_hash:
                matches.append(Match(*pair, "exact", 0, 0))
            elif verified:
                to_verify.append((pair, candidate, (paths[i], paths[candidate.file_id], candidate)))
            else:
                matches.append(Match(*pair, "near", candidate.distance, candidate.orientation))
        index.add(i, fp)
    with ProcessPoolExecutor(PROCESSES) as pool:
        outcomes = list(pool.map(verify, [args for _, _, args in to_verify], chunksize=4))
    for (pair, candidate, _), (matched, _) in zip(to_verify, outcomes, strict=True):
        if matched:
            matches.append(Match(*pair, "near", candidate.distance, candidate.orientation))
    groups = [{paths[m.file_id] for m in g.members} for g in group_matches(facts, matches)]
    return groups, [seconds for _, seconds in outcomes]


def score(
    corpus: Path, rows: list[dict[str, str]], groups: list[set[str]]
) -> tuple[dict[str, float], int, float]:
    """Given the manifest and groups, return recall per transform, the number of false pairs, and the
    overall recall (as ../shared/bench/score.py counts them)."""
    photo = {str(corpus / row["path"]): row["group"] for row in rows}
    group_of = collections.defaultdict(set)
    for k, members in enumerate(groups):
        for path in members:
            group_of[path].add(k)
    originals = {row["group"]: str(corpus / row["path"]) for row in rows if row["transform"] == "orig"}
    found, total = collections.Counter(), collections.Counter()
    for row in rows:
        if row["transform"] != "orig":
            total[row["transform"]] += 1
            found[row["transform"]] += bool(
                group_of[str(corpus / row["path"])] & group_of[originals[row["group"]]]
            )
    false_pairs = sum(
        photo[a] != photo[b] for members in groups for a, b in itertools.combinations(members, 2)
    )
    overall = sum(found.values()) / max(1, sum(total.values()))
    return {name: found[name] / total[name] for name in sorted(total)}, false_pairs, overall


def report(title: str, recall: dict[str, float], false_pairs: int) -> None:
    print(f"\n{title}: false_pairs={false_pairs}")
    for name, value in recall.items():
        print(f"  {name:16s} {value:.3f}")


def test_public_corpus_before_and_after():
    rows = manifest(PUB)
    paths = [str(PUB / row["path"]) for row in rows]
    before, _ = run_engine(paths, verified=False)
    recall_before, false_before, _ = score(PUB, rows, before)
    report("pub, global hash only (before)", recall_before, false_before)
    groups, seconds = run_engine(paths)
    recall, false_pairs, overall = score(PUB, rows, groups)
    report("pub, windows + verification (after)", recall, false_pairs)
    median_ms = 1000 * statistics.median(seconds)
    print(f"  overall recall {overall:.4f}; {len(seconds)} pairs verified, median {median_ms:.0f} ms")
    assert false_pairs == 0
    assert overall >= 0.99
    assert all(recall[name] >= 0.95 for name in ("crop5", "crop10", "watermark"))
    assert all(value == 1.0 for name, value in recall.items() if name.startswith(MUST_BE_PERFECT))


def test_hard_corpus_has_no_false_pairs():
    rows = manifest(HARD)
    groups, seconds = run_engine([str(HARD / row["path"]) for row in rows])
    recall, false_pairs, _ = score(HARD, rows, groups)
    report("hard (with quadrant negatives)", recall, false_pairs)
    print(f"  {len(seconds)} pairs verified, median {1000 * statistics.median(seconds):.0f} ms")
    assert false_pairs == 0


def camera_files(count: int) -> list[str]:
    files = sorted(str(path) for path in CAMERA.glob("*.jpg"))[:count]
    if not files:
        pytest.skip(f"no camera JPEGs in {CAMERA}")
    return files


def best_of(function, path: str, rounds: int = 3) -> float:
    """Given a function and a file, return its fastest time of `rounds` (timeit's rule: the minimum is
    the least disturbed by other load on the machine)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function(path)
        times.append(time.perf_counter() - start)
    return min(times)


def test_fingerprint_is_faster_than_imagehash_on_camera_jpegs():
    files = camera_files(20)
    candidates = {
        "ours": hashing.fingerprint_file,
        "global_only": lambda path: hashing.fingerprint_file(path, windows=False),
        "imagehash": lambda path: imagehash.phash(Image.open(path)),
    }
    times = {name: [] for name in candidates}
    for path in files:  # interleaved, file by file, so load swings hit all three alike
        for name, function in candidates.items():
            times[name].append(best_of(function, path))
    ours, global_only, reference = (statistics.median(times[name]) for name in candidates)
    print(
        f"\n12 MP JPEG: fingerprint_file {1000 * ours:.1f} ms (global only {1000 * global_only:.1f} ms),"
        f" imagehash.phash(Image.open) {1000 * reference:.1f} ms: {reference / ours:.2f}x faster;"
        f" windows cost {100 * (ours / global_only - 1):.0f} % extra"
    )
    assert reference / ours >= 3.5
    assert ours <= 1.25 * global_only


def test_verification_cost_per_pair():
    files = camera_files(6)
    pairs = [(a, b, Candidate(0, 8, 0)) for a, b in zip(files[::2], files[1::2], strict=True)]
    pub = manifest(PUB)
    originals = [str(PUB / r["path"]) for r in pub if r["transform"] == "orig"][:6]
    pairs += [(p, p.replace("/orig/", "/crop10/"), Candidate(0, 8, 0)) for p in originals]
    times = [verify(args)[1] for args in pairs for _ in range(2)]
    median_ms, max_ms = 1000 * statistics.median(times), 1000 * max(times)
    print(f"\nverify_pair: median {median_ms:.0f} ms, max {max_ms:.0f} ms per pair")
