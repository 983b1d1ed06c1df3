"""Upload dashboards to a running Grafana with grafana-client (the only module that imports it).

Grafana HTTP API (https://grafana.com/docs/grafana/latest/developers/http_api/dashboard/ and
``.../folder/``, ``.../folder_dashboard_search/``), as grafana-client 5 calls it:

- ``GET /api/folders`` and ``POST /api/folders`` (``folder.get_all_folders``, ``folder.create_folder``)
  find or create the target folder by title;
- ``GET /api/datasources/uid/:uid`` (``datasource.get_datasource_by_uid``) checks, before any
  dashboard is written, that every datasource uid the panels query exists and is an InfluxDB
  datasource (otherwise every panel would show "datasource not found"); ``--datasource-uid``
  rewrites the dashboards' uid (``lorong-influx``, the provisioned one) to an existing datasource;
- ``GET /api/dashboards/uid/:uid`` (``dashboard.get_dashboard``) reads what is there;
- ``GET /api/search?type=dash-db&query=<title>`` (``search.search_dashboards``) finds another
  dashboard with the same title in the folder, which Grafana would refuse (412 ``name-exists``);
- ``POST /api/dashboards/db`` (``dashboard.update_dashboard``) creates or updates, sending the
  stored ``version`` with ``overwrite: false``.

Idempotent by uid: a dashboard whose stored JSON (less ``id`` and ``version``) and folder already
match is left alone ("unchanged"). When someone saved the dashboard between our read and our
write, Grafana answers 412 ``version-mismatch``; the code is the source of truth, so the push is
repeated with ``overwrite: true`` ("overwritten"). Every other refusal raises :class:`PushError`
with what to do about it (401 token, 403 role, 404 URL or folder, 412 name clash).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import niquests
from grafana_client.api import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)

from lorong.core.errors import LorongError

log = logging.getLogger(__name__)

T = TypeVar("T")

PUSH_MESSAGE = "lorong dashboards push"
"""Version note Grafana keeps with each saved version."""


class PushError(LorongError):
    """Grafana refused an upload or could not be reached.

    Attributes:
        status: HTTP status (0 when Grafana did not answer).
        detail: Grafana's own message, when it sent one.
    """

    def __init__(self, status: int, message: str, detail: str = "") -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{message} (Grafana said: {detail})" if detail else message)


@dataclass(frozen=True, slots=True)
class PushResult:
    """What happened to one dashboard.

    Attributes:
        uid: dashboard uid.
        title: dashboard title.
        action: ``created``, ``updated``, ``overwritten`` (after a version mismatch) or ``unchanged``.
        version: the version Grafana now holds.
        url: the dashboard's path in Grafana (``/d/<uid>/<slug>``), as Grafana reports it.
    """

    uid: str
    title: str
    action: str
    version: int
    url: str


def _detail(exc: GrafanaException) -> str:
    body = exc.response
    if isinstance(body, dict):
        return str(body.get("message", "")) or str(body)
    return str(body or "")


def _status_of(exc: GrafanaException) -> str:
    return str(exc.response.get("status", "")) if isinstance(exc.response, dict) else ""


def folder_uid_for(title: str) -> str:
    """A stable folder uid from its title: lower-case letters, digits and dashes, at most 40."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "lorong"


def datasource_uids(node: Any) -> set[str]:
    """Every ``datasource.uid`` in a dashboard's JSON (panels, targets, template variables)."""
    found: set[str] = set()
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and isinstance(ds.get("uid"), str) and not ds["uid"].startswith("$"):
            found.add(ds["uid"])
        for value in node.values():
            found |= datasource_uids(value)
    elif isinstance(node, list):
        for value in node:
            found |= datasource_uids(value)
    return found


def map_datasource(node: Any, old: str, new: str) -> Any:
    """A copy of dashboard JSON with every ``datasource.uid`` ``old`` replaced by ``new``."""
    if isinstance(node, dict):
        out = {k: map_datasource(v, old, new) for k, v in node.items()}
        ds = out.get("datasource")
        if isinstance(ds, dict) and ds.get("uid") == old:
            out["datasource"] = {**ds, "uid": new}
        return out
    if isinstance(node, list):
        return [map_datasource(v, old, new) for v in node]
    return node


def _comparable(dashboard: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dashboard.items() if k not in ("id", "version")}


class Pusher:
    """Uploads dashboards to one Grafana.

    Args:
        url: Grafana's base URL, with any sub-path it is served under (``https://host/grafana``).
        token: a service-account token (role Editor or better), sent as ``Authorization: Bearer``.
        timeout_s: per-request timeout in seconds.
    """

    def __init__(self, url: str, token: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._api = GrafanaApi.from_url(self.url, credential=token, timeout=timeout_s)

    def _error(self, what: str, exc: Exception) -> PushError:
        """Translate a grafana-client or transport error into a :class:`PushError` saying what to do."""
        if isinstance(exc, GrafanaUnauthorizedError):
            return PushError(401, f"{what}: Grafana at {self.url} rejected the token (401 Unauthorized); "
                                  "check LORONG_GRAFANA_TOKEN or --token-file", _detail(exc))
        if isinstance(exc, GrafanaClientError):
            status, detail = exc.status_code, _detail(exc)
            if status == 403:
                msg = f"{what}: the token may not do this (403 Forbidden); give its service account the Editor role"
            elif status == 404:
                msg = (f"{what}: not found (404) at {self.url}; check --url (include the sub-path Grafana "
                       "is served under) and --folder")
            elif status == 412:
                msg = f"{what}: Grafana refused it (412 Precondition Failed, {_status_of(exc) or 'no reason'})"
            else:
                msg = f"{what}: Grafana refused it (HTTP {status})"
            return PushError(status, msg, detail)
        if isinstance(exc, GrafanaServerError):
            return PushError(exc.status_code, f"{what}: Grafana failed (HTTP {exc.status_code})", _detail(exc))
        if isinstance(exc, GrafanaTimeoutError):
            return PushError(0, f"{what}: Grafana at {self.url} did not answer in time", str(exc))
        return PushError(0, f"{what}: cannot reach Grafana at {self.url}", str(exc))

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one API call; raise :meth:`_error` of whatever grafana-client or the transport raised."""
        try:
            return fn(*args, **kwargs)
        except (GrafanaException, niquests.exceptions.RequestException) as exc:
            raise self._error(what, exc) from exc

    def check_datasource(self, uid: str, kind: str = "influxdb") -> None:
        """Make sure Grafana has a datasource ``uid`` of type ``kind``.

        Raises:
            PushError: (404) no such datasource, (400) one of another type, or the lookup failed.
        """
        try:
            found = self._api.datasource.get_datasource_by_uid(uid)
        except GrafanaClientError as exc:
            if exc.status_code == 404 and "data source not found" in _detail(exc).lower():  # Grafana's words
                raise PushError(404, f"the dashboards use datasource uid {uid!r}, which Grafana at {self.url} does "
                                     "not have: provision it (dashboards/provisioning/) or pass --datasource-uid "
                                     "<uid of your InfluxDB datasource>; nothing was pushed", _detail(exc)) from exc
            raise self._error(f"read datasource {uid}", exc) from exc
        except (GrafanaException, niquests.exceptions.RequestException) as exc:
            raise self._error(f"read datasource {uid}", exc) from exc
        if found.get("type") != kind:
            raise PushError(400, f"datasource {uid!r} ({found.get('name', '')}) is a {found.get('type')} datasource, "
                                 f"the dashboards need {kind}; pass --datasource-uid of an InfluxDB one")

    def ensure_folder(self, title: str) -> str:
        """The uid of the folder titled ``title``, created (uid :func:`folder_uid_for`) if missing.

        Raises:
            PushError: listing or creating folders failed.
        """
        folders = self._call("list folders", self._api.folder.get_all_folders)
        for folder in folders:
            if folder.get("title") == title:
                return str(folder["uid"])
        created = self._call(f"create folder {title!r}", self._api.folder.create_folder, title,
                             uid=folder_uid_for(title))
        log.info("created Grafana folder %r (uid %s)", title, created["uid"])
        return str(created["uid"])

    def _existing(self, uid: str) -> dict[str, Any] | None:
        """What Grafana holds under ``uid`` (``{"dashboard", "meta"}``), ``None`` when nothing (404)."""
        try:
            found: dict[str, Any] = self._api.dashboard.get_dashboard(uid)
        except GrafanaClientError as exc:
            if exc.status_code == 404:
                return None
            raise self._error(f"read dashboard {uid}", exc) from exc
        except (GrafanaException, niquests.exceptions.RequestException) as exc:
            raise self._error(f"read dashboard {uid}", exc) from exc
        return found

    def _check_title_free(self, dashboard: Mapping[str, Any], folder_uid: str) -> None:
        title = str(dashboard.get("title", ""))
        hits = self._call(f"search for {title!r}", self._api.search.search_dashboards, query=title, type_="dash-db")
        for hit in hits:
            same_folder = (hit.get("folderUid") or "") == folder_uid
            if hit.get("title") == title and same_folder and hit.get("uid") != dashboard.get("uid"):
                raise PushError(412, f"dashboard {title!r}: another dashboard (uid {hit.get('uid')}) has this "
                                     "title in the folder; rename or delete it, or push to another --folder")

    def push(self, dashboard: Mapping[str, Any], folder_uid: str = "") -> PushResult:
        """Create or update one dashboard, keyed by its ``uid``.

        Args:
            dashboard: dashboard JSON as :func:`dashboards.build.build_all` makes it.
            folder_uid: target folder uid; ``""`` for the General folder.

        Raises:
            PushError: Grafana refused the dashboard (see the module docstring) or is unreachable.
        """
        uid, title = str(dashboard["uid"]), str(dashboard.get("title", ""))
        existing = self._existing(uid)
        body: dict[str, Any] = dict(dashboard)
        if existing is not None:
            stored, meta = existing.get("dashboard", {}), existing.get("meta", {})
            if _comparable(stored) == _comparable(dashboard) and (meta.get("folderUid") or "") == folder_uid:
                return PushResult(uid, title, "unchanged", int(stored.get("version", 0)), str(meta.get("url", "")))
            body["id"], body["version"] = stored.get("id"), stored.get("version")
            action = "updated"
        else:
            self._check_title_free(dashboard, folder_uid)
            body["id"] = None
            body.pop("version", None)
            action = "created"
        request = {"dashboard": body, "folderUid": folder_uid, "message": PUSH_MESSAGE, "overwrite": False}
        what = f"save dashboard {title!r}"
        try:
            saved = self._api.dashboard.update_dashboard(request)
        except GrafanaClientError as exc:
            if exc.status_code != 412 or _status_of(exc) != "version-mismatch":
                raise self._error(what, exc) from exc
            log.warning("dashboard %s changed in Grafana while pushing; overwriting with the code's version", uid)
            request["overwrite"] = True
            saved = self._call(f"overwrite dashboard {title!r}", self._api.dashboard.update_dashboard, request)
            action = "overwritten"
        except (GrafanaException, niquests.exceptions.RequestException) as exc:
            raise self._error(what, exc) from exc
        return PushResult(uid, title, action, int(saved.get("version", 0)), str(saved.get("url", "")))


def push_all(url: str, token: str, dashboards: Mapping[str, Mapping[str, Any]], folder: str | None = None,
             timeout_s: float = 10.0, datasource_uid: str | None = None) -> list[PushResult]:
    """Push every dashboard, in order, into ``folder`` (title) or the General folder.

    Args:
        url: Grafana base URL.
        token: service-account token.
        dashboards: ``{uid: dashboard JSON}``.
        folder: folder title, created when missing; ``None`` for General.
        timeout_s: per-request timeout, seconds.
        datasource_uid: an existing InfluxDB datasource of that Grafana to query instead of
            :data:`dashboards.panels.DATASOURCE_UID` (the provisioned one).

    Returns:
        One :class:`PushResult` per dashboard.

    Raises:
        PushError: a datasource the dashboards use is missing (before anything is pushed), or the
            first refusal; dashboards before it are already pushed.
    """
    from dashboards.panels import DATASOURCE_UID

    if datasource_uid:
        dashboards = {uid: map_datasource(d, DATASOURCE_UID, datasource_uid) for uid, d in dashboards.items()}
    pusher = Pusher(url, token, timeout_s)
    for uid in sorted(set().union(*(datasource_uids(d) for d in dashboards.values()))):
        pusher.check_datasource(uid)
    folder_uid = pusher.ensure_folder(folder) if folder else ""
    return [pusher.push(d, folder_uid) for d in dashboards.values()]
