"""The verdicts room (pure): a learned verifier says whether a candidate pair is a *duplicate*, *similar*
(the same scene, another shot) or *different*.

- `features.pair_features(a, b, cosine, pixels)`: the pair's feature vector, from both fingerprints, the
  embedding cosine and the pixel check's scores when they were computed.
- `Verifier.load()` / `.judge(features) -> Verdict(label, confidence)`: the shipped model (JSON data, checked
  by sha256), evaluated with numpy.
- `retraining.retrain(shipped, user_features, user_labels)`: a library-specific candidate model from the
  shipped training pairs and the user's own decisions, with the figures of the adoption rule.

This room imports no PIL, SQL, HTTP or inotify library; see docs/verifier.md.
"""

from __future__ import annotations

from comparimg.verdicts.features import FEATURE_NAMES, best_orientation, mask_features, pair_features
from comparimg.verdicts.verifier import LABELS, Verdict, Verifier

__all__ = [
    "FEATURE_NAMES",
    "LABELS",
    "Verdict",
    "Verifier",
    "best_orientation",
    "mask_features",
    "pair_features",
]
