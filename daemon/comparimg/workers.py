"""Worker processes that run hostile-input work (decoding images) with a time and a memory limit.

A worker that crashes (a decoder's segfault or abort), hangs past the time limit or is killed for memory is
replaced by a fresh one, and its task ends as an `ImageError` with a reason; other tasks go on. Workers are
also recycled after `max_tasks` tasks, so a slow leak in a decoder cannot grow without bound.

    with WorkerPool(size=2, limits=WorkerLimits(timeout_seconds=30, memory_limit_mb=1024)) as pool:
        fingerprint = pool.run(hashing.fingerprint_file, path)          # blocking, thread-safe
        fingerprint = await pool.run_async(hashing.fingerprint_file, path)   # from asyncio
        for args, outcome in pool.map_unordered(hashing.fingerprint_file, [(p,) for p in paths]): ...

Tasks are plain module-level functions and picklable arguments; a task reports a bad file by raising
`ImageError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import resource
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from comparimg.model import ImageError

PRELOAD = ("comparimg.hashing",)  # imported once by the fork server, before it forks any worker
log = logging.getLogger(__name__)
JOIN_SECONDS = 5.0
CANCEL_POLL_SECONDS = 0.05


class Cancelled(Exception):
    """Work given up because its caller asked to stop (the daemon is stopping); nothing was recorded."""


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    """What one task may use: wall-clock seconds, address space in MB (0 = unlimited), tasks per worker."""

    timeout_seconds: float = 30.0
    memory_limit_mb: int = 1024
    max_tasks: int = 1000


class WorkerPool:
    """A fixed number of worker processes, each serving one task at a time over its own pipe."""

    def __init__(
        self, size: int = 0, limits: WorkerLimits = WorkerLimits(), start_method: str = "forkserver"
    ):
        self.size = size or os.cpu_count() or 1
        self.limits = limits
        self._context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self._context.set_forkserver_preload(list(PRELOAD))
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._threads = ThreadPoolExecutor(self.size, thread_name_prefix="comparimg-worker")
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._closed = False
        self.replaced = 0
        self._started = False

    def start(self) -> None:
        """Start the worker processes (done by the first task; call it to pay the start-up cost early)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        for _ in range(self.size):
            worker = self._start_worker()
            self._idle.put(worker)
            if self._closed:  # closed while starting (start_in_background): do not leave it running
                self._forget(worker)
                worker.stop()

    def start_in_background(self) -> None:
        """Start the worker processes from another thread, so their start-up overlaps the caller's work."""
        threading.Thread(target=self.start, name="comparimg-worker-start", daemon=True).start()

    def run(self, func: Callable[..., Any], *args: Any) -> Any:
        """Given a module-level function and its arguments, run it in a worker and return its result.

        Raise ImageError when the task raises it, or when the worker crashes, times out or runs out of
        memory (the worker is then replaced).
        """
        self.start()
        worker = self._take_idle()
        if not worker.process.is_alive():  # died while idle (OOM killer...): not this task's fault
            worker = self._replace(worker)
        try:
            outcome = worker.call(func, args, self.limits.timeout_seconds)
        except _WorkerLost as lost:
            if self._closed:  # killed by close(): the task was abandoned, not the file's fault
                raise ImageError("worker pool closed") from None
            worker = self._replace(worker)
            raise ImageError(lost.reason) from None
        finally:
            if worker.tasks >= self.limits.max_tasks and not self._closed:
                worker = self._replace(worker)
            self._idle.put(worker)
        status, value = outcome
        if status == "error":
            raise ImageError(value)
        return value

    async def run_async(self, func: Callable[..., Any], *args: Any) -> Any:
        """Given a function and its arguments, run it in a worker without blocking the event loop.

        Raise ImageError as `run` does.
        """
        return await asyncio.get_running_loop().run_in_executor(self._threads, self.run, func, *args)

    def submit(self, func: Callable[..., Any], *args: Any) -> Future:
        """Given a function and its arguments, return a Future of `run(func, *args)`."""
        return self._threads.submit(self.run, func, *args)

    def map_unordered(
        self,
        func: Callable[..., Any],
        arguments: Iterable[tuple],
        cancel: threading.Event | None = None,
        while_waiting: Callable[[], None] | None = None,
    ) -> Iterator[tuple[tuple, Any | ImageError]]:
        """Given a function, an iterable of argument tuples and optionally a stop event and what to run
        while results are awaited, yield (arguments, result or ImageError).

        Results come in completion order; at most twice the pool size tasks are in flight at once. Once
        `cancel` is set, raise Cancelled within CANCEL_POLL_SECONDS: queued tasks are dropped, running
        ones are left to finish (or to be killed by `close`) and their results are never yielded.
        `while_waiting` is called before each wait for results and then every CANCEL_POLL_SECONDS.
        """
        pending: dict[Future, tuple] = {}
        try:
            for args in arguments:
                _check(cancel)
                pending[self.submit(func, *args)] = args
                if len(pending) >= 2 * self.size:
                    yield from _collect(pending, cancel, while_waiting)
            while pending:
                yield from _collect(pending, cancel, while_waiting)
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        """Stop every worker: an idle one by closing its pipe (one that does not leave is killed), a busy
        one (its task abandoned, as after `map_unordered` was cancelled) by killing it at once."""
        self._closed = True
        self._threads.shutdown(wait=False, cancel_futures=True)
        idle = set()
        with contextlib.suppress(queue.Empty):
            while True:
                idle.add(self._idle.get_nowait())
        with self._lock:
            workers = list(self._workers)
            self._workers.clear()
        for worker in workers:
            if worker not in idle:
                worker.process.kill()
        self._threads.shutdown(wait=True)
        for worker in workers:  # all told first, then awaited: they wind down side by side
            worker.connection.close()
        for worker in workers:
            worker.stop()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _take_idle(self) -> _Worker:
        while True:
            if self._closed:
                raise ImageError("worker pool closed")
            with contextlib.suppress(queue.Empty):
                return self._idle.get(timeout=CANCEL_POLL_SECONDS)

    def _start_worker(self) -> _Worker:
        worker = _Worker(self._context, self.limits.memory_limit_mb)
        with self._lock:
            self._workers.add(worker)
        return worker

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            self._workers.discard(worker)

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        self._forget(worker)
        with self._lock:
            self.replaced += 1
        return self._start_worker()


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled()


def _collect(
    pending: dict[Future, tuple],
    cancel: threading.Event | None,
    while_waiting: Callable[[], None] | None = None,
) -> Iterator[tuple[tuple, Any]]:
    done: set[Future] = set()
    poll = CANCEL_POLL_SECONDS if cancel or while_waiting else None
    while not done:
        _check(cancel)
        if while_waiting is not None:
            while_waiting()
        done, _ = wait(pending, timeout=poll, return_when=FIRST_COMPLETED)
    for future in done:
        _check(cancel)
        args = pending.pop(future)
        try:
            yield args, future.result()
        except ImageError as error:
            yield args, error


class _WorkerLost(Exception):
    def __init__(self, reason: str):
        self.reason = reason


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, context: Any, memory_limit_mb: int):
        self.connection, child_end = context.Pipe()
        self.process = context.Process(
            target=serve_tasks,
            args=(child_end, memory_limit_mb, list(sys.path)),
            daemon=True,
            name="comparimg-worker",
        )
        self.process.start()
        child_end.close()
        self.tasks = 0

    def call(self, func: Callable, args: tuple, timeout: float) -> tuple[str, Any]:
        self.tasks += 1
        try:
            self.connection.send((func, args))
            if not self.connection.poll(timeout):
                raise _WorkerLost(f"timed out after {timeout:g} s")
            return self.connection.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise _WorkerLost(self._death_reason()) from None

    def _death_reason(self) -> str:
        self.process.join(JOIN_SECONDS)
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"decoder crashed ({signal.Signals(-code).name})"
        return f"decoder crashed (exit status {code})"

    def stop(self) -> None:
        self.connection.close()  # the worker reads EOF and leaves (closing twice is harmless)
        self.process.join(JOIN_SECONDS)
        if self.process.is_alive():
            self.kill()

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.connection.close()


def serve_tasks(connection: Any, memory_limit_mb: int, sys_path: list[str]) -> None:
    """Given the worker's pipe end, its memory limit and the parent's import path, serve tasks until EOF.

    Runs in the worker process. Each reply is ("ok", result) or ("error", reason).
    """
    sys.path[:] = sys_path
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if memory_limit_mb:
        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    while True:
        try:
            func, args = connection.recv()
        except EOFError:
            return
        connection.send(_run_task(func, args, memory_limit_mb))


def _run_task(func: Callable, args: tuple, memory_limit_mb: int) -> tuple[str, Any]:
    try:
        return "ok", func(*args)
    except ImageError as error:
        return "error", error.reason
    except MemoryError:
        return "error", f"out of memory (limit {memory_limit_mb} MB)"
    except Exception as error:  # the worker's loop boundary: a task's bug must not end the worker
        log.exception("task %s failed", getattr(func, "__name__", func))
        return "error", f"unexpected {type(error).__name__}: {error}"
