"""Free loopback ports handed to tests: never the same port twice in one process.

The CI run of 2026-12-07 failed when one NATS node was given the same port for its HTTP
monitor and its cluster routes (two ``free_port()`` calls, each port released before the next
call, and the kernel handed the same one back).
"""
from __future__ import annotations

from lorong.storage import stack


def test_a_process_never_gets_the_same_free_port_twice() -> None:
    ports = [stack.free_port() for _ in range(400)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < p < 65536 for p in ports)
