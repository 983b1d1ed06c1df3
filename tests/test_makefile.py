"""The Makefile's ``demo`` target, run by GNU make against a stand-in ``lorong`` in a temp dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

MAKEFILE = Path(__file__).parent.parent / "Makefile"

# stands in for `lorong demo`: runs until Ctrl-C, then ends as the real one does (exit 130 after cleanup)
STAND_IN = f"""#!{sys.executable}
import sys, time
try:
    print("Press Ctrl-C to stop.", flush=True)
    time.sleep(60)
except KeyboardInterrupt:
    print("stopped.", flush=True)
    sys.exit(130)
sys.exit(1)
"""


@pytest.mark.parametrize("status", ["exit", "signal"])
def test_ctrl_c_ends_make_demo_without_a_make_error(tmp_path: Path, status: str) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) stops `make demo` with no ``make: ***`` line,
    whether the demo exits 130 or dies of the SIGINT itself (the shell then sees 128 + 2 = 130)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    lorong = venv / "bin" / "lorong"
    body = STAND_IN if status == "exit" else STAND_IN.replace(
        "sys.exit(130)", "import os, signal; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "os.kill(os.getpid(), signal.SIGINT)")
    lorong.write_text(body)
    lorong.chmod(0o755)
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / ".stamps").mkdir()
    (tmp_path / ".stamps" / "debs-demo").touch()
    (venv / ".installed-demo").touch()
    os.utime(tmp_path / "pyproject.toml", (time.time() - 60, time.time() - 60))  # setup is up to date
    proc = subprocess.Popen(["make", "--no-print-directory", "-f", str(MAKEFILE), "-C", str(tmp_path), "demo",
                             f"VENV={venv}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group, like a terminal's foreground job
    try:
        assert proc.stdout is not None
        head = [proc.stdout.readline()]
        if head[0] != "Press Ctrl-C to stop.\n":  # make echoed the recipe line first
            head.append(proc.stdout.readline())
        assert head[-1] == "Press Ctrl-C to stop.\n", head
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert "stopped." in rest
    assert "***" not in rest, rest  # make: *** [Makefile:NN: demo] Error 130 / Interrupt


def _plan(tmp_path: Path, target: str, venv: Path) -> str:
    """What ``make -n target`` would run in ``tmp_path`` (GNU make prints the recipes, runs none)."""
    proc = subprocess.run(["make", "-n", "--no-print-directory", "-f", str(MAKEFILE), "-C", str(tmp_path), target,
                           f"VENV={venv}"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_demo_installs_only_what_it_runs_and_says_so(tmp_path: Path) -> None:
    """Issue 14 item 26: the first ``make demo`` installed the development extras (Playwright, mypy ...;
    a 708 MB .venv) and printed nothing for about 73 s."""
    venv = tmp_path / "venv"
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / ".stamps").mkdir()
    for stamp in ("debs-demo", "debs-test"):
        (tmp_path / ".stamps" / stamp).touch()
    os.utime(tmp_path / "pyproject.toml", (time.time() - 60, time.time() - 60))
    demo = _plan(tmp_path, "demo", venv)
    installs = [x for x in demo.splitlines() if "pip install" in x and "--upgrade pip" not in x]
    assert len(installs) == 1 and "-e ." in installs[0] and "[dev]" not in installs[0], demo
    echoes = [x for x in demo.splitlines() if x.lstrip("@ ").startswith("echo")]
    assert any("runtime packages" in x for x in echoes), demo  # says what it is doing before the wait
    test = _plan(tmp_path, "setup-test", venv)
    assert any("pip install" in x and "[dev]" in x for x in test.splitlines()), test
    # once the test environment is there, the demo installs nothing more
    venv.mkdir()
    (venv / ".installed-test").touch()
    (venv / ".installed-demo").touch()
    assert "pip install" not in _plan(tmp_path, "demo", venv)
    # a demo environment alone is not enough for the tests
    (venv / ".installed-test").unlink()
    assert "[dev]" in _plan(tmp_path, "setup-test", venv)
