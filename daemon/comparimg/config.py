"""Configuration: YAML in, frozen typed settings out, every error naming file, key path and value.

The schema is the dataclasses below: each field's type and metadata (`doc`, `min`, `max`, `choices`)
drive validation, the example file test and `settings_to_dict`. Only `yaml.safe_load` is used, so tags
such as `!!python/object` are refused by the YAML parser itself.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from comparimg.atomic_files import write_text_atomically
from comparimg.model import ConfigError

EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h, what systemd and the CLI report for a bad configuration

# Bounds checked on the YAML event stream before any node is built: a configuration is a few kilobytes, and
# an alias bomb (billion laughs) or 10 000 nested lists must be refused in milliseconds, not built in memory.
MAX_CONFIG_BYTES = 64 * 1024  # the example file is 3 KB; the pure-Python parser reads ~50 KB/s
MAX_YAML_DEPTH = 32
MAX_YAML_ALIASES = 100
MAX_YAML_NODES = 10_000  # counted with every alias expanded, as the parsed document would hold them
# libyaml's event parser, when PyYAML has it, walks 10 000 nested lists in milliseconds (the pure-Python
# scanner looks 1 024 characters ahead at each level: half a second).
_EVENT_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DEFAULT_INCLUDE = (
    "*.jpg",
    "*.jpeg",
    "*.jpe",
    "*.png",
    "*.bmp",
    "*.webp",
    "*.tif",
    "*.tiff",
    "*.gif",
    "*.heic",
    "*.heif",
)
DEFAULT_EXCLUDE = (".*", "*/.*", ".Trash-*", "*/.Trash-*")


# Where the system service (`install-service` without --user) keeps its configuration and its state: its
# unit's ConfigurationDirectory= and StateDirectory= (which sets $STATE_DIRECTORY for the daemon).
SYSTEM_CONFIG_FILE = Path("/etc/comparimg/comparimg.yaml")
SYSTEM_STATE_DIR = Path("/var/lib/comparimg")


def state_dir() -> Path:
    """Return where the index, token, trash and saved settings live by default: the one rule the daemon,
    `install-service`'s units and every CLI client follow.

    systemd's `$STATE_DIRECTORY` (the system unit's `StateDirectory=`, /var/lib/comparimg) wins; else the XDG
    state folder, `$XDG_STATE_HOME/comparimg` or `~/.local/state/comparimg`. A state folder left by an
    older release in `$XDG_DATA_HOME/comparimg` (`~/.local/share/comparimg`) is kept in use while the XDG
    state folder does not exist, so an upgrade neither forgets an index nor strands its trash.
    """
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0])
    current = _xdg_home("XDG_STATE_HOME", ".local/state") / "comparimg"
    legacy = _xdg_home("XDG_DATA_HOME", ".local/share") / "comparimg"
    if not current.exists() and legacy.is_dir():
        return legacy
    return current


def saved_config_file() -> Path:
    """Return the configuration file of `comparimg run` without --config, which `PATCH /api/config` writes:
    `config.yaml` in the state folder."""
    return state_dir() / "config.yaml"


def user_config_file() -> Path:
    """Return the configuration file of the user service: `$XDG_CONFIG_HOME/comparimg/comparimg.yaml`
    (`~/.config/...`), which the unit of `install-service --user` names as `%E/comparimg/comparimg.yaml`."""
    return _xdg_home("XDG_CONFIG_HOME", ".config") / "comparimg" / "comparimg.yaml"


def _xdg_home(variable: str, fallback: str) -> Path:
    """Given an XDG base-directory variable and its default below $HOME, return the folder it names (the
    spec ignores an empty or relative value)."""
    value = os.environ.get(variable, "")
    return Path(value) if os.path.isabs(value) else Path.home() / fallback


MATCHING_MODES = ("hash", "hash+model", "model")
# A user's encoder's default normalisation (ImageNet's), as `embedding.Embedder.load` takes it.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _setting(default: Any, doc: str, **rules: Any) -> Any:
    """Declare one setting: its default, its documentation and its validation rules."""
    factory = {"default_factory": default} if callable(default) else {"default": default}
    return dataclasses.field(metadata={"doc": doc, **rules}, **factory)


@dataclasses.dataclass(frozen=True)
class RootSettings:
    path: Path = _setting(None, "folder to watch and index (recursively)")
    reference: bool = _setting(False, "files under a reference root are always kept, never trashed")


@dataclasses.dataclass(frozen=True)
class HashingSettings:
    workers: int = _setting(0, "hashing worker processes; 0 means one per CPU", min=0, max=256)
    timeout_seconds: float = _setting(30.0, "time limit for decoding one image", min=0.1, max=3600)
    memory_limit_mb: int = _setting(1024, "address-space limit of a worker in MiB; 0 means none", min=0)


@dataclasses.dataclass(frozen=True)
class MatchingSettings:
    threshold: int = _setting(
        10, "largest Hamming distance (of 64 bits) between near duplicates", min=0, max=32
    )
    orientations: bool = _setting(True, "also match flipped and rotated copies (8 orientations)")
    crops: bool = _setting(True, "also match crops, borders, captions and watermarks (verified)")
    mode: str = _setting(
        "hash+model",
        "hash: hashes and the pixel check only (no model is loaded); hash+model: also the image embedder "
        "and the learned verifier; model: embedding neighbours and the verifier only (docs/model.md)",
        choices=MATCHING_MODES,
    )


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    path: Path | None = _setting(
        None, "a user-supplied ONNX image encoder (one float32 NCHW RGB input); null: the shipped model"
    )
    input_size: int = _setting(224, "side of the square input of a user's encoder", min=16, max=4096)
    mean: tuple[float, ...] = _setting(
        lambda: IMAGENET_MEAN, "a user's encoder: per-channel mean (R, G, B) on pixel / 255", length=3
    )
    std: tuple[float, ...] = _setting(
        lambda: IMAGENET_STD, "a user's encoder: per-channel std (R, G, B) on pixel / 255", length=3, min=1e-6
    )
    sha256: str = _setting(
        "", "a user's encoder: its file's expected sha256 (empty: not checked)", pattern="(|[0-9a-fA-F]{64})"
    )


@dataclasses.dataclass(frozen=True)
class WatchSettings:
    settle_seconds: float = _setting(2.0, "a file is hashed once unchanged for this long", min=0, max=3600)
    observer: str = _setting(
        "auto",
        "how to watch: inotify, polling, or auto (polling on NFS/SMB/FUSE)",
        choices=("auto", "inotify", "polling"),
    )
    polling_interval: float = _setting(
        10.0, "seconds between two polls of the polling observer", min=0.1, max=86400
    )
    rescan_interval: float = _setting(21600.0, "seconds between two full reconciles; 0 means never", min=0)
    include: tuple[str, ...] = _setting(lambda: DEFAULT_INCLUDE, "glob patterns on file names to index")
    exclude: tuple[str, ...] = _setting(
        lambda: DEFAULT_EXCLUDE, "glob patterns on paths relative to the root to skip"
    )
    queue_size: int = _setting(
        256, "files waiting for hashing before the watcher is slowed down", min=1, max=1_000_000
    )


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    host: str = _setting("127.0.0.1", "address to listen on (from `listen`)")
    port: int = _setting(8765, "port to listen on (from `listen`)", min=0, max=65535)
    allowed_hosts: tuple[str, ...] = _setting(tuple, "extra Host header names accepted (DNS rebinding guard)")
    token_file: Path = _setting(lambda: state_dir() / "token", "file (mode 0600) holding the API token")
    max_body_bytes: int = _setting(1_048_576, "largest request body accepted", min=1024, max=1 << 30)
    allowed_scan_roots: tuple[Path, ...] = _setting(tuple, "folders jobs may scan; empty means the roots")


def is_inside(path: str, root: str) -> bool:
    """Given two absolute paths (compared as written, not resolved), return whether `path` is `root` or lies
    below it."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def deepest_root(path: str, roots: Iterable[str | os.PathLike]) -> str | None:
    """Given an absolute path and roots, return the deepest root holding it (as a string), or None: with
    nested roots a file belongs to the innermost one."""
    holding = [str(root) for root in roots if is_inside(path, str(root))]
    return max(holding, key=len, default=None)


def reachable_base_url(host: str, port: int) -> str:
    """Given the address the daemon listens on, return the URL a local client reaches it at: a wildcard
    address (all interfaces) is reached through loopback, an IPv6 address is bracketed."""
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


@dataclasses.dataclass(frozen=True)
class SorterSettings:
    trash_dir: Path = _setting(lambda: state_dir() / "trash", "where trashed files go (from `trash`)")
    trash_layout: str = _setting(
        "folder",
        "folder: keep paths relative to the root; freedesktop: .Trash-$uid",
        choices=("folder", "freedesktop"),
    )
    move_targets: Mapping[str, Path] = _setting(
        lambda: MappingProxyType({}), "named folders files may move to"
    )
    apply: str = _setting(
        "manual",
        "manual: apply the queue on request; on-decide: apply each decision at once",
        choices=("manual", "on-decide"),
    )


@dataclasses.dataclass(frozen=True)
class LoggingSettings:
    format: str = _setting("text", "text (key=value) or json, one line per event", choices=("text", "json"))
    level: str = _setting("info", "lowest level logged", choices=("debug", "info", "warning", "error"))


@dataclasses.dataclass(frozen=True)
class Settings:
    roots: tuple[RootSettings, ...] = _setting(
        lambda: (RootSettings(Path.home() / "Pictures"),), "folders to watch"
    )
    index_path: Path = _setting(lambda: state_dir() / "index.sqlite3", "the SQLite index (from `index`)")
    export_path: Path | None = _setting(
        lambda: state_dir() / "duplicates.json", "duplicates JSON kept current (from `export`); null for none"
    )
    hashing: HashingSettings = _setting(HashingSettings, "decoding and hashing")
    matching: MatchingSettings = _setting(MatchingSettings, "what counts as a duplicate")
    model: ModelSettings = _setting(ModelSettings, "the image embedder of the model stage")
    watch: WatchSettings = _setting(WatchSettings, "watching folders")
    http: HttpSettings = _setting(HttpSettings, "the API and the review page")
    sorter: SorterSettings = _setting(SorterSettings, "where decided files go")
    logging: LoggingSettings = _setting(LoggingSettings, "logs on stderr")
    source: str = dataclasses.field(default="<defaults>", compare=False)

    def root_paths(self) -> tuple[Path, ...]:
        return tuple(root.path for root in self.roots)

    def scan_roots(self) -> tuple[Path, ...]:
        """Return the folders a job may scan: `http.allowed_scan_roots`, or the roots when empty."""
        return self.http.allowed_scan_roots or self.root_paths()


# YAML key → field name, where they differ (the YAML keeps the short names people type).
_TOP_LEVEL_ALIASES = {"index": "index_path", "export": "export_path"}
_SECTION_ALIASES = {SorterSettings: {"trash": "trash_dir"}}
_SECTIONS = {
    "hashing": HashingSettings,
    "matching": MatchingSettings,
    "model": ModelSettings,
    "watch": WatchSettings,
    "http": HttpSettings,
    "sorter": SorterSettings,
    "logging": LoggingSettings,
}


class _Parser:
    """Turns a YAML mapping into Settings; `fail` raises ConfigError naming source, key path and value."""

    def __init__(self, source: str, base_dir: Path):
        self.source = source
        self.base_dir = base_dir

    def fail(self, key_path: str, value: object, reason: str) -> typing.NoReturn:
        raise ConfigError(self.source, key_path, value, reason)

    def settings(self, document: object) -> Settings:
        if document is None:
            document = {}
        if not isinstance(document, Mapping):
            self.fail("", document, "the configuration must be a mapping of keys to values")
        values: dict[str, Any] = {"source": self.source}
        for key, value in document.items():
            if key == "roots":
                values["roots"] = self.roots(value)
            elif key in _TOP_LEVEL_ALIASES:
                optional = key == "export"
                values[_TOP_LEVEL_ALIASES[key]] = self.path(key, value, optional=optional)
            elif key in _SECTIONS:
                values[key] = self.section(_SECTIONS[key], key, value)
            else:
                self.fail(str(key), value, f"unknown key; expected one of {self.known_top_level()}")
        return Settings(**values)

    @staticmethod
    def known_top_level() -> str:
        return ", ".join(["roots", "index", "export", *_SECTIONS])

    def roots(self, value: object) -> tuple[RootSettings, ...]:
        if not isinstance(value, list):
            self.fail("roots", value, "expected a list of folders")
        return tuple(self.root(f"roots[{position}]", item) for position, item in enumerate(value))

    def root(self, key_path: str, value: object) -> RootSettings:
        if isinstance(value, str):
            return RootSettings(path=self.path(key_path, value))
        if not isinstance(value, Mapping) or "path" not in value:
            self.fail(key_path, value, "expected a folder path or a mapping with `path` (and `reference`)")
        return self.section(RootSettings, key_path, value)

    def section(self, cls: type, key_path: str, value: object) -> Any:
        if not isinstance(value, Mapping):
            self.fail(key_path, value, "expected a mapping")
        value = dict(value)
        if cls is HttpSettings and "listen" in value:
            value.update(self.listen(f"{key_path}.listen", value.pop("listen")))
        aliases = _SECTION_ALIASES.get(cls, {})
        fields = {field.name: field for field in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        parsed = {}
        for key, item in value.items():
            name = aliases.get(key, key)
            if name not in fields:
                known = ", ".join(self.yaml_keys(cls))
                self.fail(f"{key_path}.{key}", item, f"unknown key; expected one of {known}")
            parsed[name] = self.value(f"{key_path}.{key}", item, hints[name], fields[name].metadata)
        return cls(**parsed)

    @staticmethod
    def yaml_keys(cls: type) -> list[str]:
        return (["listen"] if cls is HttpSettings else []) + list(_yaml_fields(cls).values())

    def listen(self, key_path: str, value: object) -> dict[str, Any]:
        if not isinstance(value, str) or ":" not in value:
            self.fail(key_path, value, "expected HOST:PORT, e.g. 127.0.0.1:8765")
        host, _, port = value.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            self.fail(key_path, value, "expected HOST:PORT with a port from 0 to 65535")
        return {"host": host, "port": int(port)}

    def value(self, key_path: str, value: object, hint: Any, rules: Mapping[str, Any]) -> Any:
        origin = typing.get_origin(hint)
        arguments = typing.get_args(hint)
        if hint is Path or (origin in (typing.Union, types.UnionType) and Path in arguments):
            return self.path(key_path, value, optional=type(None) in arguments)
        if origin is tuple:
            return self.sequence(key_path, value, arguments[0], rules)
        if origin is Mapping:
            return self.named_paths(key_path, value)
        return self.scalar(key_path, value, hint, rules)

    def scalar(self, key_path: str, value: object, hint: type, rules: Mapping[str, Any]) -> Any:
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not hint:
            self.fail(key_path, value, f"expected {hint.__name__}")
        if "choices" in rules and value not in rules["choices"]:
            self.fail(key_path, value, f"expected one of {', '.join(rules['choices'])}")
        if "min" in rules and value < rules["min"]:
            self.fail(key_path, value, f"must be at least {rules['min']}")
        if "max" in rules and value > rules["max"]:
            self.fail(key_path, value, f"must be at most {rules['max']}")
        if "pattern" in rules and not re.fullmatch(rules["pattern"], value):
            self.fail(key_path, value, f"must match {rules['pattern']}")
        return value

    def sequence(
        self, key_path: str, value: object, item_type: type, rules: Mapping[str, Any] = MappingProxyType({})
    ) -> tuple:
        if not isinstance(value, list):
            self.fail(key_path, value, "expected a list")
        if "length" in rules and len(value) != rules["length"]:
            self.fail(key_path, value, f"expected a list of {rules['length']} values")
        if item_type is Path:
            return tuple(self.path(f"{key_path}[{i}]", item) for i, item in enumerate(value))
        item_rules = {k: v for k, v in rules.items() if k in ("min", "max")}
        return tuple(
            self.scalar(f"{key_path}[{i}]", item, item_type, item_rules) for i, item in enumerate(value)
        )

    def named_paths(self, key_path: str, value: object) -> Mapping[str, Path]:
        if not isinstance(value, Mapping):
            self.fail(key_path, value, "expected a mapping of names to folders")
        for name in value:
            if not isinstance(name, str) or not name or "/" in name:
                self.fail(f"{key_path}.{name}", name, "expected a plain name")
        return MappingProxyType({name: self.path(f"{key_path}.{name}", item) for name, item in value.items()})

    def path(self, key_path: str, value: object, optional: bool = False) -> Path | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            self.fail(key_path, value, "expected a path")
        path = Path(os.path.expandvars(os.path.expanduser(value)))
        return path if path.is_absolute() else self.base_dir / path


def parse_settings(document: object, source: str = "<config>", base_dir: Path | None = None) -> Settings:
    """Given a parsed YAML document, return Settings. Relative paths are relative to `base_dir`.

    Raise ConfigError naming `source`, the key path and the value at the first problem.
    """
    return _Parser(source, base_dir or Path.cwd()).settings(document)


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Given a YAML file (or None for the built-in defaults), return Settings. Raise ConfigError, also for
    a document over the bounds (size, nesting depth, aliases, expanded nodes) before it is built."""
    if path is None:
        return Settings()
    source = str(path)
    text = _read_config_text(path, source)
    try:
        check_yaml_bounds(text, source)
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(source, "", where, f"not valid YAML: {problem}") from error
    return parse_settings(document, source, Path(path).resolve().parent)


def _read_config_text(path: str | os.PathLike, source: str) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(source, "", source, f"cannot read the file: {error}") from error
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(source, "", source, f"the file is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(source, "", source, f"cannot read the file: {error}") from error


def check_yaml_bounds(text: str, source: str) -> None:
    """Given YAML text, walk its event stream (no node is built) and raise ConfigError naming `source` and
    the line when it nests deeper than MAX_YAML_DEPTH, uses more than MAX_YAML_ALIASES aliases, an alias
    refers to a collection it is inside of, or the document, aliases expanded, would hold more than
    MAX_YAML_NODES nodes. Raise yaml.YAMLError for text that is not YAML."""
    open_sizes: list[int] = []  # nodes counted so far inside each open collection, outermost first
    open_anchors: list[str | None] = []
    anchored: dict[str, int] = {}  # anchor -> expanded node count of the node it names
    aliases = 0
    for event in yaml.parse(text, Loader=_EVENT_LOADER):
        where = f"line {event.start_mark.line + 1}, column {event.start_mark.column + 1}"
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_sizes) >= MAX_YAML_DEPTH:
                raise ConfigError(source, "", where, f"refused: nested deeper than {MAX_YAML_DEPTH} levels")
            open_sizes.append(1)
            open_anchors.append(event.anchor)
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            size, anchor = open_sizes.pop(), open_anchors.pop()
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise ConfigError(source, "", where, f"refused: more than {MAX_YAML_ALIASES} aliases")
            if event.anchor not in anchored:  # undefined (the parser's own error follows) or recursive
                if event.anchor in open_anchors:
                    raise ConfigError(source, "", where, "refused: an alias inside the node it names")
                continue
            size, anchor = anchored[event.anchor], None
        elif isinstance(event, yaml.ScalarEvent):
            size, anchor = 1, event.anchor
        else:
            continue
        if anchor is not None:
            anchored[anchor] = size
        if open_sizes:
            open_sizes[-1] += size
            if sum(open_sizes) > MAX_YAML_NODES:
                raise ConfigError(
                    source, "", where, f"refused: more than {MAX_YAML_NODES} values once aliases are expanded"
                )


def settings_to_dict(settings: Settings) -> dict[str, Any]:
    """Given Settings, return the plain YAML-shaped mapping (paths as strings) that parses back to them."""
    document: dict[str, Any] = {
        "roots": [{"path": str(root.path), "reference": root.reference} for root in settings.roots],
        "index": str(settings.index_path),
        "export": None if settings.export_path is None else str(settings.export_path),
    }
    for key, cls in _SECTIONS.items():
        document[key] = _section_to_dict(getattr(settings, key), cls)
    return document


def _yaml_fields(cls: type) -> dict[str, str]:
    """Given a settings class, return {field name: YAML key} for the fields written under their own key
    (HttpSettings' host and port are written together as `listen`)."""
    reverse = {field: key for key, field in _SECTION_ALIASES.get(cls, {}).items()}
    names = (field.name for field in dataclasses.fields(cls))
    skipped = ("host", "port") if cls is HttpSettings else ()
    return {name: reverse.get(name, name) for name in names if name not in skipped}


def _section_to_dict(section: Any, cls: type) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if cls is HttpSettings:
        host = f"[{section.host}]" if ":" in section.host else section.host
        result["listen"] = f"{host}:{section.port}"
    for name, key in _yaml_fields(cls).items():
        result[key] = _plain(getattr(section, name))
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def apply_patch(settings: Settings, patch: object, source: str = "PATCH /api/config") -> Settings:
    """Given Settings and a partial YAML-shaped mapping, return new Settings with the patch merged in.

    Sections merge key by key; lists and scalars replace. Raise ConfigError as parse_settings does.
    """
    if not isinstance(patch, Mapping):
        raise ConfigError(source, "", patch, "expected a mapping of keys to values")
    document = settings_to_dict(settings)
    for key, value in patch.items():
        if key in _SECTIONS and isinstance(value, Mapping) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    return parse_settings(document, source, Path("/"))


def save_settings(settings: Settings, path: str | os.PathLike) -> None:
    """Write Settings as YAML to `path` atomically (temp file, fsync, rename). Raise OSError."""
    write_text_atomically(path, yaml.safe_dump(settings_to_dict(settings), sort_keys=False))


def documented_keys() -> dict[str, str]:
    """Return every YAML key path of the schema with its documentation (for the example-file test)."""
    keys = {
        "roots": "folders to watch",
        "roots[].path": RootSettings.__dataclass_fields__["path"].metadata["doc"],
        "roots[].reference": RootSettings.__dataclass_fields__["reference"].metadata["doc"],
        "index": "the SQLite index",
        "export": "duplicates JSON kept current",
    }
    for section, cls in _SECTIONS.items():
        docs = {field.name: field.metadata["doc"] for field in dataclasses.fields(cls)}
        for name, key in _yaml_fields(cls).items():
            keys[f"{section}.{key}"] = docs[name]
        if cls is HttpSettings:
            keys[f"{section}.listen"] = "HOST:PORT to listen on"
    return keys
