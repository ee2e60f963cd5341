"""A nova-compute-like service on fairpool, with real libvirt (its test driver).

    .venv/bin/python docs/examples/nova_like_service.py
    FAIRPOOL_TRACE=/tmp/nova.json .venv/bin/python docs/examples/nova_like_service.py
    .venv/bin/python -m fairpool report /tmp/nova.json

The service code is written against eventlet.tpool, as nova's is; the two
lines at the top are all it takes to run it on fairpool. A periodic audit
floods the pool with libvirt calls in its own lane while instances boot in
theirs, so the boots are not stuck behind the audit.
"""

from __future__ import annotations

import os
import time

import eventlet

eventlet.monkey_patch()

import fairpool  # noqa: E402

fairpool.monkey_patch()  # every user of eventlet.tpool below now runs on fairpool

import libvirt  # noqa: E402
from eventlet import tpool  # noqa: E402

DOMAIN_XML = """
<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
</domain>
"""


class Host:
    """The driver's view of the hypervisor, as nova's libvirt Host wraps its connection."""

    def __init__(self, uri: str = "test:///default") -> None:
        # As nova does: libvirt errors are raised to the caller, not also printed by libvirt.
        libvirt.registerErrorHandler(lambda ctx, err: None, None)
        self._conn = tpool.Proxy(
            libvirt.open(uri),
            autowrap=(libvirt.virDomain, libvirt.virConnect),
            autowrap_items=True,  # listAllDomains() returns wrapped domains
        )

    def spawn(self, name: str) -> None:
        with fairpool.lane("boot"):
            dom = self._conn.defineXML(DOMAIN_XML.format(name=name))
            dom.create()
            while dom.info()[0] != libvirt.VIR_DOMAIN_RUNNING:
                eventlet.sleep(0.01)

    def audit(self) -> int:
        """The periodic task: look at every domain (many short libvirt calls)."""
        with fairpool.lane("audit"):
            return sum(dom.info()[1] for dom in self._conn.listAllDomains())

    def destroy(self, name: str) -> None:
        dom = self._conn.lookupByName(name)
        dom.destroy()
        dom.undefine()


def main() -> None:
    boots = int(os.environ.get("NOVA_LIKE_BOOTS", "20"))
    host = Host()
    stop = False

    audits = eventlet.GreenPool()

    def periodic_audit() -> None:
        while not stop:
            for _ in range(20):
                audits.spawn_n(host.audit)
            eventlet.sleep(0.05)

    auditor = eventlet.spawn(periodic_audit)
    start = time.monotonic()
    names = [f"instance-{i:04d}" for i in range(boots)]
    for gt in [eventlet.spawn(host.spawn, name) for name in names]:
        gt.wait()
    took = time.monotonic() - start
    stop = True
    auditor.wait()
    audits.waitall()  # an audit still running would look up domains destroyed below
    for name in names:
        host.destroy(name)
    print(f"{boots} instances booted in {took:.2f} s")
    print(fairpool.statistics().log_line())


if __name__ == "__main__":
    main()
