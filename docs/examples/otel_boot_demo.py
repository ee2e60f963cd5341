"""One slow VM boot followed across two processes, with OpenTelemetry: where did it wait?

    .venv/bin/python docs/examples/otel_boot_demo.py [OUT_DIR]      # default: /tmp/fairpool-otel-demo

Two tiny eventlet services on fairpool, like nova-api and nova-compute. The
"api" takes a burst of twelve boots at once: each is a request span, a
database call through a pool of two threads, then an RPC to "compute" over a
loopback socket carrying a W3C ``traceparent``. "compute" claims resources
under a per-host lock (held across an RPC of its own, as in the talk), then
makes libvirt-like C calls through a pool of four threads, each under one
global lock. Meanwhile a periodic task makes one C call directly on the hub
(the bug the hub watch catches). Both processes export their spans with the SDK's console
exporter, one JSON span a line, to OUT_DIR/api.jsonl and OUT_DIR/compute.jsonl.

Then the slowest boot's trace, from both files, is printed (where it waited:
the pools' queues, each lock, the hub) and drawn to OUT_DIR/slow-boot.png.
Finishes in a few seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

BOOTS = 12
HERE = Path(__file__).resolve()


# -- both services: OpenTelemetry set up as an application would --------------------


def setup_tracing(service: str, out_dir: Path) -> Any:
    """A provider for ``service`` whose spans go, one JSON line each, to OUT_DIR/<service>.jsonl."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    import fairpool.otel

    out = open(out_dir / f"{service}.jsonl", "w")  # the exporter flushes each batch; closed at exit
    exporter = ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")
    provider = TracerProvider(resource=Resource({"service.name": service}))
    # Under monkey_patch, a batch processor with a native thread (fairpool.otel.batch_span_processor).
    provider.add_span_processor(fairpool.otel.batch_span_processor(exporter))
    fairpool.otel.instrument(provider)
    return provider


# -- "compute" ----------------------------------------------------------------------


def compute(out_dir: Path) -> None:
    import eventlet

    eventlet.monkey_patch()
    import ctypes

    import eventlet.semaphore
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    import fairpool

    provider = setup_tracing("compute", out_dir)
    tracer = provider.get_tracer("compute")
    raw_libc = ctypes.CDLL(None)
    # libvirt: every call through a pool of 4 threads, under libvirt's one big lock.
    libvirt = fairpool.wrap_library(
        raw_libc, lock="libvirt", name="libvirt", pool=fairpool.Pool(4, name="libvirt")
    )
    compute_resources = fairpool.instrument_lock(eventlet.semaphore.Semaphore(1), "compute-resources")
    watch = fairpool.watch_hub(threshold=0.03)

    claimed = [0]

    def build_and_run_instance() -> None:
        with compute_resources:  # the resource claim, held across an RPC to the conductor
            eventlet.sleep(0.01)
            claimed[0] += 1
        for _ in range(3):
            libvirt.usleep(5000)  # define, create, start the domain

    def sync_power_states() -> None:
        """A periodic task with the bug the hub watch catches: a libvirt call made directly on the hub."""
        while claimed[0] < BOOTS:
            eventlet.sleep(0.005)
        raw_libc.usleep(80_000)

    def handle(conn: Any) -> None:
        request = json.loads(conn.makefile().readline())
        parent = propagate.extract(request["headers"])
        with tracer.start_as_current_span("build_and_run_instance", context=parent, kind=SpanKind.SERVER):
            build_and_run_instance()
        conn.sendall(b"done\n")
        conn.close()

    server = eventlet.listen(("127.0.0.1", 0))
    print(server.getsockname()[1], flush=True)
    periodic = eventlet.spawn(sync_power_states)
    handlers = []
    for _ in range(BOOTS):
        conn, _ = server.accept()
        handlers.append(eventlet.spawn(handle, conn))
    for h in handlers:
        h.wait()
    periodic.wait()
    watch.stop()
    provider.shutdown()


# -- "api" ---------------------------------------------------------------------------


def api(port: int, out_dir: Path) -> None:
    import eventlet

    eventlet.monkey_patch()
    import ctypes
    import socket

    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    import fairpool

    provider = setup_tracing("api", out_dir)
    tracer = provider.get_tracer("api")
    db = fairpool.wrap_library(ctypes.CDLL(None), name="db", pool=fairpool.Pool(2, name="db"))

    def post_servers(n: int) -> None:
        with tracer.start_as_current_span("POST /servers", kind=SpanKind.SERVER, attributes={"boot": n}):
            db.usleep(8000)  # the instance record: a pool of 2 threads for a burst of 12
            with tracer.start_as_current_span("rpc build_and_run_instance", kind=SpanKind.CLIENT):
                headers: dict[str, str] = {}
                propagate.inject(headers)  # traceparent
                with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                    s.sendall(json.dumps({"n": n, "headers": headers}).encode() + b"\n")
                    assert s.makefile().readline().strip() == "done"

    boots = [eventlet.spawn(post_servers, n) for n in range(BOOTS)]
    for b in boots:
        b.wait()
    provider.shutdown()


# -- reading both files back ------------------------------------------------------------


def _ms(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp() * 1e3


def load(out_dir: Path) -> list[dict[str, Any]]:
    spans = []
    for service in ("api", "compute"):
        for line in (out_dir / f"{service}.jsonl").read_text().splitlines():
            span = json.loads(line)
            span["service"] = span["resource"]["attributes"]["service.name"]
            spans.append(span)
    return spans


def slowest_boot(spans: list[dict[str, Any]]) -> tuple[dict[str, Any], list[tuple[int, dict[str, Any]]]]:
    """The slowest request and its trace's spans, depth first, with their depth."""
    requests = [s for s in spans if s["name"] == "POST /servers"]
    slow = max(requests, key=lambda s: _ms(s["end_time"]) - _ms(s["start_time"]))
    trace = [s for s in spans if s["context"]["trace_id"] == slow["context"]["trace_id"]]
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for s in trace:
        children[s["parent_id"]].append(s)
    ordered: list[tuple[int, dict[str, Any]]] = []

    def walk(span: dict[str, Any], depth: int) -> None:
        ordered.append((depth, span))
        for child in sorted(children[span["context"]["span_id"]], key=lambda s: s["start_time"]):
            walk(child, depth + 1)

    walk(slow, 0)
    return slow, ordered


def waits(span: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(what, start ms, length ms) of each wait recorded on ``span``."""
    out = []
    if span["name"] == "fairpool.hub_stall":  # a child of the caller it held up
        start = _ms(span["start_time"])
        return [("hub blocked", start, _ms(span["end_time"]) - start)]
    started = [e for e in span["events"] if e["name"] == "fairpool.started"]
    if started:
        out.append(
            (
                f"queued ({span['attributes']['fairpool.pool']} pool)",
                _ms(span["start_time"]),
                _ms(started[0]["timestamp"]) - _ms(span["start_time"]),
            )
        )
    for e in span["events"]:
        a = e["attributes"]
        if e["name"] == "fairpool.lock.wait":
            out.append((f"lock {a['fairpool.lock']}", _ms(e["timestamp"]), a["fairpool.lock.wait_s"] * 1e3))
    return out


def summary(slow: dict[str, Any], ordered: list[tuple[int, dict[str, Any]]]) -> str:
    t0 = _ms(slow["start_time"])
    processes = len({s["service"] for _, s in ordered})
    lines = [
        f"The slowest of {BOOTS} boots took {_ms(slow['end_time']) - t0:.0f} ms "
        f"(trace {slow['context']['trace_id'][2:]}), across {processes} processes:",
    ]
    totals: dict[str, float] = defaultdict(float)
    for depth, span in ordered:
        took = _ms(span["end_time"]) - _ms(span["start_time"])
        lines.append(f"  {'  ' * depth}{span['service']:>7}: {span['name']:<28} {took:7.1f} ms")
        for what, _start, length in waits(span):
            totals[what] += length
            lines.append(f"  {'  ' * depth}{'':>7}  {'waited: ' + what:<28} {length:7.1f} ms")
    lines.append(
        "Where it waited: "
        + ", ".join(f"{w} {ms:.0f} ms" for w, ms in sorted(totals.items(), key=lambda x: -x[1]))
    )
    return "\n".join(lines)


COLORS = {"queued": "#f28e2b", "lock": "#e15759", "hub": "#222222"}


def plot(slow: dict[str, Any], ordered: list[tuple[int, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    t0 = _ms(slow["start_time"])
    service_color = {"api": "#a0cbe8", "compute": "#8cd17d"}
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(ordered) + 2.0))
    labels = []
    for row, (depth, span) in enumerate(ordered):
        start, end = _ms(span["start_time"]) - t0, _ms(span["end_time"]) - t0
        ax.barh(
            row, end - start, left=start, height=0.7, color=service_color[span["service"]], edgecolor="#555"
        )
        for what, wstart, length in waits(span):
            color = COLORS[what.split()[0]] if what.split()[0] in COLORS else COLORS["lock"]
            ax.barh(row, max(length, 0.3), left=wstart - t0, height=0.34, color=color)
        labels.append(f"{'· ' * depth}{span['name']}  [{span['service']}]")
    ax.set_yticks(range(len(ordered)), labels, fontsize=8, family="monospace")
    ax.invert_yaxis()
    ax.set_xlabel("ms since the request arrived")
    ax.set_title(f"The slowest of {BOOTS} boots, across api and compute: where it waited", fontsize=10)
    ax.legend(
        handles=[
            Patch(color=service_color["api"], label="api span"),
            Patch(color=service_color["compute"], label="compute span"),
            Patch(color=COLORS["queued"], label="queued for a pool thread"),
            Patch(color=COLORS["lock"], label="waiting for a lock"),
            Patch(color=COLORS["hub"], label="hub blocked"),
        ],
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=5,
        frameon=False,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# -- running both --------------------------------------------------------------------------


def main(out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    t = time.monotonic()
    compute_proc = subprocess.Popen(
        [sys.executable, str(HERE), "--compute", str(out_dir)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert compute_proc.stdout is not None
        port = compute_proc.stdout.readline().strip()
        if not port.isdigit():
            print("compute did not start", file=sys.stderr)
            return 1
        subprocess.run(
            [sys.executable, str(HERE), "--api", port, str(out_dir)], check=True, env=env, timeout=60
        )
        compute_proc.wait(timeout=60)
    finally:
        if compute_proc.poll() is None:
            compute_proc.kill()
    slow, ordered = slowest_boot(load(out_dir))
    print(summary(slow, ordered))
    plot(slow, ordered, out_dir / "slow-boot.png")
    print(
        f"Spans: {out_dir / 'api.jsonl'}, {out_dir / 'compute.jsonl'}; timeline: {out_dir / 'slow-boot.png'} "
        f"({time.monotonic() - t:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--compute"]:
        compute(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["--api"]:
        api(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/fairpool-otel-demo")))
