"""The stall watchdog: which task (and which request) blocked the event loop.

One heartbeat per watched loop (a timer every ``interval``: a quarter of the
threshold) and one watchdog thread per :class:`StallWatch`. The loop side only
stores the time of each beat and, when two beats are further apart than
``interval + threshold``, the gap; nothing runs per callback or per task. The
watchdog thread sleeps until a heartbeat can be overdue (each wake takes the
GIL from the loop thread, so there is no fixed tick): when a loop's heartbeat
is overdue by half the threshold (and half an interval) it samples the loop
thread's stack *while the loop is blocked* (``sys._current_frames()``), the
loop's running task (``asyncio.current_task(loop)``, readable from another
thread on every version) and that task's chain, then looks every ``interval``
while the stall lasts; when the loop's gap arrives (the loop ran again, and
its beat wakes the watchdog) it reports. A loop still blocked after
``long_stall`` seconds is reported once more while it lasts.

Kinds (:data:`StallKind`): ``blocking``, code running on the loop thread (a
CPU loop, ``time.sleep``, blocking I/O); ``waiting``, the loop thread waits on
a lock, event, thread or future another thread holds (with the threads found
holding it); ``starved``, the loop thread sat in its poll, ready, but did not
run (the GIL held by another thread, a short pause of the process); ``gc``,
the garbage collector ran for at least half the stall.

A pause of the whole process (SIGSTOP, a debugger stopping it, a VM paused)
shows as the watchdog thread itself waking late while the process used no
CPU: the stalls overlapping it are not reported. A debugger stopped in the
loop thread (``pdb``, ``debugpy``) is not a stall either. System suspend does
not advance ``time.monotonic()``.

Nothing here raises into the program: every failure is reported once through
``warn_internal`` and the watchdog carries on.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from ._discovery import running_loops
from ._failsafe import warn_internal
from ._stall_report import format_stall_report, log_fields
from ._stall_sample import LoopState, Sample, gc_time, gc_watch, thread_cpu
from ._stall_sample import sample as sample_loop
from ._stall_summary import SUMMARY_MAX
from ._types import StallKind, StallReport

__all__ = ["StallWatch", "watch_stalls"]

from ._census import take as census_take
from ._stall_sample import after_fork as sample_after_fork
from ._stall_summary import after_fork as summary_after_fork
from ._stall_summary import count as count_stall

#: The logger every report goes to (unless ``log=False``), at WARNING, the fields as ``extra``.
LOGGER_NAME: Final = "async_trace.stall"
logger: Final = logging.getLogger(LOGGER_NAME)

#: The environment variable that starts a watch of every loop when ``async_trace`` is imported.
ENV_THRESHOLD: Final = "ASYNC_TRACE_STALL_THRESHOLD"


class StallWatch:
    """A running stall watchdog (see :func:`watch_stalls`); :meth:`stop` ends it. A context manager."""

    def __init__(
        self,
        threshold: float,
        loop: asyncio.AbstractEventLoop | None,
        on_stall: Callable[[StallReport], None] | None,
        *,
        log: bool,
        long_stall: float,
        dedup_interval: float,
        max_reports_per_minute: int,
        interval: float | None,
        discover_interval: float,
    ) -> None:
        self.threshold = threshold
        self.interval = interval if interval is not None else min(max(threshold / 4, 0.002), 0.5)
        self.loop = loop
        self.on_stall = on_stall
        self.log = log
        self.long_stall = long_stall
        self.dedup_interval = dedup_interval
        self.max_reports_per_minute = max_reports_per_minute
        self.discover_interval = discover_interval
        self._states: dict[int, LoopState] = {}
        self._lock = threading.Lock()
        #: Wakes the watchdog thread: set by stop(), and by a heartbeat with news (a first beat, a gap).
        self._stop = threading.Event()
        self._stopped = False
        #: Source -> ``time.monotonic()`` of its last report, and stalls suppressed since.
        self._last_report: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._suppressed: dict[str, int] = {}
        self._recent: collections.deque[float] = collections.deque()
        #: ``(start, end)`` windows when the whole process was paused.
        self._pauses: collections.deque[tuple[float, float]] = collections.deque(maxlen=8)
        #: ``(start, end)`` windows when the watchdog itself woke late, the process running.
        self._late: collections.deque[tuple[float, float]] = collections.deque(maxlen=8)
        #: How many pauses of the whole process were seen (no stall reported across them).
        self.pauses = 0
        self._thread: threading.Thread | None = None

    # -- public -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop watching: the heartbeats are cancelled and the watchdog thread ends. Idempotent, any thread.

        A stall that has ended but is not reported yet is reported now, from
        the calling thread; called on a loop's own thread, that includes a
        stall the loop has just come out of (its heartbeat overdue past the
        threshold: the loop is running this call, so it is not blocked now).
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            states = list(self._states.values())
            self._states.clear()
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(timeout=5)
        for state in states:
            state.stop()
            try:
                self._flush(state)
            except Exception as exc:  # noqa: BLE001 - stopping must not fail
                warn_internal(exc, "reporting the last stalls of a stall watch")
        gc_watch(False)
        _forget(self)

    def _flush(self, state: LoopState) -> None:
        while state.gaps:
            start, end = state.gaps.popleft()
            self._gap(state, start, end)
        last = state.last
        now = time.monotonic()
        if (
            last is not None
            and state.ident == threading.get_ident()
            and now - last > state.limit
            and state.loop.is_running()  # on its thread and running: this very call, not blocked
            and asyncio.events._get_running_loop() is state.loop
        ):
            self._gap(state, last, now)

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopped

    def watched_loops(self) -> list[asyncio.AbstractEventLoop]:
        """The loops with a heartbeat now (a loop found by discovery is added within a second)."""
        with self._lock:
            return [state.loop for state in self._states.values() if state.last is not None]

    def __enter__(self) -> StallWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        what = "every loop" if self.loop is None else f"{type(self.loop).__name__} at {id(self.loop):#x}"
        state = "stopped" if self._stopped else "running"
        return f"<StallWatch threshold={self.threshold} {what} {state}>"

    # -- starting ------------------------------------------------------------------------

    def _start(self) -> None:
        gc_watch(True)
        if self.loop is not None:
            self._add(self.loop)
        else:
            self._discover()
        self._thread = threading.Thread(target=self._run, name="async_trace stall watchdog", daemon=True)
        self._thread.start()

    def _add(self, loop: Any) -> None:
        if loop.is_closed():
            return
        with self._lock:
            if self._stopped or id(loop) in self._states:
                return
            state = LoopState(loop, self.interval, self.threshold, self._stop)
            self._states[id(loop)] = state
        here = asyncio.events._get_running_loop() is loop
        try:
            state.start(here)
        except Exception as exc:  # noqa: BLE001 - a loop closing under us, a broken loop
            with self._lock:
                self._states.pop(id(loop), None)
            if not isinstance(exc, RuntimeError):
                warn_internal(exc, "starting the stall watchdog's heartbeat")

    def _discover(self) -> None:
        for loop in running_loops():
            self._add(loop)

    # -- the watchdog thread ------------------------------------------------------------------

    def _run(self) -> None:
        # ``self._stop`` is the watchdog's one wake-up: set by stop(), and by a heartbeat with news (a loop's
        # first beat, a gap). Otherwise the thread sleeps until it must look (:meth:`_next_wake`): a wake
        # takes the GIL from the loop thread, so it is not done on a fixed tick.
        wake = self._stop
        last_wake = time.monotonic()
        last_cpu = time.process_time()
        next_discovery = last_wake + self.discover_interval
        deadline = self._next_wake(last_wake, next_discovery)
        while True:
            wake.wait(min(max(deadline - time.monotonic(), 0.0), threading.TIMEOUT_MAX))  # (infinite intervals)
            wake.clear()  # then the flag: stop() sets the flag before the event, so neither is missed
            if self._stopped:
                return
            try:
                now = time.monotonic()
                cpu = time.process_time()
                late = now - deadline  # negative when woken early, by a heartbeat's news
                elapsed = now - last_wake
                if late > max(self.threshold / 2, 0.2) and cpu - last_cpu < 0.05 * elapsed:
                    # The watchdog itself did not run, and neither did anything else: the process was
                    # paused (SIGSTOP, a debugger, a paused VM). No stall across it is the loop's doing.
                    self._pauses.append((last_wake, now))
                    self.pauses += 1
                    for state in self._snapshot():
                        state.sample = None
                elif late > self.threshold / 2 and cpu - last_cpu >= 0.3 * elapsed:
                    # The watchdog could not run while the process ran: another thread kept the GIL. A loop
                    # that did not run meanwhile, and was not sampled or used no CPU, was starved too.
                    self._late.append((last_wake, now))
                last_wake, last_cpu = now, cpu
                if now >= next_discovery:
                    next_discovery = now + self.discover_interval
                    if self.loop is None:
                        self._discover()
                    for state in self._snapshot():
                        if state.last is not None:
                            census_take(state.loop)  # task ages for the tree and dumps
                for state in self._snapshot():
                    self._check(state, now)
                deadline = self._next_wake(time.monotonic(), next_discovery)
            except Exception as exc:  # noqa: BLE001 - the watchdog must never take the program down
                warn_internal(exc, "watching for event loop stalls")
                deadline = time.monotonic() + 1.0  # an error that repeats costs once a second at most

    def _next_wake(self, now: float, next_discovery: float) -> float:
        """When the watchdog must look next (``time.monotonic()``).

        Over every watched loop, the moment its heartbeat is overdue by half the threshold and half an
        interval, if no beat comes before: a stall is sampled then, while the loop is still blocked (a
        stall is reported from an overdue of the threshold on); half an interval past the due beats, so a
        healthy loop's beat is seen and the watchdog wakes once per ``threshold / 2 + interval`` or so,
        not every interval. While a heartbeat is overdue (a stall going on), every ``interval``, as the
        fixed tick did: a pause of the process, the ``long_stall`` report and the end are seen as before.
        And the next discovery and census. A loop without a heartbeat yet wakes the watchdog with its
        first beat (and the end of a stall with its gap).
        """
        wake = next_discovery
        half = self.threshold / 2
        for state in self._snapshot():
            last = state.last
            if last is None:
                continue
            due = last + 1.5 * state.interval + half
            if due <= now:
                due = now + state.interval
            if due < wake:
                wake = due
        return wake

    def _snapshot(self) -> list[LoopState]:
        with self._lock:
            return list(self._states.values())

    def _paused_during(self, start: float, end: float) -> bool:
        return any(p_start < end and start < p_end for p_start, p_end in self._pauses)

    def _late_during(self, start: float, end: float) -> bool:
        return any(l_start < end and start < l_end for l_start, l_end in self._late)

    def _check(self, state: LoopState, now: float) -> None:
        loop = state.loop
        if state.pid != os.getpid() or loop.is_closed():
            with self._lock:
                self._states.pop(id(loop), None)
            return
        if not loop.is_running():
            state.last = None  # a stopped loop does not beat; its next run starts afresh
            state.sample = None
            state.gaps.clear()
            return
        while state.gaps:
            start, end = state.gaps.popleft()
            self._gap(state, start, end)
        last = state.last
        if last is None:
            return
        overdue = now - last - state.interval
        if overdue < self.threshold / 2:
            if state.sample is None:
                state.gc_mark = gc_time()
            return
        if self._paused_during(last, now):
            return
        sample = state.sample
        if sample is None or sample.key != last:
            try:
                sample = sample_loop(loop, state.ident, state.base, last)
            except Exception as exc:  # noqa: BLE001 - another thread's frames change under us
                warn_internal(exc, "watching for event loop stalls")
                sample = Sample(last, "blocking", "<unknown>", (), None, None, (), None, None, (), None)
            state.sample = sample
            if sample is None:
                return
        if overdue + state.interval / 2 >= self.long_stall and not sample.ongoing_reported and not sample.debugger:
            sample.ongoing_reported = True
            self._report(state, sample, now - last - state.interval / 2, last, ongoing=True)

    def _gap(self, state: LoopState, start: float, end: float) -> None:
        sample = state.sample
        state.sample = None
        if self._paused_during(start, end):
            return
        if sample is not None and sample.key != start:
            sample = None
        if sample is not None and sample.debugger:
            return
        self._report(state, sample, end - start - state.interval / 2, start, ongoing=False, end=end)
        state.gc_mark = gc_time()

    # -- reporting ------------------------------------------------------------------------------

    def _report(
        self,
        state: LoopState,
        sample: Sample | None,
        duration: float,
        start: float,
        *,
        ongoing: bool,
        end: float | None = None,
    ) -> None:
        gc_spent = max(0.0, gc_time() - state.gc_mark) if not ongoing else 0.0
        kind: StallKind = sample.kind if sample is not None else "blocking"
        source = sample.source if sample is not None else "<unknown>"
        cpu: float | None = None
        if sample is not None and sample.cpu_at is not None:
            now_cpu = thread_cpu(state.ident)
            if now_cpu is not None:
                cpu = max(0.0, now_cpu - sample.cpu_at)
        late = self._late_during(start, end if end is not None else time.monotonic())
        if late and (sample is None or (kind == "blocking" and cpu is not None and cpu < 0.1 * duration)):
            # Nothing sampled, or the loop thread in Python code but using no CPU, while the watchdog
            # itself could not run: both waited for the GIL, which another thread held.
            kind, source = "starved", "<starved>"
        if gc_spent >= duration / 2:
            kind = "gc"
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        wall_start = time.time() - (time.monotonic() - start)
        if not ongoing and sample is not None and sample.ongoing_reported:
            allowed, suppressed = True, 0  # the end of a stall reported while it lasted: always said
        else:
            allowed, suppressed = self._admit(source)
        if not ongoing:
            count_stall(source, duration, kind, allowed)
        if not allowed:
            return
        report = StallReport(
            duration=duration,
            threshold=self.threshold,
            kind=kind,
            source=source,
            stack=sample.stack if sample is not None else (),
            task=sample.task if sample is not None else None,
            task_name=sample.task_name if sample is not None else None,
            chain=sample.chain if sample is not None else (),
            waiting_on=sample.waiting_on if sample is not None else None,
            waiting_for=sample.waiting_for if sample is not None else (),
            ongoing=ongoing,
            loop=state.loop,
            thread=names.get(state.ident, f"<thread {state.ident}>") if state.ident is not None else "?",
            started=wall_start,
            cpu_time=cpu,
            gc_time=gc_spent,
            suppressed=suppressed,
            context=sample.context if sample is not None else None,
        )
        self._emit(report)

    def _admit(self, source: str) -> tuple[bool, int]:
        """Whether a report of ``source`` goes out now (dedup, rate limit), and how many were held back."""
        now = time.monotonic()
        last = self._last_report.get(source)
        recent = self._recent
        while recent and now - recent[0] > 60.0:
            recent.popleft()
        if (last is not None and now - last < self.dedup_interval) or len(recent) >= self.max_reports_per_minute:
            if source in self._suppressed or len(self._suppressed) < SUMMARY_MAX:
                self._suppressed[source] = self._suppressed.get(source, 0) + 1
            return False, 0
        self._last_report[source] = now
        self._last_report.move_to_end(source)
        while len(self._last_report) > SUMMARY_MAX:
            self._last_report.popitem(last=False)
        recent.append(now)
        return True, self._suppressed.pop(source, 0)

    def _emit(self, report: StallReport) -> None:
        if self.log:
            try:
                log_report(report)
            except Exception as exc:  # noqa: BLE001
                warn_internal(exc, "logging a stall report")
        if self.on_stall is not None:
            try:
                self.on_stall(report)
            except Exception:  # the program's callback: its failure is logged, not raised
                logger.exception("async_trace: the on_stall callback raised")


#: Every running watch, so that a forked child can restart the ones watching every loop.
_watches: list[StallWatch] = []
_watches_lock = threading.Lock()


def _forget(watch: StallWatch) -> None:
    with _watches_lock:
        if watch in _watches:
            _watches.remove(watch)


def _after_fork() -> None:
    """In a forked child: the watchdog threads are gone; restart those of every loop (gunicorn workers)."""
    global _watches_lock
    _watches_lock = threading.Lock()
    summary_after_fork()
    sample_after_fork()
    old = list(_watches)
    _watches.clear()
    for watch in old:
        # Their heartbeats end here: no watchdog thread reads them, and a beat's wake-up event may have
        # been locked by that thread at the fork. (Not under the watch's lock: it may be locked so too.)
        for state in list(watch._states.values()):
            state.stopped = True
    for watch in old:
        if watch.loop is not None or watch.stopped:
            continue
        try:
            watch_stalls(
                watch.threshold,
                on_stall=watch.on_stall,
                log=watch.log,
                long_stall=watch.long_stall,
                dedup_interval=watch.dedup_interval,
                max_reports_per_minute=watch.max_reports_per_minute,
                interval=watch.interval,
                discover_interval=watch.discover_interval,
            )
        except Exception as exc:  # noqa: BLE001
            warn_internal(exc, "restarting the stall watchdog in a forked process")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def watch_stalls(
    threshold: float = 0.1,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    on_stall: Callable[[StallReport], None] | None = None,
    log: bool = True,
    long_stall: float = 10.0,
    dedup_interval: float = 60.0,
    max_reports_per_minute: int = 10,
    interval: float | None = None,
    discover_interval: float = 1.0,
) -> StallWatch:
    """Start watching ``loop`` (default: every running loop, in any thread, and loops started later) for stalls.

    A stall is the loop not running for ``threshold`` seconds or more. Each is
    reported once the loop runs again (and once more, with ``ongoing`` set,
    if it lasts ``long_stall`` seconds): to the ``async_trace.stall`` logger
    at WARNING (unless ``log=False``) and to ``on_stall`` (called in the
    watchdog thread; what it raises is logged). Per ``source``, one report per
    ``dedup_interval`` seconds, and at most ``max_reports_per_minute`` in all;
    what is held back is counted in the next report's ``suppressed`` and in
    :func:`stall_summary`.

    Args:
        threshold: seconds; stalls of ``threshold + interval`` or more are always
            reported, shorter ones never.
        loop: the loop to watch; ``None``: every running loop, found again every
            ``discover_interval`` seconds.
        on_stall: called with each :class:`StallReport`.
        log: whether reports go to the ``async_trace.stall`` logger.
        long_stall: seconds after which a stall still going is reported.
        dedup_interval: seconds between two reports of one ``source``.
        max_reports_per_minute: reports per minute across sources.
        interval: the heartbeat period (default ``threshold / 4``); the watchdog thread wakes when a
            heartbeat is overdue, and every ``interval`` while one is.
        discover_interval: seconds between two searches for new loops (``loop=None``).

    Returns:
        The :class:`StallWatch`: ``stop()`` it, or use it as a context manager.

    Raises:
        ValueError: a threshold, interval or limit that is not positive.
    """
    for name, value in (
        ("threshold", threshold),
        ("long_stall", long_stall),
        ("discover_interval", discover_interval),
        ("interval", 1.0 if interval is None else interval),
    ):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    if not isinstance(dedup_interval, (int, float)) or not dedup_interval >= 0:
        raise ValueError(f"dedup_interval must be a number of seconds >= 0, not {dedup_interval!r}")
    if not isinstance(max_reports_per_minute, int) or max_reports_per_minute < 1:
        raise ValueError(f"max_reports_per_minute must be a positive int, not {max_reports_per_minute!r}")
    watch = StallWatch(
        float(threshold),
        loop,
        on_stall,
        log=log,
        long_stall=float(long_stall),
        dedup_interval=float(dedup_interval),
        max_reports_per_minute=max_reports_per_minute,
        interval=None if interval is None else float(interval),
        discover_interval=float(discover_interval),
    )
    with _watches_lock:
        _watches.append(watch)
    watch._start()
    return watch


def log_report(report: StallReport) -> None:
    """Send ``report`` to the ``async_trace.stall`` logger at WARNING, its fields as ``extra``."""
    if not logger.isEnabledFor(logging.WARNING):
        return
    text = "".join(format_stall_report(report)).rstrip("\n")
    logger.warning(text, extra=log_fields(report))
