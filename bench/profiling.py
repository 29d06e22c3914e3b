"""pyinstrument across threads: the job runs on several, and pyinstrument samples only one.

While a ``ThreadProfiler`` is active, every thread started gets its own pyinstrument Profiler
around its ``run``; the calling thread gets one too. At the end, the samples of every thread
go into one pyinstrument Session, each under a root frame named after its thread (numbers
folded, so the 20,000 per-plan executor threads share one root). The HTML is pyinstrument's.
"""

from __future__ import annotations

import gc
import re
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

IDENTIFIER_SEP = "\x00"
ATTRIBUTES_SEP = "\x01"
INTERVAL_S = 0.001
JOIN_TIMEOUT_S = 10.0
TOP = 10
REPO_ROOT = str(Path(__file__).resolve().parent.parent) + "/"
# Leaf functions where a thread waits rather than works: a poll's select, a queue's lock, a
# sleep. They are reported apart from the rest. A lock taken with ``with`` is not a call, so
# waiting for it counts as the caller's own time.
WAITING_BUILTINS = frozenset(
    {"SimpleQueue.get", "lock.acquire", "RLock.acquire", "epoll.poll", "poll.poll", "sleep"}
)
WAITING_PYTHON = frozenset({"wait", "acquire", "_wait_for_tstate_lock", "join", "get", "select"})
WAITING_MODULES = ("threading.py", "queue.py", "selectors.py")
T = TypeVar("T")


def _thread_group(name: str) -> str:
    return re.sub(r"\d+", "N", name)


class ThreadProfiler:
    """Profile this thread and every thread started while active; ``write_html`` at the end."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._records: list[tuple[list[str], float]] = []
        self._threads: list[threading.Thread] = []
        self._original_start: Callable[[threading.Thread], None] | None = None
        self._main: Any = None
        self._started_s = 0.0
        self._cpu_started_s = 0.0
        self.threads_unfinished = 0

    def __enter__(self) -> ThreadProfiler:
        from pyinstrument import Profiler

        self._started_s = time.time()
        self._cpu_started_s = time.process_time()
        self._original_start = threading.Thread.start
        original_start = self._original_start
        profiler_of = self._profiled

        def start(thread: threading.Thread) -> None:
            run = thread.run
            thread.run = profiler_of(thread, run)  # type: ignore[method-assign]
            with self._lock:
                self._threads.append(thread)
            original_start(thread)

        threading.Thread.start = start  # type: ignore[method-assign,assignment]
        self._main = Profiler(interval=self._interval_s, async_mode="disabled")
        self._main.start()
        return self

    def _profiled(self, thread: threading.Thread, run: Callable[[], None]) -> Callable[[], None]:
        from pyinstrument import Profiler

        def profiled_run() -> None:
            profiler = Profiler(interval=self._interval_s, async_mode="disabled")
            profiler.start()
            try:
                run()
            finally:
                self._add(thread.name, profiler.stop())

        return profiled_run

    def _add(self, thread_name: str, session: Any) -> None:
        root = f"[thread {_thread_group(thread_name)}]{IDENTIFIER_SEP}<threads>{IDENTIFIER_SEP}0"
        records = [([root, *stack], seconds) for stack, seconds in session.frame_records]
        with self._lock:
            self._records.extend(records)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._original_start is not None:
            threading.Thread.start = self._original_start  # type: ignore[method-assign,assignment]
        self._add(threading.current_thread().name, self._main.stop())

    def finish(self) -> None:
        """Wait for the profiled threads to end (pool workers end once their pool is freed)."""
        gc.collect()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        self.threads_unfinished = sum(1 for t in self._threads if t.is_alive())

    def session(self) -> Any:
        from pyinstrument.session import Session

        # Identical stacks summed: the aggregate views are the same, and the HTML is a few MB
        # instead of tens (a timeline across threads would mean nothing anyway).
        stacks: defaultdict[tuple[str, ...], float] = defaultdict(float)
        with self._lock:
            sample_count = len(self._records)
            for stack, seconds in self._records:
                stacks[tuple(stack)] += seconds
        return Session(
            frame_records=[(list(stack), seconds) for stack, seconds in stacks.items()],
            start_time=self._started_s,
            duration=time.time() - self._started_s,
            min_interval=self._interval_s,
            max_interval=self._interval_s,
            sample_count=sample_count,
            start_call_stack=[f"[all threads]{IDENTIFIER_SEP}<bench>{IDENTIFIER_SEP}0"],
            target_description="rebalance-stream throughput run, every thread",
            cpu_time=time.process_time() - self._cpu_started_s,
            sys_path=sys.path,
            sys_prefixes=Session.current_sys_prefixes(),
        )

    def write_html(self, path: Path) -> None:
        from pyinstrument.renderers import HTMLRenderer

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(HTMLRenderer().render(self.session()), encoding="utf-8")

    def sampled_s(self) -> float:
        """Seconds sampled, summed over threads (a thread that waits is sampled too)."""
        with self._lock:
            return round(sum(seconds for _, seconds in self._records), 1)

    def own_time(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The top functions by own (self) time: (working, waiting), summed over threads."""
        totals: defaultdict[tuple[str, str, str], float] = defaultdict(float)
        with self._lock:
            records = list(self._records)
        for stack, seconds in records:
            leaf = stack[-1].split(ATTRIBUTES_SEP, 1)[0]
            function, _, rest = leaf.partition(IDENTIFIER_SEP)
            file, _, line = rest.partition(IDENTIFIER_SEP)
            totals[(function, _short(file), line)] += seconds
        by_function: defaultdict[tuple[str, str], float] = defaultdict(float)
        for (function, file, _), seconds in totals.items():
            by_function[(function, file)] += seconds
        working: list[dict[str, Any]] = []
        waiting: list[dict[str, Any]] = []
        for (function, file), seconds in sorted(by_function.items(), key=lambda kv: -kv[1]):
            row = {"function": function, "file": file, "own_s": round(seconds, 3)}
            target = waiting if _is_waiting(function, file) else working
            if len(target) < TOP:
                target.append(row)
        return working, waiting


def _is_waiting(function: str, file: str) -> bool:
    if file == "<built-in>":
        return function in WAITING_BUILTINS
    return file.endswith(WAITING_MODULES) and function.rsplit(".", 1)[-1] in WAITING_PYTHON


def profiled(html: Path, work: Callable[[], T]) -> tuple[T, dict[str, Any]]:
    """Run ``work`` under a ThreadProfiler; write the HTML; the top functions by own time."""
    with ThreadProfiler() as profiler:
        result = work()
    profiler.finish()
    profiler.write_html(html)
    working, waiting = profiler.own_time()
    return result, {
        "html": str(html),
        "threads_unfinished": profiler.threads_unfinished,
        "sampled_thread_s": profiler.sampled_s(),
        "top_own_time": working,
        "top_waiting": waiting,
    }


def _short(file: str) -> str:
    for marker in ("site-packages/", REPO_ROOT):
        if marker in file:
            return file.split(marker, 1)[1]
    return re.sub(r"^.*/lib/python3\.\d+/", "", file)
