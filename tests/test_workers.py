"""Worker processes: results come back; crashes, hangs and memory blow-ups kill only their worker."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from comparimg.model import ImageError
from comparimg.workers import Cancelled, WorkerLimits, WorkerPool


def square(x: int) -> int:
    return x * x


def worker_pid(_: object = None) -> int:
    return os.getpid()


def abort(_: object = None) -> None:
    os.abort()


def sleep_forever(_: object = None) -> None:
    while True:
        time.sleep(3600)


def allocate_gigabytes(n: int) -> int:
    return len(bytearray(n * 1024**3))


def refuse(path: str) -> None:
    raise ImageError(f"not an image: {path}")


def divide_by_zero(_: object = None) -> float:
    return 1 / 0


@pytest.fixture
def pool():
    with WorkerPool(2, WorkerLimits(timeout_seconds=2.0, memory_limit_mb=512)) as opened:
        yield opened


def test_results_come_back_from_other_processes(pool):
    assert pool.run(square, 7) == 49
    assert pool.run(worker_pid) != os.getpid()


def test_an_image_error_in_a_task_keeps_its_reason_and_its_worker(pool):
    with pytest.raises(ImageError, match=r"not an image: x\.jpg"):
        pool.run(refuse, "x.jpg")
    assert pool.replaced == 0


def test_a_crashing_worker_is_replaced_and_the_task_reports_it(pool):
    with pytest.raises(ImageError, match=r"decoder crashed \(SIGABRT\)"):
        pool.run(abort)
    assert pool.replaced == 1
    assert [pool.run(square, i) for i in range(4)] == [0, 1, 4, 9]


def test_a_hanging_worker_is_killed_after_the_time_limit(pool):
    started = time.monotonic()
    with pytest.raises(ImageError, match="timed out after 2 s"):
        pool.run(sleep_forever)
    assert time.monotonic() - started < 10
    assert pool.replaced == 1
    assert pool.run(square, 3) == 9


def test_a_memory_blow_up_is_stopped_by_the_limit(pool):
    with pytest.raises(ImageError, match=r"out of memory \(limit 512 MB\)"):
        pool.run(allocate_gigabytes, 2)
    assert pool.run(square, 5) == 25


def test_an_unexpected_exception_is_an_error_not_a_dead_pool(pool):
    with pytest.raises(ImageError, match="ZeroDivisionError"):
        pool.run(divide_by_zero)
    assert pool.replaced == 0


def test_map_goes_on_past_every_kind_of_failure(pool):
    tasks = [(square, (2,)), (abort, (None,)), (sleep_forever, (None,)), (refuse, ("a",)), (square, (3,))]
    outcomes: dict[str, list] = {}
    for (func, _), outcome in pool.map_unordered(call, tasks):
        reported = outcome.reason if isinstance(outcome, ImageError) else outcome
        outcomes.setdefault(func.__name__, []).append(reported)
    assert sorted(outcomes["square"]) == [4, 9]
    assert outcomes["abort"] == ["decoder crashed (SIGABRT)"]
    assert outcomes["sleep_forever"] == ["timed out after 2 s"]
    assert outcomes["refuse"] == ["not an image: a"]


def call(func, args):
    return func(*args)


def test_map_returns_every_result(pool):
    results = sorted(result for _, result in pool.map_unordered(square, [(i,) for i in range(20)]))
    assert results == [i * i for i in range(20)]


def test_workers_are_recycled_after_their_task_budget():
    with WorkerPool(1, WorkerLimits(timeout_seconds=5, max_tasks=2)) as pool:
        pids = [pool.run(worker_pid) for _ in range(4)]
    assert pids[0] == pids[1] != pids[2] == pids[3]


async def test_usable_from_asyncio(pool):
    results = await asyncio.gather(pool.run_async(square, 4), pool.run_async(square, 5))
    assert results == [16, 25]
    with pytest.raises(ImageError, match="crashed"):
        await pool.run_async(abort)


def test_close_stops_every_worker():
    with WorkerPool(2, WorkerLimits(timeout_seconds=5)) as pool:  # the with: closed even if an assert fails
        assert pool.run(square, 2) == 4
        processes = [w.process for w in pool._workers]
        assert len(processes) == 2
        pool.close()
        assert all(not p.is_alive() for p in processes)


def test_a_worker_that_died_while_idle_is_replaced_before_the_next_task():
    import signal
    from multiprocessing.connection import wait

    with WorkerPool(1, WorkerLimits(timeout_seconds=5)) as pool:
        pid = pool.run(worker_pid)
        (worker,) = pool._workers
        os.kill(pid, signal.SIGKILL)
        # The sentinel is readable once the death is known to the parent (as the pool will see it).
        assert wait([worker.process.sentinel], timeout=10), "the worker should have died"
        assert pool.run(square, 6) == 36
        assert pool.replaced == 1


def test_a_cancelled_map_stops_at_once_and_close_kills_the_busy_workers():
    with WorkerPool(2, WorkerLimits(timeout_seconds=60)) as pool:  # the with: closed even if an assert fails
        pool.start()
        pids = {p.process.pid for p in pool._workers}
        cancel = threading.Event()
        results = pool.map_unordered(sleep_forever, [(i,) for i in range(10)], cancel)
        threading.Timer(0.5, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(Cancelled):
            next(results)
        assert time.monotonic() - started < 1.5
        started = time.monotonic()
        pool.close()  # both workers are still inside sleep_forever: killed, not waited for
        assert time.monotonic() - started < 2.0
        assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)  # killed and reaped
