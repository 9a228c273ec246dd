"""Command-line clients of the running daemon's HTTP API: `comparimg status | groups | decide | apply |
undo | model`. They read the address and the token file from the configuration and speak JSON over
loopback with the standard library (aiohttp stays in the web room)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from comparimg.model import ComparImgError

# The configuration and urllib.request are imported where they are used: every `comparimg` command
# imports this module to declare its subcommands, and `comparimg scan` needs neither.

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 69  # EX_UNAVAILABLE
EXIT_CONFIG = 78
TIMEOUT_SECONDS = 120
BATCH_POLL_SECONDS = 0.5


class ApiFailure(ComparImgError):
    """The daemon answered with an error (`status`, `code`, `message`) or could not be reached (status 0)."""

    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message
        super().__init__(f"{status} {code}: {message}" if status else message)


def endpoint(args: argparse.Namespace) -> tuple[str, str]:
    """Given the common options (--config, --url, --token-file), return (base URL, token).

    Raise ConfigError for a bad configuration, OSError for an unreadable token file."""
    from comparimg.config import load_settings, reachable_base_url

    settings = load_settings(args.config or daemon_config_file())
    base = args.url or reachable_base_url(settings.http.host, settings.http.port)
    token_file = Path(args.token_file) if args.token_file else settings.http.token_file
    return base.rstrip("/"), token_file.read_text(encoding="ascii").strip()


def daemon_config_file() -> Path | None:
    """Return the configuration file of the daemon a client without --config talks to: the first that
    exists of `config_candidates()`, or None (the built-in defaults, as the daemon then uses)."""
    return next((path for path in config_candidates() if path.is_file()), None)


def config_candidates() -> tuple[Path, ...]:
    """Return where a daemon's configuration is looked for, in order: the user service's (what
    `install-service --user` writes and its unit runs with), the one a plain `comparimg run` keeps in the
    state folder, the system service's (whose starter names its token file)."""
    from comparimg.config import SYSTEM_CONFIG_FILE, saved_config_file, user_config_file

    return user_config_file(), saved_config_file(), SYSTEM_CONFIG_FILE


def call(base: str, token: str, method: str, path: str, body: Any = None) -> Any:
    """Send one API request and return the decoded JSON answer. Raise ApiFailure."""
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base}{path}",
        data=data,
        method=method,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raise _failure(error) from None
    except (urllib.error.URLError, OSError) as error:
        raise ApiFailure(0, "unreachable", f"cannot reach the daemon at {base}: {error}") from None


def _failure(error: urllib.error.HTTPError) -> ApiFailure:
    try:
        detail = json.loads(error.read())["error"]
        return ApiFailure(error.code, detail["code"], detail["message"])
    except (ValueError, KeyError, TypeError):
        return ApiFailure(error.code, "http_error", str(error.reason))


# --- what each subcommand asks --------------------------------------------------------------------------

Ask = Callable[[str, str, Any], Any]  # (method, path, body) → the decoded answer; raises ApiFailure
Request = tuple[str, str, Any]


def status_request(args: argparse.Namespace) -> Request:
    """Return (method, path, body) for `status`."""
    return "GET", "/api/status", None


def groups_request(args: argparse.Namespace) -> Request:
    """Return (method, path, body) for `groups`."""
    query = {"kind": args.kind, "state": args.state, "limit": args.limit, "offset": args.offset}
    text = "&".join(f"{key}={value}" for key, value in query.items() if value not in (None, ""))
    return "GET", f"/api/groups?{text}", None


def decide_requests(args: argparse.Namespace) -> list[Request]:
    """Return the requests of `decide` keep / trash / move (one decision per FILE_ID) or not-duplicates
    (one decision for all the files, or the group). Raise ApiFailure (usage) when no FILE_ID is given."""
    if args.action == "not-duplicates":
        body: dict[str, Any] = {"action": "not_duplicates"}
        if args.group is not None:
            body["group_id"] = args.group
        if args.ids:
            body["file_ids"] = args.ids
        return [("POST", "/api/decisions", body)]
    if not args.ids:
        raise ApiFailure(0, "usage", f"{args.action} needs at least one FILE_ID")
    extra = {"target": args.target} if args.action == "move" else {}
    if args.group is not None:
        extra["group_id"] = args.group
    return [("POST", "/api/decisions", {"action": args.action, "file_id": i, **extra}) for i in args.ids]


def keep_suggested_requests(group: dict) -> list[Request]:
    """Given a group as `GET /api/groups/{id}` shows it, return the decisions that keep its suggested copy
    (the first member when none is suggested) and trash the rest, the keep first. A member in a reference
    folder is kept (those are never trashed); a member not present on disk is left alone."""
    members = [m for m in group["members"] if m.get("state", "ok") == "ok"]
    keeper = next((m for m in members if m["suggested"] == "keep"), members[0] if members else None)
    if keeper is None:
        return []
    others = [m for m in members if m is not keeper]
    ordered = [keeper, *sorted(others, key=lambda m: not m.get("reference"))]
    return [
        (
            "POST",
            "/api/decisions",
            {
                "action": "keep" if member is keeper or member.get("reference") else "trash",
                "file_id": member["file_id"],
                "group_id": group["id"],
            },
        )
        for member in ordered
    ]


def apply_request(args: argparse.Namespace) -> Request:
    """Return (method, path, body) for `apply`."""
    return "POST", "/api/decisions/apply", {"ids": args.ids} if args.ids else {}


def undo_request(args: argparse.Namespace) -> Request:
    """Return (method, path, body) for `undo` of one action. Raise ApiFailure (usage) without ACTION_ID."""
    if args.action_id is None:
        raise ApiFailure(0, "usage", "undo needs an ACTION_ID or --batch BATCH_ID")
    return "POST", f"/api/undo/{args.action_id}", {}


def rule_body(args: argparse.Namespace) -> dict[str, Any]:
    """Return the `rule` of `decide --rule` from its options (kinds, folder, reference, verifier confidence,
    action, target)."""
    rule: dict[str, Any] = {"kinds": args.kind or ["exact", "near"], "action": args.rule_action}
    if args.folder:
        rule["folder"] = args.folder
    if args.reference_only:
        rule["reference_only"] = True
    if args.min_confidence is not None:
        rule["min_confidence"] = args.min_confidence
    if args.rule_action == "move":
        rule["target"] = args.target
    return rule


def follow_batch(ask: Ask, batch_id: int, interval: float = BATCH_POLL_SECONDS) -> dict:
    """Poll a batch until it stops running (done, cancelled, or stopped with a reason); return it."""
    import time

    while True:
        batch = ask("GET", f"/api/decisions/bulk/{batch_id}", None)
        if not batch["running"]:
            return batch
        time.sleep(interval)


def model_request(args: argparse.Namespace) -> Request:
    """Return (method, path, body) for `model status | retrain | restore`."""
    if args.what == "status":
        return "GET", "/api/model", None
    return "POST", f"/api/model/{args.what}", {}


# --- how each subcommand runs: one request, or several, each answer yielded as it comes -----------------


def one_request(make_request: Callable[[argparse.Namespace], Request]) -> Callable[..., Iterator[Any]]:
    """Given a function of the arguments returning one request, return the runner that sends it."""

    def run(ask: Ask, args: argparse.Namespace) -> Iterator[Any]:
        yield ask(*make_request(args))

    return run


def run_decide(ask: Ask, args: argparse.Namespace) -> Iterator[dict]:
    """Queue the decisions of `decide`, yielding each; the first refusal stops the rest (ApiFailure).
    For keep-suggested, a group's trash decisions are sent only once its keeper's keep was queued.
    With --rule: yield the preview, then (without --dry-run) apply exactly that set and yield the batch."""
    if args.rule:
        if args.action is not None or args.ids:
            raise ApiFailure(0, "usage", "decide --rule takes no action and no ids (use --action)")
        preview = ask("POST", "/api/decisions/bulk", {"dry_run": True, "rule": rule_body(args)})
        yield preview
        if args.dry_run or not preview["files"]:
            return
        batch = ask("POST", "/api/decisions/bulk", {"dry_run": False, "preview_id": preview["id"]})
        yield follow_batch(ask, batch["id"])
        return
    if args.action is None:
        raise ApiFailure(0, "usage", "decide needs an action (keep, trash, move...) or --rule")
    if args.action != "keep-suggested":
        for request in decide_requests(args):
            yield ask(*request)
        return
    if not args.ids:
        raise ApiFailure(0, "usage", "keep-suggested needs at least one GROUP_ID")
    for group_id in args.ids:
        requests = keep_suggested_requests(ask("GET", f"/api/groups/{group_id}", None))
        if not requests:
            raise ApiFailure(0, "refused", f"group {group_id} has no file present on disk to keep")
        for request in requests:
            yield ask(*request)


def run_undo(ask: Ask, args: argparse.Namespace) -> Iterator[dict]:
    """Undo one action, or (--batch) every action of a batch, following it to the end."""
    if args.batch is None:
        yield ask(*undo_request(args))
        return
    if args.action_id is not None:
        raise ApiFailure(0, "usage", "undo takes an ACTION_ID or --batch BATCH_ID, not both")
    batch = ask("POST", f"/api/undo/batch/{args.batch}", {})
    yield follow_batch(ask, batch["id"])


# --- how each answer is printed -------------------------------------------------------------------------


def show_status(answer: dict) -> str:
    """Return the status as one line."""
    counts = answer.get("counts", {})
    paused = ", ".join(answer.get("paused_roots", [])) or "none"
    return (
        f"state {answer.get('state')}  files {counts.get('files_ok', 0)}  groups {counts.get('groups', 0)}  "
        f"decisions queued {answer.get('decisions_queued', 0)}  hashing queue {answer.get('queue_depth', 0)}"
        f"  paused roots: {paused}"
    )


def show_groups(answer: dict) -> str:
    """Return the groups, one line per member: the suggested keeper (a proposal) and the decision taken
    on a member (queued or applied) are told apart."""
    lines = [f"{answer['total']} group(s)"]
    for group in answer["groups"]:
        lines.append(f"group {group['id']} ({group['kind']}, {group['state']}):")
        for member in group["members"]:
            notes = member_notes(member)
            lines.append(
                f"  file {member['file_id']:>6}  {member['width']}x{member['height']}  "
                f"{member['size']:>10} B  {member['path']}" + (f"  [{'; '.join(notes)}]" if notes else "")
            )
    return "\n".join(lines)


def member_notes(member: dict) -> list[str]:
    """Given a group member as the API shows it, return what to say about it besides its file facts."""
    notes = []
    if member.get("suggested") == "keep":
        notes.append("suggested keeper")
    if member.get("reference"):
        notes.append("reference folder, always kept")
    decision = member.get("decision")
    if decision:
        notes.append(f"decision {decision['id']}: {decision['action']}, {decision['state']}")
    return notes


def show_decision(answer: dict) -> str:
    """Return one decision as one line (or a preview / batch of decisions by rule)."""
    if "preview_id" in answer:
        return show_batch(answer)
    return _show_one_decision(answer)


def _show_one_decision(answer: dict) -> str:
    """Return the decision as one line."""
    if answer.get("file_ids"):
        who = f"files {', '.join(map(str, answer['file_ids']))}"
    else:
        who = f"file {answer.get('file_id')} {answer.get('path') or ''}".rstrip()
    return f"decision {answer['id']}: {answer['action']} {who}: {answer['state']}"


def show_apply(answer: dict) -> str:
    """Return the outcome of each applied decision."""
    lines = [f"applied {answer['applied']}, refused {answer['refused']}, failed {answer['failed']}"]
    for outcome in answer["outcomes"]:
        where = f" → {outcome['dest']}" if outcome.get("dest") else ""
        why = f" ({outcome['reason']})" if outcome.get("reason") else ""
        action = f" action {outcome['action_id']}" if outcome.get("action_id") else ""
        lines.append(
            f"  decision {outcome['decision_id']}: {outcome['action']} {outcome['source']}{where}: "
            f"{outcome['state']}{action}{why}"
        )
    return "\n".join(lines)


def show_batch(answer: dict) -> str:
    """Return a preview or batch of decisions by rule: counts, bytes, folders, sample groups, progress."""
    mib = answer["bytes"] / 2**20
    lines = [
        f"preview {answer['id']} ({answer['state']}): {answer['groups']} groups, {answer['files']} files to "
        f"{answer['rule']['action']}, {mib:.1f} MiB freed, {answer['folders']} folders"
    ]
    lines += [f"  {f['folder']}: {f['files']} files, {f['bytes']} bytes" for f in answer["per_folder"][:10]]
    if answer.get("skipped"):
        left = ", ".join(f"{why} {count}" for why, count in sorted(answer["skipped"].items()))
        lines.append(f"  groups left alone: {left}")
    for group in answer["sample"][:5]:
        keep = ", ".join(f["path"] for f in group["keep"])
        gone = ", ".join(f["path"] for f in group["remove"])
        lines.append(f"  group {group['group_id']}: keep {keep}; {answer['rule']['action']} {gone}")
    if answer["state"] != "previewed":
        progress = answer["progress"]
        counts = ", ".join(
            f"{k} {progress[k]}" for k in ("applied", "refused", "failed", "undone", "pending")
        )
        lines.append(f"batch {answer['id']} {answer['state']}: {counts}")
        if answer.get("reason"):
            lines.append(f"  {answer['reason']}")
    else:
        lines.append("(preview: nothing moved yet)")
    return "\n".join(lines)


def show_undo(answer: dict) -> str:
    """Return the restore as one line (or the batch undone)."""
    if "preview_id" in answer:
        return show_batch(answer)
    return f"action {answer['undo_of']} undone: {answer['source']} → {answer['dest']} ({answer['state']})"


def show_model(answer: dict) -> str:
    """Return the model status, a retraining's outcome or a restore, a few lines."""
    verifier = answer["verifier"]
    if verifier["source"] is None:  # none could be loaded: the daemon runs in mode hash
        in_use = "verifier in use: none"
    else:
        in_use = f"verifier in use: {verifier['source']} (sha256 {verifier['sha256'][:12]})"
    if verifier.get("problem"):
        in_use += f"\n  problem: {verifier['problem']}"
    lines = [in_use]
    if "adopted" in answer:  # a retraining
        verdict = "adopted" if answer["adopted"] else "not adopted"
        return "\n".join([f"retrained from {answer['labels']} labels: {verdict}: {answer['reason']}", in_use])
    if "previous" in answer:
        lines.append(f"previous: {answer['previous'] or 'none'}")
    if "labels" in answer:
        labels = answer["labels"]
        kinds = ", ".join(f"{kind} {count}" for kind, count in labels["by_label"].items()) or "none yet"
        lines.append(f"labels: {labels['total']} ({kinds}; a retraining needs {labels['needed']})")
        last = answer["retraining"]["last"]
        if answer["retraining"]["running"]:
            lines.append("retraining: running")
        if last:
            state = "adopted" if last["adopted"] else "not adopted"
            lines.append(f"last retraining: {state}: {last['reason']}")
    return "\n".join(lines)


# name → (runner, how an answer is printed, help, whether --json prints a list of answers)
COMMANDS = {
    "status": (one_request(status_request), show_status, "show the daemon's state and counts", False),
    "groups": (one_request(groups_request), show_groups, "list duplicate groups", False),
    "decide": (
        run_decide,
        show_decision,
        "queue keep / trash / move for files, keep the suggested copy of groups and trash the rest, "
        "or mark files not duplicates",
        True,
    ),
    "apply": (one_request(apply_request), show_apply, "apply the queued decisions", False),
    "undo": (run_undo, show_undo, "put the file of an applied action (or a whole batch) back", False),
    "model": (
        one_request(model_request),
        show_model,
        "show the duplicate verifier in use, retrain it from your decisions, or restore the previous one",
        False,
    ),
}


def run_client(args: argparse.Namespace) -> int:
    """Given parsed arguments of one client subcommand, ask the daemon and print each answer as it comes;
    return 0, 1 when the daemon refused (what was done before stays done, and is printed), 69 when it
    cannot be reached, 78 for a bad configuration."""
    runner, show, _, as_list = COMMANDS[args.command]
    answers: list[Any] = []
    status = EXIT_OK
    try:
        base, token = endpoint(args)
        for answer in runner(lambda method, path, body: call(base, token, method, path, body), args):
            answers.append(answer)
            if not args.json:
                print(show(answer), flush=True)
    except ComparImgError as error:
        print(f"comparimg {args.command}: {error}", file=sys.stderr)
        if isinstance(error, ApiFailure):
            status = EXIT_UNREACHABLE if error.status == 0 and error.code == "unreachable" else EXIT_REFUSED
        else:
            status = EXIT_CONFIG
    except OSError as error:
        print(f"comparimg {args.command}: cannot read the token: {error}", file=sys.stderr)
        status = EXIT_REFUSED
    if args.json and (answers or status == EXIT_OK):
        print(json.dumps(answers if as_list else answers[0], indent=2))
    if args.command == "apply" and answers and (answers[0]["refused"] or answers[0]["failed"]):
        return EXIT_REFUSED
    progress = answers[-1].get("progress") if answers and isinstance(answers[-1], dict) else None
    if progress and answers[-1]["state"] != "previewed" and (progress["refused"] or progress["failed"]):
        return EXIT_REFUSED
    return status


def add_common(parser: argparse.ArgumentParser) -> None:
    """Declare the options every client subcommand takes."""
    parser.add_argument("--config", metavar="FILE", help="configuration of the daemon (address, token file)")
    parser.add_argument(
        "--url", metavar="URL", help="base URL of the daemon (default: from the configuration)"
    )
    parser.add_argument("--token-file", metavar="FILE", help="token file (default: from the configuration)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    parser.set_defaults(handler=run_client)


def add_client_commands(subcommands: argparse._SubParsersAction) -> None:
    """Declare `comparimg status | groups | decide | apply | undo` on the cli's subparsers."""
    for name, (_, _, help_text, _) in COMMANDS.items():
        parser = subcommands.add_parser(name, help=f"{help_text} (running daemon)", description=help_text)
        add_common(parser)
        _add_arguments(name, parser)


def _add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "groups":
        parser.add_argument("--kind", choices=("exact", "near", "similar"))
        parser.add_argument("--state", choices=("pending", "decided"))
        parser.add_argument("--limit", type=int, default=50)
        parser.add_argument("--offset", type=int, default=0)
    elif name == "decide":
        parser.add_argument(
            "action", nargs="?", choices=("keep", "trash", "move", "not-duplicates", "keep-suggested")
        )
        parser.add_argument(
            "ids",
            nargs="*",
            type=int,
            metavar="ID",
            help="the files (FILE_ID...) to keep, trash, move or mark not duplicates; for keep-suggested "
            "the groups (GROUP_ID...) whose suggested copy is kept and the rest trashed",
        )
        parser.add_argument("--target", help="configured move target (for move)")
        parser.add_argument(
            "--group", type=int, help="group the files belong to (for not-duplicates: all its members)"
        )
        rule = parser.add_argument_group(
            "decisions by rule",
            "--rule: for every undecided group matching the filter, keep the suggested copy (and every "
            "reference file) and trash or move the rest. The preview is printed first; without --dry-run "
            "exactly the previewed set is then applied as one batch (undo it with `undo --batch ID`).",
        )
        rule.add_argument("--rule", action="store_true", help="decide many groups by rule")
        rule.add_argument(
            "--kind",
            action="append",
            choices=("exact", "near", "similar"),
            help="group kind, repeatable (default: exact and near; similar only when named)",
        )
        rule.add_argument("--folder", metavar="PREFIX", help="only groups with a member under this folder")
        rule.add_argument(
            "--reference-only", action="store_true", help="only groups holding a reference file"
        )
        rule.add_argument(
            "--min-confidence",
            type=float,
            metavar="P",
            help="only groups whose every edge the verifier judged at least this sure (0-1)",
        )
        rule.add_argument(
            "--action", dest="rule_action", choices=("trash", "move"), default="trash", help="default: trash"
        )
        rule.add_argument("--dry-run", action="store_true", help="only show the preview")
        parser.epilog = "With --json, prints the list of the decisions queued (or the preview and batch)."
    elif name == "apply":
        parser.add_argument("ids", nargs="*", type=int, metavar="DECISION_ID", help="default: all queued")
    elif name == "model":
        parser.add_argument(
            "what",
            nargs="?",
            choices=("status", "retrain", "restore"),
            default="status",
            help="status (default): the model in use, labels, last retraining; retrain: from your labels, "
            "adopted only if it validates; restore: bring back the previous model",
        )
    elif name == "undo":
        parser.add_argument("action_id", type=int, nargs="?", metavar="ACTION_ID")
        parser.add_argument("--batch", type=int, metavar="BATCH_ID", help="undo every action of a batch")
