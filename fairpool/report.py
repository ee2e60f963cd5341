"""``fairpool report TRACE.json [MORE.json ...]``: name the contention in a trace.

Reads Chrome trace-event JSON (fairpool's, or any that uses complete or
begin/end events), from one or many processes or hosts, and prints:

1. the spans that took the most time in all;
2. the locks, by total time waited, with how often they were contended;
3. per pool call, the time spent queued against the time spent running;
4. the stretched extents: calls that took far longer than is usual for
   their name, and what they waited on meanwhile.

``--timeline out.png`` draws the tracks as a picture (needs matplotlib).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FairpoolError

__all__ = ["ReportError", "Span", "load_spans", "main", "render"]

#: A call is stretched when it took this many times the median for its name ...
STRETCH_FACTOR = 3.0
#: ... and at least this long (microseconds), and its name was seen this often.
STRETCH_MIN_US = 1000.0
STRETCH_MIN_COUNT = 5


class ReportError(FairpoolError):
    """A trace file is missing or is not trace-event JSON."""


@dataclass
class Span:
    name: str
    cat: str
    ts: float  # microseconds
    dur: float
    track: tuple[str, int, int]  # (file, pid, tid)
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> float:
        return self.ts + self.dur


def _parse(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot be read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as first:
        # The JSON Array form may lack its closing bracket (a process that died
        # while recording): close it and try again.
        repaired = text.rstrip().rstrip(",")
        try:
            data = json.loads(repaired + "]") if repaired.startswith("[") else None
        except json.JSONDecodeError:
            data = None
        if data is None:
            raise ReportError(
                f"{path}: not trace-event JSON ({first.msg} at line {first.lineno}, column {first.colno})"
            ) from None
    if isinstance(data, dict):
        data = data.get("traceEvents")
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise ReportError(f"{path}: not trace-event JSON (expected a list of events or a 'traceEvents' list)")
    return data


def load_spans(paths: Iterable[Path]) -> tuple[list[Span], dict[tuple[str, int, int], str]]:
    """All complete spans in the files, and the names of their tracks.

    Raises:
        ReportError: A file is missing, unreadable, or not trace-event JSON.
    """
    spans: list[Span] = []
    names: dict[tuple[str, int, int], str] = {}
    for path in paths:
        label = path.name
        open_spans: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
        for ev in _parse(path):
            ph = ev.get("ph")
            try:
                track = (label, int(ev.get("pid", 0)), int(ev.get("tid", 0)))
                if ph == "X":
                    spans.append(
                        Span(
                            str(ev["name"]),
                            str(ev.get("cat", "")),
                            float(ev["ts"]),
                            float(ev.get("dur", 0.0)),
                            track,
                            ev.get("args") or {},
                        )
                    )
                elif ph == "B":
                    open_spans[track].append(ev)
                elif ph == "E" and open_spans[track]:
                    begin = open_spans[track].pop()
                    spans.append(
                        Span(
                            str(begin["name"]),
                            str(begin.get("cat", "")),
                            float(begin["ts"]),
                            float(ev["ts"]) - float(begin["ts"]),
                            track,
                            begin.get("args") or {},
                        )
                    )
                elif ph == "M" and ev.get("name") == "thread_name":
                    names[track] = str((ev.get("args") or {}).get("name", ""))
            except (KeyError, TypeError, ValueError) as exc:
                raise ReportError(f"{path}: a malformed event ({exc!r}): {json.dumps(ev)[:200]}") from None
    return spans, names


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


def _lock_name(span: Span) -> str:
    return str(span.args.get("lock") or span.name.split(" ", 1)[-1])


def render(spans: list[Span], names: dict[tuple[str, int, int], str], top: int = 10) -> str:
    parts = []
    tracks = {s.track for s in spans}
    files = {t[0] for t in tracks}
    parts.append(f"{len(spans)} spans on {len(tracks)} tracks from {len(files)} file(s)\n")

    # 1. Top spans by total time (lock spans have their own table).
    by_name: dict[str, list[float]] = defaultdict(list)
    for s in spans:
        if s.cat != "lock":
            by_name[s.name].append(s.dur)
    rows = [
        [name, str(len(d)), _ms(sum(d)), _ms(sum(d) / len(d)), _ms(max(d))]
        for name, d in sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:top]
    ]
    parts.append(_table("Top spans by total time", ["span", "count", "total ms", "mean ms", "max ms"], rows))

    # 2. Locks by total wait.
    waits: dict[str, list[float]] = defaultdict(list)
    holds: dict[str, list[float]] = defaultdict(list)
    for s in spans:
        if s.cat == "lock" and s.name.startswith("wait "):
            waits[_lock_name(s)].append(s.dur)
        elif s.cat == "lock" and s.name.startswith("hold "):
            holds[_lock_name(s)].append(s.dur)
    lock_names = sorted(set(waits) | set(holds), key=lambda n: -sum(waits.get(n, [])))
    rows = [
        [
            n,
            _ms(sum(waits.get(n, []))),
            str(len(waits.get(n, []))),
            _ms(max(waits.get(n, [0.0]))),
            str(len(holds.get(n, []))),
            _ms(sum(holds.get(n, []))),
        ]
        for n in lock_names[:top]
    ]
    parts.append(
        _table(
            "Locks by total wait",
            ["lock", "total wait ms", "contended", "max wait ms", "holds", "total hold ms"],
            rows,
        )
    )

    # 3. Pool calls: queued against running.
    queued: dict[str, list[float]] = defaultdict(list)
    run: dict[str, list[float]] = defaultdict(list)
    for s in spans:
        if s.cat == "pool" and s.name.startswith("queued "):
            queued[s.name[7:]].append(s.dur)
        elif s.cat == "pool" and s.name.startswith("run "):
            run[s.name[4:]].append(s.dur)
    fns = sorted(set(queued) | set(run), key=lambda n: -(sum(queued.get(n, [])) + sum(run.get(n, []))))
    rows = []
    for fn in fns[:top]:
        q, r = queued.get(fn, []), run.get(fn, [])
        share = sum(q) / (sum(q) + sum(r)) if (sum(q) + sum(r)) else 0.0
        rows.append(
            [fn, str(max(len(q), len(r))), _ms(sum(q)), _ms(max(q, default=0.0)), _ms(sum(r)), f"{share:.0%}"]
        )
    parts.append(
        _table(
            "Pool calls: time queued against time running",
            ["call", "calls", "queued ms", "max queued ms", "running ms", "queued share"],
            rows,
        )
    )

    # 4. Stretched extents, and what they waited on.
    parts.append(_stretched(spans, names, top))
    return "\n".join(parts)


def _stretched(spans: list[Span], names: dict[tuple[str, int, int], str], top: int) -> str:
    groups: dict[str, list[Span]] = defaultdict(list)
    for s in spans:
        if s.cat in ("call", "") or (s.cat == "pool" and s.name.startswith("run ")):
            groups[s.name].append(s)
    by_track: dict[tuple[str, int, int], list[Span]] = defaultdict(list)
    for s in spans:
        if s.name.startswith(("wait ", "queued ")) or s.name == "hub blocked":
            by_track[s.track].append(s)
    found = []
    for group in groups.values():
        if len(group) < STRETCH_MIN_COUNT:
            continue
        med = statistics.median(s.dur for s in group)
        for s in group:
            if s.dur > max(STRETCH_FACTOR * med, STRETCH_MIN_US):
                found.append((s.dur - med, s, med))
    found.sort(key=lambda x: -x[0])
    rows = []
    for _, s, med in found[:top]:
        waited: dict[str, float] = defaultdict(float)
        for w in by_track.get(s.track, []):
            overlap = min(s.end, w.end) - max(s.ts, w.ts)
            if overlap > 0 and w is not s:
                waited[w.name] += overlap
        what = ", ".join(f"{n} {_ms(us)} ms" for n, us in sorted(waited.items(), key=lambda kv: -kv[1])[:3])
        rows.append([s.name, _ms(s.dur), _ms(med), names.get(s.track, str(s.track[2])), what or "-"])
    return _table(
        f"Stretched extents (over {STRETCH_FACTOR:g}x the median for their name)",
        ["span", "took ms", "median ms", "track", "waited on"],
        rows,
    )


def _natural(name: str) -> list[Any]:
    """A sort key that puts "worker-2" before "worker-10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def timeline(
    spans: list[Span], names: dict[tuple[str, int, int], str], out: Path, max_tracks: int = 40
) -> None:
    """Draw the tracks as horizontal bars, one row per track, to a PNG."""
    try:
        import matplotlib
    except ImportError:
        raise ReportError("--timeline needs matplotlib: pip install 'fairpool[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    busy: dict[tuple[str, int, int], float] = defaultdict(float)
    for s in spans:
        busy[s.track] += s.dur
    tracks = sorted(busy, key=lambda t: -busy[t])[:max_tracks]
    tracks.sort(key=lambda t: _natural(names.get(t, "")))
    row = {t: i for i, t in enumerate(tracks)}
    t0 = min((s.ts for s in spans), default=0.0)
    colors = {"call": "tab:blue", "pool": "tab:green", "lock": "tab:red", "hub": "black"}
    fig, ax = plt.subplots(figsize=(14, 0.35 * len(tracks) + 1.5))
    # Longest first, opaque: a span nested in another is drawn over it.
    for s in sorted(spans, key=lambda sp: -sp.dur):
        if s.track not in row:
            continue
        color = colors.get(s.cat, "tab:gray")
        if s.name.startswith(("wait ", "queued ")):
            color = "tab:orange" if s.cat == "pool" else "tab:red"
        elif s.name.startswith("hold "):
            color = "tab:purple"
        ax.broken_barh(
            [((s.ts - t0) / 1e3, max(s.dur / 1e3, 0.05))],
            (row[s.track] - 0.4, 0.8),
            facecolors=color,
            edgecolor="white",
            linewidth=0.3,
        )
    ax.set_yticks(range(len(tracks)))
    ax.set_yticklabels([names.get(t, f"{t[1]}/{t[2]}")[:40] for t in tracks], fontsize=7)
    ax.set_xlabel("ms")
    ax.invert_yaxis()
    from matplotlib.patches import Rectangle

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
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _rows(text: str) -> int:
    """``--top``'s type: a whole number of rows, at least 1 (argparse names the option)."""
    try:
        rows = int(text)
    except ValueError:
        rows = 0
    if rows < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fairpool report",
        description=(__doc__ or "").replace("``", ""),  # plain text, not reST
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("traces", nargs="+", type=Path, metavar="TRACE.json")
    parser.add_argument("--top", type=_rows, default=10, metavar="N", help="rows per table (default 10)")
    parser.add_argument("--timeline", type=Path, metavar="OUT.png", help="also draw the tracks to a PNG")
    args = parser.parse_args(argv)
    try:
        spans, names = load_spans(args.traces)
        print(render(spans, names, args.top))
        if args.timeline:
            timeline(spans, names, args.timeline)
            print(f"timeline written to {args.timeline}")
    except ReportError as exc:
        parser.exit(2, f"fairpool report: error: {exc}\n")
    return 0
