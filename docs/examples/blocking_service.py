"""A small eventlet service whose handlers make blocking C calls through ``eventlet.tpool.Proxy``.

It knows nothing of fairpool: docs/operators.md switches fairpool on from
outside (``fairpool run``) and finds its contention. Run it as any service::

    python docs/examples/blocking_service.py --port-file /tmp/svc.port

It listens on 127.0.0.1, on a free port (or ``--port``), prints
``listening on http://127.0.0.1:PORT`` and writes the port to ``--port-file``
once it accepts connections. Its pages answer JSON:

* ``/query?ms=20``: one blocking C call (libc ``usleep``, which releases the
  GIL as libvirt's calls do) through ``tpool.Proxy``, as nova calls libvirt;
  answers which native thread ran it;
* ``/audit?calls=100&ms=10``: a periodic-audit-like burst of that many calls
  from as many green threads, then answers how long they took;
* ``/stall?ms=200``: the same C call made on the hub itself, the bug that
  freezes every green thread (for the hub watch to find);
* ``/status``: the pid, whether eventlet.tpool is fairpool's, and the native
  threads' names.

SIGTERM ends it (exit status 0).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import eventlet

eventlet.monkey_patch()

from eventlet import tpool, wsgi  # noqa: E402
from eventlet.patcher import original  # noqa: E402

_threading = original("threading")  # the real thread running a call, not a green thread's
_libc = ctypes.CDLL(None)


class Hypervisor:
    """A stand-in for a C binding such as libvirt: each method blocks in C."""

    def query(self, ms: int) -> str:
        _libc.usleep(ms * 1000)  # ctypes releases the GIL: another thread can run meanwhile
        return str(_threading.current_thread().name)


hypervisor = tpool.Proxy(Hypervisor())  # every call runs on tpool's native threads


def _number(query: dict[str, list[str]], name: str, default: int, top: int) -> int:
    value = int(query.get(name, [str(default)])[0])
    if not 0 <= value <= top:
        raise ValueError(f"{name} must be from 0 to {top}, got {value}")
    return value


def _audit(calls: int, ms: int) -> dict[str, Any]:
    start = time.monotonic()
    pool = eventlet.GreenPool(calls or 1)
    threads = sorted(set(pool.imap(lambda _: hypervisor.query(ms), range(calls))))
    return {"calls": calls, "seconds": round(time.monotonic() - start, 3), "threads": threads}


def _status() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "fairpool": bool(getattr(tpool, "__fairpool_patched__", False)),
        "native_threads": sorted(t.name for t in _threading.enumerate()),
    }


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    try:
        if path == "/query":
            body: dict[str, Any] = {"thread": hypervisor.query(_number(query, "ms", 20, 10_000))}
        elif path == "/audit":
            body = _audit(_number(query, "calls", 100, 10_000), _number(query, "ms", 10, 10_000))
        elif path == "/stall":
            ms = _number(query, "ms", 200, 10_000)
            _libc.usleep(ms * 1000)  # the bug: a C call on the hub blocks every green thread
            body = {"stalled_ms": ms}
        elif path == "/status":
            body = _status()
        else:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [json.dumps({"error": f"no page {path}"}).encode() + b"\n"]
    except ValueError as exc:
        start_response("400 Bad Request", [("Content-Type", "application/json")])
        return [json.dumps({"error": str(exc)}).encode() + b"\n"]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode() + b"\n"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="the port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--port-file", help="write the port here once listening")
    args = parser.parse_args(argv)
    sock = eventlet.listen(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    if args.port_file:
        tmp = f"{args.port_file}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)  # readers never see a half-written file
    try:
        wsgi.server(sock, app, log_output=False)
    except SystemExit:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
