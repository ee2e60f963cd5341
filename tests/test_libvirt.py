"""Real libvirt (its in-process test driver) through fairpool, as nova uses eventlet.tpool.

libvirt-python is optional: the set-up command installs it where it can (it
needs Debian's libvirt-dev and pkg-config to build); without it these tests are
skipped, saying how to enable them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import eventlet
import pytest

import fairpool
from fairpool import report, trace
from fairpool.demo import ticks_during

from .conftest import run_script

libvirt = pytest.importorskip(
    "libvirt",
    reason="libvirt-python is not installed; to run the real-libvirt tests: "
    "apt-get install libvirt-dev pkg-config, then pip install -e '.[libvirt]'",
)

DOMAIN_XML = """
<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
</domain>
"""


@pytest.fixture
def conn() -> Any:
    """A connection wrapped as nova wraps it, through eventlet.tpool after fairpool.monkey_patch()."""
    fairpool.monkey_patch()
    from eventlet import tpool

    libvirt.registerErrorHandler(lambda ctx, err: None, None)  # errors are raised, not printed
    raw = libvirt.open("test:///default")
    wrapped = tpool.Proxy(raw, autowrap=(libvirt.virDomain, libvirt.virConnect), autowrap_items=True)
    yield wrapped
    raw.close()


def test_the_connection_and_its_domains_are_wrapped(conn: Any) -> None:
    assert isinstance(conn, fairpool.Proxy)
    assert conn.getHostname()  # runs in the pool
    domains = conn.listAllDomains()
    assert domains and all(isinstance(d, fairpool.Proxy) for d in domains)
    assert isinstance(conn.lookupByName("test"), fairpool.Proxy)
    assert fairpool.statistics().completed >= 3


def test_libvirt_errors_reach_the_caller_as_libvirt_errors(conn: Any) -> None:
    with pytest.raises(libvirt.libvirtError, match="Domain not found") as info:
        conn.lookupByName("no-such-domain")
    assert info.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN


def test_fifty_green_threads_manage_domains_concurrently(conn: Any) -> None:
    def lifecycle(i: int) -> tuple[str, bool, bool, bool]:
        name = f"fairpool-vm-{i}"
        dom = conn.defineXML(DOMAIN_XML.format(name=name))
        dom.create()
        state, max_mem, _, vcpus, _ = dom.info()
        running = bool(dom.isActive())
        dom.destroy()
        stopped = not dom.isActive()
        dom.undefine()
        try:
            conn.lookupByName(name)
            gone = False
        except libvirt.libvirtError:
            gone = True
        assert state == libvirt.VIR_DOMAIN_RUNNING and max_mem == 64 * 1024 and vcpus == 1
        return dom.name(), running, stopped, gone

    results: list[tuple[str, bool, bool, bool]] = []
    _, longest = ticks_during(
        lambda: results.extend(gt.wait() for gt in [eventlet.spawn(lifecycle, i) for i in range(50)]),
        period=0.002,
    )
    assert results == [(f"fairpool-vm-{i}", True, True, True) for i in range(50)]
    # Every libvirt call ran in the pool; the hub stayed free to run the ticker.
    # (Generous for a noisy CI machine: a call made on the hub would show as a long stall.)
    assert longest < 0.2, f"the ticker stalled for {longest * 1e3:.1f} ms"
    stats = fairpool.statistics()
    # 9 libvirt calls per domain, all through the pool; the lookup of an undefined one raises.
    assert (stats.completed, stats.failed) == (50 * 8, 50), stats


def test_a_traced_run_names_the_libvirt_calls(conn: Any, tmp_path: Path) -> None:
    out = tmp_path / "libvirt.json"
    with trace.recording(str(out)):
        for gt in [eventlet.spawn(lambda: [d.info() for d in conn.listAllDomains()]) for _ in range(5)]:
            gt.wait()
    spans, names = report.load_spans([out])
    text = report.render(spans, names)
    assert "run libvirt.virConnect.listAllDomains" in text, text
    assert "run libvirt.virDomain.info" in text, text


def test_the_nova_like_example_runs() -> None:
    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "nova_like_service.py"
    out = run_script(example.read_text(), env={"NOVA_LIKE_BOOTS": "8"}, timeout=120)
    assert "8 instances booted" in out, out
