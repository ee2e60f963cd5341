"""``fairpool run --metrics-port``: a Prometheus endpoint in the service's own process, scraped over HTTP.

Each service is its own process, started by ``python -m fairpool run`` as an
operator would (the example service of docs/operators.md, or a small script),
and read with ``urllib`` from here; every subprocess and request has a timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.exporter.prometheus", reason="the Prometheus exporter is not installed")

from fairpool import autopatch, metrics_http

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "docs" / "examples" / "blocking_service.py"
TIMEOUT = 60  # seconds, per process
ENDPOINT = re.compile(r"metrics=(http://127\.0\.0\.1:(\d+)/metrics)\)")

pytestmark = pytest.mark.timeout(180)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAIRPOOL_", "EVENTLET_THREADPOOL"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    env.update(extra)
    return env


def get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        text: str = reply.read().decode()
        return text


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the exposition's sample ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    return None


class Service:
    """A process started under ``fairpool run``; its stderr read line by line in a thread."""

    def __init__(self, options: list[str], command: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fairpool", "run", *options, "--", *command],
            env=env or base_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no stderr line matching {pattern!r}; stderr: {self.lines}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=TIMEOUT)
        self._reader.join(TIMEOUT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


def start_example(services: list[Service], tmp_path: Path, *options: str, **env: str) -> tuple[Service, str]:
    """The example service under ``fairpool run OPTIONS``: (it, its URL)."""
    port_file = tmp_path / "port"
    service = Service(
        list(options), [sys.executable, str(SERVICE), "--port-file", str(port_file)], base_env(**env)
    )
    services.append(service)
    deadline = time.monotonic() + TIMEOUT
    while not (port_file.exists() and port_file.read_text().strip()):
        assert time.monotonic() < deadline and service.proc.poll() is None, f"not listening: {service.lines}"
        time.sleep(0.05)
    return service, f"http://127.0.0.1:{port_file.read_text().strip()}"


@pytest.mark.parametrize("how", ["option", "variable"])
def test_the_example_service_serves_its_pools_metrics_scraped_over_http(
    services: list[Service], tmp_path: Path, how: str
) -> None:
    if how == "option":
        service, url = start_example(services, tmp_path, "--metrics-port", "0")
    else:
        service, url = start_example(services, tmp_path, FAIRPOOL_METRICS_PORT="0")
    endpoint = service.wait_for(ENDPOINT).group(1)
    for _ in range(5):
        assert json.loads(get(f"{url}/query?ms=5"))["thread"].startswith("fairpool-default-")
    audit = json.loads(get(f"{url}/audit?calls=40&ms=5"))
    assert audit["calls"] == 40, audit
    text = get(endpoint)
    default = {"fairpool_pool_name": "default", "fairpool_lane": "default"}
    calls = sample(text, "fairpool_pool_calls_total", **default, fairpool_call_outcome="returned")
    assert calls == 45, f"45 calls made, {calls} counted:\n{text[:3000]}"
    name = "fairpool_pool_call_queue_wait_duration_seconds"
    assert sample(text, f"{name}_bucket", **default, le="+Inf") == 45, text[:3000]
    assert sample(text, f"{name}_count", **default) == 45, text[:3000]
    assert sample(text, "fairpool_pool_thread_limit", fairpool_pool_name="default") == 20, text[:3000]
    assert "# TYPE fairpool_pool_call_run_duration_seconds histogram" in text, text[:3000]


def test_a_scrape_is_answered_while_the_services_hub_is_blocked(
    services: list[Service], tmp_path: Path
) -> None:
    # The endpoint's thread is native: a service whose hub is stuck (what an operator
    # wants to look at) still answers the scrape.
    service, url = start_example(services, tmp_path, "--metrics-port", "0")
    endpoint = service.wait_for(ENDPOINT).group(1)
    get(f"{url}/query?ms=1")
    blocked = threading.Thread(target=get, args=(f"{url}/stall?ms=10000", 60), daemon=True)
    blocked.start()
    deadline = time.monotonic() + TIMEOUT
    while True:  # until the service's own pages stop answering: its hub is in the C call
        assert time.monotonic() < deadline, "the hub never blocked"
        try:
            get(f"{url}/status", timeout=1)
        except OSError:
            break
        time.sleep(0.05)
    text = get(endpoint, timeout=30)
    assert blocked.is_alive(), "the hub was no longer blocked when the scrape was answered: nothing shown"
    assert sample(text, "fairpool_pool_calls_total", fairpool_call_outcome="returned") == 1, text[:2000]
    blocked.join(60)


def test_without_the_packages_one_line_says_what_to_install_and_the_service_runs(
    services: list[Service], tmp_path: Path
) -> None:
    hide = tmp_path / "hide"
    (hide / "opentelemetry").mkdir(parents=True)
    (hide / "opentelemetry" / "__init__.py").write_text("")  # shadows the installed namespace package
    pythonpath = os.pathsep.join([str(hide), str(ROOT)])
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "fairpool",
            "run",
            "--check",
            "--metrics-port",
            "9464",
            "--",
            sys.executable,
            "x.py",
        ],
        env=base_env(PYTHONPATH=pythonpath),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert (
        "metrics endpoint: http://127.0.0.1:9464/metrics would NOT be served: opentelemetry-sdk, "
        "opentelemetry-exporter-prometheus missing here" in check.stdout
    ), check.stdout
    service, url = start_example(services, tmp_path, "--metrics-port", "0", PYTHONPATH=pythonpath)
    line = service.wait_for(r"fairpool: metrics not served in pid \d+: .*").group(0)
    assert "needs opentelemetry-sdk and opentelemetry-exporter-prometheus" in line, line
    assert "metrics=not served)" in service.wait_for(r"runs on fairpool in pid").string
    assert json.loads(get(f"{url}/query?ms=1"))["thread"].startswith("fairpool-default-")


def test_check_says_whether_the_packages_are_importable() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fairpool",
            "run",
            "--check",
            "--metrics-port",
            "0",
            "--",
            sys.executable,
            "x.py",
        ],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    ).stdout
    assert (
        "metrics endpoint: http://127.0.0.1:PORT/metrics (any free port, named in the confirmation line) "
        "(opentelemetry-sdk and the Prometheus exporter importable)" in out
    ), out
    off = subprocess.run(
        [sys.executable, "-m", "fairpool", "run", "--check", "--", sys.executable, "x.py"],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    ).stdout
    assert (
        "metrics endpoint: off (--metrics-port); opentelemetry-sdk and the Prometheus exporter: importable"
        in off
    )


_FORKING = """
    import os, sys, time, urllib.request
    import eventlet
    eventlet.monkey_patch()
    from eventlet import tpool

    def calls(n):
        for _ in range(n):
            tpool.execute(int, "1")

    calls(3)
    pid = os.fork()
    calls(2 if pid == 0 else 4)
    print("ready", os.getpid(), flush=True)
    time.sleep(60)
"""


def test_a_forked_child_serves_its_own_metrics_on_a_free_port_of_its_own(
    services: list[Service], tmp_path: Path
) -> None:
    program = tmp_path / "forking.py"
    program.write_text(textwrap.dedent(_FORKING))
    service = Service(["--metrics-port", "0"], [sys.executable, str(program)])
    services.append(service)
    parent = service.wait_for(ENDPOINT).group(1)
    child = service.wait_for(r"metrics of pid (\d+) \(a forked child\) on (http://127\.0\.0\.1:\d+/metrics)")
    child_pid, child_url = int(child.group(1)), child.group(2)
    try:
        assert child_url != parent

        def returned(url: str) -> float | None:
            return sample(get(url), "fairpool_pool_calls_total", fairpool_call_outcome="returned")

        deadline = time.monotonic() + TIMEOUT
        while (returned(parent), returned(child_url)) != (7, 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (returned(parent), returned(child_url)) == (7, 2), (
            "the parent counts its 3 + 4, the child its 2"
        )
    finally:
        os.kill(child_pid, signal.SIGTERM)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--metrics-port", "70000"],
            "--metrics-port must be a TCP port from 0 (any free port) to 65535, got '70000'",
        ),
        (
            ["--metrics-port", "x"],
            "--metrics-port must be a TCP port from 0 (any free port) to 65535, got 'x'",
        ),
        (["--metrics-addr", "0.0.0.0"], "--metrics-addr needs --metrics-port"),
        (["--metrics-port", "1", "--metrics-addr", "a b"], "--metrics-addr must be an address to bind"),
    ],
)
def test_bad_metrics_options_are_refused_naming_the_option_and_the_value(
    args: list[str], message: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fairpool", "run", *args, "--", "true"],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_the_options_become_the_variables() -> None:
    env = autopatch.environment({}, metrics_port=9464, metrics_addr="0.0.0.0")
    assert (env["FAIRPOOL_METRICS_PORT"], env["FAIRPOOL_METRICS_ADDR"]) == ("9464", "0.0.0.0")
    with pytest.raises(ValueError, match="port must be a TCP port"):
        metrics_http.serve(-1)


# -- slow, silent and many clients: no scraper waits on another --------------------------


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The endpoint's server, in this process, on a free port, with a registry of its own: its URL."""
    from prometheus_client import CollectorRegistry, Counter

    monkeypatch.setattr(metrics_http, "REQUEST_TIMEOUT", 1.0)
    registry = CollectorRegistry()
    Counter("probe_total", "A sample to scrape", registry=registry).inc()
    sock = metrics_http._listen("127.0.0.1", 0)
    thread = threading.Thread(target=metrics_http._serve_forever, args=(sock, registry), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"
    finally:
        import socket as socket_module

        try:
            sock.shutdown(socket_module.SHUT_RDWR)  # wakes the accept(): the thread returns
        except OSError:
            pass
        sock.close()
        thread.join(10)
        assert not thread.is_alive(), "the endpoint's thread did not end with its socket"


def _connect(url: str) -> Any:
    import socket as socket_module

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    return socket_module.create_connection(("127.0.0.1", port), timeout=10)


def _timed_scrape(url: str) -> float:
    started = time.monotonic()
    text = get(url, timeout=20)
    assert "probe_total 1.0" in text, f"not the registry's exposition: {text!r}"
    return time.monotonic() - started


@pytest.mark.timeout(60)
def test_a_slow_loris_and_a_silent_client_do_not_delay_another_scrape(endpoint: str) -> None:
    silent = _connect(endpoint)  # connects and sends nothing
    loris = _connect(endpoint)
    stop = threading.Event()

    def trickle() -> None:  # one byte every 0.2 s: never a whole request
        for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n" * 100:
            if stop.wait(0.2):
                return
            try:
                loris.send(bytes([byte]))
            except OSError:
                return

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(0.3)  # both are accepted before the scrape
        took = [_timed_scrape(endpoint) for _ in range(3)]
        # The old endpoint answered one connection at a time: the silent client held it for its
        # read timeout (10 s), the slow one forever.
        assert max(took) < 0.9, f"scrapes took {took} s behind a silent and a slow client"
        # Both were closed at the request's deadline (1 s here), however slowly they sent.
        for client, what in ((silent, "silent"), (loris, "slow")):
            client.settimeout(5)
            try:
                assert client.recv(100) == b"", f"the {what} client was answered"
            except ConnectionResetError:
                pass
    finally:
        stop.set()
        trickler.join(5)
        silent.close()
        loris.close()


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _conn_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("fairpool-metrics-conn-"))


@pytest.mark.timeout(60)
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts file descriptors in /proc")
def test_many_connections_cost_a_bounded_number_of_threads_and_leak_none(endpoint: str) -> None:
    _timed_scrape(endpoint)
    wait_until_no_connection_threads = time.monotonic() + 10
    while _conn_threads() and time.monotonic() < wait_until_no_connection_threads:
        time.sleep(0.05)
    fds = _fds()
    held = [_connect(endpoint) for _ in range(100)]  # silent: each holds its connection
    try:
        time.sleep(0.3)
        assert _conn_threads() <= metrics_http.MAX_CONNECTIONS, f"{_conn_threads()} threads for 100 clients"
        # Past MAX_CONNECTIONS they are closed at once (a scrape then too, and tried again): one gets
        # a free slot at the latest when the held ones reach their deadline (1 s here).
        deadline = time.monotonic() + 10
        while True:
            try:
                _timed_scrape(endpoint)
                break
            except (ConnectionError, OSError) as exc:
                assert time.monotonic() < deadline, f"no scrape answered in 10 s among 100 clients: {exc!r}"
                time.sleep(0.1)
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while (_conn_threads() or _fds() > fds) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _conn_threads() == 0, f"{_conn_threads()} connection threads left"
    assert _fds() <= fds, f"{_fds()} file descriptors open, {fds} before the 100 connections"
    _timed_scrape(endpoint)
