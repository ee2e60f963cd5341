"""OpenTelemetry metrics for every pool and lane, lock and hub: fairpool in the dashboards operators have.

Switched on by ``fairpool.otel.instrument(metrics=True)`` or
``FAIRPOOL_OTEL=metrics`` (``spans,metrics`` for both); see docs/tracing.md,
"Metrics", for the instruments and how to scrape them with Prometheus. Needs
``opentelemetry-api`` only; the application picks the SDK, the reader and the
exporter (the global ``MeterProvider`` by default, also when it is set later).

Nothing of it is on a caller's path: no observer, no event, no lock, no SDK call:

* the pools' state (queue length, held calls, busy, alive and most threads) is
  read from each live pool (``_exitrule._cores``) under its lock by the
  observable instruments' callbacks, when a reader collects: nothing per call;
* calls by outcome: each pool counts them by lane and outcome itself, with an
  integer increment under the lock it holds anyway to move the call to its
  final state (``fairpool._tally``); the observable counter reads those counts
  at collection;
* queue waits and run times: the worker that ran a call appends (lane, outcome,
  wait, run) to its pool's tally after its caller was answered (a deque's
  append: atomic, no lock); lock waits and holds and hub stalls are appended by their
  listeners to the recorder's deques (atomic: no lock). The SDK's recording
  (several microseconds per value: OpenTelemetry's SDK takes no pre-aggregated
  histogram) is done when a reader collects: the collection's callbacks drain
  them into the histograms, in the collector's thread, so a collection carries
  every call answered before it. Under
  ``eventlet.monkey_patch()`` the collectors are green threads on the hub: a
  green thread drains every :data:`DRAIN_INTERVAL`, a chunk at a time, and a
  collection records at most :data:`COLLECTION_BUDGET` entries per callback,
  leaving it the rest (see :meth:`MetricsRecorder.collection_drain`).

At most :data:`MAX_PENDING` entries a pool (and as many lock events) wait to be
recorded; past that they are dropped and counted (:attr:`MetricsRecorder.dropped`,
one warning): collect (export, scrape) at least that often. The counts by outcome
are never dropped.

Thread rules: ``_active``, ``_instruments`` and ``_tally.factory`` change under
``_lock``. A pool's ``tally`` is set and cleared without its lock (one attribute
store; a call counted in a tally just cleared is still reported: every tally made
stays in its instruments' ``tallies``). The deques are appended by any thread and
popped by any collector (each entry popped once: ``popleft`` is atomic); a drain
never yields between popping an entry and recording it. The lanes named for a pool
name (``_tally.LaneNames``, shared by its tallies and its gauges) only grow, under
their own lock, until :data:`MAX_LANES`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import _exitrule, _tally, hubwatch, locks
from ._faultlog import report_fault
from ._native import allocate_lock, get_ident, green_interruptions, os, stdlib_threading, threads_patched

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

    from ._core import Core

__all__ = [
    "DURATION_BUCKETS",
    "MAX_PENDING",
    "METRICS",
    "MetricsRecorder",
    "active",
    "start",
    "stop",
]

#: Most per-call entries (calls, lock waits and holds, stalls) kept for the next collection.
MAX_PENDING = 1 << 17
#: Under eventlet, how often (seconds) a green thread records what is pending, between collections.
DRAIN_INTERVAL = 1.0
#: Entries recorded before that green thread lets the hub run (about 10 us each).
DRAIN_CHUNK = 64
#: Where that green thread runs, the most entries each observable callback of a collection records.
COLLECTION_BUDGET = 256
#: Histogram bucket boundaries (seconds), from 100 us to a minute: a pool's waits are short.
DURATION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
#: Most attribute sets remembered (pools x lanes x outcomes): more are made afresh each time.
_ATTRIBUTE_CACHE = 4096
#: Most lanes a pool name's instruments name one by one (its default lane among them): the
#: gauges, the calls counter and the histograms alike. Later lanes are reported together under
#: the lane :data:`OTHER_LANE`, for good (nothing is dropped), and a pool's tally keeps no more.
#: Read when a pool name is first seen (``_Instruments.lane_names``).
MAX_LANES = _tally.MOST_LANES
OTHER_LANE = _tally.OTHER_LANE

POOL = "fairpool.pool.name"
LANE = "fairpool.lane"
OUTCOME = "fairpool.call.outcome"
LOCK = "fairpool.lock.name"

#: name: (kind, unit, description). Kinds: "updown" (observable up-down counter), "observable counter",
#: "histogram".
METRICS: dict[str, tuple[str, str, str]] = {
    "fairpool.pool.queue.length": (
        "updown",
        "{call}",
        "Calls waiting in the pool's queue for a worker, by lane.",
    ),
    "fairpool.pool.queue.held": (
        "updown",
        "{call}",
        "Calls held back, waiting for room in a full queue (max_queue, on_full='wait'), by lane.",
    ),
    "fairpool.pool.thread.usage": (
        "updown",
        "{thread}",
        "Worker threads running a call now (busy), by the lane of the call.",
    ),
    "fairpool.pool.thread.count": ("updown", "{thread}", "Worker threads alive."),
    "fairpool.pool.thread.limit": ("updown", "{thread}", "The most worker threads the pool runs (its size)."),
    "fairpool.pool.calls": (
        "observable counter",
        "{call}",
        "Calls answered, by outcome: returned, raised, cancelled, abandoned, rejected, closed.",
    ),
    "fairpool.pool.call.queue_wait.duration": (
        "histogram",
        "s",
        "From handing a call to the pool until a worker started it (calls a worker ran, as they end).",
    ),
    "fairpool.pool.call.run.duration": (
        "histogram",
        "s",
        "How long a call ran in its worker (calls that returned or raised).",
    ),
    "fairpool.hub.stall.duration": (
        "histogram",
        "s",
        "Hub stalls found by fairpool.watch_hub: how long the hub was blocked.",
    ),
    "fairpool.lock.wait.duration": (
        "histogram",
        "s",
        "Contended waits for an instrumented lock (fairpool.instrument_lock).",
    ),
    "fairpool.lock.hold.duration": ("histogram", "s", "Holds of an instrumented lock."),
}


class MetricsRecorder:
    """Takes lock and stall events into its deques, and makes the pools' tallies; made by :func:`start`."""

    def __init__(self, instruments: _Instruments) -> None:
        self.instruments = instruments
        self.lock_events: deque[tuple[bool, str, float]] = deque()  # (a hold?, lock, seconds)
        self.stalls: deque[float] = deque()
        self._dropped = 0  # lock events and stalls dropped (the pools' tallies count their own)
        self._dropped_lock = allocate_lock()  # only on the overflow path
        self._warned = False
        self._dropped_before = 0  # what the pools' tallies had dropped when it started (start())
        self._drain_pid = 0  # the process whose green drain runs (start_green_drain)

    @property
    def dropped(self) -> int:
        """Entries (queue waits and run times, lock events, stalls) dropped because
        :data:`MAX_PENDING` were waiting for a collection. Calls are still counted."""
        return self._dropped + sum(t.dropped for t in list(self.instruments.tallies.values()))

    def pending(self) -> int:
        """Entries waiting to be recorded into the histograms."""
        return sum(len(t.pending) for t in list(self.instruments.tallies.values())) + len(self.lock_events)

    def new_tally(self, pool: str) -> _tally.Tally:
        """A tally for a pool named ``pool`` (``_tally.factory``): reported by these instruments."""
        tally = _tally.Tally(pool, MAX_PENDING, self.instruments.lane_names(pool))
        tally.on_gone = self.instruments.pool_gone
        self.instruments.tallies[id(tally)] = tally
        return tally

    def lock_waited(self, name: str, start: float, end: float) -> None:
        events = self.lock_events
        if len(events) < MAX_PENDING:
            events.append((False, name, (end - start) / 1e6))
        else:
            self._drop()

    def lock_held(self, name: str, start: float, end: float) -> None:
        events = self.lock_events
        if len(events) < MAX_PENDING:
            events.append((True, name, (end - start) / 1e6))
        else:
            self._drop()

    def hub_stalled(self, watch: hubwatch.HubWatch, stall: hubwatch.HubStall) -> None:
        if len(self.stalls) < MAX_PENDING:
            self.stalls.append(stall.duration)
        else:
            self._drop()

    def _drop(self) -> None:
        with self._dropped_lock:
            self._dropped += 1
        self._warn_dropped()

    def _warn_dropped(self) -> None:
        if not self._warned and self.dropped > self._dropped_before:
            self._warned = True
            from . import _tracefile

            _tracefile.warn(
                f"fairpool: {MAX_PENDING} metric entries are waiting for a collection; further ones "
                "are dropped (counted in fairpool.otel_metrics.active().dropped): export or scrape more often"
            )

    def forget_the_parents_entries(self) -> None:
        """In a forked child: what is counted and pending is the parent's to report."""
        for tally in list(self.instruments.tallies.values()):
            tally.forget()
        self.lock_events = deque()
        self.stalls = deque()
        self._dropped_lock = allocate_lock()  # the parent's may have been held by another thread

    # -- at collection (and, under eventlet, in a green thread between): the SDK's recording ---
    def drain(self, pause: Callable[[], object] | None = None, limit: int | None = None) -> None:
        """Record what is pending into the histograms.

        Without ``pause``: all of it (or ``limit`` calls and ``limit`` lock
        events), at once (a collector's callback: nothing may yield there).
        With it: :data:`DRAIN_CHUNK` entries at a time before ``pause()`` lets others run.
        """
        instruments = self.instruments
        attrs = instruments.attributes
        wait_record = instruments.queue_wait.record
        run_record = instruments.run.record
        outcomes = _tally.OUTCOMES
        left = self.pending() if limit is None else limit
        for tally in list(instruments.tallies.values()):
            pool, entries, lane_name = tally.pool, tally.pending, tally.names.name
            while left > 0 and entries:
                left -= 1
                try:
                    lane, outcome, wait, run = entries.popleft()
                except IndexError:  # another drain took the rest
                    break
                lane = lane_name(lane)  # as the call was counted (it was, before this entry was made)
                wait_record(max(0.0, wait), attrs(pool, lane))
                if outcome >= 0:
                    run_record(max(0.0, run), attrs(pool, lane, outcomes[outcome]))
                if pause is not None and left % DRAIN_CHUNK == 0:
                    pause()
        self._warn_dropped()
        events = self.lock_events
        for i in range(len(events) if limit is None else min(len(events), limit)):
            try:
                hold, name, seconds = events.popleft()
            except IndexError:
                break
            (instruments.lock_hold if hold else instruments.lock_wait).record(seconds, attrs(lock=name))
            if pause is not None and i % DRAIN_CHUNK == DRAIN_CHUNK - 1:
                pause()
        stalls = self.stalls
        for _ in range(len(stalls)):
            try:
                seconds = stalls.popleft()
            except IndexError:
                break
            instruments.hub_stall.record(seconds)

    def collection_drain(self) -> None:
        """In each observable callback of a collection: record what is pending, so that the
        collection has every call answered before it; but where the green drain runs (the
        collector is a green thread on the hub), at most :data:`COLLECTION_BUDGET` entries,
        and the green drain the rest, a chunk at a time: the collection then lags by at most
        about :data:`DRAIN_INTERVAL`, and never holds the hub for a backlog."""
        self.start_green_drain()
        self.drain(limit=COLLECTION_BUDGET if self._drain_pid == os.getpid() else None)

    def start_green_drain(self) -> None:
        """Under ``eventlet.monkey_patch()``: drain every :data:`DRAIN_INTERVAL` in a green thread.

        The collectors are green threads there, on the hub: a collection that
        recorded a minute of calls at once would stall the hub for as long (the
        SDK takes microseconds a value). This green thread keeps what is pending
        short, recording a chunk at a time and letting the hub run between; it
        ends when the recorder stops. Started when the recorder starts, or else by
        a collection's callback, in a thread with a hub (a green thread, the hub's
        own thread, the main thread), once per process.
        """
        if self._drain_pid == os.getpid() or not threads_patched():
            return
        import eventlet
        import greenlet
        from eventlet import hubs

        in_main = stdlib_threading.main_thread().ident == get_ident()  # a patched service's hub runs there
        if (
            not in_main
            and greenlet.getcurrent().parent is None
            and getattr(hubs._threadlocal, "hub", None) is None
        ):
            return  # a native thread without a hub (a collector of its own): nothing would run it
        self._drain_pid = os.getpid()

        eventlet.spawn(self._drain_green, eventlet.sleep)

    def _drain_green(self, sleep: Callable[[float], object]) -> None:
        pid = os.getpid()
        try:
            while _active is self and self._drain_pid == pid:
                sleep(DRAIN_INTERVAL)
                self.drain(pause=lambda: sleep(0))
        except BaseException as exc:
            if isinstance(exc, green_interruptions()):
                raise  # the hub ending (killed at exit)
            report_fault("fairpool: the metrics' green drain failed; collections still record", exc)
        finally:
            if self._drain_pid == pid:
                self._drain_pid = 0


def _pool_state(core: Core) -> tuple[str, int, int, dict[str, int], dict[str, int], dict[str, int]]:
    """(name, size, threads, queued by lane, held by lane, busy by lane), under the pool's lock."""
    with core.locked():
        admission = core.admission
        busy: dict[str, int] = {}
        for worker in core.workers.all.values():
            job = worker.job
            if job is not None:
                busy[job.lane] = busy.get(job.lane, 0) + 1
        return (
            core.name,
            core.workers.size,
            len(core.workers.all),
            admission.queue.counts(),
            admission.held.counts(),
            busy,
        )


class _Instruments:
    """One meter's instruments, made once per meter provider (the SDK keeps the first of a name)."""

    def __init__(self, meter: Any) -> None:
        self._attributes: dict[tuple[str, ...], dict[str, str]] = {}
        #: By pool name: the lanes its instruments name one by one (``lane_names``).
        self._lane_names: dict[str, _tally.LaneNames] = {}
        #: Every pool's tally made for these instruments (kept after the pool is gone: its calls
        #: stay counted in a cumulative counter).
        self.tallies: dict[int, _tally.Tally] = {}  # by id (one add or delete is atomic)
        #: By pool name: the counts of that name's pools that are gone (folded into one tally,
        #: also in ``tallies``), so that memory is bounded by pool names and lanes, not pools.
        self._folded: dict[str, _tally.Tally] = {}
        self._fold_lock = allocate_lock()  # folds, and reads of the counts, one at a time
        self._gone: deque[_tally.Tally] = deque()  # tallies of pools gone while _fold_lock was held
        self.recorder: MetricsRecorder | None = None  # the one whose entries and pools these report
        histograms = {}
        for name, (kind, unit, description) in METRICS.items():
            if kind == "histogram":
                histograms[name] = meter.create_histogram(
                    name,
                    unit=unit,
                    description=description,
                    explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
                )
        self.queue_wait = histograms["fairpool.pool.call.queue_wait.duration"]
        self.run = histograms["fairpool.pool.call.run.duration"]
        self.hub_stall = histograms["fairpool.hub.stall.duration"]
        self.lock_wait = histograms["fairpool.lock.wait.duration"]
        self.lock_hold = histograms["fairpool.lock.hold.duration"]
        meter.create_observable_counter(
            "fairpool.pool.calls",
            callbacks=[self._calls],
            unit="{call}",
            description=METRICS["fairpool.pool.calls"][2],
        )
        callbacks = {
            "fairpool.pool.queue.length": self._queue_length,
            "fairpool.pool.queue.held": self._queue_held,
            "fairpool.pool.thread.usage": self._thread_usage,
            "fairpool.pool.thread.count": self._thread_count,
            "fairpool.pool.thread.limit": self._thread_limit,
        }
        for name, callback in callbacks.items():
            _, unit, description = METRICS[name]
            meter.create_observable_up_down_counter(
                name, callbacks=[callback], unit=unit, description=description
            )

    def attributes(
        self, pool: str = "", lane: str | None = None, outcome: str | None = None, *, lock: str | None = None
    ) -> dict[str, str]:
        """The attribute set, made once (up to :data:`_ATTRIBUTE_CACHE` of them)."""
        key = (pool, lane or "", outcome or "", lock or "")
        found = self._attributes.get(key)
        if found is not None:
            return found
        if lock is not None:
            made = {LOCK: lock}
        else:
            made = {POOL: pool}
            if lane is not None:
                made[LANE] = lane
            if outcome is not None:
                made[OUTCOME] = outcome
        if len(self._attributes) < _ATTRIBUTE_CACHE:
            self._attributes[key] = made
        return made

    def lane_names(self, pool: str) -> _tally.LaneNames:
        """The lanes named for the pools named ``pool`` (made with :data:`MAX_LANES` when first asked)."""
        names = self._lane_names.get(pool)
        if names is None:  # (two threads may make one each: setdefault keeps the first)
            names = self._lane_names.setdefault(pool, _tally.LaneNames(MAX_LANES))
        return names

    # -- the observable instruments' callbacks (a collector's thread) -----------------------
    def _states(
        self,
    ) -> Iterator[tuple[str, int, int, dict[str, int], dict[str, int], dict[str, int], set[str]]]:
        """Each live pool's state, with every lane named for its name (0 when none now): its
        default lane, each lane that has had a call or been shown, and OTHER_LANE once they are
        :data:`MAX_LANES` (the calls counter and the histograms name the same lanes)."""
        for core in list(_exitrule._cores):
            name, size, threads, queued, held, busy = _pool_state(core)
            names = self.lane_names(name)
            if not names.full:
                for lane in (*queued, *held, *busy):
                    names.name(lane)  # named now, while there is room
            lanes = set(names.named)
            if names.full:  # later lanes' counts go to OTHER_LANE (_by_lane)
                lanes.add(OTHER_LANE)
            yield name, size, threads, queued, held, busy, lanes

    def _by_lane(self, which: int) -> list[Observation]:
        from opentelemetry.metrics import Observation

        recorder = self.recorder
        if recorder is None:
            return []
        recorder.collection_drain()
        if recorder is not _active:
            return []  # stopped: its last entries were recorded just now
        totals: dict[tuple[str, str], int] = {}
        for state in self._states():
            pool = state[0]
            counts: dict[str, int] = state[which]  # type: ignore[assignment]
            lanes: set[str] = state[6]
            for lane in lanes:  # each lane seen, at 0 when it has nothing now
                totals.setdefault((pool, lane), 0)
            for lane, n in counts.items():  # past MAX_LANES: under OTHER_LANE, never dropped
                key = (pool, lane if lane in lanes else OTHER_LANE)
                totals[key] = totals.get(key, 0) + n
        return [Observation(n, self.attributes(pool, lane)) for (pool, lane), n in totals.items()]

    def _per_pool(self, which: int) -> list[Observation]:
        from opentelemetry.metrics import Observation

        recorder = self.recorder
        if recorder is None:
            return []
        recorder.collection_drain()
        if recorder is not _active:
            return []
        totals: dict[str, int] = {}
        for state in self._states():
            n: int = state[which]  # type: ignore[assignment]
            totals[state[0]] = totals.get(state[0], 0) + n
        return [Observation(n, self.attributes(pool)) for pool, n in totals.items()]

    def _calls(self, options: CallbackOptions) -> Iterable[Observation]:
        """Calls by pool, lane and outcome: the sum of the pools' tallies (also once stopped)."""
        from opentelemetry.metrics import Observation

        recorder = self.recorder
        if recorder is None:
            return []
        recorder.collection_drain()
        totals: dict[tuple[str, str, int], int] = {}
        with self._fold_lock:  # a tally is read here before its fold, or in its name's after: once
            self._fold_gone()
            for tally in list(self.tallies.values()):
                for lane, counts in tally.counts():
                    for outcome, n in enumerate(counts):
                        if n:
                            key = (tally.pool, lane, outcome)
                            totals[key] = totals.get(key, 0) + n
        outcomes = _tally.OUTCOMES
        return [
            Observation(n, self.attributes(pool, lane, outcomes[outcome]))
            for (pool, lane, outcome), n in totals.items()
        ]

    def pool_gone(self, tally: _tally.Tally) -> None:
        """``tally``'s pool is gone (in the thread that let it go): fold its counts by its name now,
        or, while a collection reads the counts, at the next one."""
        if self._fold_lock.acquire(False):
            try:
                self._fold(tally)
                self._fold_gone()
            finally:
                self._fold_lock.release()
        else:
            self._gone.append(tally)

    def _fold_gone(self) -> None:
        """Fold the tallies of pools gone while the counts were read (under ``_fold_lock``)."""
        gone = self._gone
        while gone:
            try:
                tally = gone.popleft()
            except IndexError:
                break
            self._fold(tally)

    def _fold(self, tally: _tally.Tally) -> None:
        """Fold the tally of a pool that is gone into its pool name's (under ``_fold_lock``).

        A pool that is gone (its core collected) has no worker left to count: its tally is
        final. Its counts go on being reported under its name, from that name's tally.
        """
        if self.tallies.get(id(tally)) is not tally:
            return  # folded already
        folded = self._folded.get(tally.pool)
        if folded is None:
            folded = self._folded[tally.pool] = _tally.Tally(tally.pool, MAX_PENDING, tally.names)
            self.tallies[id(folded)] = folded
        folded.fold(tally)
        del self.tallies[id(tally)]
        tally.owner = None  # (the cycle through its weak reference's callback)

    def _queue_length(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._by_lane(3)

    def _queue_held(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._by_lane(4)

    def _thread_usage(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._by_lane(5)

    def _thread_count(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._per_pool(2)

    def _thread_limit(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._per_pool(1)


# -- switching it on and off -------------------------------------------------------------

_active: MetricsRecorder | None = None
_instruments: dict[Any, _Instruments] = {}  # by meter provider (None: the global one)
_lock = allocate_lock()


def _after_fork_in_child() -> None:
    global _lock
    _lock = allocate_lock()
    for instruments in list(_instruments.values()):  # a collector of the parent's may have held them
        instruments._fold_lock = allocate_lock()
        for names in list(instruments._lane_names.values()):
            names.lock = allocate_lock()
    recorder = _active
    if recorder is not None:
        recorder.forget_the_parents_entries()


os.register_at_fork(after_in_child=_after_fork_in_child)


def active() -> MetricsRecorder | None:
    """The recorder taking metrics now, or None."""
    return _active


def start(meter_provider: MeterProvider | None, version: str) -> MetricsRecorder:
    """Record metrics into ``meter_provider``'s meter (the global provider's if None).

    Replaces a recorder already on; the instruments are made once per provider.
    """
    from opentelemetry import metrics as otel_metrics

    global _active
    with _lock:
        _stop_locked()
        instruments = _instruments.get(meter_provider)
        if instruments is None:
            meter = otel_metrics.get_meter("fairpool", version, meter_provider=meter_provider)
            instruments = _instruments[meter_provider] = _Instruments(meter)
        recorder = MetricsRecorder(instruments)
        recorder._dropped_before = recorder.dropped  # warned of by an earlier recorder
        previous = instruments.recorder
        instruments.recorder = recorder
        if previous is not None:  # stopped, not yet collected: its entries go with the new one's
            recorder.lock_events.extend(previous.lock_events)
            recorder.stalls.extend(previous.stalls)
        _active = recorder
        _tally.factory = recorder.new_tally  # each new pool counts its calls
        for core in list(_exitrule._cores):  # and each live one
            if core.tally is None:
                tally = recorder.new_tally(core.name)
                tally.own(core)
                core.tally = tally
        locks.add_listener(recorder)
        hubwatch.add_stall_listener(recorder.hub_stalled)
    recorder.start_green_drain()  # under eventlet, from a thread with a hub; else the first collection's
    return recorder


def _stop_locked() -> None:
    global _active
    recorder, _active = _active, None
    if recorder is not None:
        _tally.factory = None
        for core in list(_exitrule._cores):
            core.tally = None  # what it counted is still reported (instruments.tallies)
        locks.remove_listener(recorder)
        hubwatch.remove_stall_listener(recorder.hub_stalled)


def stop() -> None:
    """Stop recording; what was recorded is reported at the next collection. Does nothing if off."""
    with _lock:
        _stop_locked()
