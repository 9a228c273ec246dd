"""ComparImg: find duplicate images, keep an index of them, and sort them safely."""

__version__ = "0.1.0"
