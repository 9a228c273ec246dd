"""Configuration: YAML in, frozen typed settings out, every error naming file, key path and value.

The schema is the frozen pydantic dataclasses below: each field's type, bounds and documentation drive
validation (every error of a file at once, each with its key path and value), the `Config` schema of the
OpenAPI document, `settings_to_dict` and the example file test. To add a setting, add one `_setting` field
to its section (and its line to config/comparimg.example.yaml); nothing else lists the settings.
Only `yaml.safe_load` is used, so tags such as `!!python/object` are refused by the YAML parser itself.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
)
from pydantic.dataclasses import dataclass
from pydantic.json_schema import SkipJsonSchema

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


def _setting(
    default: Any, doc: str, *, min: float | None = None, max: float | None = None, **extra: Any
) -> Any:
    """Declare one setting: its default (a value, or a function returning one), its documentation, its
    bounds (`min`, `max`) and any other pydantic Field option (`alias` for a YAML key unlike the name)."""
    factory = {"default_factory": default} if callable(default) else {"default": default}
    return Field(description=doc, ge=min, le=max, **factory, **extra)


def _path(value: object, info: ValidationInfo) -> Path:
    """A path setting: `~` and $VARIABLES expanded, relative to the configuration file's folder (the
    `base_dir` of the validation context)."""
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ValueError("expected a path")
    path = Path(os.path.expandvars(os.path.expanduser(value)))
    base_dir = (info.context or {}).get("base_dir")
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _listed(value: object) -> object:
    """A list setting: YAML and JSON give lists, the settings hold tuples."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, tuple):
        return value
    raise ValueError("expected a list")


def _root(value: object) -> object:
    """A root is a folder path or a mapping with `path` (and `reference`)."""
    return {"path": value} if isinstance(value, str) else value


def _roots(value: object) -> object:
    if isinstance(value, list | tuple):
        return tuple(value)
    raise ValueError("expected a list of folders")


def _listen(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host.strip("[]") or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT with a port from 0 to 65535, e.g. 127.0.0.1:8765")
    return value


ConfigPath = Annotated[Path, BeforeValidator(_path)]
PlainName = Annotated[str, StringConstraints(strict=True, min_length=1, pattern=r"^[^/]+$")]
Patterns = Annotated[tuple[Annotated[str, Strict()], ...], BeforeValidator(_listed)]
Paths = Annotated[tuple[ConfigPath, ...], BeforeValidator(_listed)]


def _named_paths_to_plain(value: Mapping[str, Path]) -> dict[str, str]:
    return {name: str(path) for name, path in value.items()}


# read-only once validated (a MappingProxyType), written out as a plain mapping
NamedPaths = Annotated[
    Mapping[PlainName, ConfigPath], AfterValidator(MappingProxyType), PlainSerializer(_named_paths_to_plain)
]
Listen = Annotated[
    str, Strict(), AfterValidator(_listen), Field(json_schema_extra={"pattern": r"^.+:[0-9]{1,5}$"})
]

# Every section: unknown keys are errors, a field may be given by its YAML key (alias) or, in Python, by
# its name. Scalars are strict: no type is coerced (a bool is no int, "10" is no int; an int becomes a float).
Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Threshold = Annotated[Int, Field(ge=0, le=32)]  # also a scan job's own threshold (web/schemas.py)
_SECTION = ConfigDict(
    extra="forbid",
    validate_by_name=True,
    validate_by_alias=True,
    json_schema_serialization_defaults_required=True,
)
section = dataclass(frozen=True, config=_SECTION)


@section
class RootSettings:
    path: ConfigPath = _setting(..., "folder to watch and index (recursively)")
    reference: Bool = _setting(False, "files under a reference root are always kept, never trashed")


@section
class HashingSettings:
    workers: Int = _setting(0, "hashing worker processes; 0 means one per CPU", min=0, max=256)
    timeout_seconds: Number = _setting(30.0, "time limit for decoding one image", min=0.1, max=3600)
    memory_limit_mb: Int = _setting(1024, "address-space limit of a worker in MiB; 0 means none", min=0)


@section
class MatchingSettings:
    threshold: Threshold = _setting(10, "largest Hamming distance (of 64 bits) between near duplicates")
    orientations: Bool = _setting(True, "also match flipped and rotated copies (8 orientations)")
    crops: Bool = _setting(True, "also match crops, borders, captions and watermarks (verified)")
    mode: Literal["hash", "hash+model", "model"] = _setting(
        "hash+model",
        "hash: hashes and the pixel check only (no model is loaded); hash+model: also the image embedder "
        "and the learned verifier; model: embedding neighbours and the verifier only (docs/model.md)",
    )


Channels = Annotated[tuple[Number, Number, Number], BeforeValidator(_listed)]
Positive = Annotated[Number, Field(ge=1e-6)]
PositiveChannels = Annotated[tuple[Positive, Positive, Positive], BeforeValidator(_listed)]
Sha256 = Annotated[str, StringConstraints(strict=True, pattern=r"^(|[0-9a-fA-F]{64})$")]


@section
class ModelSettings:
    path: ConfigPath | None = _setting(
        None, "a user-supplied ONNX image encoder (one float32 NCHW RGB input); null: the shipped model"
    )
    input_size: Int = _setting(224, "side of the square input of a user's encoder", min=16, max=4096)
    mean: Channels = _setting(
        lambda: IMAGENET_MEAN, "a user's encoder: per-channel mean (R, G, B) on pixel / 255"
    )
    std: PositiveChannels = _setting(
        lambda: IMAGENET_STD, "a user's encoder: per-channel std (R, G, B) on pixel / 255"
    )
    sha256: Sha256 = _setting("", "a user's encoder: its file's expected sha256 (empty: not checked)")


@section
class WatchSettings:
    settle_seconds: Number = _setting(2.0, "a file is hashed once unchanged for this long", min=0, max=3600)
    observer: Literal["auto", "inotify", "polling"] = _setting(
        "auto", "how to watch: inotify, polling, or auto (polling on NFS/SMB/FUSE)"
    )
    polling_interval: Number = _setting(
        10.0, "seconds between two polls of the polling observer", min=0.1, max=86400
    )
    rescan_interval: Number = _setting(21600.0, "seconds between two full reconciles; 0 means never", min=0)
    include: Patterns = _setting(lambda: DEFAULT_INCLUDE, "glob patterns on file names to index")
    exclude: Patterns = _setting(
        lambda: DEFAULT_EXCLUDE, "glob patterns on paths relative to the root to skip"
    )
    queue_size: Int = _setting(
        256, "files waiting for hashing before the watcher is slowed down", min=1, max=1_000_000
    )


@section
class HttpSettings:
    listen: Listen = _setting("127.0.0.1:8765", "HOST:PORT to listen on")
    allowed_hosts: Patterns = _setting(tuple, "extra Host header names accepted (DNS rebinding guard)")
    token_file: ConfigPath = _setting(lambda: state_dir() / "token", "file (mode 0600) holding the API token")
    max_body_bytes: Int = _setting(1_048_576, "largest request body accepted", min=1024, max=1 << 30)
    allowed_scan_roots: Paths = _setting(tuple, "folders jobs may scan; empty means the roots")

    @property
    def host(self) -> str:
        """The address part of `listen`, without IPv6 brackets."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


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


@section
class SorterSettings:
    trash_dir: ConfigPath = _setting(
        lambda: state_dir() / "trash", "where trashed files go (from `trash`)", alias="trash"
    )
    trash_layout: Literal["folder", "freedesktop"] = _setting(
        "folder", "folder: keep paths relative to the root; freedesktop: .Trash-$uid"
    )
    move_targets: NamedPaths = _setting(lambda: MappingProxyType({}), "named folders files may move to")
    apply: Literal["manual", "on-decide"] = _setting(
        "manual", "manual: apply the queue on request; on-decide: apply each decision at once"
    )


@section
class LoggingSettings:
    format: Literal["text", "json"] = _setting("text", "text (key=value) or json, one line per event")
    level: Literal["debug", "info", "warning", "error"] = _setting("info", "lowest level logged")


@section
class Settings:
    roots: Annotated[tuple[Annotated[RootSettings, BeforeValidator(_root)], ...], BeforeValidator(_roots)] = (
        _setting(lambda: (RootSettings(Path.home() / "Pictures"),), "folders to watch")
    )
    index_path: ConfigPath = _setting(
        lambda: state_dir() / "index.sqlite3", "the SQLite index (from `index`)", alias="index"
    )
    export_path: ConfigPath | None = _setting(
        lambda: state_dir() / "duplicates.json",
        "duplicates JSON kept current (from `export`); null for none",
        alias="export",
    )
    hashing: HashingSettings = _setting(HashingSettings, "decoding and hashing")
    matching: MatchingSettings = _setting(MatchingSettings, "what counts as a duplicate")
    model: ModelSettings = _setting(ModelSettings, "the image embedder of the model stage")
    watch: WatchSettings = _setting(WatchSettings, "watching folders")
    http: HttpSettings = _setting(HttpSettings, "the API and the review page")
    sorter: SorterSettings = _setting(SorterSettings, "where decided files go")
    logging: LoggingSettings = _setting(LoggingSettings, "logs on stderr")
    # where the settings came from (a file, "command line"): not a setting, never in the YAML or the API
    source: SkipJsonSchema[str] = dataclasses.field(default=Field("<defaults>", exclude=True), compare=False)

    def root_paths(self) -> tuple[Path, ...]:
        return tuple(root.path for root in self.roots)

    def scan_roots(self) -> tuple[Path, ...]:
        """Return the folders a job may scan: `http.allowed_scan_roots`, or the roots when empty."""
        return self.http.allowed_scan_roots or self.root_paths()


SETTINGS = TypeAdapter(Settings)


def config_json_schema(mode: Literal["validation", "serialization"] = "serialization") -> dict[str, Any]:
    """Return the JSON Schema of the YAML file, with the YAML keys: of what the file may hold
    ("validation") or of what `settings_to_dict` and GET /api/config write ("serialization")."""
    return SETTINGS.json_schema(by_alias=True, mode=mode)


def parse_settings(document: object, source: str = "<config>", base_dir: Path | None = None) -> Settings:
    """Given a parsed YAML document, return Settings. Relative paths are relative to `base_dir`.

    Raise ConfigError naming `source`, and for every problem of the document its key path and value.
    """
    if document is None:
        document = {}
    if isinstance(document, Mapping) and "source" in document:
        raise ConfigError(source, "source", document["source"], f"unknown key; expected one of {_keys(())}")
    try:
        settings = SETTINGS.validate_python(document, context={"base_dir": base_dir or Path.cwd()})
    except ValidationError as error:
        problems = [_problem(source, details) for details in error.errors(include_url=False)]
        raise ConfigError.every(problems) from None
    return dataclasses.replace(settings, source=source)


# pydantic's error types, in the words the old hand-written checks used (the rest keep pydantic's message)
_REASONS = {
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "literal_error": "expected one of {expected}",
    "string_pattern_mismatch": "expected text matching {pattern}",
    "dataclass_type": "expected a mapping of keys to values",
}


def _problem(source: str, details: Any) -> ConfigError:
    """Given one of pydantic's error details, return it as a ConfigError: file, YAML key path, value."""
    loc = tuple(part for part in details["loc"] if part != "[key]")
    kind = details["type"]
    reason = _REASONS.get(kind, details["msg"].removeprefix("Value error, ")).format(**details.get("ctx", {}))
    if kind == "missing":
        loc, reason = loc[:-1], f"`{loc[-1]}` is missing"
    elif kind in ("extra_forbidden", "unexpected_keyword_argument"):
        reason = f"unknown key; expected one of {_keys(loc[:-1])}"
    return ConfigError(source, _key_path(loc), details["input"], reason[:1].lower() + reason[1:])


def _key_path(loc: tuple[str | int, ...]) -> str:
    """Given a pydantic error location, return the YAML key path: `roots[0].path`, `sorter.move_targets`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f"{'.' if path else ''}{part}"
    return path


def _section_at(loc: tuple[str | int, ...]) -> type:
    """Given the location of a section (or of a root), return its settings class."""
    cls: Any = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = {_yaml_key(f): f for f in dataclasses.fields(cls)}[part]
        cls = RootSettings if field.name == "roots" else typing.get_type_hints(cls)[field.name]
    return cls


def _keys(loc: tuple[str | int, ...]) -> str:
    return ", ".join(_yaml_key(field) for field in _fields(_section_at(loc)))


def _fields(cls: type) -> list[dataclasses.Field]:
    return [field for field in dataclasses.fields(cls) if field.name != "source"]


def _yaml_key(field: dataclasses.Field) -> str:
    """Given a settings field, return its YAML key (its alias, else its name)."""
    return getattr(field.default, "alias", None) or field.name


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
    return SETTINGS.dump_python(settings, mode="json", by_alias=True)


def apply_patch(settings: Settings, patch: object, source: str = "PATCH /api/config") -> Settings:
    """Given Settings and a partial YAML-shaped mapping, return new Settings with the patch merged in.

    Sections merge key by key; lists and scalars replace. Raise ConfigError as parse_settings does.
    """
    if not isinstance(patch, Mapping):
        raise ConfigError(source, "", patch, "expected a mapping of keys to values")
    document = settings_to_dict(settings)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    return parse_settings(document, source, Path("/"))


def save_settings(settings: Settings, path: str | os.PathLike) -> None:
    """Write Settings as YAML to `path` atomically (temp file, fsync, rename). Raise OSError."""
    write_text_atomically(path, yaml.safe_dump(settings_to_dict(settings), sort_keys=False))


def documented_keys() -> dict[str, str]:
    """Return every YAML key path of the schema with its documentation (for the example-file test)."""
    keys = {}
    for field in _fields(Settings):
        key = _yaml_key(field)
        keys[key] = field.default.description
        if key == "roots":
            keys.update({f"roots[].{_yaml_key(f)}": f.default.description for f in _fields(RootSettings)})
        elif dataclasses.is_dataclass(section := typing.get_type_hints(Settings)[field.name]):
            keys.update({f"{key}.{_yaml_key(f)}": f.default.description for f in _fields(section)})
    return keys
