"""The ``lorong`` command's entry points after the package layout of issue #15: the console script,
``python -m lorong``, and the package list an install takes from ``pyproject.toml``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from setuptools import find_packages

from lorong.cli import ROOMS

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def run(tmp_path: Path, *cmd: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in ``tmp_path`` (not the checkout, so the installed package answers) with no
    ``LORONG_`` variables but ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LORONG_")}
    base.update({"LORONG_VAR_DIR": str(tmp_path / "var"), **env})
    return subprocess.run(list(cmd), cwd=tmp_path, env=base, capture_output=True, text=True, timeout=60)


def test_python_m_lorong_lists_every_command_group(tmp_path: Path) -> None:
    proc = run(tmp_path, sys.executable, "-m", "lorong", "--help", COLUMNS="200")
    assert proc.returncode == 0, proc.stderr
    assert "Usage: python -m lorong" in proc.stdout
    for name in (*ROOMS, "demo", "aqi"):
        assert f"│ {name} " in proc.stdout, name


def test_python_m_lorong_reports_a_setup_error_in_one_line(tmp_path: Path) -> None:
    proc = run(tmp_path, sys.executable, "-m", "lorong", "ingest", "run", LORONG_MQTT__PORT="not-a-port")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: invalid settings: LORONG_MQTT__PORT: Input should be a valid integer, unable to parse string "
        "as an integer (got 'not-a-port')"]


def test_console_script_is_the_lorong_cli(tmp_path: Path) -> None:
    assert PYPROJECT["project"]["scripts"] == {"lorong": "lorong.cli:main"}
    script = Path(sys.executable).parent / "lorong"
    proc = run(tmp_path, str(script), "demo", "--help", COLUMNS="200")
    assert proc.returncode == 0, proc.stderr
    assert "Usage: lorong demo [OPTIONS]" in proc.stdout
    assert not re.search(r":(class|func|mod|data|meth):|``", proc.stdout), proc.stdout  # help in plain words


def test_an_install_takes_lorong_and_every_room() -> None:
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    found = set(find_packages(where=str(ROOT), include=include))
    assert {"lorong", "lorong.core", "lorong.storage", "ingest", "ingest.codecs", "devices", "analytics",
            "api", "firmware_sim", "dashboards"} <= found
    assert not {p for p in found if p.split(".")[0] in ("core", "storage", "tests", "bench")}


def test_demo_help_flows_in_an_80_column_terminal(tmp_path: Path) -> None:
    """``lorong demo --help`` at 80 columns kept the docstring's own line breaks (made at 100 columns)
    inside rich's wrapping at 78: every paragraph came out as a long line and a short one in turn
    ("...the linked chats get the alerts and their" / "buttons act, ..."). Each paragraph now flows:
    every line but a paragraph's last is filled to at least 60 columns."""
    script = Path(sys.executable).parent / "lorong"
    proc = run(tmp_path, str(script), "demo", "--help", COLUMNS="80")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.split("╭─ Options")[0].split("Usage: lorong demo [OPTIONS]")[1]
    paragraphs: list[list[str]] = [[]]
    for line in text.splitlines():  # blank lines (spaces only) part the paragraphs
        if line.strip():
            paragraphs[-1].append(line.strip())
        elif paragraphs[-1]:
            paragraphs.append([])
    paragraphs = [p for p in paragraphs if p]
    assert len(paragraphs) == 4, text  # the summary, Telegram, the city's past, the cities
    for p in paragraphs:
        assert all(len(line) >= 60 for line in p[:-1]), p
    assert "Start the embedded stack, the ingester, the analytics scheduler" in text
