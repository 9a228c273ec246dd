"""File paths in SQL, losslessly: the one codec between the program's paths and the index's path columns.

A Linux file name is bytes. The program holds every path as the `str` that `os.fsdecode`, `os.scandir` and
watchdog give: a byte that is not UTF-8 becomes a lone surrogate U+DC80..U+DCFF (PEP 383
`surrogateescape`), and every os call turns it back into the same byte. sqlite3 cannot bind such a str (its
UTF-8 encoding fails), so a path column stores the path's exact bytes as TEXT instead:

- a path that is valid UTF-8 is bound as it is: stored exactly as before this codec existed, so existing
  index files need no migration;
- another path is bound as its bytes behind `CAST(? AS TEXT)` (`PATH_PARAM`), which stores them as TEXT
  unchanged;
- every connection reads text with `decode_text` (its `text_factory`), which gives the same `str` back.

SQLite compares TEXT byte by byte (BINARY collation), so equality, UNIQUE and the `prefix_range` queries
(`low <= path < high`) work on those bytes as on any other path, and the path index is still used. Every
statement that binds a path writes `PATH_PARAM` in place of `?` and passes `bind_path(path)`.
"""

from __future__ import annotations

import functools

PATH_PARAM = "CAST(? AS TEXT)"
ENCODING = "utf-8"

# The connections' text_factory: SQLite text (bytes) to str, a byte that is not UTF-8 to a lone surrogate.
decode_text = functools.partial(str, encoding=ENCODING, errors="surrogateescape")


def bind_path(path: str | None) -> str | bytes | None:
    """Given a path as the program holds it (or None), return the value to bind in place of `PATH_PARAM`:
    the path itself when it is valid UTF-8, else its file-system bytes. Raise UnicodeEncodeError for a
    surrogate that no file name can hold (outside U+DC80..U+DCFF)."""
    if not isinstance(path, str) or path.isascii():
        return path
    try:
        path.encode(ENCODING)
    except UnicodeEncodeError:
        return path.encode(ENCODING, "surrogateescape")
    return path


def path_conversions(fields: dict, path_columns: tuple[str, ...]) -> tuple[dict, dict[str, str]]:
    """Given a row's fields and the names of its path columns, return (fields with each path bound by
    `bind_path`, the sqlite-utils `conversions` that store them as TEXT) for `Table.insert` and `update`."""
    bound = {key: bind_path(value) if key in path_columns else value for key, value in fields.items()}
    return bound, {key: PATH_PARAM for key in bound if key in path_columns}
