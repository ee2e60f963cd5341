"""Print the benchmark results as comparison tables, check the targets, draw the plots.

python -m bench.report                      # bench/results/latest (the last quick run)
python -m bench.report --results bench/results/full --plots docs
python -m bench.report --markdown           # the tables as Markdown, for docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import sys
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


def targets(data: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each speed target of the project."""
    out: list[tuple[str, str, bool | None]] = []

    def get(key: str) -> Any:
        return data.get(key)

    rt_p, rt_u = get("round_trip_pinned"), get("round_trip")
    if rt_p:
        r = rt_p["ratio_to_eventlet"]
        out.append(("round trip, pinned: <= 0.5 x eventlet.tpool", f"{r:.2f} x", r <= 0.5))
        r = rt_p["ratio_to_floor"]
        out.append(("round trip, pinned: <= 1.3 x Event ping-pong", f"{r:.2f} x", r <= 1.3))
    if rt_u:
        r = rt_u["ratio_to_eventlet"]
        out.append(("round trip, unpinned: <= 1.0 x eventlet.tpool", f"{r:.2f} x", r <= 1.0))
    for key, label in (("throughput_noop_pinned", "pinned"), ("throughput_noop", "unpinned")):
        if get(key):
            r = data[key]["ratio_to_eventlet"]
            out.append((f"200 green callers, {label}: >= 1.5 x eventlet.tpool", f"{r:.2f} x", r >= 1.5))
    for key, label in (("throughput_1ms", "unpinned"), ("throughput_1ms_pinned", "pinned")):
        if get(key):
            s = data[key]["share_of_ceiling"]["fairpool"]
            out.append((f"1 ms calls, {label}: >= 95% of the ceiling", f"{s:.1%}", s >= 0.95))
    if get("imbalance"):
        d = data["imbalance"]["designs"]["fairpool fair"]
        longest = data["imbalance"]["longest_call_ms"]
        m = d["max_completion_ms"]
        out.append(
            (
                "imbalance: max completion within 5% of the longest call",
                f"{m:.0f} ms vs {longest} ms",
                m <= longest * 1.05,
            )
        )
        out.append(
            (
                "imbalance: no 10 ms caller over 100 ms",
                str(d["slow_10ms_callers_total"]),
                d["slow_10ms_callers_total"] == 0,
            )
        )
    t = get("tracing_overhead_pinned") or get("tracing_overhead")
    if t:
        r = t["ratio_off_to_untraced"]
        out.append(
            ("tracing off costs nothing measurable on the round trip", f"{r:.3f} x", r <= 1.0 + t["noise"])
        )
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
    t = Table("Speed targets", ["target", "measured", "met"], markdown)
    for name, measured, met in targets(data):
        t.add(name, measured, "yes" if met else "NO")
    parts.append(t.render())
    return "\n".join(parts)


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
    parser.add_argument("--results", type=Path, default=HERE / "results" / "latest")
    parser.add_argument("--plots", type=Path, help="write the plots (PNG) into this folder")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    data = load(args.results)
    if not data:
        print(f"no results in {args.results}: run `python -m pytest bench` first", file=sys.stderr)
        return 1
    print(render(data, args.markdown))
    if args.plots:
        for path in plot(data, args.plots):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
