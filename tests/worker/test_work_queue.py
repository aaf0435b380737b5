import threading
import time
from dataclasses import dataclass

import pytest

from bugtracker.work_queue import QueueClosed, WorkQueue, percentile


@dataclass(frozen=True)
class Job:
    name: str
    priority: int = 100


@dataclass(frozen=True)
class Other:
    value: int


def test_items_run_by_priority_then_arrival_with_a_handler_per_type():
    gate = threading.Event()
    seen = []
    work = WorkQueue(name="t", threads=1)
    work.register(Job, lambda job: (gate.wait(5), seen.append(job.name)))
    work.register(Other, lambda other: seen.append(other.value))
    work.start()
    work.enqueue(Job("blocker", priority=0))  # holds the only thread while the rest queue up
    time.sleep(0.1)
    work.enqueue(Job("low", priority=3))
    work.enqueue(Job("critical", priority=0))
    work.enqueue(Other(7), priority=1)
    work.enqueue(Job("critical-later", priority=0))
    gate.set()
    assert work.wait_idle(timeout=5)
    assert seen == ["blocker", "critical", "critical-later", 7, "low"]
    assert work.shutdown(deadline=1) == []


def test_metrics_count_processed_failed_and_durations():
    work = WorkQueue(name="m", threads=2)

    def handler(job):
        time.sleep(0.05)
        if job.name == "boom":
            raise RuntimeError("handler blew up")
        return job.name != "unsuccessful"

    work.register(Job, handler)
    work.start()
    for name in ["a", "b", "boom", "unsuccessful", "c"]:
        work.enqueue(Job(name))
    assert work.wait_idle(timeout=5)
    metrics = work.metrics()
    assert (metrics.processed, metrics.failed, metrics.depth, metrics.in_flight) == (3, 2, 0, 0)
    assert metrics.alive and metrics.window == 5
    assert 0.04 < metrics.duration_p50 <= metrics.duration_p95 < 1
    work.shutdown(deadline=1)
    assert not work.metrics().alive


def test_depth_in_flight_and_free_slots_while_busy():
    gate = threading.Event()
    work = WorkQueue(name="d", threads=2)
    work.register(Job, lambda job: gate.wait(5))
    assert work.free_slots() == 2
    work.start()
    for name in "abc":
        work.enqueue(Job(name))
    deadline = time.monotonic() + 5
    while work.in_flight < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (work.in_flight, work.depth, work.free_slots()) == (2, 1, 0)
    gate.set()
    assert work.wait_idle(timeout=5)
    assert work.free_slots() == 2
    work.shutdown(deadline=1)


def test_shutdown_drains_within_the_deadline_and_hands_back_what_never_started():
    release = threading.Event()
    done = []
    gave_up = []
    work = WorkQueue(name="s", threads=1)
    work.register(Job, lambda job: (release.wait(10), done.append(job.name)))
    work.start()
    for name in ["running", "queued-1", "queued-2"]:
        work.enqueue(Job(name))
    time.sleep(0.1)
    started = time.monotonic()
    leftovers = work.shutdown(
        deadline=0.3, on_deadline=lambda: (gave_up.append(True), release.set())
    )
    assert time.monotonic() - started < 3
    assert [job.name for job in leftovers] == ["queued-1", "queued-2"]
    assert gave_up == [True]
    assert done == ["running"]
    with pytest.raises(QueueClosed):
        work.enqueue(Job("late"))


def test_shutdown_lets_queued_work_finish_when_it_fits_the_deadline():
    done = []
    work = WorkQueue(name="f", threads=1)
    work.register(Job, lambda job: (time.sleep(0.05), done.append(job.name)))
    work.start()
    for name in "abcd":
        work.enqueue(Job(name))
    assert work.shutdown(deadline=5) == []
    assert done == list("abcd")
    assert not any(t.is_alive() for t in work._threads)


def test_unknown_payload_types_are_refused():
    work = WorkQueue(name="u", threads=1)
    work.register(Job, lambda job: None)
    with pytest.raises(TypeError):
        work.enqueue(Other(1))


def test_percentile_is_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 101)], 0.95) == 95.0
