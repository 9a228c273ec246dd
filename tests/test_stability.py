"""The stability tracker: a file is ready once its size and mtime stopped changing for settle_seconds."""

from comparimg.stability import StabilityTracker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(settle: float = 2.0) -> tuple[StabilityTracker, FakeClock]:
    clock = FakeClock()
    return StabilityTracker(settle, clock), clock


def test_a_file_is_ready_once_unchanged_for_the_settle_window():
    tracker, clock = make()
    assert not tracker.observe("/a.jpg", (10, 1))
    clock.advance(1.9)
    assert not tracker.observe("/a.jpg", (10, 1))
    clock.advance(0.1)
    assert tracker.observe("/a.jpg", (10, 1))
    assert "/a.jpg" not in tracker


def test_a_growing_file_restarts_the_window_each_time():
    tracker, clock = make()
    for size in range(1024, 20 * 1024, 1024):  # a slow writer: 1 KB per second
        assert not tracker.observe("/slow.jpg", (size, size))
        clock.advance(1.0)
    assert not tracker.observe("/slow.jpg", (size, size))
    clock.advance(2.0)
    assert tracker.observe("/slow.jpg", (size, size))


def test_same_size_but_new_mtime_counts_as_a_change():
    tracker, clock = make()
    tracker.observe("/a.jpg", (10, 1))
    clock.advance(5)
    assert not tracker.observe("/a.jpg", (10, 2))
    clock.advance(2)
    assert tracker.observe("/a.jpg", (10, 2))


def test_touch_restarts_the_window():
    tracker, clock = make()
    tracker.observe("/a.jpg", (10, 1))
    clock.advance(1.5)
    tracker.touch("/a.jpg")
    clock.advance(1.5)
    assert tracker.due() == []
    assert not tracker.observe("/a.jpg", (10, 1))
    clock.advance(0.5)
    assert tracker.observe("/a.jpg", (10, 1))


def test_due_lists_paths_whose_window_ran_out_in_deadline_order():
    tracker, clock = make()
    tracker.observe("/b.jpg", (1, 1))
    clock.advance(0.5)
    tracker.observe("/a.jpg", (1, 1))
    assert tracker.next_deadline() == 1002.0
    clock.advance(1.5)
    assert tracker.due() == ["/b.jpg"]
    clock.advance(0.5)
    assert tracker.due() == ["/a.jpg"]
    assert tracker.due() == []


def test_forget_rename_and_forget_under():
    tracker, clock = make()
    tracker.observe("/d/x/1.jpg", (1, 1))
    tracker.observe("/d/x/2.jpg", (1, 1))
    tracker.observe("/d/y.jpg", (1, 1))
    tracker.observe("/tmp.part", (1, 1))
    tracker.rename("/tmp.part", "/final.jpg")
    tracker.forget_under("/d/x")
    tracker.forget("/d/y.jpg")
    assert len(tracker) == 1
    clock.advance(2)
    assert tracker.due() == ["/final.jpg"]
    assert tracker.observe("/final.jpg", (1, 1))
    assert tracker.next_deadline() is None


def test_zero_settle_is_ready_on_the_second_look():
    tracker, _ = make(0.0)
    assert not tracker.observe("/a.jpg", (1, 1))
    assert tracker.observe("/a.jpg", (1, 1))
