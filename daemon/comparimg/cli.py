"""The command line: `comparimg scan | check-config | ...`.

Each subcommand is one `add_*_command(subcommands)` function that declares its arguments and sets
`handler`, a function of the parsed arguments returning the exit status. To add a subcommand, write such a
function and append it to COMMANDS.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import logging
import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from comparimg import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78  # EX_CONFIG, as systemd and sysexits.h name it
EXIT_INTERRUPTED = 130
PROGRESS_INTERVAL = 0.1


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def threshold_bits(text: str) -> int:
    """Given the --threshold text, return it as an int in 0..32. Raise ArgumentTypeError otherwise."""
    value = _whole_number(text)
    if not 0 <= value <= 32:
        raise argparse.ArgumentTypeError(f"must be between 0 and 32 bits, got {value}")
    return value


def worker_count(text: str) -> int:
    """Given the --workers text, return it as an int ≥ 0 (0: one per CPU). Raise ArgumentTypeError if not."""
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (one per CPU) or more, got {value}")
    return value


def add_scan_command(subcommands: argparse._SubParsersAction) -> None:
    """Declare `comparimg scan PATH... --json OUT [--index DB] [--threshold N] [--workers N] ...`."""
    parser = subcommands.add_parser(
        "scan",
        help="scan folders once and write the duplicates JSON",
        description="Scan folders (recursively) for exact and near-duplicate images and write the "
        "duplicates JSON. Exits 0 whether or not duplicates were found.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="folders (or files) to scan")
    parser.add_argument("--json", metavar="OUT", help="write the duplicates JSON here ('-' for stdout)")
    parser.add_argument(
        "--index", metavar="DB", help="SQLite index to keep between scans (default: a throwaway one)"
    )
    parser.add_argument(
        "--threshold",
        type=threshold_bits,
        default=10,
        metavar="N",
        help="largest Hamming distance of near duplicates, 0..32 (default 10)",
    )
    parser.add_argument(
        "--workers",
        type=worker_count,
        default=0,
        metavar="N",
        help="hashing worker processes (default 0: one per CPU)",
    )
    parser.add_argument(
        "--no-orientations", action="store_true", help="do not match flipped or rotated copies"
    )
    parser.add_argument(
        "--no-crops", action="store_true", help="do not match crops, borders, captions and watermarks"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="time limit for decoding one image (default 30)",
    )
    parser.add_argument(
        "--mode",
        choices=("hash", "hash+model", "model"),
        default="hash+model",
        help="hash: hashes and the pixel check only (no model is loaded); hash+model (default): also the "
        "shipped image embedder; model: embeddings and the verifier only. A model that cannot be loaded is "
        "reported and the scan goes on in hash mode",
    )
    parser.set_defaults(handler=run_scan)


def add_check_config_command(subcommands: argparse._SubParsersAction) -> None:
    """Declare `comparimg check-config [FILE]`."""
    parser = subcommands.add_parser(
        "check-config",
        help="validate a configuration file and show every setting in effect (exit 0 or 78)",
        description="Validate a configuration file. When it is valid, print 'ok: FILE' and then every "
        "setting in effect, as YAML: the file's values and the defaults of what it leaves out.",
    )
    parser.add_argument("file", nargs="?", metavar="FILE", help="YAML file (default: the built-in defaults)")
    parser.set_defaults(handler=run_check_config)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_scan_command, add_check_config_command]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand of COMMANDS."""
    parser = argparse.ArgumentParser(prog="comparimg", description="Find duplicate images.")
    parser.add_argument("--version", action="version", version=f"comparimg {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Given the command-line arguments (default sys.argv[1:]), run the subcommand; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("comparimg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run_check_config(args: argparse.Namespace) -> int:
    """Given parsed `check-config` arguments, validate the file; print "ok: FILE" and every setting in
    effect (the file's values, the defaults for what it leaves out) as YAML, return 0; or return 78 with
    every error of the file on stderr, one line each naming file, key path and value."""
    import yaml

    from comparimg.config import load_settings, saved_config_file, settings_to_dict
    from comparimg.model import ConfigError

    # Without FILE: what `comparimg run` without --config reads, the file PATCH /api/config saved, if any.
    saved = saved_config_file()
    file = args.file or (str(saved) if saved.exists() else None)
    try:
        settings = load_settings(file)
    except ConfigError as error:
        for problem in error.problems:  # every problem of the file, one line each
            print(f"comparimg: {problem.line}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"ok: {file or '<defaults>'}")
    print("# every setting in effect (keys the file leaves out have their default):")
    print(yaml.safe_dump(settings_to_dict(settings), sort_keys=False, allow_unicode=True), end="")
    return EXIT_OK


def run_scan(args: argparse.Namespace) -> int:
    """Given parsed `scan` arguments, scan, write the JSON, print a summary; return the exit status."""
    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        print(f"comparimg scan: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    # Found before any time is spent: a root that cannot be read at all, an output that cannot be written.
    problems = [*unreadable_roots(args.paths), *unwritable_output(args.json)]
    if problems:
        for problem in problems:
            print(f"comparimg scan: {problem}", file=sys.stderr)
        return EXIT_FAILED
    logging.basicConfig(level=logging.WARNING, format="comparimg: %(levelname)s %(message)s")
    from comparimg.model import ComparImgError

    try:
        with contextlib.ExitStack() as stack:
            index_path = Path(args.index) if args.index else _throwaway_index(stack)
            report, document = _scan_and_export(args, index_path, stack)
    except (ComparImgError, OSError) as error:
        print(f"comparimg scan: {error}", file=sys.stderr)
        return EXIT_FAILED
    _print_summary(report, document, to_stderr=args.json == "-")
    return EXIT_OK


def unreadable_roots(paths: Sequence[str]) -> list[str]:
    """Given the paths to scan (which exist), return why each that cannot be read at all cannot: a folder
    that cannot be listed, a file that cannot be opened, something that is neither a folder nor a file."""
    from comparimg.scanner.walk import describe_os_error

    problems = []
    for path in paths:
        try:
            mode = os.stat(path).st_mode
            if stat.S_ISDIR(mode):
                with os.scandir(path):
                    pass
            elif stat.S_ISREG(mode):
                os.close(os.open(path, os.O_RDONLY | os.O_NOCTTY))
            else:
                problems.append(f"cannot scan {path}: not a folder or a file")
        except OSError as error:
            problems.append(f"cannot read {path}: {describe_os_error(error)}")
    return problems


def unwritable_output(target: str | None) -> list[str]:
    """Given `--json OUT` (None or '-' for none or stdout), return why it cannot be written, if it cannot:
    its folders are made and a temporary file is created and removed there, as the final write will."""
    if not target or target == "-":
        return []
    path = Path(target)
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        return [f"cannot write --json {target}: {(error.strerror or str(error)).lower()}"]
    return []


def _throwaway_index(stack: contextlib.ExitStack) -> Path:
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="comparimg-scan-"))
    return Path(folder) / "index.sqlite3"


def _scan_and_export(args: argparse.Namespace, index_path: Path, stack: contextlib.ExitStack):
    from comparimg.workers import WorkerLimits, WorkerPool

    pool = stack.enter_context(WorkerPool(args.workers, WorkerLimits(timeout_seconds=args.timeout)))
    pool.start_in_background()  # the workers' imports overlap ours and the walk

    from comparimg.embedding import EmbedderSpec
    from comparimg.export import build_export, document_text, export_stats, write_export
    from comparimg.index import lock_index, open_index
    from comparimg.scanner import MatchOptions, Scanner, ScanOptions
    from comparimg.scanner.model_stage import start_model_stage

    if args.index:  # a kept index may be a running daemon's: one writer at a time
        stack.callback(lock_index(index_path).release)
    index = stack.enter_context(open_index(index_path))
    match = MatchOptions(
        threshold=args.threshold, orientations=not args.no_orientations, crops=not args.no_crops
    )
    stage = start_model_stage(pool, index, args.mode, EmbedderSpec())
    if stage.error:
        print(f"comparimg scan: {stage.error}; scanning in hash mode", file=sys.stderr)
    match = dataclasses.replace(match, mode=stage.mode_in_use)
    scanner = Scanner(index, pool, ScanOptions(match=match, embedder=stage.embedder))
    progress = ProgressLine(sys.stderr) if sys.stderr.isatty() else None
    report = scanner.scan(args.paths, progress)
    if progress:
        progress.finish()
    document = build_export(index, args.paths, export_stats(report.as_dict(), args.threshold, pool.size))
    if args.json == "-":
        sys.stdout.write(document_text(document))
    elif args.json:
        write_export(document, args.json)
    return report, document


def _print_summary(report, document: dict, to_stderr: bool) -> None:
    duplicates = sum(len(g["members"]) - 1 for g in document["groups"])
    print(
        f"{report.files} files, {report.hashed} hashed, {report.unchanged} skipped unchanged, "
        f"{report.moved} moved, {report.missing} missing, {report.errors} errors, "
        f"{report.verified} pairs verified, "
        f"{len(document['groups'])} groups ({duplicates} duplicates), "
        f"{len(document.get('similar', []))} similar groups in {report.seconds:.2f} s",
        file=sys.stderr if to_stderr else sys.stdout,
    )


class ProgressLine:
    """A one-line progress display for a terminal, redrawn at most every PROGRESS_INTERVAL seconds."""

    def __init__(self, stream, clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.clock = clock
        self.last = 0.0

    def __call__(self, progress) -> None:
        now = self.clock()
        if now - self.last < PROGRESS_INTERVAL and progress.phase == "walking":
            return
        self.last = now
        self.stream.write(
            f"\r{progress.phase}: {progress.files} files, {progress.hashed} hashed, "
            f"{progress.errors} errors\x1b[K"
        )
        self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()


# ---- the daemon: `run` and `install-service` (owned by the service room) ------------------------------


def add_run_command(subcommands: argparse._SubParsersAction) -> None:
    """Declare `comparimg run [--config FILE] [--watch DIR]... [--index DB] [--export F] [--listen H:P]`."""
    parser = subcommands.add_parser(
        "run",
        help="run the daemon: watch folders, keep the index and the duplicates JSON current",
        description="Run the daemon in the foreground (systemd Type=notify). Without --config it runs on "
        "the built-in defaults; the options below override the file. SIGHUP reloads the "
        "configuration, SIGTERM stops.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML configuration (default: built-in defaults)")
    parser.add_argument(
        "--watch",
        action="append",
        metavar="DIR",
        help="folder to watch (repeatable; replaces the configured roots)",
    )
    parser.add_argument("--index", metavar="DB", help="SQLite index file")
    parser.add_argument("--export", metavar="FILE", help="duplicates JSON kept current")
    parser.add_argument("--listen", metavar="HOST:PORT", help="address of the API and review page")
    parser.add_argument("--token-file", metavar="FILE", help="file (mode 0600) holding the API token")
    parser.set_defaults(handler=run_daemon)


def run_daemon(args: argparse.Namespace) -> int:
    """Given parsed `run` arguments, run the daemon until SIGTERM; return 0, or 78 for a bad configuration."""
    from comparimg.service import default_config_file, run_command

    # Without --config: the built-in defaults, or the file PATCH /api/config saved on an earlier run.
    config_file = Path(args.config).absolute() if args.config else default_config_file()
    return run_command(
        str(config_file) if args.config else None,
        args.watch,
        args.index,
        args.export,
        args.listen,
        companion=web_companion(str(config_file)),
        token_file=args.token_file,
    )


def web_companion(config_path: str | None):
    """Given the configuration file, return the coroutine function that starts the web app beside the
    daemon (`web.create_app` + `web.serve`), or None while the web room provides neither."""
    try:
        from comparimg.web import create_app, serve
    except ImportError:
        return None

    async def start(service):
        settings = service.settings
        app = create_app(service.door, config_path=config_path)
        return await serve(app, settings.http.host, settings.http.port)

    return start


def add_install_service_command(subcommands: argparse._SubParsersAction) -> None:
    """Declare `comparimg install-service [--user] [--config FILE] [--root DIR] [--enable] [--run-as U]`."""
    parser = subcommands.add_parser(
        "install-service",
        help="write the systemd unit and a starter configuration",
        description="Write comparimg.service (system, or with --user for systemctl --user) and, if absent, "
        "a starter configuration; then print the systemctl commands, or run them with --enable.",
    )
    parser.add_argument("--user", action="store_true", help="install for `systemctl --user`")
    parser.add_argument("--config", metavar="FILE", help="configuration file the unit uses")
    parser.add_argument("--root", metavar="DIR", help="write under this folder instead of / (for packaging)")
    parser.add_argument("--enable", action="store_true", help="run systemctl daemon-reload and enable --now")
    parser.add_argument(
        "--run-as",
        metavar="USER",
        help="account of the system service (default: $SUDO_USER or the current user)",
    )
    parser.set_defaults(handler=run_install_service)


def run_install_service(args: argparse.Namespace) -> int:
    """Given parsed `install-service` arguments, write the files and print or run systemctl."""
    from comparimg.install import install

    try:
        return install(
            user_mode=args.user, config=args.config, prefix=args.root, enable=args.enable, run_as=args.run_as
        )
    except (OSError, KeyError) as error:
        print(f"comparimg install-service: {error}", file=sys.stderr)
        return EXIT_FAILED


COMMANDS += [add_run_command, add_install_service_command]


# ---- clients of the running daemon: status, groups, decide, apply, undo (owned by the web room) -------


def add_client_commands(subcommands: argparse._SubParsersAction) -> None:
    """Declare `comparimg status | groups | decide | apply | undo` (HTTP clients, see comparimg.client)."""
    from comparimg.client import add_client_commands as add_clients

    add_clients(subcommands)


COMMANDS += [add_client_commands]
