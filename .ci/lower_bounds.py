"""Print pip constraints that pin every runtime dependency of pyproject.toml to its declared lower bound.

CI installs the project once with these constraints (the lowest versions the ranges allow) and once without
(the newest), and runs the whole default suite on both: a range we declare is a range we test.
"""

import re
import sys
import tomllib
from pathlib import Path

LOWER_BOUND = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(?:[^>]*,)?\s*>=\s*([^,;\s]+)")


def lower_bounds(pyproject: Path) -> list[str]:
    """Given pyproject.toml, return "name==version" for each runtime dependency's ">=" bound.

    Raise SystemExit naming a dependency that declares no lower bound.
    """
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = []
    for requirement in dependencies:
        found = LOWER_BOUND.match(requirement)
        if found is None:
            raise SystemExit(f"{pyproject}: dependency {requirement!r} declares no lower bound (>=)")
        pins.append(f"{found.group(1)}=={found.group(2)}")
    return pins


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    sys.stdout.write("\n".join(lower_bounds(root / "pyproject.toml")) + "\n")
