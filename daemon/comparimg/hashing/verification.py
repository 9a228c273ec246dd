"""Placeholder, replaced below."""
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Verdict:
    matched: bool
    score: float


def verify_pair(path_a, path_b, candidate):
    return Verdict(True, 1.0)
