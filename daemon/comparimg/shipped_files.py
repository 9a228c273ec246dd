"""Where the model files the package ships are read from (the embedder, the verifier, their manifests and
the verifier's pairs): the package's own folders, or the folder `$COMPARIMG_SHIPPED_MODELS` names.

The variable is the one seam for reading copies instead: the tests damage or remove copies there (never the
package's files) to see the daemon fall back to mode `hash`; a packager may keep the models outside the
package. It is read at each load, not at import. This module imports nothing from the project.
"""

from __future__ import annotations

import os
from pathlib import Path

SHIPPED_MODELS_ENV = "COMPARIMG_SHIPPED_MODELS"


def shipped_model_file(packaged: Path) -> Path:
    """Given a model file the package ships, return where to read it: the file of the same name in the
    folder `$COMPARIMG_SHIPPED_MODELS` names when that is set and not empty, else `packaged` itself."""
    folder = os.environ.get(SHIPPED_MODELS_ENV, "")
    return Path(folder) / packaged.name if folder else packaged
