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


def test_a_run_of_ports_is_free_and_new_as_a_whole() -> None:
    """``ingest run --workers N`` gives its workers metrics ports ``p .. p+N-1``; a test took ``p`` from
    ``free_port()`` and assumed ``p+1`` free: CI of 2026-12-07 evening waited 60 s for the second worker's
    metrics (another test's process may hold that port). ``free_port(n)`` gives the first of ``n``
    ports free together, none given before."""
    first = stack.free_port(3)
    run = [first, first + 1, first + 2]
    assert not any(stack.port_in_use(p) for p in run)
    later = [stack.free_port() for _ in range(200)]
    assert not set(run) & set(later)
    assert len({stack.free_port(2) for _ in range(50)}) == 50
