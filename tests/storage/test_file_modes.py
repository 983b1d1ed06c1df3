"""Nobody else on the machine reads Lorong's files (issue 14, item 21): ``var/`` and the spool
directory are 0700 when Lorong creates them, the SQLite database and every spool file 0600, and the
generated broker config runs Mosquitto as its own user, not root (real SQLite, real mosquitto)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from lorong.storage import stack
from lorong.storage.db import migrate
from lorong.storage.spool import Spool


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_and_var_are_private(tmp_path: Path) -> None:
    var = tmp_path / "var"
    migrate(f"sqlite:///{var / 'lorong.db'}")
    assert mode(var) == 0o700
    for f in var.iterdir():
        assert mode(f) & 0o077 == 0, f"{f.name} is {oct(mode(f))}"
    assert mode(var / "lorong.db") == 0o600


def test_spool_files_are_private(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "var" / "spool" / "ing.sqlite")
    spool.append(["m v=1i 1"])
    files = sorted((tmp_path / "var" / "spool").iterdir())
    assert {f.name for f in files} >= {"ing.sqlite", "ing.sqlite-wal", "ing.sqlite.count", "ing.sqlite.lock"}
    assert mode(tmp_path / "var" / "spool") == 0o700
    assert {f.name: oct(mode(f)) for f in files} == {f.name: oct(0o600) for f in files}
    spool.close()


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="privileges are dropped only by a broker started as root")
def test_broker_drops_root(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="lorong-mq-"))  # a checkout: under /tmp, mode 755 like /work
    base.chmod(0o755)
    try:
        work = base / "var" / "mosquitto"
        conf = stack.mosquitto_conf(work, 1883)
        assert "user root" not in conf.read_text()
        svc = stack.start_mosquitto(work, stack.free_port())
        try:
            uid = next(int(x.split()[1]) for x in Path(f"/proc/{svc.proc.pid}/status").read_text().splitlines()
                       if x.startswith("Uid:"))
            assert uid != 0
            assert stack.port_in_use(svc.port)
        finally:
            svc.stop()
        assert (work / "mosquitto.db").exists()  # persistence written as that user on stop
        assert mode(work) == 0o700
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
