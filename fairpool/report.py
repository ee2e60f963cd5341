"""``fairpool report TRACE.json|DIR [MORE ...]``: name the contention in traces.

Reads Chrome trace-event JSON (fairpool's, or any that uses complete or
begin/end events): files, or directories of .json files, from one process
or many, on one host or several, and prints:

1. the spans that took the most time in all;
2. the locks, by total time waited, with how often they were contended;
3. per pool call, the time spent queued against the time spent running;
4. the stretched extents: calls that took far longer than is usual for
   their name, and what they waited on meanwhile.

Files from several processes and hosts are put on one timeline: each of
fairpool's files starts with an anchor of the wall clock and the monotonic
clock; files of one host share its monotonic clock, and hosts are aligned
by their wall clocks (the report says how precise that is).

Any file is safe to give: only regular files are read, within a size and
nesting limit, parsed event by event; memory is about 32 bytes a span, and
the tracks, names and awaited begin events kept are bounded (see
:class:`SpanStore`: the report says in one line what it folded or dropped);
a bad file gets one line and exit status 2.

``--timeline out.png`` draws the tracks as a picture (needs matplotlib).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._traceread import MAX_FILE_BYTES, ReportError, TraceReader

__all__ = ["ReportError", "Span", "SpanStore", "load", "load_spans", "main", "render"]

#: A call is stretched when it took this many times the median for its name ...
STRETCH_FACTOR = 3.0
#: ... and at least this long (microseconds), and its name was seen this often.
STRETCH_MIN_US = 1000.0
STRETCH_MIN_COUNT = 5
#: Begin events waiting for their end, per track, at most (a file of only begins stays bounded) ...
MAX_OPEN_PER_TRACK = 1000
#: ... and in one file in all; further begins are dropped and counted.
MAX_OPEN = 10_000
#: Distinct tracks kept over all files; the spans of further tracks go to one track per file.
MAX_TRACKS = 10_000
#: Distinct strings (span names, categories, lock names) kept; further ones are counted as ``<other>``.
MAX_STRINGS = 10_000
#: The name of the track a file's spans go to once MAX_TRACKS tracks are known.
OTHER_TRACKS = "other tracks"
#: What a name beyond MAX_STRINGS is counted as (after its kind: ``wait <other>``, ``run <other>``...).
OTHER = "<other>"
_KINDS = ("wait ", "hold ", "queued ", "run ")
#: A name's median is taken over at most this many of its spans (evenly spaced) when it has more.
MEDIAN_SAMPLE = 20_001
#: Longest name kept (characters).
MAX_NAME = 300

Track = tuple[str, Any, Any]  # (file, pid, tid)


@dataclass
class Span:
    name: str
    cat: str
    ts: float  # microseconds
    dur: float
    track: Track
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> float:
        return self.ts + self.dur


class SpanStore:
    """Spans in columns of machine numbers (about 32 bytes a span), names and tracks interned.

    What is kept besides the spans is bounded, whatever the files hold: at
    most :data:`MAX_TRACKS` tracks (the spans of further tracks go to one
    track per file, ``other tracks``) and :data:`MAX_STRINGS` strings (further
    names count as ``<other>``, after their kind: ``run <other>``); the
    counters ``folded_tracks``, ``folded_strings`` and ``dropped_begins`` say
    how often that happened, and the report says so in one line.
    """

    def __init__(self) -> None:
        self.strings: list[str] = []
        self._string_ids: dict[str, int] = {}
        self.tracks: list[Track] = []
        self._track_ids: dict[Track, int] = {}
        self._other_tracks: dict[str, int] = {}  # a file's label -> its "other tracks" track
        self.name = array("I")
        self.cat = array("I")
        self.lock = array("I")  # the "lock" argument's string id, or the id of ""
        self.track = array("I")
        self.ts = array("d")
        self.dur = array("d")
        self.folded_tracks = 0  #: events (spans, begins, track names) put on a file's "other tracks"
        self.folded_strings = 0  #: names beyond MAX_STRINGS counted as "<other>"
        self.dropped_begins = 0  #: begin events dropped: more than MAX_OPEN waiting for their end
        # Always there, so looking them up never folds: what the report asks for, and the folds.
        for text in ("", "lock", "pool", "call", "hub blocked", OTHER, *(k + OTHER for k in _KINDS)):
            self._intern(text)

    def _intern(self, text: str) -> int:
        i = self._string_ids[text] = len(self.strings)
        self.strings.append(text)
        return i

    def sid(self, text: str) -> int:
        """The id of ``text``; past MAX_STRINGS distinct ones, that of ``<other>`` (after its kind)."""
        i = self._string_ids.get(text)
        if i is None:
            if len(self.strings) < MAX_STRINGS:
                return self._intern(text)
            self.folded_strings += 1
            kind = next((k for k in _KINDS if text.startswith(k)), "")
            i = self._string_ids[kind + OTHER]
        return i

    def tid(self, track: Track) -> int:
        """The id of ``track``; past MAX_TRACKS tracks, that of its file's ``other tracks``."""
        i = self._track_ids.get(track)
        if i is None:
            if len(self.tracks) < MAX_TRACKS:
                i = self._track_ids[track] = len(self.tracks)
                self.tracks.append(track)
                return i
            self.folded_tracks += 1
            i = self._other(track[0])
        return i

    def known_tid(self, track: Track) -> int | None:
        """The id ``tid(track)`` gave, or None if ``track`` was never seen (nothing is added)."""
        i = self._track_ids.get(track)
        if i is None and len(self.tracks) >= MAX_TRACKS:
            i = self._other_tracks.get(track[0])
        return i

    def is_folded(self, tid: int) -> bool:
        """Whether track ``tid`` is a file's ``other tracks`` (many tracks on one)."""
        return self.tracks[tid][2] == OTHER_TRACKS and self._other_tracks.get(self.tracks[tid][0]) == tid

    def _other(self, label: str) -> int:
        i = self._other_tracks.get(label)
        if i is None:
            track = (label, OTHER, OTHER_TRACKS)
            i = self._other_tracks[label] = self._track_ids[track] = len(self.tracks)
            self.tracks.append(track)
        return i

    def add(self, name: str, cat: str, ts: float, dur: float, track: Track, lock: str = "") -> None:
        self.add_ids(self.sid(name), self.sid(cat), ts, dur, self.tid(track), self.sid(lock))

    def add_ids(self, name: int, cat: int, ts: float, dur: float, track: int, lock: int) -> None:
        """Add a span whose strings and track are interned already."""
        self.name.append(name)
        self.cat.append(cat)
        self.lock.append(lock)
        self.track.append(track)
        self.ts.append(ts)
        self.dur.append(dur)

    def bounded(self) -> str:
        """One line saying what was folded or dropped to bound memory, or ""."""
        parts = []
        if self.folded_tracks:
            parts.append(
                f"{self.folded_tracks:,} events on tracks beyond the first {MAX_TRACKS:,} "
                f"put on one track per file ({OTHER_TRACKS!r})"
            )
        if self.folded_strings:
            parts.append(
                f"{self.folded_strings:,} names beyond the first {MAX_STRINGS:,} distinct ones counted as "
                f"{OTHER!r} (after their kind: 'run {OTHER}')"
            )
        if self.dropped_begins:
            parts.append(
                f"{self.dropped_begins:,} begin events dropped (over {MAX_OPEN:,} awaited their end)"
            )
        return "To bound memory: " + "; ".join(parts) + "." if parts else ""

    def __len__(self) -> int:
        return len(self.ts)

    def spans(self) -> Iterator[Span]:
        s = self.strings
        for i in range(len(self)):
            lock = s[self.lock[i]]
            yield Span(
                s[self.name[i]],
                s[self.cat[i]],
                self.ts[i],
                self.dur[i],
                self.tracks[self.track[i]],
                {"lock": lock} if lock else {},
            )

    @classmethod
    def of(cls, spans: Iterable[Span]) -> SpanStore:
        store = cls()
        for sp in spans:
            lock = sp.args.get("lock") if isinstance(sp.args, dict) else None
            store.add(sp.name, sp.cat, sp.ts, sp.dur, sp.track, lock if isinstance(lock, str) else "")
        return store


@dataclass
class FileInfo:
    """What was learnt of one file besides its spans."""

    label: str
    anchor: dict[str, Any] | None = None
    truncated: bool = False
    dropped: int = 0  #: events the recorder dropped (its buffer was full)
    events: int = 0
    offset_us: float = 0.0  #: added to the file's times to put it on the common timeline


# -- reading ------------------------------------------------------------------------


class _Malformed(Exception):
    pass


def _ident(value: Any, key: str) -> Any:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise _Malformed(f"{key} is a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise _Malformed(f"{key} is {value!r}, not a whole number")
    if isinstance(value, str):
        return value[:MAX_NAME]
    raise _Malformed(f"{key} is a {type(value).__name__}, not a number or a string")


def _number(ev: dict[str, Any], key: str, default: float | None = None) -> float:
    value = ev.get(key, default)
    if value is None:
        raise _Malformed(f"no {key!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Malformed(f"{key} is a {type(value).__name__}, not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _Malformed(f"{key} is not a finite number")
    return number


def _text(ev: dict[str, Any], key: str, required: bool = False) -> str:
    value = ev.get(key)
    if value is None:
        if required:
            raise _Malformed(f"no {key!r}")
        return ""
    if isinstance(value, str):
        return value[:MAX_NAME]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)[:MAX_NAME]
    raise _Malformed(f"{key} is a {type(value).__name__}, not a string")


def _args(ev: dict[str, Any]) -> dict[str, Any]:
    value = ev.get("args")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Malformed(f"args is a {type(value).__name__}, not an object")
    return value


def _lock(args: dict[str, Any]) -> str:
    lock = args.get("lock")
    return lock[:MAX_NAME] if isinstance(lock, str) else ""


def _anchor(args: dict[str, Any]) -> dict[str, Any] | None:
    try:
        clocks = [float(args["wall_us"]), float(args["monotonic_us"]), float(args.get("uncertainty_us", 0.0))]
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    if isinstance(args.get("wall_us"), bool) or not all(math.isfinite(c) for c in clocks):
        return None
    return {
        "wall_us": clocks[0],
        "monotonic_us": clocks[1],
        "uncertainty_us": clocks[2],
        "hostname": str(args.get("hostname", ""))[:MAX_NAME],
        "boot_id": str(args.get("boot_id", ""))[:MAX_NAME],
    }


def _read_file(path: Path, label: str, store: SpanStore, names: dict[Track, str]) -> FileInfo:
    info = FileInfo(label)
    reader = TraceReader(str(path), str(path))
    # Begin events waiting for their end, per track id (name, cat, ts, lock; strings interned).
    open_spans: dict[int, list[tuple[int, int, float, int]]] = {}
    waiting = 0  # begins in open_spans, at most MAX_OPEN
    ev: dict[str, Any] = {}
    try:
        for ev in reader:
            ph = ev.get("ph")
            if not isinstance(ph, str):
                raise _Malformed("no 'ph' string")
            track = (label, _ident(ev.get("pid"), "pid"), _ident(ev.get("tid"), "tid"))
            if ph == "X":
                args = _args(ev)
                store.add(
                    _text(ev, "name", True),
                    _text(ev, "cat"),
                    _number(ev, "ts"),
                    max(_number(ev, "dur", 0.0), 0.0),
                    track,
                    _lock(args),
                )
            elif ph == "B":
                begin = (
                    store.sid(_text(ev, "name", True)),
                    store.sid(_text(ev, "cat")),
                    _number(ev, "ts"),
                    store.sid(_lock(_args(ev))),
                )
                if waiting >= MAX_OPEN:
                    store.dropped_begins += 1
                    continue
                stack = open_spans.setdefault(store.tid(track), [])
                stack.append(begin)
                waiting += 1
                if len(stack) > MAX_OPEN_PER_TRACK:
                    del stack[0]  # the oldest: its end is the least likely to come
                    waiting -= 1
                    store.dropped_begins += 1
            elif ph == "E":
                ts = _number(ev, "ts")
                tid = store.known_tid(track)  # an end on a track never seen adds nothing
                ends = open_spans.get(tid) if tid is not None else None
                if ends and tid is not None:
                    name, cat, begin_ts, lock = ends.pop()
                    waiting -= 1
                    if not ends:
                        del open_spans[tid]
                    store.add_ids(name, cat, begin_ts, max(ts - begin_ts, 0.0), tid, lock)
            elif ph == "M":
                kind = ev.get("name")
                if kind == "thread_name":
                    tid = store.tid(track)
                    if not store.is_folded(tid):
                        names[track] = _text(_args(ev), "name")
                elif kind == "fairpool_anchor" and info.anchor is None:
                    info.anchor = _anchor(_args(ev))
            elif ph == "C" and ev.get("name") == "fairpool trace: events dropped":
                dropped = _args(ev).get("events")
                if isinstance(dropped, int) and not isinstance(dropped, bool):
                    info.dropped = max(info.dropped, dropped)
    except _Malformed as exc:
        try:
            shown = json.dumps(ev)[:200]
        except (TypeError, ValueError, RecursionError):
            shown = "?"
        raise ReportError(f"{path}: a malformed event (event {reader.count}: {exc}): {shown}") from None
    other = store.known_tid((label, OTHER, OTHER_TRACKS))
    if other is not None and store.is_folded(other):
        names[store.tracks[other]] = f"{OTHER_TRACKS} of {label}"
    info.truncated = reader.truncated
    info.events = reader.count
    return info


def _files(inputs: Iterable[Path]) -> list[Path]:
    """The files to read: each file as given; each directory's regular ``*.json`` files, sorted."""
    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.name.endswith(".json") and q.is_file())
            if not found:
                raise ReportError(f"{p}: a directory with no .json trace file in it")
            out += found
        else:
            out.append(p)
    return out


def _labels(paths: list[Path]) -> list[str]:
    """Short unique labels: the file's name, or more of its path where two names are the same."""
    seen = Counter(p.name for p in paths)
    return [p.name if seen[p.name] == 1 else str(p) for p in paths]


def load(inputs: Iterable[Path]) -> tuple[SpanStore, dict[Track, str], list[FileInfo]]:
    """All spans of the files and directories, on one timeline; track names; what each file said.

    Raises:
        ReportError: A file is missing, not a regular file, too large, or
            not trace-event JSON (the message is one line naming it).
    """
    paths = _files(inputs)
    store = SpanStore()
    names: dict[Track, str] = {}
    infos = [_read_file(p, label, store, names) for p, label in zip(paths, _labels(paths), strict=True)]
    _align(store, infos)
    return store, names, infos


def load_spans(paths: Iterable[Path]) -> tuple[list[Span], dict[Track, str]]:
    """All spans in the files, as :class:`Span` objects, and the names of their tracks.

    For small traces and tests; ``fairpool report`` keeps spans in columns instead.

    Raises:
        ReportError: A file is missing, unreadable, or not trace-event JSON.
    """
    store, names, _ = load(paths)
    return list(store.spans()), names


# -- one timeline ----------------------------------------------------------------------


def _align(store: SpanStore, infos: list[FileInfo]) -> None:
    """Shift each file's times onto one timeline (see :func:`alignment`).

    One host: its monotonic clock is the timeline, nothing moves. Several:
    each host's monotonic times are turned into wall-clock times through the
    anchor of its first file, less a common base so the numbers stay small.
    """
    hosts = _hosts(infos)
    if len(hosts) <= 1:
        return
    host_offset = {}
    for key, members in hosts.items():
        ref = members[0].anchor
        assert ref is not None
        host_offset[key] = ref["wall_us"] - ref["monotonic_us"]
    base = min(host_offset.values())
    for key, members in hosts.items():
        for info in members:
            info.offset_us = host_offset[key] - base
    offsets = {info.label: info.offset_us for info in infos}
    shift = [offsets.get(t[0], 0.0) for t in store.tracks]
    ts, track = store.ts, store.track
    for i in range(len(ts)):
        ts[i] += shift[track[i]]


def _hosts(infos: list[FileInfo]) -> dict[tuple[str, str], list[FileInfo]]:
    hosts: dict[tuple[str, str], list[FileInfo]] = {}
    for info in infos:
        if info.anchor is not None:
            hosts.setdefault((info.anchor["hostname"], info.anchor["boot_id"]), []).append(info)
    return hosts


def alignment(infos: list[FileInfo]) -> str:
    """How the files were put on one timeline, and how precise that is (one paragraph)."""
    if len(infos) <= 1:
        return ""
    hosts = _hosts(infos)
    bare = [i.label for i in infos if i.anchor is None]
    lines = []
    if len(hosts) <= 1:
        lines.append(
            f"One timeline: {len(infos) - len(bare)} file(s) of one host share its monotonic clock "
            "(aligned exactly)."
        )
    else:
        anchors = [i.anchor for m in hosts.values() for i in m if i.anchor is not None]
        reading = max(float(a["uncertainty_us"]) for a in anchors)
        drift = 0.0
        for members in hosts.values():
            offs = [float(m.anchor["wall_us"]) - float(m.anchor["monotonic_us"]) for m in members if m.anchor]
            drift = max(drift, max(offs) - min(offs))
        lines.append(
            f"One timeline: {len(infos) - len(bare)} files from {len(hosts)} hosts "
            f"({', '.join(sorted({h for h, _ in hosts}))}). Files of one host share its monotonic "
            "clock (exact); hosts are aligned by their wall clocks at each file's start, so the "
            "alignment between hosts is as good as their clock sync (NTP: usually within a few ms), "
            f"plus {reading:.1f} us reading the clocks; wall clocks moved by up to {drift / 1000:.1f} ms "
            "against the monotonic clock between files of one host."
        )
    if bare:
        lines.append(f"Not aligned (no fairpool anchor, times used as they are): {', '.join(bare)}.")
    return " ".join(lines)


# -- rendering ----------------------------------------------------------------------


def _ms(us: float) -> str:
    return f"{us / 1000:,.1f}"


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return f"{title}\n  (none)\n"
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [title, "  " + line.format(*header)]
    out += ["  " + line.format(*r) for r in rows]
    return "\n".join(out) + "\n"


def render(spans: list[Span], names: dict[Track, str], top: int = 10) -> str:
    """The report of ``spans`` (see the module docstring)."""
    return render_store(SpanStore.of(spans), names, top)


def render_store(
    store: SpanStore, names: dict[Track, str], top: int = 10, infos: list[FileInfo] | None = None
) -> str:
    parts = []
    strings = store.strings
    n = len(store)
    tracks = set(store.track)
    files = {store.tracks[t][0] for t in tracks}
    if infos is not None:
        files |= {i.label for i in infos}
    parts.append(f"{n} spans on {len(tracks)} tracks from {len(files)} file(s)\n")
    notes = _notes(infos or [])
    if notes:
        parts.append(notes)
    bounded = store.bounded()
    if bounded:
        parts.append(bounded + "\n")

    lock_cat = store.sid("lock")
    pool_cat = store.sid("pool")
    call_cats = {store.sid("call"), store.sid("")}
    # Per string id (at most MAX_STRINGS): machine numbers in arrays, not a dict entry per name.
    name_kind = [next((p for p in _KINDS if text.startswith(p)), "") for text in strings]  # by prefix
    m = len(strings)
    total, longest, count = array("d", bytes(8 * m)), array("d", bytes(8 * m)), array("Q", bytes(8 * m))
    pool_total, pool_max, pool_count = (
        array("d", bytes(8 * m)),
        array("d", bytes(8 * m)),
        array("Q", bytes(8 * m)),
    )

    # 1. Top spans by total time (lock spans have their own table).
    waits: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0.0])
    holds: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for i in range(n):
        name, cat, dur = store.name[i], store.cat[i], store.dur[i]
        kind = name_kind[name]
        if cat == lock_cat:
            lock = strings[store.lock[i]] or strings[name].split(" ", 1)[-1]
            if kind == "wait ":
                w = waits[lock]
                w[0] += dur
                w[1] += 1
                w[2] = max(w[2], dur)
            elif kind == "hold ":
                h = holds[lock]
                h[0] += dur
                h[1] += 1
            continue
        total[name] += dur
        count[name] += 1
        if dur > longest[name]:
            longest[name] = dur
        if cat == pool_cat and (kind == "queued " or kind == "run "):
            pool_total[name] += dur
            pool_count[name] += 1
            if dur > pool_max[name]:
                pool_max[name] = dur
    queued: dict[str, list[float]] = {}
    run: dict[str, list[float]] = {}
    for j in range(m):
        if pool_count[j]:
            kind = name_kind[j]
            into = queued if kind == "queued " else run
            agg = into.setdefault(strings[j][len(kind) :], [0.0, 0, 0.0])
            agg[0] += pool_total[j]
            agg[1] += pool_count[j]
            agg[2] = max(agg[2], pool_max[j])
    rows = [
        [strings[k], str(count[k]), _ms(total[k]), _ms(total[k] / count[k]), _ms(longest[k])]
        for k in sorted((j for j in range(m) if count[j]), key=lambda j: -total[j])[:top]
    ]
    parts.append(_table("Top spans by total time", ["span", "count", "total ms", "mean ms", "max ms"], rows))

    # 2. Locks by total wait.
    lock_names = sorted(set(waits) | set(holds), key=lambda k: -(waits[k][0] if k in waits else 0.0))
    rows = []
    for k in lock_names[:top]:
        w = waits.get(k, [0.0, 0, 0.0])
        h = holds.get(k, [0.0, 0])
        rows.append([k, _ms(w[0]), str(int(w[1])), _ms(w[2]), str(int(h[1])), _ms(h[0])])
    parts.append(
        _table(
            "Locks by total wait",
            ["lock", "total wait ms", "contended", "max wait ms", "holds", "total hold ms"],
            rows,
        )
    )

    # 3. Pool calls: queued against running.
    fns = sorted(set(queued) | set(run), key=lambda k: -(queued.get(k, [0.0])[0] + run.get(k, [0.0])[0]))
    rows = []
    for fn in fns[:top]:
        q = queued.get(fn, [0.0, 0, 0.0])
        r = run.get(fn, [0.0, 0])
        share = q[0] / (q[0] + r[0]) if (q[0] + r[0]) else 0.0
        rows.append([fn, str(int(max(q[1], r[1]))), _ms(q[0]), _ms(q[2]), _ms(r[0]), f"{share:.0%}"])
    parts.append(
        _table(
            "Pool calls: time queued against time running",
            ["call", "calls", "queued ms", "max queued ms", "running ms", "queued share"],
            rows,
        )
    )

    # 4. Stretched extents, and what they waited on.
    parts.append(_stretched(store, names, top, name_kind, call_cats, pool_cat))
    return "\n".join(parts)


def _notes(infos: list[FileInfo]) -> str:
    lines = []
    aligned = alignment(infos)
    if aligned:
        lines.append(aligned)
    for info in infos:
        if info.truncated:
            lines.append(
                f"{info.label}: ends without its closing bracket or inside an event (the process "
                "was stopped while recording): read up to there."
            )
        if info.dropped:
            lines.append(f"{info.label}: the recorder dropped {info.dropped:,} events (its buffer was full).")
    return "\n".join(lines) + "\n" if lines else ""


def _stretched(
    store: SpanStore,
    names: dict[Track, str],
    top: int,
    name_kind: list[str],
    call_cats: set[int],
    pool_cat: int,
) -> str:
    strings = store.strings
    hub = store.sid("hub blocked")
    groups: dict[int, array[int]] = defaultdict(lambda: array("I"))
    by_track: dict[int, array[int]] = defaultdict(lambda: array("I"))
    folded = {t for t in range(len(store.tracks)) if store.is_folded(t)}  # many tracks on one: no overlaps
    for i in range(len(store)):
        name, cat = store.name[i], store.cat[i]
        kind = name_kind[name]
        if cat in call_cats or (cat == pool_cat and kind == "run "):
            groups[name].append(i)
        if (kind in ("wait ", "queued ") or name == hub) and store.track[i] not in folded:
            by_track[store.track[i]].append(i)
    found = []
    dur, ts = store.dur, store.ts
    for group in groups.values():
        if len(group) < STRETCH_MIN_COUNT:
            continue
        step = -(-len(group) // MEDIAN_SAMPLE)  # an even sample of a large group: memory stays bounded
        med = statistics.median(dur[i] for i in group[::step])
        limit = max(STRETCH_FACTOR * med, STRETCH_MIN_US)
        for i in group:
            if dur[i] > limit:
                found.append((dur[i] - med, i, med))
    found.sort(key=lambda x: -x[0])
    rows = []
    for _, i, med in found[:top]:
        end = ts[i] + dur[i]
        waited: dict[str, float] = defaultdict(float)
        for w in by_track.get(store.track[i], ()):
            overlap = min(end, ts[w] + dur[w]) - max(ts[i], ts[w])
            if overlap > 0 and w != i:
                waited[strings[store.name[w]]] += overlap
        what = ", ".join(f"{k} {_ms(us)} ms" for k, us in sorted(waited.items(), key=lambda kv: -kv[1])[:3])
        if store.track[i] in folded:
            what = f"? (on {OTHER_TRACKS!r})"
        track = store.tracks[store.track[i]]
        rows.append(
            [strings[store.name[i]], _ms(dur[i]), _ms(med), names.get(track, str(track[2])), what or "-"]
        )
    return _table(
        f"Stretched extents (over {STRETCH_FACTOR:g}x the median for their name)",
        ["span", "took ms", "median ms", "track", "waited on"],
        rows,
    )


def _natural(name: str) -> list[Any]:
    """A sort key that puts "worker-2" before "worker-10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def timeline(spans: list[Span] | SpanStore, names: dict[Track, str], out: Path, max_tracks: int = 40) -> None:
    """Draw the tracks as horizontal bars, one row per track, to a PNG."""
    try:
        import matplotlib
    except ImportError:
        raise ReportError("--timeline needs matplotlib: pip install 'fairpool[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    store = spans if isinstance(spans, SpanStore) else SpanStore.of(spans)
    strings = store.strings
    busy: dict[int, float] = defaultdict(float)
    for i in range(len(store)):
        busy[store.track[i]] += store.dur[i]
    kept = sorted(busy, key=lambda t: -busy[t])[:max_tracks]
    kept.sort(key=lambda t: _natural(names.get(store.tracks[t], "")))
    row = {t: r for r, t in enumerate(kept)}
    chosen = [i for i in range(len(store)) if store.track[i] in row]
    t0 = min((store.ts[i] for i in chosen), default=0.0)
    colors = {"call": "tab:blue", "pool": "tab:green", "lock": "tab:red", "hub": "black"}
    fig, ax = plt.subplots(figsize=(14, 0.35 * len(kept) + 1.5))
    # Longest first, opaque: a span nested in another is drawn over it.
    for i in sorted(chosen, key=lambda i: -store.dur[i]):
        name, cat = strings[store.name[i]], strings[store.cat[i]]
        color = colors.get(cat, "tab:gray")
        if name.startswith(("wait ", "queued ")):
            color = "tab:orange" if cat == "pool" else "tab:red"
        elif name.startswith("hold "):
            color = "tab:purple"
        ax.broken_barh(
            [((store.ts[i] - t0) / 1e3, max(store.dur[i] / 1e3, 0.05))],
            (row[store.track[i]] - 0.4, 0.8),
            facecolors=color,
            edgecolor="white",
            linewidth=0.3,
        )
    ax.set_yticks(range(len(kept)))
    labels = []
    for t in kept:
        track = store.tracks[t]
        labels.append(names.get(track, f"{track[1]}/{track[2]}")[:40])
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("ms")
    ax.invert_yaxis()
    handles = [
        Rectangle((0, 0), 1, 1, color=c)
        for c in ("tab:blue", "tab:green", "tab:orange", "tab:red", "tab:purple")
    ]
    ax.legend(
        handles,
        ["call", "pool run", "pool wait/queued", "lock wait", "lock hold"],
        fontsize=7,
        loc="upper right",
    )
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=100)
    except OSError as exc:
        raise ReportError(f"--timeline {out}: cannot be written: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


# -- the command ------------------------------------------------------------------------


def _rows(text: str) -> int:
    """``--top``'s type: a whole number of rows, at least 1 (argparse names the option)."""
    try:
        rows = int(text)
    except ValueError:
        rows = 0
    if rows < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return rows


def _check_output(out: Path) -> None:
    parent = out.parent
    if not parent.is_dir():
        raise ReportError(f"--timeline {out}: no such directory {str(parent)!r}")
    if out.exists() and not out.is_file():
        raise ReportError(f"--timeline {out}: not a regular file")


def _quiet_closed_pipe() -> None:
    """stdout's reader went away (``| head``): say nothing more, and don't fail at exit."""
    try:
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fairpool report",
        description=(__doc__ or "").replace("``", ""),  # plain text, not reST
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Limits: files up to {MAX_FILE_BYTES // 1024**3} GiB; exit status 2 on any bad input.",
    )
    parser.add_argument("traces", nargs="+", type=Path, metavar="TRACE.json|DIR")
    parser.add_argument("--top", type=_rows, default=10, metavar="N", help="rows per table (default 10)")
    parser.add_argument("--timeline", type=Path, metavar="OUT.png", help="also draw the tracks to a PNG")
    args = parser.parse_args(argv)
    try:
        if args.timeline:
            _check_output(args.timeline)
        store, names, infos = load(args.traces)
        sys.stdout.write(render_store(store, names, args.top, infos) + "\n")
        sys.stdout.flush()
        if args.timeline:
            timeline(store, names, args.timeline)
            print(f"timeline written to {args.timeline}", flush=True)
    except ReportError as exc:
        parser.exit(2, f"fairpool report: error: {exc}\n")
    except BrokenPipeError:
        _quiet_closed_pipe()
    except MemoryError:
        parser.exit(2, "fairpool report: error: out of memory\n")
    except KeyboardInterrupt:
        parser.exit(130, "")
    return 0
