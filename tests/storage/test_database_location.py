"""Issue 14 item 11: ``lorong`` run from another folder silently opened a new, empty database
(``sqlite:///var/lorong.db`` is relative to the current folder); a token created there then got 401
from the API, which used the real one. Each command now refuses to create a database, naming the
one it looked for; only ``stack up``, ``demo`` and the commands that add devices create one, and say so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from lorong.core.settings import Settings
from lorong.storage.runtime import database_location, open_sessions
from lorong.storage.tables import ApiTokenRow


def lorong(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m lorong.cli *args`` in ``cwd`` with the default settings (no ``LORONG_`` variables)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LORONG_")}
    base["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    base.update(env)
    return subprocess.run([sys.executable, "-m", "lorong.cli", *args], cwd=cwd, env=base, capture_output=True,
                          text=True, timeout=60)


def test_a_command_in_another_folder_does_not_create_a_database(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "lorong", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    db = home / "var" / "lorong.db"
    added = lorong(home, "devices", "add", "MKS-AIR-01", "--kind", "air", "--kecamatan", "Wajo")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "registered MKS-AIR-01"
    assert added.stderr.strip() == f"created a new database: {db}"  # says which one, once
    assert db.exists()
    again = lorong(home, "devices", "add", "MKS-AIR-02", "--kind", "air", "--kecamatan", "Wajo")
    assert again.returncode == 0 and again.stderr.strip() == "", again.stderr

    for args in (("api", "token", "create", "--role", "admin", "--name", "ops"), ("devices", "list"),
                 ("api", "token", "list")):
        proc = lorong(elsewhere, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert lines == [f"error: no Lorong database at {elsewhere / 'var' / 'lorong.db'} (LORONG_DATABASE_URL "
                         f"sqlite:///var/lorong.db, relative to the current folder): run lorong in the folder "
                         "that holds var/, or set LORONG_DATABASE_URL; `lorong stack up`, `lorong demo` and "
                         "`lorong devices add` create a new one"], (args, proc.stderr)
        assert not (elsewhere / "var" / "lorong.db").exists()

    # from anywhere with the URL set: the token lands in the one database
    url = f"sqlite:///{db}"
    made = lorong(elsewhere, "api", "token", "create", "--role", "admin", "--name", "ops", LORONG_DATABASE_URL=url)
    assert made.returncode == 0, made.stderr
    with open_sessions(Settings(database_url=url))() as s:
        assert [t.name for t in s.scalars(select(ApiTokenRow))] == ["ops"]


def test_database_location_names_the_file_or_the_server() -> None:
    assert database_location("sqlite:///var/lorong.db") == f"{Path.cwd() / 'var' / 'lorong.db'}"
    assert database_location("sqlite:////srv/l.db?timeout=5") == "/srv/l.db"
    assert database_location("postgresql+psycopg://lorong:secret@db.local:5433/lorong") == \
        "PostgreSQL database lorong on db.local:5433"


def test_a_database_that_cannot_be_created_is_one_error_line(tmp_path: Path) -> None:
    """``devices add`` (which creates a new database) with a LORONG_DATABASE_URL under a file, not a
    folder, printed a 60-line traceback ending in ``NotADirectoryError``. Now one line naming the path,
    the reason and the setting to fix, exit 2; nothing is created."""
    (tmp_path / "notes.txt").write_text("not a folder")
    url = f"sqlite:///{tmp_path / 'notes.txt' / 'lorong.db'}"
    proc = lorong(tmp_path, "devices", "add", "MKS-AIR-01", "--kind", "air", LORONG_DATABASE_URL=url)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot create the database {tmp_path / 'notes.txt' / 'lorong.db'}: Not a directory: "
        "check LORONG_DATABASE_URL"]
    assert (tmp_path / "notes.txt").read_text() == "not a folder"
