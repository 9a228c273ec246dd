"""A pytest plugin: no process outlives the test that started it (Linux).

Loaded by tests/conftest.py (`pytest_plugins`), or on its own with `-p process_guard`.

- The pytest process becomes a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so a process whose parent
  died (a daemon's worker after a kill -9, a shell's background job) is adopted by pytest instead of
  init, and stays in view.
- Each test: the processes that appeared during the test (its body and its function-scoped fixtures) and
  are still alive after its teardown get a grace period to leave, then are killed, and the test gets a
  teardown error naming their command lines. A process that was started during the test under a process
  that lives longer (a worker of a module-scoped pool, a renderer of a module-scoped Chromium) is checked
  the same way when the module's fixtures have been torn down, and blamed on the test it appeared in.
- Session end: any process still left fails the run (exit status 1) after being killed.

Exempt: multiprocessing's own helpers of the pytest process (its fork server and resource tracker), which
live as long as the interpreter and leave when pytest does. A helper counts as pytest's own only if it
shares a pipe with pytest; an adopted helper of a dead daemon does not.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

PR_SET_CHILD_SUBREAPER = 36
GRACE_SECONDS = 5.0  # how long a process may take to leave once its test's finalisers have run
MULTIPROCESSING_HELPERS = (
    "from multiprocessing.forkserver import main",
    "from multiprocessing.resource_tracker",
)

ProcessKey = tuple[int, int]  # (pid, start time in clock ticks): a pid alone may be reused


@dataclass(frozen=True)
class Process:
    """What /proc/PID/stat tells of one process."""

    pid: int
    ppid: int
    state: str
    start: int

    @property
    def key(self) -> ProcessKey:
        return (self.pid, self.start)

    def command(self) -> str:
        """Return the command line (`[pid N]` when it has none, as a zombie; `(gone)` once it ended)."""
        try:
            raw = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return "(gone)"
        return raw.replace(b"\0", b" ").decode(errors="replace").strip() or f"[pid {self.pid}]"


def read_process(pid: int) -> Process | None:
    """Given a pid, return its line of /proc/PID/stat, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    fields = stat[stat.rindex(")") + 2 :].split()
    return Process(pid=pid, state=fields[0], ppid=int(fields[1]), start=int(fields[19]))


def children(pid: int) -> list[int]:
    """Given a pid, return the pids of its children (of any of its threads), zombies included."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(child) for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


def descendants(root: int) -> dict[ProcessKey, Process]:
    """Given a pid, return all its descendants, zombies included."""
    found, stack = {}, [root]
    while stack:
        for pid in children(stack.pop()):
            if (process := read_process(pid)) is not None:
                found[process.key] = process
                stack.append(pid)
    return found


def live_descendants(root: int) -> dict[ProcessKey, Process]:
    """Given a pid, return its descendants that are not zombies."""
    return {key: p for key, p in descendants(root).items() if p.state not in "ZX"}


def is_alive(key: ProcessKey) -> bool:
    """Given a process key, return whether that very process still runs (not a zombie)."""
    process = read_process(key[0])
    return process is not None and process.start == key[1] and process.state not in "ZX"


def pipes(pid: int, lowest_fd: int = 0) -> set[str]:
    """Given a pid, return the pipes (`pipe:[inode]`) its file descriptors from `lowest_fd` up refer to."""
    found = set()
    try:
        entries = list(os.scandir(f"/proc/{pid}/fd"))
    except OSError:
        return found
    for entry in entries:
        try:
            if int(entry.name) >= lowest_fd and (target := os.readlink(entry.path)).startswith("pipe:"):
                found.add(target)
        except OSError:
            continue
    return found


def is_own_multiprocessing_helper(process: Process) -> bool:
    """Given a descendant, return whether it is the fork server or resource tracker of this very process.
    Those hold, above stdio, the reading end of a pipe whose writing end this process holds."""
    if process.ppid != os.getpid() or not any(h in process.command() for h in MULTIPROCESSING_HELPERS):
        return False
    return bool(pipes(process.pid, lowest_fd=3) & pipes(os.getpid()))


def become_subreaper() -> None:
    """Make this process adopt its orphaned descendants (Linux). Raise OSError if the kernel refuses."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(errno)}")


def running_now() -> dict[ProcessKey, Process]:
    """Return the live descendants of this process, less its own multiprocessing helpers."""
    found = live_descendants(os.getpid())
    return {key: p for key, p in found.items() if not is_own_multiprocessing_helper(p)}


def wait_gone(keys: set[ProcessKey], timeout: float = GRACE_SECONDS) -> set[ProcessKey]:
    """Given process keys, wait up to `timeout` seconds for them to end; return those still alive."""
    deadline = time.monotonic() + timeout
    while (alive := {key for key in keys if is_alive(key)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def kill(processes: list[Process]) -> None:
    """SIGKILL the given processes and every descendant of theirs; reap those that were our children."""
    victims = {p.key: p for p in processes}
    for process in processes:
        victims.update(live_descendants(process.pid))
    for key, process in victims.items():
        if is_alive(key):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
    wait_gone(set(victims), timeout=5.0)
    for process in victims.values():  # only these: another child's zombie may still be awaited by its Popen
        if (now := read_process(process.pid)) is not None and now.ppid == os.getpid() and now.state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(process.pid, os.WNOHANG)


def reap_zombie_children() -> None:
    """Reap the zombies whose parent is this process (adopted orphans that ended, leftovers); only once
    the tests are over, as a test's Popen may still be about to wait for its own."""
    for pid in children(os.getpid()):
        if (process := read_process(pid)) is not None and process.state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(process.pid, os.WNOHANG)


def describe(processes: list[tuple[str, Process]]) -> str:
    """Given (test id or "", process) pairs, return one line per process naming its test and command."""
    return "\n".join(
        f"  pid {p.pid}{f' started in {test}' if test else ''}: {p.command()[:300]}" for test, p in processes
    )


class ProcessGuard:
    """The plugin's state: which processes each test found, and which it left to its module's end."""

    def __init__(self, grace: float = GRACE_SECONDS) -> None:
        self.grace = grace
        self.before: dict[str, set[ProcessKey]] = {}  # test id -> processes that were running at its start
        self.deferred: dict[ProcessKey, tuple[str, Process]] = {}  # -> (test id, process)
        self.session_complaint = ""

    def start_test(self, nodeid: str) -> None:
        self.before[nodeid] = set(running_now())

    def end_test(self, nodeid: str, module_ends: bool) -> str:
        """Given a test whose teardown ran, kill what it left running; return the complaint (or "")."""
        before = self.before.pop(nodeid, None)
        leaks: list[tuple[str, Process]] = []
        if before is not None:
            now = running_now()
            mine = {key: p for key, p in now.items() if key not in before}
            for key, process in mine.items():
                if self._under_older_process(process, now, before):
                    self.deferred[key] = (nodeid, process)
            own = set(mine) - set(self.deferred)
            leaks += [(nodeid, mine[key]) for key in wait_gone(own, self.grace)]
        if module_ends and self.deferred:
            left = wait_gone(set(self.deferred), self.grace)
            leaks += [self.deferred[key] for key in left]
            self.deferred.clear()
        if not leaks:
            return ""
        complaint = "processes outlived the test that started them (killed now):\n" + describe(leaks)
        kill([p for _, p in leaks])
        return complaint

    @staticmethod
    def _under_older_process(
        process: Process, now: dict[ProcessKey, Process], before: set[ProcessKey]
    ) -> bool:
        """Given a process that appeared during a test, return whether one of its ancestors below pytest
        was already running before the test, or is pytest's own multiprocessing helper (a pool's worker
        may belong to a pool of a wider scope)."""
        by_pid = {p.pid: p for p in now.values()}
        parent = process.ppid
        while parent != os.getpid() and parent in by_pid:
            if by_pid[parent].key in before:
                return True
            parent = by_pid[parent].ppid
        # Stopped below pytest: only pytest's own multiprocessing helpers are left out of `now`.
        return parent != os.getpid()

    def end_session(self) -> str:
        """Kill whatever is still running at the end of the run; return the complaint (or "")."""
        self.deferred.clear()
        running = running_now()
        leaks = [("", running[key]) for key in wait_gone(set(running), self.grace)]
        complaint = ""
        if leaks:
            complaint = "processes were still running at the end of the test run (killed now):\n"
            complaint += describe(leaks)
            kill([p for _, p in leaks])
        reap_zombie_children()
        return complaint


GUARD = ProcessGuard()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "process_guard_grace",
        "seconds a process may take to leave after the teardown of the test that started it",
        default=str(GRACE_SECONDS),
    )


def pytest_configure(config: pytest.Config) -> None:
    GUARD.grace = float(config.getini("process_guard_grace"))
    become_subreaper()


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test(request: pytest.FixtureRequest):
    """Note the processes running before the test's own fixtures start (the check is in the teardown
    hook below, after every finaliser of the test, and of its module when that ends, has run)."""
    GUARD.start_test(request.node.nodeid)
    yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    module_ends = _module_ends(item, nextitem)
    try:
        result = yield
    except BaseException as error:  # a finaliser failed: still check, and say both
        if complaint := GUARD.end_test(item.nodeid, module_ends):
            error.add_note(complaint)
        raise
    if complaint := GUARD.end_test(item.nodeid, module_ends):
        pytest.fail(complaint, pytrace=False)
    return result


def _module_ends(item: pytest.Item, nextitem: pytest.Item | None) -> bool:
    """Return whether the fixtures of `item`'s module are torn down after it (the next test is elsewhere)."""
    return nextitem is None or nextitem.getparent(pytest.Module) is not item.getparent(pytest.Module)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    GUARD.session_complaint = GUARD.end_session()
    if GUARD.session_complaint and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if GUARD.session_complaint:
        terminalreporter.section("processes left running", sep="=", red=True, bold=True)
        terminalreporter.write_line(f"ERROR: {GUARD.session_complaint}", red=True, bold=True)
