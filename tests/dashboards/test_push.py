"""``lorong dashboards push`` against a local stand-in for Grafana's HTTP API (tests/dashboards/fake_grafana.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from dashboards.build import build_all
from dashboards.push import PushError, folder_uid_for, push_all
from lorong.cli import app
from tests.dashboards.fake_grafana import FakeGrafana

DASHBOARDS = build_all()
EDITOR, VIEWER = "editor-token", "viewer-token"


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana().start()
    yield fake
    fake.stop()


def _saves(fake: FakeGrafana) -> list[dict[str, Any]]:
    return [body for method, path, body in fake.log if (method, path) == ("POST", "/api/dashboards/db")]


def _without_ids(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in ("id", "version")}


def test_first_push_creates_folder_and_dashboards(grafana: FakeGrafana) -> None:
    results = push_all(grafana.url, EDITOR, DASHBOARDS, folder="Lorong")
    assert [(r.uid, r.action, r.version) for r in results] == [(uid, "created", 1) for uid in DASHBOARDS]
    assert [r.url for r in results] == ["/d/lorong-bins/lorong-bins", "/d/lorong-air/lorong-air-quality",
                                        "/d/lorong-ops/lorong-operations"]
    assert grafana.folders == [{"id": 1, "uid": "lorong", "title": "Lorong"}]
    for uid, data in DASHBOARDS.items():
        stored = grafana.dashboards[uid]
        assert stored.folder_uid == "lorong" and _without_ids(stored.dashboard) == data
    assert all(body["overwrite"] is False and body["folderUid"] == "lorong" for body in _saves(grafana))


def test_second_push_changes_nothing(grafana: FakeGrafana) -> None:
    push_all(grafana.url, EDITOR, DASHBOARDS, folder="Lorong")
    writes = len(_saves(grafana))
    again = push_all(grafana.url, EDITOR, DASHBOARDS, folder="Lorong")
    assert [(r.action, r.version) for r in again] == [("unchanged", 1)] * 3
    assert len(_saves(grafana)) == writes and len(grafana.folders) == 1
    assert [(m, p) for m, p, _ in grafana.log].count(("POST", "/api/folders")) == 1


def test_push_updates_a_dashboard_edited_in_grafana(grafana: FakeGrafana) -> None:
    push_all(grafana.url, EDITOR, DASHBOARDS)
    stored = grafana.dashboards["lorong-air"]
    grafana.save({**stored.dashboard, "title": "renamed in the UI"}, "")
    results = {r.uid: r for r in push_all(grafana.url, EDITOR, DASHBOARDS)}
    assert (results["lorong-air"].action, results["lorong-air"].version) == ("updated", 3)
    assert results["lorong-bins"].action == results["lorong-ops"].action == "unchanged"
    assert _without_ids(grafana.dashboards["lorong-air"].dashboard) == DASHBOARDS["lorong-air"]
    assert _saves(grafana)[-1]["dashboard"]["version"] == 2  # sent the version it read


def test_push_moves_a_dashboard_into_the_folder(grafana: FakeGrafana) -> None:
    push_all(grafana.url, EDITOR, DASHBOARDS)
    results = push_all(grafana.url, EDITOR, DASHBOARDS, folder="Kota Makassar")
    assert {r.action for r in results} == {"updated"}
    assert {s.folder_uid for s in grafana.dashboards.values()} == {folder_uid_for("Kota Makassar")} == {"kota-makassar"}


def test_version_mismatch_is_overwritten(grafana: FakeGrafana) -> None:
    push_all(grafana.url, EDITOR, DASHBOARDS)
    grafana.save({**grafana.dashboards["lorong-ops"].dashboard, "title": "edited"}, "")
    grafana.edit_after_read.add("lorong-ops")  # saved again by someone between our read and our write
    results = {r.uid: r for r in push_all(grafana.url, EDITOR, DASHBOARDS)}
    assert (results["lorong-ops"].action, results["lorong-ops"].version) == ("overwritten", 4)
    first, second = _saves(grafana)[-2:]
    assert (first["overwrite"], first["dashboard"]["version"]) == (False, 2)
    assert second["overwrite"] is True
    assert _without_ids(grafana.dashboards["lorong-ops"].dashboard) == DASHBOARDS["lorong-ops"]


def test_existing_folder_is_reused(grafana: FakeGrafana) -> None:
    grafana.add_folder("Lorong", "x7Yq2")
    push_all(grafana.url, EDITOR, DASHBOARDS, folder="Lorong")
    assert len(grafana.folders) == 1 and {s.folder_uid for s in grafana.dashboards.values()} == {"x7Yq2"}


def test_bad_token_is_401(grafana: FakeGrafana) -> None:
    with pytest.raises(PushError, match=r"rejected the token \(401 Unauthorized\); check LORONG_GRAFANA_TOKEN") as err:
        push_all(grafana.url, "wrong", DASHBOARDS, folder="Lorong")
    assert err.value.status == 401 and "invalid API key" in str(err.value)
    assert grafana.dashboards == {} and grafana.folders == []


@pytest.mark.parametrize("folder", ["Lorong", None])
def test_viewer_token_is_403(grafana: FakeGrafana, folder: str | None) -> None:
    with pytest.raises(PushError, match=r"403 Forbidden\); give its service account the Editor role") as err:
        push_all(grafana.url, VIEWER, DASHBOARDS, folder=folder)
    assert err.value.status == 403 and "dashboards:create" in err.value.detail
    assert grafana.dashboards == {}


def test_wrong_url_is_404(grafana: FakeGrafana) -> None:
    with pytest.raises(PushError, match=r"not found \(404\) at http://127\.0\.0\.1:\d+/grafana; check --url") as err:
        push_all(grafana.url + "/grafana", EDITOR, DASHBOARDS)
    assert err.value.status == 404


def test_title_taken_by_another_dashboard_is_412(grafana: FakeGrafana) -> None:
    grafana.add_folder("Lorong", "lorong")
    grafana.save({"uid": "hand-made", "title": DASHBOARDS["lorong-bins"]["title"]}, "lorong")
    with pytest.raises(PushError, match=r"another dashboard \(uid hand-made\) has this title in the folder") as err:
        push_all(grafana.url, EDITOR, DASHBOARDS, folder="Lorong")
    assert err.value.status == 412 and _saves(grafana) == []


def test_name_exists_from_grafana_is_412(grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the search missed the clash (it races), Grafana's own 412 ``name-exists`` still stops the push."""
    from dashboards import push

    grafana.save({"uid": "hand-made", "title": DASHBOARDS["lorong-bins"]["title"]}, "")
    monkeypatch.setattr(push.Pusher, "_check_title_free", lambda *_: None)
    with pytest.raises(PushError, match=r"412 Precondition Failed, name-exists\) \(Grafana said: A dashboard with "
                                        r"the same name in the folder already exists\)") as err:
        push_all(grafana.url, EDITOR, DASHBOARDS)
    assert err.value.status == 412 and grafana.dashboards["hand-made"].dashboard["version"] == 1


def test_unreachable_grafana() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(PushError, match=rf"cannot reach Grafana at http://127\.0\.0\.1:{port}") as err:
            push_all(f"http://127.0.0.1:{port}", EDITOR, DASHBOARDS, timeout_s=2.0)
    assert err.value.status == 0


def test_cli_push(grafana: FakeGrafana) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["dashboards", "push", "--url", grafana.url, "--folder", "Lorong"],
                       env={"LORONG_GRAFANA_TOKEN": EDITOR})
    assert ok.exit_code == 0, ok.output
    assert ok.output.splitlines() == [
        "created     lorong-bins    v1    /d/lorong-bins/lorong-bins  Lorong - Bins",
        "created     lorong-air     v1    /d/lorong-air/lorong-air-quality  Lorong - Air quality",
        "created     lorong-ops     v1    /d/lorong-ops/lorong-operations  Lorong - Operations"]
    bad = runner.invoke(app, ["dashboards", "push", "--url", grafana.url], env={"LORONG_GRAFANA_TOKEN": "wrong"})
    assert bad.exit_code == 1
    assert f"push failed: read datasource lorong-influx: Grafana at {grafana.url} rejected the token " in bad.output


def test_cli_push_builds_for_the_retention_settings(grafana: FakeGrafana) -> None:
    ok = CliRunner().invoke(app, ["dashboards", "push", "--url", grafana.url],
                            env={"LORONG_GRAFANA_TOKEN": EDITOR, "LORONG_INFLUX__RAW_DAYS": "14"})
    assert ok.exit_code == 0, ok.output
    queries = [t["query"] for p in grafana.dashboards["lorong-air"].dashboard["panels"] for t in p["targets"]
               if t["refId"] == "A" and p["id"] in (1, 2)]
    assert len(queries) == 2 and all("time > now() - 14d AND" in q and "now() - 90d" not in q for q in queries)
