"""OrderPool: plans share its threads, each plan bounded, FIFO, and never stuck."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from rebalance_stream.operators.order_pool import OrderPool

WAIT_S = 10.0


@pytest.fixture
def pool() -> Iterator[OrderPool]:
    shared = OrderPool(max_threads=4)
    yield shared
    shared.shutdown()


class Concurrency:
    """Counts how many calls run at once; each call blocks until ``release``."""

    def __init__(self, open_at: int = 1) -> None:
        self._open_at = open_at
        self._lock = threading.Lock()
        self._now = 0
        self.most = 0
        self.started: list[int] = []
        self.gate = threading.Event()

    def call(self, number: int) -> int:
        with self._lock:
            self._now += 1
            self.most = max(self.most, self._now)
            self.started.append(number)
            if self._now >= self._open_at:
                self.gate.set()
        self.gate.wait(WAIT_S)
        with self._lock:
            self._now -= 1
        return number * 10


def test_results_come_back_and_tasks_start_in_submission_order(pool: OrderPool) -> None:
    calls = Concurrency()
    with pool.plan_tasks(1) as tasks:
        futures = [tasks.submit(calls.call, n) for n in range(6)]
        assert [tasks.result(f) for f in futures] == [0, 10, 20, 30, 40, 50]
    assert calls.started == [0, 1, 2, 3, 4, 5]


def test_a_limit_of_one_runs_every_task_on_the_plans_own_thread(pool: OrderPool) -> None:
    with pool.plan_tasks(1) as tasks:
        futures = [tasks.submit(threading.get_ident) for _ in range(3)]
        assert {tasks.result(f) for f in futures} == {threading.get_ident()}


def test_no_more_than_the_limit_run_at_once() -> None:
    shared = OrderPool(max_threads=8)
    calls = Concurrency(open_at=3)
    try:
        with shared.plan_tasks(3) as tasks:
            futures = [tasks.submit(calls.call, n) for n in range(8)]
            # Two pool threads take tasks; the plan's thread takes a third while it waits.
            assert [tasks.result(f) for f in futures] == [n * 10 for n in range(8)]
    finally:
        shared.shutdown()
    assert calls.most == 3


def test_an_exception_reaches_the_caller_of_result(pool: OrderPool) -> None:
    def fail() -> None:
        raise ValueError("rejected")

    with pool.plan_tasks(2) as tasks:
        future = tasks.submit(fail)
        with pytest.raises(ValueError, match="rejected"):
            tasks.result(future)


def test_leaving_the_block_runs_every_task_not_waited_for(pool: OrderPool) -> None:
    ran: list[int] = []
    with pool.plan_tasks(1) as tasks:
        for n in range(3):
            tasks.submit(ran.append, n)
    assert ran == [0, 1, 2]


def test_plans_that_outnumber_the_pool_threads_all_finish() -> None:
    """One pool thread for eight plans of four tasks: each plan's thread runs what waits."""
    shared = OrderPool(max_threads=1)
    results: dict[int, list[int]] = {}

    def plan(number: int) -> None:
        with shared.plan_tasks(4) as tasks:
            futures = [tasks.submit(lambda n=n: number * 100 + n) for n in range(4)]
            results[number] = [tasks.result(f) for f in futures]

    threads = [threading.Thread(target=plan, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    shared.shutdown()
    assert results == {n: [n * 100 + i for i in range(4)] for n in range(8)}


def test_a_shut_down_pool_leaves_the_work_to_the_plans_thread() -> None:
    shared = OrderPool(max_threads=2)
    shared.shutdown()
    with shared.plan_tasks(4) as tasks:
        futures = [tasks.submit(threading.get_ident) for _ in range(3)]
        assert {tasks.result(f) for f in futures} == {threading.get_ident()}


def test_a_limit_below_one_is_refused(pool: OrderPool) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        pool.plan_tasks(0)
