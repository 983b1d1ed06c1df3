"""Every import runs downward (issue #15).

Layers, lowest first; a package may import only what is listed for it (and itself)::

    lorong.core      types, metrics, units, alert and codec catalogues, errors, settings; no I/O
    lorong.storage   InfluxDB, the SQL database, the spool, the embedded stack      -> core
    dashboards       Grafana dashboards as code (names from the schema)             -> core, storage
    devices          the device registry and its tools                              -> core, storage
    ingest           MQTT payloads into readings                                    -> core, storage, devices
    analytics        alerts, forecasts, routes, notifications                       -> core, storage, devices
    api              the HTTP API and crew page                                     -> core, storage, devices, analytics
    firmware_sim     simulated devices and cities, and the scenario runs that drive
                     the ingest pipeline and the analytics job on them               -> all but api and dashboards
    lorong.cli, lorong.demo, lorong.__main__
                     the composition root: the only modules that may import every room

Two more rules:

- A room's command-line modules (``cli.py``, ``*_cli.py``) are imported only by the composition root
  and by the same room's command-line modules: nothing else builds on a CLI.
- ``lorong.core`` does no I/O: besides itself it imports only the standard library minus the
  modules that reach the network, processes, threads or files (:data:`CORE_DENIED`), and pydantic.

Every ``import`` and ``from ... import`` counts, also inside functions and under ``TYPE_CHECKING``
(a type-only import is still a dependency), and so does ``importlib.import_module("...")`` with a
literal name. A failure names the file, the line and the import that runs upward; the fix is to move
the shared code down (as the codec id catalogue moved to :mod:`lorong.core.codecs`) or to pass a
function in, not to widen :data:`ALLOWED` without a reason written beside it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TOP = "lorong"
"""The composition root's layer: ``lorong``, ``lorong.cli``, ``lorong.demo``, ``lorong.__main__``."""

ALLOWED: dict[str, frozenset[str]] = {
    "lorong.core": frozenset(),
    "lorong.storage": frozenset({"lorong.core"}),
    # `lorong dashboards build` and `push` read the registry's city zones for "Days in" (dashboards/cli.py)
    "dashboards": frozenset({"lorong.core", "lorong.storage"}),
    "devices": frozenset({"lorong.core", "lorong.storage"}),
    "ingest": frozenset({"lorong.core", "lorong.storage", "devices"}),
    "analytics": frozenset({"lorong.core", "lorong.storage", "devices"}),
    "api": frozenset({"lorong.core", "lorong.storage", "devices", "analytics"}),
    # the simulator is also the test bench of the whole pipeline: firmware_sim/load.py replays a
    # scenario through ingest into storage, firmware_sim/planner.py and evaluate.py run and score the
    # analytics job on it; no room imports the simulator, only the composition root (lorong demo)
    "firmware_sim": frozenset({"lorong.core", "lorong.storage", "devices", "ingest", "analytics"}),
    TOP: frozenset({"lorong.core", "lorong.storage", "dashboards", "devices", "ingest", "analytics", "api",
                    "firmware_sim"}),
}
"""Layer -> the other layers its modules may import."""

CORE_DENIED = frozenset({
    "asyncio", "fcntl", "ftplib", "http", "io", "multiprocessing", "os", "select", "selectors", "shutil",
    "signal", "smtplib", "socket", "socketserver", "sqlite3", "ssl", "subprocess", "tempfile", "threading",
    "urllib",
})
"""Standard-library modules ``lorong.core`` may not import: network, processes, threads, files."""

CORE_THIRD_PARTY = frozenset({"pydantic", "pydantic_settings", "pydantic_core"})
"""The only packages outside the standard library ``lorong.core`` may import (its types and settings)."""


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name, or ``None`` for a module not of Lorong (stdlib, third party).

    ``lorong.core.settings`` -> ``lorong.core``; ``ingest.codecs.dragino_ldds`` -> ``ingest``;
    ``lorong.cli`` and ``lorong`` itself -> ``lorong`` (:data:`TOP`).
    """
    parts = module.split(".")
    if parts[0] == TOP:
        return f"{TOP}.{parts[1]}" if len(parts) > 1 and f"{TOP}.{parts[1]}" in ALLOWED else TOP
    return parts[0] if parts[0] in ALLOWED else None


def module_name(path: Path) -> str:
    """Dotted module name of a file under :data:`ROOT` (``ingest/codecs/__init__.py`` -> ``ingest.codecs``)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(module: str, source: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every import in ``source``: ``import a.b`` gives ``a.b``,
    ``from a.b import c`` gives ``a.b.c`` (``c`` may be a module or a name in ``a.b``; both lie in the
    layer of ``a``), relative imports are resolved against ``module``, and
    ``importlib.import_module("a.b")`` with a literal name gives ``a.b``."""
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base == "__future__":
                continue
            found += [(node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base) for alias in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
              and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def is_cli(module: str) -> bool:
    """A command-line module: ``cli`` or ``*_cli`` (``devices.cli``, ``analytics.aqi_cli``)."""
    last = module.rpartition(".")[2]
    return last == "cli" or last.endswith("_cli")


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """What in ``source`` (the code of ``module``) breaks the layering; ``"line N: why"`` each."""
    own = layer_of(module)
    assert own is not None, f"{module} is in no layer: add its package to ALLOWED"
    out = []
    for line, target in imports(module, source, is_package):
        theirs = layer_of(target)
        top_name = target.split(".")[0]
        if theirs is None:
            if own == "lorong.core" and (top_name in CORE_DENIED or (
                    top_name not in sys.stdlib_module_names and top_name not in CORE_THIRD_PARTY)):
                out.append(f"line {line}: lorong.core does no I/O but imports {target}")
            continue
        if theirs != own and theirs not in ALLOWED[own]:
            may = ", ".join(sorted(ALLOWED[own])) or "nothing of Lorong"
            out.append(f"line {line}: {own} imports {target} (upward; {own} may import {may})")
            continue
        # a CLI module or a name in one: `pkg.cli`, `from pkg import cli`, `from pkg.cli import fail`
        cli_target = any(is_cli(part) for part in target.split(".")[1:])
        if cli_target and own != TOP and not (theirs == own and is_cli(module)):
            out.append(f"line {line}: {module} imports the command-line module {target} (only the composition "
                       "root and its own room's CLI modules may)")
    return out


def product_files() -> list[Path]:
    """Every Python file of the layered packages."""
    files = sorted((ROOT / TOP).rglob("*.py"))
    for room in ALLOWED:
        if "." not in room and room != TOP:
            files += sorted((ROOT / room).rglob("*.py"))
    return files


def test_every_import_runs_downward() -> None:
    files = product_files()
    assert len(files) > 150, "the walk found too few modules: is ROOT right?"
    problems = []
    for path in files:
        for why in violations(module_name(path), path.read_text(), path.name == "__init__.py"):
            problems.append(f"{path.relative_to(ROOT)}:{why.removeprefix('line ')}")
    assert not problems, "imports that run upward:\n" + "\n".join(problems)


def test_every_package_of_the_checkout_has_a_layer() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == {p for p in ALLOWED if "." not in p}, "a new top-level package needs a row in ALLOWED"
    assert {p.parent.name for p in (ROOT / TOP).glob("*/__init__.py")} == {"core", "storage"}


def test_the_layers_form_no_cycle() -> None:
    order: list[str] = []
    remaining = dict(ALLOWED)
    while remaining:
        ready = [layer for layer, deps in remaining.items() if deps <= set(order)]
        assert ready, f"the allowed imports form a cycle among {sorted(remaining)}"
        order += ready
        for layer in ready:
            del remaining[layer]
    assert order[0] == "lorong.core" and order[-1] == TOP


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("lorong.core.model", "import json\nfrom api.main import create_app\n",
     ["line 2: lorong.core imports api.main.create_app (upward; lorong.core may import nothing of Lorong)"]),
    ("devices.registry", "def f():\n    from ingest.codecs import CODECS\n",
     ["line 2: devices imports ingest.codecs.CODECS (upward; devices may import lorong.core, lorong.storage)"]),
    ("lorong.storage.db", "if TYPE_CHECKING:\n    import devices.registry\n",
     ["line 2: lorong.storage imports devices.registry (upward; lorong.storage may import lorong.core)"]),
    ("ingest.pipeline", "import importlib\nm = importlib.import_module('analytics.jobs')\n",
     ["line 2: ingest imports analytics.jobs (upward; ingest may import devices, lorong.core, lorong.storage)"]),
    ("lorong.core.settings", "import socket\nimport httpx\nfrom pydantic import BaseModel\nimport re\n",
     ["line 1: lorong.core does no I/O but imports socket", "line 2: lorong.core does no I/O but imports httpx"]),
    ("analytics.jobs", "from lorong import cli\n",
     ["line 1: analytics imports lorong.cli (upward; analytics may import devices, lorong.core, lorong.storage)"]),
    ("api.main", "from devices import cli\nfrom devices.registry import get\nfrom analytics.aqi_cli import aqi\n",
     ["line 1: api.main imports the command-line module devices.cli (only the composition root and its own "
      "room's CLI modules may)",
      "line 3: api.main imports the command-line module analytics.aqi_cli.aqi (only the composition root and "
      "its own room's CLI modules may)"]),
    ("devices.registry", "from devices.cli import fail\n",
     ["line 1: devices.registry imports the command-line module devices.cli.fail (only the composition root "
      "and its own room's CLI modules may)"]),
    ("ingest.codecs", "from . import dragino_ldds\nfrom ..pipeline import x\nfrom ...api import y\n",
     ["line 3: ingest imports api.y (upward; ingest may import devices, lorong.core, lorong.storage)"]),
    ("devices.cities_cli", "from devices.cli import fail\n", []),
    ("lorong.demo", "from ingest import cli as ingest_cli\nfrom api.main import create_app\n", []),
])
def test_the_check_names_the_line_and_the_upward_import(module: str, source: str, expected: list[str]) -> None:
    assert violations(module, source, is_package=module == "ingest.codecs") == expected
