"""OrderPool: one thread pool for a job's order work, shared by its plans, each bounded.

A plan takes its share with ``plan_tasks(limit)``. Its tasks start in the order they were
submitted, at most ``limit`` at a time. The plan's own thread helps: while it waits for a
result it runs its plan's queued tasks itself, so that a one-order plan needs no other thread,
and a plan never waits for a task that nobody is running. Threads are made once per pool, not
once per plan.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

_T = TypeVar("_T")
DEFAULT_POOL_THREADS = 32


class OrderPool:
    """The threads that a job's plans run their orders on; ``shutdown`` lets them end."""

    def __init__(self, max_threads: int = DEFAULT_POOL_THREADS, name: str = "orders") -> None:
        self._executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix=name)

    def plan_tasks(self, limit: int) -> PlanTasks:
        """A plan's share: at most ``limit`` of its tasks run at once."""
        return PlanTasks(self._executor, limit)

    def shutdown(self) -> None:
        """Idle threads end; tasks already started finish."""
        self._executor.shutdown(wait=False)


class _Task:
    __slots__ = ("call", "future")

    def __init__(self, call: Callable[[], Any], future: Future[Any]) -> None:
        self.call = call
        self.future = future

    def run(self) -> None:
        try:
            result = self.call()
        except BaseException as exc:  # the caller of result() gets it, as from an executor
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


class PlanTasks:
    """One plan's tasks on a shared executor: FIFO, at most ``limit`` running at once, and
    every task submitted has run when the ``with`` block ends (as ThreadPoolExecutor's does)."""

    def __init__(self, executor: ThreadPoolExecutor, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._executor = executor
        self._limit = limit
        self._lock = threading.Lock()
        self._queue: deque[_Task] = deque()
        self._running = 0
        self._loops = 0
        self._submitted: list[Future[Any]] = []

    def __enter__(self) -> PlanTasks:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for future in self._submitted:
            self.wait(future)

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        """Queue ``fn(*args)``; another thread takes it when fewer than ``limit - 1`` do."""
        future: Future[_T] = Future()
        with self._lock:
            self._queue.append(_Task(lambda: fn(*args), future))
            self._submitted.append(future)
            dispatch = self._loops < min(self._limit - 1, len(self._queue))
            if dispatch:
                self._loops += 1
        if dispatch:
            try:
                self._executor.submit(self._run_queued)
            except RuntimeError:  # the pool is shut down: this plan's thread runs its tasks
                with self._lock:
                    self._loops -= 1
        return future

    def result(self, future: Future[_T]) -> _T:
        """``future``'s result, running queued tasks in this thread while it is not done."""
        self.wait(future)
        return future.result()

    def wait(self, future: Future[Any]) -> None:
        while not future.done():
            task = self._take()
            if task is None:
                break
            self._run(task)
        future.exception()  # blocks until done, raises nothing

    def _take(self, *, ending_loop: bool = False) -> _Task | None:
        """The next queued task, counted as running; None when none is queued or the limit
        is reached (and then, for a pool thread's loop, the loop is counted as ended in the
        same locked step, so that ``submit`` sees it gone)."""
        with self._lock:
            if not self._queue or self._running >= self._limit:
                if ending_loop:
                    self._loops -= 1
                return None
            self._running += 1
            return self._queue.popleft()

    def _run(self, task: _Task) -> None:
        try:
            task.run()
        finally:
            with self._lock:
                self._running -= 1

    def _run_queued(self) -> None:
        """A pool thread's loop: run queued tasks until none is left or the limit is reached."""
        while (task := self._take(ending_loop=True)) is not None:
            self._run(task)
