"""Run the schemathesis CLI with one compatibility fix for urllib3-future.

grafana-client depends on niquests, whose urllib3-future installs itself as the ``urllib3``
package. Its PoolManager keeps pools in a ``TrafficPolice`` without ``keys()``, which
schemathesis 4.32's requests transport walks to count open connections
(``schemathesis/transport/requests.py``, ``_count_opened_connections``); every request then fails
with ``AttributeError``. The count only decides whether a request dropped on a stale keep-alive
connection is sent once more, so a constant keeps that retry and changes nothing else.

Usage: ``python tests/api/schemathesis_cli.py run URL ...`` (the arguments of ``schemathesis``).
"""

from __future__ import annotations

import sys

import requests
import schemathesis.transport.requests as transport
from schemathesis.cli import schemathesis

_original = transport._count_opened_connections


def _count_opened_connections(session: requests.Session) -> int:
    try:
        return _original(session)
    except AttributeError:  # urllib3-future pool container
        return 0


transport._count_opened_connections = _count_opened_connections

if __name__ == "__main__":
    sys.exit(schemathesis())
