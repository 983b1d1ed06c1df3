"""A small stand-in for Grafana's HTTP API, on a free 127.0.0.1 port (Grafana is not installable here).

It implements the endpoints ``lorong dashboards push`` uses, with the status codes and bodies of
Grafana's HTTP API reference (``/api/dashboards``, ``/api/folders``, ``/api/search``; legacy API
as served by Grafana 9 to 12):

- Every request needs ``Authorization: Bearer <token>``; an unknown token gets 401. Tokens have
  a role: ``Viewer`` gets 403 on every write, ``Editor`` may write.
- ``GET /api/folders`` lists ``{id, uid, title}``; ``POST /api/folders`` ``{title, uid}`` creates
  (409 when the uid exists).
- ``GET /api/search?query=&type=dash-db`` lists dashboards whose title contains the query.
- ``GET /api/dashboards/uid/:uid`` returns ``{dashboard, meta}`` or 404 ``Dashboard not found``.
- ``GET /api/datasources/uid/:uid`` returns ``{id, uid, name, type, ...}`` or 404 ``Data source
  not found`` (:attr:`FakeGrafana.datasources`; by default the provisioned ``lorong-influx``).
- ``POST /api/dashboards/db`` ``{dashboard, folderUid, message, overwrite}`` creates or updates by
  uid. Without ``overwrite``: 412 ``version-mismatch`` when ``dashboard.version`` is not the stored
  version, 412 ``name-exists`` when another dashboard has the title in that folder. 400 for an
  unknown folder. Answers ``{id, uid, url, status, version, slug}``.
- Anything else: 404 ``Not found``.

Test hooks: :attr:`FakeGrafana.edit_after_read` (uids saved by "someone else" right after we read
them, to provoke a version mismatch) and :attr:`FakeGrafana.log` (every request).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def slugify(title: str) -> str:
    """Grafana-like slug: lower-case words joined by dashes."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


@dataclass
class Stored:
    """A saved dashboard: its JSON (with ``id``, ``uid``, ``version`` set) and its folder."""

    dashboard: dict[str, Any]
    folder_uid: str


@dataclass
class FakeGrafana:
    """State of the fake Grafana; :meth:`start` serves it."""

    tokens: dict[str, str] = field(default_factory=lambda: {"editor-token": "Editor", "viewer-token": "Viewer"})
    folders: list[dict[str, Any]] = field(default_factory=list)
    datasources: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "lorong-influx": {"id": 1, "uid": "lorong-influx", "name": "Lorong InfluxDB", "type": "influxdb"}})
    dashboards: dict[str, Stored] = field(default_factory=dict)
    edit_after_read: set[str] = field(default_factory=set)
    log: list[tuple[str, str, Any]] = field(default_factory=list)
    _next_id: int = 1
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def new_id(self) -> int:
        """Next numeric id (dashboards and folders share the sequence, as in Grafana)."""
        self._next_id += 1
        return self._next_id - 1

    def add_folder(self, title: str, uid: str) -> dict[str, Any]:
        """Create a folder directly (test setup)."""
        folder = {"id": self.new_id(), "uid": uid, "title": title}
        self.folders.append(folder)
        return folder

    def save(self, dashboard: dict[str, Any], folder_uid: str) -> Stored:
        """Store ``dashboard`` as Grafana does: keep its uid, set id, bump version."""
        old = self.dashboards.get(dashboard["uid"])
        data = dict(dashboard)
        data["id"] = old.dashboard["id"] if old else self.new_id()
        data["version"] = old.dashboard["version"] + 1 if old else 1
        stored = Stored(data, folder_uid)
        self.dashboards[data["uid"]] = stored
        return stored

    def start(self) -> FakeGrafana:
        """Serve on a free loopback port in a daemon thread."""
        fake = self

        class Handler(_Handler):
            grafana = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    grafana: FakeGrafana

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _role(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return self.grafana.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        g = self.grafana
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        with g._lock:
            g.log.append((method, parts.path, body))
            role = self._role()
            if role is None:
                return self._send(401, {"message": "invalid API key", "messageId": "api-key.invalid",
                                        "statusCode": 401})
            route = (method, parts.path)
            if method == "POST" and role == "Viewer":
                return self._send(403, {"message": "You'll need additional permissions to perform this action. "
                                                   "Permissions needed: dashboards:create"})
            if route == ("GET", "/api/folders"):
                return self._send(200, [{"id": f["id"], "uid": f["uid"], "title": f["title"]} for f in g.folders])
            if route == ("POST", "/api/folders"):
                return self._create_folder(body or {})
            if route == ("GET", "/api/search"):
                return self._search(parse_qs(parts.query))
            if route == ("POST", "/api/dashboards/db"):
                return self._save(body or {})
            ds = re.fullmatch(r"/api/datasources/uid/([^/]+)", parts.path)
            if method == "GET" and ds:
                found = g.datasources.get(ds.group(1))
                return self._send(200, found) if found else self._send(404, {"message": "Data source not found"})
            m = re.fullmatch(r"/api/dashboards/uid/([^/]+)", parts.path)
            if method == "GET" and m:
                return self._get(m.group(1))
            return self._send(404, {"message": "Not found"})

    def _create_folder(self, body: dict[str, Any]) -> None:
        g = self.grafana
        uid = body.get("uid") or f"f{g._next_id}"
        if any(f["uid"] == uid for f in g.folders):
            return self._send(409, {"message": "a folder with the same uid already exists"})
        folder = g.add_folder(body["title"], uid)
        self._send(200, {**folder, "url": f"/dashboards/f/{uid}/{slugify(folder['title'])}", "version": 1})

    def _search(self, params: dict[str, list[str]]) -> None:
        g = self.grafana
        query = params.get("query", [""])[0].lower()
        titles = {f["uid"]: f["title"] for f in g.folders}
        hits = []
        for uid, s in g.dashboards.items():
            if query in s.dashboard.get("title", "").lower():
                hit = {"id": s.dashboard["id"], "uid": uid, "title": s.dashboard["title"], "type": "dash-db",
                       "url": f"/d/{uid}/{slugify(s.dashboard['title'])}", "tags": s.dashboard.get("tags", [])}
                if s.folder_uid:
                    hit |= {"folderUid": s.folder_uid, "folderTitle": titles[s.folder_uid]}
                hits.append(hit)
        self._send(200, hits)

    def _get(self, uid: str) -> None:
        g = self.grafana
        stored = g.dashboards.get(uid)
        if stored is None:
            return self._send(404, {"message": "Dashboard not found", "status": "not-found"})
        slug = slugify(stored.dashboard["title"])
        self._send(200, {"dashboard": stored.dashboard,
                         "meta": {"type": "db", "slug": slug, "url": f"/d/{uid}/{slug}",
                                  "version": stored.dashboard["version"], "folderUid": stored.folder_uid,
                                  "provisioned": False}})
        if uid in g.edit_after_read:  # someone saves it in the UI right after our read
            g.edit_after_read.discard(uid)
            g.save({**stored.dashboard, "description": "edited in the UI"}, stored.folder_uid)

    def _save(self, body: dict[str, Any]) -> None:
        g = self.grafana
        dash, folder_uid, overwrite = body.get("dashboard"), body.get("folderUid") or "", bool(body.get("overwrite"))
        if not isinstance(dash, dict) or not dash.get("title"):
            return self._send(400, {"message": "Dashboard title cannot be empty"})
        if folder_uid and not any(f["uid"] == folder_uid for f in g.folders):
            return self._send(400, {"message": "folder not found"})
        dash.setdefault("uid", f"u{g._next_id}")
        existing = g.dashboards.get(dash["uid"])
        if existing and not overwrite and dash.get("version") != existing.dashboard["version"]:
            return self._send(412, {"message": "The dashboard has been changed by someone else",
                                    "status": "version-mismatch"})
        clash = [u for u, s in g.dashboards.items()
                 if u != dash["uid"] and s.folder_uid == folder_uid and s.dashboard["title"] == dash["title"]]
        if clash and not overwrite:
            return self._send(412, {"message": "A dashboard with the same name in the folder already exists",
                                    "status": "name-exists"})
        stored = g.save(dash, folder_uid)
        slug = slugify(dash["title"])
        self._send(200, {"id": stored.dashboard["id"], "uid": dash["uid"], "url": f"/d/{dash['uid']}/{slug}",
                         "status": "success", "version": stored.dashboard["version"], "slug": slug})
