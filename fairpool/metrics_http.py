"""A Prometheus endpoint for fairpool's metrics, in the service's process: ``fairpool run --metrics-port``.

:func:`serve` sets up what an unmodified service lacks: an OpenTelemetry
``MeterProvider`` of its own with the SDK's ``PrometheusMetricReader``,
fairpool's metrics recorded into it (:mod:`fairpool.otel_metrics`), and an
HTTP endpoint that answers ``GET /metrics`` with prometheus_client's text
exposition of its registry (fairpool's metrics, and whatever else the
service registered there).

The provider is not made the global one: a service that sets its own later
must still be able to. Needs ``opentelemetry-sdk`` and
``opentelemetry-exporter-prometheus`` (which brings ``prometheus_client``).

The endpoint accepts in one native daemon thread, on sockets of the unpatched
``socket`` module (eventlet's original when eventlet is imported), and answers
each connection in a native thread of its own (eventlet's unpatched
``threading``), at most :data:`MAX_CONNECTIONS` at once; one more is closed at
once. A request must arrive whole within :data:`REQUEST_TIMEOUT` seconds
(however slowly it trickles in), else it is closed unanswered: a slow or
silent client delays no other scraper. prometheus_client's own server starts a
thread per request, which becomes a green thread once ``eventlet.monkey_patch()``
runs, and would never run when started from a native thread (and ``fairpool
run`` starts the endpoint as the service imports eventlet, before its patch).
Native threads also keep the scrape working while the hub is blocked: it is
what an operator looks at then. A scrape runs the collection (the SDK's
recording of the pending queue waits and run times) in its thread, one
collection at a time.

Once per process. A forked child does not inherit the thread: it closes its
copy of the listening socket; if the port was 0 (any free port), it starts an
endpoint of its own on another free port and says so on stderr, else its
metrics are not served (a port is bound by one process).
"""

from __future__ import annotations

import sys
from time import monotonic
from typing import Any

from ._native import allocate_lock, eventlet_patcher, os, start_thread

__all__ = ["ADDRESS_VARIABLE", "DEFAULT_ADDRESS", "PORT_VARIABLE", "check_port", "serve", "serving"]

DEFAULT_ADDRESS = "127.0.0.1"
PORT_VARIABLE = "FAIRPOOL_METRICS_PORT"
ADDRESS_VARIABLE = "FAIRPOOL_METRICS_ADDR"
#: Seconds a scraper may take to send its whole request (and again to read the reply).
REQUEST_TIMEOUT = 5.0
#: Connections answered at once, each in a native thread; one more is closed at once.
MAX_CONNECTIONS = 8
MISSING = (
    "needs opentelemetry-sdk and opentelemetry-exporter-prometheus in the service's Python "
    "(pip install 'fairpool[otel]' opentelemetry-sdk opentelemetry-exporter-prometheus)"
)

_lock = allocate_lock()
_state: dict[str, Any] = {}  # pid, address, port, requested_port, socket, registry


def serving() -> tuple[str, int] | None:
    """(address, port) of this process's endpoint, or None."""
    if _state.get("pid") != os.getpid():
        return None
    return _state["address"], _state["port"]


def check_port(raw: object, name: str) -> int:
    """``raw`` as a TCP port (0: any free one); else ValueError naming ``name`` and the value."""
    try:
        value = int(str(raw).strip())
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise ValueError(f"{name} must be a TCP port from 0 (any free port) to 65535, got {raw!r}")
    return value


def serve(port: int, address: str = DEFAULT_ADDRESS) -> tuple[str, int]:
    """Serve fairpool's metrics on ``http://ADDRESS:PORT/metrics``; return (address, bound port).

    Once per process: a second call returns the endpoint already served.

    Args:
        port: The TCP port; 0 binds any free port (the bound one is returned).
        address: The address to bind; 127.0.0.1 by default (the host only).

    Raises:
        ImportError: opentelemetry-sdk or opentelemetry-exporter-prometheus is missing
            (the message says what to install).
        OSError: The port cannot be bound (in use, not allowed).
        ValueError: ``port`` is not a port number.
    """
    port = check_port(port, "port")
    with _lock:
        if _state.get("pid") == os.getpid():
            return _state["address"], _state["port"]
        try:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from opentelemetry.sdk.metrics import MeterProvider
            from prometheus_client import REGISTRY
        except ImportError as exc:
            raise ImportError(f"fairpool metrics endpoint {MISSING}: {exc}") from exc
        sock = _listen(address, port)
        from . import otel, otel_metrics

        if "provider" not in _state:  # once: the reader registers itself in prometheus_client's registry
            _state["provider"] = MeterProvider(metric_readers=[PrometheusMetricReader()])
        otel_metrics.start(_state["provider"], otel._version())
        _state.update(requested_port=port, registry=REGISTRY)
        return _start(sock, address)


def _start(sock: Any, address: str) -> tuple[str, int]:
    """Serve on the listening ``sock`` in a native thread (under ``_lock``)."""
    bound = sock.getsockname()[1]
    _state.update(pid=os.getpid(), address=address, port=bound, socket=sock)
    try:
        start_thread(_serve_forever, (sock, _state["registry"]), f"fairpool-metrics-{bound}")
    except BaseException:
        _state.pop("pid", None)
        sock.close()
        raise
    return address, bound


def _socket_module() -> Any:
    patcher = eventlet_patcher()
    if patcher is not None:
        return patcher.original("socket")
    import socket

    return socket


def _listen(address: str, port: int) -> Any:
    socket = _socket_module()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(16)
    except BaseException:
        sock.close()
        raise
    return sock


def _serve_forever(sock: Any, registry: Any) -> None:
    """The endpoint's native thread: accept connections until the socket closes.

    Each connection is answered in a native thread of its own, at most
    :data:`MAX_CONNECTIONS` at once: one more is closed at once, unanswered, so a
    client that holds its connection open delays no other scraper, and a flood of
    them costs no more than ``MAX_CONNECTIONS`` threads and sockets.
    """
    pid = os.getpid()
    slots = _Slots()
    collecting = allocate_lock()  # one collection at a time: the scrapers' I/O is not under it
    name = f"fairpool-metrics-conn-{sock.getsockname()[1]}"
    while os.getpid() == pid:
        try:
            conn, _ = sock.accept()
        except OSError:
            return  # closed
        if not slots.take():
            _close(conn)  # too many at once: this one is refused (the client sees the connection close)
            continue
        try:
            start_thread(_handle, (conn, registry, collecting, slots), name)
        except Exception:  # noqa: BLE001 - no thread to be had: this one is refused, the next one tried
            slots.give()
            _close(conn)


class _Slots:
    """How many connections are being answered now (at most :data:`MAX_CONNECTIONS`)."""

    def __init__(self) -> None:
        self.lock = allocate_lock()
        self.taken = 0

    def take(self) -> bool:
        with self.lock:
            if self.taken >= MAX_CONNECTIONS:
                return False
            self.taken += 1
            return True

    def give(self) -> None:
        with self.lock:
            self.taken -= 1


def _close(conn: Any) -> None:
    try:
        conn.close()
    except OSError:
        pass


def _handle(conn: Any, registry: Any, collecting: Any, slots: _Slots) -> None:
    """A connection's native thread: answer its request, then close it."""
    try:
        _answer(conn, registry, collecting)
    except Exception:  # noqa: BLE001 - a scraper that hung up or was too slow: dropped
        pass
    finally:
        _close(conn)
        slots.give()


def _answer(conn: Any, registry: Any, collecting: Any) -> None:
    deadline = monotonic() + REQUEST_TIMEOUT  # for the whole request, however it trickles in
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        left = deadline - monotonic()
        if left <= 0:
            return  # too slow: closed unanswered
        conn.settimeout(left)
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    words = head[0].split()
    method, path = (words[0], words[1].split("?", 1)[0]) if len(words) >= 2 else ("", "")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
    if method not in ("GET", "HEAD"):
        status, body, ctype = "405 Method Not Allowed", b"GET /metrics\n", "text/plain"
    elif path not in ("/metrics", "/"):
        status, body, ctype = "404 Not Found", b"fairpool's metrics are at /metrics\n", "text/plain"
    else:
        from prometheus_client.exposition import choose_encoder

        encode, ctype = choose_encoder(headers.get("accept", ""))
        with collecting:
            body = encode(registry)
        status = "200 OK"
    reply = (
        f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    conn.settimeout(REQUEST_TIMEOUT)  # the whole reply's deadline (sendall's timeout is its total)
    conn.sendall(reply if method == "HEAD" else reply + body)


def _after_fork_in_child() -> None:
    global _lock
    _lock = allocate_lock()
    sock = _state.get("socket")
    if sock is None:
        return
    _state.pop("pid", None)  # the thread is the parent's
    _state.pop("socket", None)
    try:
        sock.close()  # the parent's listening socket
    except OSError:
        pass
    if _state.get("requested_port") == 0:  # any free port: this process gets its own
        try:  # the recorder and the provider are inherited: a socket and a thread only
            address, port = _start(_listen(_state["address"], 0), _state["address"])
        except Exception as exc:  # noqa: BLE001 - the child runs on, unscraped
            _say(f"fairpool: metrics of pid {os.getpid()} (a forked child) not served: {exc}")
        else:
            _say(
                f"fairpool: metrics of pid {os.getpid()} (a forked child) on http://{address}:{port}/metrics"
            )


def _say(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - no stderr
        pass


os.register_at_fork(after_in_child=_after_fork_in_child)
