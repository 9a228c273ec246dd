"""Measure when the linker may skip the pixel check (docs/verifier.md, "Choosing the thresholds").

Usage:  python tools/measure_verifier_staging.py CORPUS_DIR OUT.json

CORPUS_DIR is a benchmark corpus (../shared/bench/make_corpus.py, with its manifest.tsv). The corpus is
scanned in mode hash+model with the pixel check run on every candidate pair; each distinct pair's verdict
on the cheap evidence (hashes + cosine) and on all the evidence is recorded with the ground truth (two
files of one photo that are not hard negatives are duplicates). Prints the agreement of the two stages by
threshold and the false / missed duplicate pairs of the linker's policy at several thresholds; writes the
records to OUT.json.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def read_manifest(corpus: str) -> tuple[dict[str, str], set[str]]:
    truth, negatives = {}, set()
    with open(os.path.join(corpus, "manifest.tsv")) as manifest:
        next(manifest)
        for line in manifest:
            path, group, _transform, *role = line.rstrip("\n").split("\t")
            full = os.path.realpath(os.path.join(corpus, path))
            truth[full] = group
            if role and role[0] == "negative":
                negatives.add(full)
    return truth, negatives


def record_pairs(corpus: str) -> list[dict]:
    from comparimg.embedding import EmbedderSpec
    from comparimg.index import open_index
    from comparimg.scanner import MatchOptions, Scanner, ScanOptions, linking, model_stage, shipped_verifier
    from comparimg.verdicts.features import INDEX

    linking.SURE = linking.SURE_DUPLICATE = 2.0  # every pair gets the pixel check
    real, cut, records, paths_of = shipped_verifier(), INDEX["pixel_score"], {}, {}
    original_of = linking.PairEvidence.of.__func__

    def of(cls, pair, found):
        evidence = original_of(cls, pair, found)
        paths_of[tuple(np.round(evidence.features()[:cut], 6))] = (pair.query_path, pair.other_path)
        return evidence

    linking.PairEvidence.of = classmethod(of)

    class Recording:
        def judge(self, row):
            verdict = real.judge(row)
            key = tuple(np.round(row[:cut], 6))
            stage = "cheap" if row[INDEX["pixel_missing"]] == 1 else "full"
            records.setdefault(key, {})[stage] = (verdict.label, verdict.confidence)
            if stage == "full":
                records[key]["pixel_matched"] = bool(row[INDEX["pixel_matched"]])
            return verdict

    with tempfile.TemporaryDirectory() as folder, open_index(Path(folder) / "index.sqlite3") as index:
        from comparimg.workers import WorkerPool

        with WorkerPool(2) as pool:
            stage = model_stage.start_model_stage(pool, index, "hash+model", EmbedderSpec())
            options = ScanOptions(match=MatchOptions(mode="hash+model"), embedder=stage.embedder)
            Scanner(index, pool, options, verifier=lambda: Recording()).scan([corpus])
    truth, negatives = read_manifest(corpus)
    rows = []
    for key, record in records.items():
        if "cheap" not in record or "full" not in record:
            continue
        a, b = (os.path.realpath(p) for p in paths_of[key])
        record["truth"] = truth.get(a) == truth.get(b) and not {a, b} & negatives
        record["paths"] = (os.path.relpath(a, corpus), os.path.relpath(b, corpus))
        rows.append(record)
    return rows


def policy(rows: list[dict], sure: float, sure_duplicate: float, overrule: float) -> tuple[int, int, int]:
    """Return (pixel checks, false duplicate pairs, missed duplicate pairs) of the linker's rule."""
    checks = false = missed = 0
    for row in rows:
        label, confidence = row["cheap"]
        if confidence < (sure_duplicate if label == "duplicate" else sure):
            checks += 1
            label, confidence = row["full"]
            if label == "duplicate" and not row["pixel_matched"] and confidence < overrule:
                label = "not duplicate"
        false += label == "duplicate" and not row["truth"]
        missed += label != "duplicate" and row["truth"]
    return checks, false, missed


def main(corpus: str, out: str) -> None:
    rows = record_pairs(corpus)
    print(f"{len(rows)} distinct pairs, {sum(r['truth'] for r in rows)} duplicates")
    for level in (0.8, 0.9, 0.95, 0.97, 0.99):
        sure = [r for r in rows if r["cheap"][1] >= level]
        agree = sum(r["cheap"][0] == r["full"][0] for r in sure)
        print(f"cheap confidence >= {level}: {len(sure)} pairs, {agree} agree with all the evidence")
    for rule in ((0.95, 0.95, 0.0), (0.95, 0.99, 0.0), (0.95, 0.99, 0.97), (2.0, 2.0, 0.97)):
        checks, false, missed = policy(rows, *rule)
        print(f"sure {rule[0]}, duplicate {rule[1]}, overrule {rule[2]}: {checks} checks, ", end="")
        print(f"{false} false, {missed} missed")
    Path(out).write_text(json.dumps(rows))


if __name__ == "__main__":
    main(*sys.argv[1:3])
