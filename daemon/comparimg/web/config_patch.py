"""`PATCH /api/config`: which settings a token holder may change, and how a change is saved.

The settings that draw the lines the API acts within (roots, move targets, the trash, the export file, the
index, the listen address, allowed hosts and scan roots, the token file) are set by the owner of the
configuration file, never through the API: changing them there and reloading (SIGHUP) is the way. What
the API may change is an allow-list, so a setting added to the schema later is file-only until someone
decides otherwise. None of the settable keys is a path, so no path ever comes from the API.

A change is saved by merging the keys the request named into the file's own document: whatever the
daemon got from the command line (`--watch`, `--index`, `--listen`...) and the built-in defaults stay out
of the file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from comparimg import config
from comparimg.atomic_files import write_text_atomically
from comparimg.model import ConfigError
from comparimg.web.errors import FileOnlySetting

# Sections every key of which the API may change, and single keys of other sections.
API_SECTIONS = frozenset({"hashing", "matching", "watch", "logging"})
API_KEYS = frozenset({"sorter.apply"})
NEW_FILE_MODE = 0o600


def api_settable(key_path: str) -> bool:
    """Given a YAML key path ("matching.threshold", "roots"), return whether the API may change it."""
    section = key_path.split(".", 1)[0].split("[", 1)[0]
    return section in API_SECTIONS or key_path in API_KEYS


def check_settable(patch: Mapping[str, Any]) -> None:
    """Given a patch (a partial YAML-shaped mapping), raise FileOnlySetting naming the first known setting
    it names that the API may not change. Unknown keys are left to the schema (400 `invalid_config`)."""
    known = set(config.documented_keys())
    for key, value in patch.items():
        key = str(key)
        if api_settable(key):
            continue
        paths = [f"{key}.{sub}" for sub in value] if isinstance(value, Mapping) else [key]
        for path in paths:
            if _is_setting(path, known) and not api_settable(path):
                raise FileOnlySetting(path)


def _is_setting(key_path: str, known: set[str]) -> bool:
    """Given a key path and the schema's key paths, return whether it names a setting or a section."""
    return key_path in known or any(k.startswith((f"{key_path}.", f"{key_path}[")) for k in known)


def merged(document: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Given a YAML-shaped document and a patch, return the document with the patch merged in, as
    `config.apply_patch` does: sections merge key by key, lists and scalars replace."""
    result = dict(document)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = {**result[key], **value}
        else:
            result[key] = value
    return result


def save_patch(path: Path, patch: Mapping[str, Any]) -> None:
    """Given the configuration file and a checked patch, merge the patch into the file's own document and
    write it back atomically, keeping the file's mode (a missing file is created, mode 0600, holding only
    the patch). Raise ConfigError when the file does not load now or would not load after the merge,
    OSError when it cannot be written."""
    document = _file_document(path)
    new = merged(document, patch)
    config.parse_settings(new, str(path), path.parent)  # the file must still load on its own
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else NEW_FILE_MODE
    write_text_atomically(path, yaml.safe_dump(new, sort_keys=False, allow_unicode=True), mode)


def _file_document(path: Path) -> dict[str, Any]:
    """Return the file's YAML mapping as written (relative paths and `~` kept), {} when there is none."""
    if not os.path.exists(path):
        return {}
    config.load_settings(path)  # refuse a file that does not load (and let the loader's bounds apply)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(str(path), "", str(path), f"cannot read the file: {error}") from error
    return dict(document or {})
