"""The 1 MB request-body limit, for a body that declares its length and for one sent chunked."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.errors import MAX_BODY_BYTES
from lorong.storage.tables import DeviceRow
from tests.api.conftest import Served, bearer

pytestmark = pytest.mark.integration

DEVICE = {"id": "MKS-BIN-0900", "kind": "bin", "kecamatan": "Wajo", "street": "Jl. Nusantara", "depth_mm": 1000}


def _devices(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(DeviceRow)) or 0)


def test_chunked_body_over_the_limit_is_refused_unread(served: Served, tokens: dict[str, str],
                                                       sessions: sessionmaker[Session]) -> None:
    sent = 0
    total = 50 * 1024 * 1024
    chunk = b"a" * 65536

    def body() -> Iterator[bytes]:  # one device whose street is 50 MB, sent without Content-Length
        nonlocal sent
        head = b'{"id": "MKS-BIN-0901", "kind": "bin", "street": "'
        sent += len(head)
        yield head
        while sent < total:
            sent += len(chunk)
            yield chunk
        yield b'"}'

    headers = {**bearer(tokens["technician"]), "Content-Type": "application/json"}
    with httpx.Client(base_url=served.url, timeout=30) as c:
        r = c.post("/devices", content=body(), headers=headers)
    assert r.request.headers["transfer-encoding"] == "chunked" and "content-length" not in r.request.headers
    assert r.status_code == 413, r.text[:300]
    assert r.json() == {"detail": f"request body is over the limit of {MAX_BODY_BYTES} bytes"}
    assert sent < 20 * 1024 * 1024  # the server stopped the upload long before its end
    assert _devices(sessions) == 0

    with httpx.Client(base_url=served.url, timeout=30) as c:  # a chunked body under the limit still works
        small = json.dumps(DEVICE).encode()
        r = c.post("/devices", content=iter([small[:10], small[10:]]), headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["street"] == "Jl. Nusantara"


def test_declared_length_over_the_limit(client: httpx.Client, auth: Callable[[str], dict[str, str]]) -> None:
    big = json.dumps({**DEVICE, "street": "a" * MAX_BODY_BYTES}).encode()
    r = client.post("/devices", content=big, headers={**auth("technician"), "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"detail": f"request body of {len(big)} bytes is over the limit of {MAX_BODY_BYTES} bytes"}
