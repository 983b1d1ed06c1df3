"""Token auth against the v1-compatibility API of InfluxDB 2.x, Cloud and 3.x (issue 15).

Those servers take ``/write`` and ``/query`` with ``Authorization: Token <token>``
(docs.influxdata.com, "InfluxDB 1.x compatibility API"). None of them runs here, so a small local
HTTP server implements the two endpoints as documented: 401 without the right token, 204 for a
write, ``{"results": [...]}`` for a query.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pytest
from pydantic import ValidationError

from lorong.core.errors import StoreRejected
from lorong.core.settings import InfluxSettings, Settings
from lorong.storage.runtime import open_influx

TOKEN = "apiv3_test-token_0123456789"


class V1Compat(BaseHTTPRequestHandler):
    """``/write`` and ``/query`` of the v1-compatibility API, token auth only."""

    seen: ClassVar[list[tuple[str, str | None, dict[str, list[str]], bytes]]] = []

    def _handle(self) -> None:
        url = urlparse(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        params = parse_qs(url.query) | parse_qs(body.decode()) if url.path == "/query" else parse_qs(url.query)
        self.seen.append((url.path, self.headers.get("Authorization"), params, body))
        if self.headers.get("Authorization") != f"Token {TOKEN}":
            self._send(401, {"error": "unauthorized access"})
        elif url.path == "/write":
            self.send_response(204)
            self.end_headers()
        elif url.path == "/query":
            self._send(200, {"results": [{"statement_id": 0, "series": [
                {"name": "air_quality", "columns": ["time", "pm25"], "values": [[1767225600000, 12.5]]}]}]})
        else:
            self._send(404, {"error": "not found"})

    do_GET = do_POST = _handle

    def _send(self, status: int, doc: dict[str, object]) -> None:
        raw = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *_args: object) -> None:
        """Quiet."""


@pytest.fixture
def server() -> Iterator[str]:
    """The server on a free 127.0.0.1 port; yields its base URL."""
    V1Compat.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), V1Compat)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def settings(url: str, **influx: object) -> Settings:
    """Settings whose InfluxDB is ``url`` (database ``makassar``)."""
    return Settings.model_validate({"influx": InfluxSettings.model_validate({"url": url, "database": "makassar",
                                                                              **influx})})


def test_the_token_goes_in_the_authorization_header_of_writes_and_queries(server: str) -> None:
    with open_influx(settings(server, token=TOKEN)) as client:
        client.write_lines(["air_quality,device_id=A1 pm25=12.5 1767225600000"])
        series = client.query('SELECT "pm25" FROM "air_quality"')
    assert [(s.name, s.values) for s in series] == [("air_quality", [[1767225600000, 12.5]])]
    (wpath, wauth, wparams, wbody), (qpath, qauth, qparams, _) = V1Compat.seen
    assert (wpath, wauth, wparams["db"], wparams["precision"]) == ("/write", f"Token {TOKEN}", ["makassar"], ["ms"])
    assert wbody == b"air_quality,device_id=A1 pm25=12.5 1767225600000"
    assert (qpath, qauth, qparams["db"]) == ("/query", f"Token {TOKEN}", ["makassar"])


def test_a_server_answering_json_to_a_packed_query_is_read_as_json(server: str) -> None:
    """The analytics job asks for MessagePack (``packed``); a v1-compatibility server without it answers JSON."""
    with open_influx(settings(server, token=TOKEN)) as client:
        series = client.query('SELECT "pm25" FROM "air_quality"', packed=True)
    assert [(s.name, s.values) for s in series] == [("air_quality", [[1767225600000, 12.5]])]


def test_a_wrong_token_is_a_refusal_naming_the_status(server: str) -> None:
    with open_influx(settings(server, token="wrong")) as client, pytest.raises(StoreRejected) as err:
        client.write_lines(["air_quality,device_id=A1 pm25=1.0 1767225600000"])
    assert err.value.status == 401
    assert "unauthorized" in str(err.value)
    with open_influx(settings(server)) as client, pytest.raises(StoreRejected):  # no token: no header
        client.query("SHOW DATABASES")
    assert [auth for _p, auth, _q, _b in V1Compat.seen] == ["Token wrong", None]


def test_token_and_username_together_are_refused_with_one_message() -> None:
    with pytest.raises(ValidationError, match="LORONG_INFLUX__TOKEN and LORONG_INFLUX__USERNAME are both set"):
        InfluxSettings.model_validate({"token": TOKEN, "username": "lorong", "password": "x"})


def test_the_token_is_secret_in_the_settings_repr() -> None:
    cfg = InfluxSettings.model_validate({"token": TOKEN})
    assert TOKEN not in repr(cfg) and cfg.token is not None and cfg.token.get_secret_value() == TOKEN
