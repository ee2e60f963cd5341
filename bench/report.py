"""Print the benchmark results as comparison tables, check the targets, draw the plots.

python -m bench.report                      # bench/results/latest (the last quick run)
python -m bench.report --results bench/results/run1 bench/results/run2 bench/results/run3 --markdown
                                            # three full runs: targets on the median, with the spread
python -m bench.report --results DIR --plots docs   # the plots (writes tracked files: asked for)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def load(results: Path) -> dict[str, Any]:
    out = {}
    for path in sorted(results.glob("*.json")):
        out[path.stem] = json.loads(path.read_text())
    return out


class Table:
    def __init__(self, title: str, header: list[str], markdown: bool) -> None:
        self.title, self.header, self.rows, self.markdown = title, header, [], markdown

    def add(self, *cells: Any) -> None:
        self.rows.append([c if isinstance(c, str) else f"{c:,.2f}" for c in cells])

    def render(self) -> str:
        if self.markdown:
            lines = [
                f"### {self.title}",
                "",
                "| " + " | ".join(self.header) + " |",
                "|" + "---|" * len(self.header),
            ]
            lines += ["| " + " | ".join(r) + " |" for r in self.rows]
            return "\n".join(lines) + "\n"
        widths = [max(len(str(x)) for x in col) for col in zip(self.header, *self.rows, strict=False)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [self.title, "-" * len(self.title), fmt.format(*self.header)]
        lines += [fmt.format(*r) for r in self.rows]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Target:
    """One speed target: its value in one run, and whether that value meets it."""

    label: str
    value: float
    unit: str  # "x", "%", "ms", "count"
    bound: float
    at_most: bool  # the value must be <= bound (else >= bound)

    def met(self, value: float | None = None) -> bool:
        v = self.value if value is None else value
        return v <= self.bound if self.at_most else v >= self.bound

    def show(self, value: float | None = None) -> str:
        v = self.value if value is None else value
        if self.unit == "%":
            return f"{v:.1%}"
        if self.unit == "x":
            return f"{v:.2f} x"
        if self.unit == "ms":
            return f"{v:.0f} ms"
        return f"{v:.0f}"


def targets(data: dict[str, Any]) -> list[Target]:
    """Each speed target of the project that this run measured."""
    out: list[Target] = []

    def get(key: str) -> Any:
        return data.get(key)

    rt_p, rt_u = get("round_trip_pinned"), get("round_trip")
    if rt_p:
        out.append(
            Target("round trip, pinned: <= 0.5 x eventlet.tpool", rt_p["ratio_to_eventlet"], "x", 0.5, True)
        )
        out.append(
            Target("round trip, pinned: <= 1.3 x Event ping-pong", rt_p["ratio_to_floor"], "x", 1.3, True)
        )
    if rt_u:
        out.append(
            Target("round trip, unpinned: <= 1.0 x eventlet.tpool", rt_u["ratio_to_eventlet"], "x", 1.0, True)
        )
    for key, label in (("throughput_noop_pinned", "pinned"), ("throughput_noop", "unpinned")):
        if get(key):
            r = data[key]["ratio_to_eventlet"]
            out.append(Target(f"200 green callers, {label}: >= 1.5 x eventlet.tpool", r, "x", 1.5, False))
    for key, label in (("throughput_1ms", "unpinned"), ("throughput_1ms_pinned", "pinned")):
        if get(key):
            share = data[key]["share_of_ceiling"]["fairpool"]
            out.append(Target(f"1 ms calls, {label}: >= 95% of the ceiling", share, "%", 0.95, False))
    if get("imbalance"):
        d = data["imbalance"]["designs"]["fairpool fair"]
        longest = data["imbalance"]["longest_call_ms"]
        out.append(
            Target(
                f"imbalance: max completion within 5% of the longest call ({longest} ms)",
                d["max_completion_ms"],
                "ms",
                longest * 1.05,
                True,
            )
        )
        out.append(
            Target("imbalance: no 10 ms caller over 100 ms", d["slow_10ms_callers_total"], "count", 0, True)
        )
    t = get("tracing_overhead_pinned") or get("tracing_overhead")
    if t:
        out.append(
            Target(
                "tracing off costs nothing measurable on the round trip",
                t["ratio_off_to_untraced"],
                "x",
                1.0 + t["noise"],
                True,
            )
        )
    n = get("native_executor")
    if n:
        out.append(
            Target(
                "20 native callers, submit().result(): >= 1.0 x ThreadPoolExecutor",
                n["submit_throughput_ratio"],
                "x",
                1.0,
                False,
            )
        )
        out.append(
            Target(
                "20 native callers, execute(): >= 1.1 x ThreadPoolExecutor",
                n["execute_throughput_ratio"],
                "x",
                1.1,
                False,
            )
        )
        out.append(
            Target(
                "sequential submit().result(): <= 1.0 x ThreadPoolExecutor's latency",
                n["submit_latency_ratio"],
                "x",
                1.0,
                True,
            )
        )
    a = get("asyncio_calls")
    if a:
        out.append(
            Target(
                "asyncio: await run_sync <= 1.0 x run_in_executor (default executor)",
                a["run_sync_ratio"],
                "x",
                1.0,
                True,
            )
        )
        f = a["fairness"]
        out.append(
            Target(
                "asyncio: an interactive 1 ms call under a bulk flood, in calls' time (<= 2.5)",
                f["interactive_ms_median"] / f["call_ms"],
                "x",
                2.5,
                True,
            )
        )
    return out


def aggregate(runs: list[list[Target]]) -> list[tuple[Target, float, float, float, bool]]:
    """Per target: (target, median, min, max, near the noise), over the runs that measured it.

    A target is judged on the median; it is near the noise when the runs
    do not all agree on whether it is met.
    """
    by_label: dict[str, list[Target]] = {}
    for run in runs:
        for target in run:
            by_label.setdefault(target.label, []).append(target)
    out = []
    for seen in by_label.values():
        values = [t.value for t in seen]
        verdicts = {t.met() for t in seen}
        out.append((seen[0], statistics.median(values), min(values), max(values), len(verdicts) > 1))
    return out


def render(data: dict[str, Any], markdown: bool) -> str:
    parts = []
    for key, label in (("round_trip", "unpinned"), ("round_trip_pinned", "pinned to one CPU")):
        if key in data:
            d = data[key]
            t = Table(
                f"Sequential round trip of a no-op C call, {label}",
                ["design", "median us", "p99 us", "fairpool / design"],
                markdown,
            )
            for name in ("fairpool", "eventlet", "floor"):
                ratio = d["median_us"]["fairpool"] / d["median_us"][name]
                label2 = {"eventlet": "eventlet.tpool", "floor": "Event ping-pong (floor)"}.get(name, name)
                t.add(label2, d["median_us"][name], d["p99_us"][name], ratio)
            parts.append(t.render())
    if "bytecodes" in data:
        t = Table(
            "Work per green call of a no-op, in all threads (a count: the same on any machine)",
            ["design, callers", "Python calls", "bytecodes"],
            markdown,
        )
        for name, d in data["bytecodes"].items():
            if isinstance(d, dict) and "bytecodes" in d:
                t.add(name.replace("eventlet", "eventlet.tpool"), d["python_calls"], d["bytecodes"])
        parts.append(t.render())
    for key, label in (("throughput_noop", "unpinned"), ("throughput_noop_pinned", "pinned")):
        if key in data:
            d = data[key]
            t = Table(
                f"200 green callers of a no-op, {label}", ["design", "calls/s", "x eventlet.tpool"], markdown
            )
            for name in ("fairpool", "eventlet"):
                t.add(name, d["calls_per_s"][name], d["calls_per_s"][name] / d["calls_per_s"]["eventlet"])
            parts.append(t.render())
    for key, label in (("throughput_1ms", "unpinned"), ("throughput_1ms_pinned", "pinned")):
        if key in data:
            d = data[key]
            t = Table(
                f"1 ms GIL-releasing calls, 20 threads, 200 callers, {label}",
                ["design", "share of the ceiling"],
                markdown,
            )
            t.add("ceiling: 20 native threads, no hand-off", f"{d['ceiling_calls_per_s']:,.0f} calls/s")
            for name in ("fairpool", "eventlet"):
                t.add(name, f"{d['share_of_ceiling'][name]:.1%}")
            parts.append(t.render())
    if "blocking" in data:
        d = data["blocking"]
        t = Table(
            f"Longest stall of a 5 ms ticker green thread during a {d['call_ms']} ms C call",
            ["how the call is made", "stall ms"],
            markdown,
        )
        for name, label in (
            ("direct", "directly on the hub"),
            ("eventlet", "eventlet.tpool"),
            ("fairpool", "fairpool"),
        ):
            t.add(label, d["max_stall_ms"][name])
        parts.append(t.render())
    if "busy_hub" in data:
        d = data["busy_hub"]
        t = Table(
            f"{d['call_ms']} ms C calls while ten green threads keep the hub busy",
            ["design", "median call ms", "worst call ms"],
            markdown,
        )
        for name in d["median_call_ms"]:
            label = name.replace("eventlet", "eventlet.tpool")
            t.add(label, d["median_call_ms"][name], d["worst_call_ms"][name])
        parts.append(t.render())
    if "imbalance" in data:
        d = data["imbalance"]
        t = Table(
            f"Queue imbalance: 20 threads, 17 x 10 ms + 3 x 500 ms, {d['trials']} trials",
            ["design", "median ms", "max ms", "10 ms callers > 100 ms", "idle worker-s while waiting"],
            markdown,
        )
        for name, v in d["designs"].items():
            t.add(
                name,
                v["median_completion_ms"],
                v["max_completion_ms"],
                str(v["slow_10ms_callers_total"]),
                v["idle_worker_s_while_waiting_per_trial"],
            )
        parts.append(t.render())
    if "bootstorm" in data:
        d = data["bootstorm"]
        for stat in ("median_s", "max_s"):
            t = Table(
                f"Boot storm: {stat.split('_')[0]} creation time (s) against N",
                ["design", *[f"N={n}" for n in d["n"]]],
                markdown,
            )
            for name, v in d["designs"].items():
                t.add(name, *v[stat])
            parts.append(t.render())
    d = data.get("tracing_overhead_pinned") or data.get("tracing_overhead")
    if d:
        t = Table("Tracing cost on the round trip (pinned)", ["", "median us"], markdown)
        t.add("an untraced call, nothing recording", d["median_us"]["untraced"])
        t.add("a @traced call, tracing off", d["median_us"]["off"])
        t.add(f"a @traced call, recording ({d['events_per_call_on']:.0f} events)", d["median_us"]["on"])
        t.add("cost per event when recording", d["cost_per_event_on_us"])
        parts.append(t.render())
    d = data.get("native_executor")
    if d:
        t = Table(
            f"{d['callers']} native-thread callers of a no-op C call, {d['threads']} threads",
            ["design", "calls/s", "x ThreadPoolExecutor", "sequential us"],
            markdown,
        )
        base = d["calls_per_s"]["threadpoolexecutor submit"]
        for name, rate in d["calls_per_s"].items():
            t.add(name, rate, rate / base, d["sequential_us"][name])
        parts.append(t.render())
    d = data.get("asyncio_calls")
    if d:
        t = Table("asyncio: awaiting a no-op C call", ["how", "median us"], markdown)
        for name, us in d["latency_us"].items():
            t.add(name, us)
        f = d["fairness"]
        t.add(
            f"an interactive {f['call_ms']:.0f} ms call while a bulk lane floods 2 threads "
            f"with {f['bulk_calls']:.0f} calls",
            f"{f['interactive_ms_median'] * 1e3:,.0f}",
        )
        parts.append(t.render())
    return "\n".join(parts)


BUSY_METRICS: dict[str, dict[str, str]] = {
    "busy_green": {
        "share_1ms": "1 ms calls, 200 callers: share of the ceiling",
        "round_trip_us": "no-op round trip, median us",
        "round_trip_p99_us": "no-op round trip, p99 us",
        "noop_200_calls_per_s": "200 callers' no-op throughput, calls/s",
    },
    "busy_native": {
        "share_1ms": "1 ms calls, 200 callers: share of the ceiling at the pool's size",
        "calls_1ms_per_s": "1 ms calls, 200 callers: calls/s",
        "round_trip_us": "submit(noop).result(), median us",
        "round_trip_p99_us": "submit(noop).result(), p99 us",
        "noop_20_calls_per_s": "20 callers' no-op throughput, calls/s",
    },
    "busy_bootstorm": {
        "median_s": "median creation time, s",
        "max_s": "max creation time, s",
    },
}
#: Rows shown but not judged: at different sizes a share of each pool's own ceiling compares
#: nothing (the calls/s row does); at the same size, the "fairpool (6, ...)" row shows it.
VERDICT_SKIP = {("busy_native", "share_1ms")}
BUSY_TITLES = {
    "busy_green": "Busy host, green callers, 20 threads",
    "busy_native": "Busy host, native callers, submit().result()",
    "busy_bootstorm": "Busy host, boot storm",
}


def verdict(ratio: dict[str, float]) -> str:
    """fairpool against the baseline from per-round ratios (> 1: fairpool better): win, tie or loss."""
    med, lo, hi = ratio["median"], ratio["min"], ratio["max"]
    if med >= 1.05 and lo > 1.0:
        return "wins"
    if med <= 0.95 and hi < 1.0:
        return "LOSES"
    if med < 0.95:
        return "loses (the rounds disagree)"
    return "ties" if med < 1.05 else "wins (the rounds disagree)"


def _fmt(value: float, metric: str) -> str:
    if metric.startswith("share"):
        return f"{value:.0%}"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def _over_runs(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """One design's figure in one condition over several runs: the median of the runs' medians;
    against the baseline, the median of the runs' median ratios and the range of every round."""
    ratios = [c["vs_baseline"] for c in cells]
    return {
        "median": statistics.median(c["median"] for c in cells),
        "vs_baseline": {
            "median": statistics.median(r["median"] for r in ratios),
            "min": min(r["min"] for r in ratios),
            "max": max(r["max"] for r in ratios),
        },
    }


def render_busy(runs: list[dict[str, Any]], markdown: bool) -> str:
    """The busy-host rows: per metric, each design under each condition: its median over the rounds,
    and against the baseline (> 1: better than it) the median of the per-round ratios with their range.
    Over several runs (each its own rounds): the median of the runs' figures, the range of every round."""
    parts = []
    for key, metrics in BUSY_METRICS.items():
        ds = [run[key] for run in runs if run.get(key)]
        if not ds:
            continue
        d = ds[0]
        conds = d["conditions"]
        names = sorted(conds, key=lambda c: conds[c]["busy_processes"])  # the JSON's keys are sorted by name
        header = ["design"] + [f"{c} ({conds[c]['busy_processes']} busy)" for c in names]
        runs_of = f"{len(ds)} runs of {d['rounds']} rounds" if len(ds) > 1 else f"{d['rounds']} rounds"
        load = Table(
            f"{BUSY_TITLES[key]}: the machine's load during each condition ({runs_of}"
            + ("; the range over the runs)" if len(ds) > 1 else ")"),
            ["", *header[1:]],
            markdown,
        )

        def spread(values: list[float], fmt: str) -> str:
            low, high = format(min(values), fmt), format(max(values), fmt)
            return low if low == high else f"{low}-{high}"

        load.add(
            f"1-min load average (cores: {d['cores']:.0f})",
            *[spread([x["conditions"][c]["load"]["loadavg_1min"] for x in ds], ".1f") for c in names],
        )
        load.add(
            "CPU busy share",
            *[spread([x["conditions"][c]["load"]["cpu_busy_share"] or 0 for x in ds], ".0%") for c in names],
        )
        parts.append(load.render())
        combined: dict[str, dict[str, dict[str, Any]]] = {}  # metric -> condition -> design -> cell
        for metric in metrics:
            if metric not in conds[names[0]]:
                continue
            combined[metric] = {
                c: {
                    design: _over_runs([x["conditions"][c][metric][design] for x in ds])
                    for design in conds[c][metric]
                }
                for c in names
            }
        for metric, title in metrics.items():
            if metric not in combined:
                continue
            t = Table(
                f"{BUSY_TITLES[key]}: {title} (median; x {d['baseline']}, median (min-max) of the rounds)",
                header,
                markdown,
            )
            for design in combined[metric][names[0]]:
                cells = []
                for c in names:
                    v = combined[metric][c][design]
                    r = v["vs_baseline"]
                    cell = _fmt(v["median"], metric)
                    if design != d["baseline"]:
                        cell += f"; {r['median']:.2f} x ({r['min']:.2f}-{r['max']:.2f})"
                    cells.append(cell)
                t.add(design, *cells)
            parts.append(t.render())
        t = Table(
            f"{BUSY_TITLES[key]}: fairpool with its defaults against {d['baseline']}",
            ["row", *header[1:]],
            markdown,
        )
        for metric, title in metrics.items():
            if metric not in combined or (key, metric) in VERDICT_SKIP:
                continue
            default = next(
                k for k in combined[metric][names[0]] if k.startswith("fairpool") and "SCHED" not in k
            )
            t.add(title, *[verdict(combined[metric][c][default]["vs_baseline"]) for c in names])
        parts.append(t.render())
    return "\n".join(parts)


def render_targets(runs: list[dict[str, Any]], markdown: bool) -> str:
    """The speed targets over one or more runs: the median, the spread, the verdict on the median."""
    t = Table(
        f"Speed targets (median of {len(runs)} run{'s' if len(runs) != 1 else ''}, min - max)",
        ["target", "median", "min - max", "met", "near the noise"],
        markdown,
    )
    for target, med, lo, hi, noisy in aggregate([targets(run) for run in runs]):
        t.add(
            target.label,
            target.show(med),
            f"{target.show(lo)} - {target.show(hi)}",
            "yes" if target.met(med) else "NO",
            "yes: the runs disagree" if noisy else "",
        )
    return t.render()


def plot(data: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if "bootstorm" in data:
        d = data["bootstorm"]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        for ax, stat, title in (
            (axes[0], "median_s", "Median creation time"),
            (axes[1], "max_s", "Max creation time"),
        ):
            for name, v in d["designs"].items():
                ax.plot(d["n"], v[stat], marker="o", label=name)
            ax.set_title(title)
            ax.set_xlabel("Number created in parallel")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("Time (s)")
        axes[1].legend(fontsize=8)
        fig.suptitle("Simulated boot storm (the talk's figure, scaled down)")
        fig.tight_layout()
        path = out / "bench-bootstorm.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    if "imbalance" in data:
        d = data["imbalance"]["designs"]
        fig, ax = plt.subplots(figsize=(8, 4))
        names = list(d)
        ax.barh(names, [d[n]["max_completion_ms"] for n in names], color="tab:red", label="max")
        ax.barh(names, [d[n]["median_completion_ms"] for n in names], color="tab:blue", label="median")
        ax.axvline(data["imbalance"]["longest_call_ms"], color="k", ls="--", lw=1, label="longest call")
        ax.set_xlabel("Completion time (ms)")
        ax.set_title("Queue imbalance: 17 x 10 ms + 3 x 500 ms on 20 threads")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / "bench-imbalance.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument(
        "--results",
        type=Path,
        nargs="+",
        default=[HERE / "results" / "latest"],
        help="one or more result folders (several runs: targets are judged on their median)",
    )
    parser.add_argument("--plots", type=Path, help="write the plots (PNG) into this folder")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    runs = [load(folder) for folder in args.results]
    for folder, data in zip(args.results, runs, strict=True):
        if not data:
            print(f"no results in {folder}: run `python -m pytest bench` first", file=sys.stderr)
            return 1
    data = runs[0]
    print(render(data, args.markdown))
    busy = render_busy(runs, args.markdown)
    if busy:
        print(busy)
    print(render_targets(runs, args.markdown))
    if args.plots:
        for path in plot(data, args.plots):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
