"""A traced boot storm: run it, then read the report it prints.

    .venv/bin/python docs/examples/find_contention.py [trace.json]

Twelve simulated VM boots run at once. Each takes a per-host accounting lock
for a (simulated) RPC, then makes short calls into a C library whose every
call holds one global lock, like libvirt's. The report names both locks.
"""

from __future__ import annotations

import ctypes
import sys

import eventlet
import eventlet.semaphore

import fairpool
from fairpool import report

# The C library, every call through the pool and under one instrumented lock.
libc = fairpool.wrap_library(ctypes.CDLL(None), lock="libc-global", name="libc")
# The per-host accounting lock, a green lock, instrumented.
accounting = fairpool.instrument_lock(eventlet.semaphore.Semaphore(1), "compute-resources")


@fairpool.traced
def update_usage() -> None:
    with accounting:
        eventlet.sleep(0.01)  # the RPC to the conductor, made while holding the lock


@fairpool.traced
def spawn(instance: int) -> None:
    for _ in range(10):
        libc.usleep(1500)  # short calls (look up the host, the image), made long by the global lock
    for _ in range(3):
        update_usage()  # two of the three change nothing: the no-op updates of the talk
    for _ in range(10):
        libc.usleep(1500)  # define and start the domain


def main(path: str) -> None:
    with fairpool.trace.recording(path) as tracer:
        boots = [eventlet.spawn(spawn, i) for i in range(12)]
        for gt in boots:
            gt.wait()
    # tracer.path: where the trace went (beside ``path`` if that file existed already)
    spans, names = report.load_spans([__import__("pathlib").Path(tracer.path)])
    print(report.render(spans, names, top=6))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "boot-trace.json")
