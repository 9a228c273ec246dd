"""ComparImg: find duplicate images, keep an index of them, and sort them safely."""

import os

__version__ = "0.1.0"

# One BLAS thread per process (unless the user chose otherwise), set before numpy is first imported: the
# daemon and each hashing worker already take a core each, and OpenBLAS threads spinning on a busy core made
# the embedding index's one QR decomposition (`embedding.neighbours._hyperplanes`, 1280 × 640) take 25 s
# instead of 0.25 s at load 13 on 2 cores (docs/model.md, "Searching embeddings").
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
