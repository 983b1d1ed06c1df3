"""The ``lorong`` command: one sub-command group per room, and ``lorong demo`` (:mod:`lorong.demo`).

The composition root: it imports every room, and nothing imports it (``python -m lorong`` runs it,
as the ``lorong`` console script does). ``tests/test_layering.py`` keeps every other import pointing
downward.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import typer

from analytics import aqi_cli
from lorong.demo import demo

ROOMS: dict[str, tuple[str, str]] = {
    "stack": ("lorong.storage.cli", "Run the embedded broker and time-series database."),
    "storage": ("lorong.storage.retention_cli", "Retention of raw readings; hourly and daily means."),
    "export": ("lorong.storage.export_cli", "Readings to CSV or Parquet for officers and open-data portals."),
    "ingest": ("ingest.cli", "MQTT payloads into validated readings in InfluxDB."),
    "devices": ("devices.cli", "Register and manage devices."),
    "cities": ("devices.cities_cli", "Cities: their time zones, kecamatan, rounds and thresholds."),
    "analytics": ("analytics.cli", "Alerts, forecasts and collection routes."),
    "api": ("api.cli", "The HTTP API and crew page."),
    "sim": ("firmware_sim.cli", "Simulated devices."),
    "dashboards": ("dashboards.cli", "Grafana dashboards as code."),
}
"""Sub-command group name -> (module with a typer ``app``, one-line help)."""

root = typer.Typer(help="Lorong: waste-bin and air-quality telemetry for Makassar and cities like it.",
                   no_args_is_help=True)
root.command("aqi")(aqi_cli.aqi)
_added: set[str] = set()


def build_app(only: str | None = None) -> typer.Typer:
    """The ``lorong`` app with every room's command group, or with ``only`` that one (so a long-running
    ``lorong ingest run`` does not import pandas, OR-Tools or FastAPI, which keeps its memory small)."""
    for name, (module, help_text) in ROOMS.items():
        if (only is None or name == only) and name not in _added:
            root.add_typer(importlib.import_module(module).app, name=name, help=help_text)
            _added.add(name)
    return root


def __getattr__(name: str) -> typer.Typer:
    """``lorong.cli.app`` is the full app (built on first use)."""
    if name == "app":
        return build_app()
    raise AttributeError(name)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
"""The values ``--log-level`` takes (any case): the :mod:`logging` levels a user has a reason to pick."""


@root.callback()
def _root(log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR")) -> None:
    """Set up logging at ``log_level``; another name is a :class:`~lorong.core.errors.ConfigError` (exit 2)."""
    from lorong.core.errors import ConfigError

    if log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"--log-level {log_level.upper()!r}: use {', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]}")
    import os

    from lorong.core.settings import unknown_variables

    for name, close in unknown_variables(os.environ, OTHER_VARIABLES):  # a typo would be ignored without a word
        hint = f" (did you mean {close}?)" if close else ""
        print(f"warning: {name} is not a Lorong setting and is ignored{hint}", file=sys.stderr)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_level.upper() != "DEBUG":  # one line per HTTP request or migration step drowns what matters
        for noisy in ("httpx", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def flowing(doc: str | None) -> str:
    """A docstring as help text for typer's rich output: the lines of each paragraph joined into one, so
    that rich wraps them to the terminal (it keeps every newline it is given, and a docstring's breaks
    fall every 100 columns: at 80 each paragraph came out as long and short lines in turn)."""
    import inspect

    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


root.command("demo", help=flowing(demo.__doc__))(demo)


DEBUG_ENV = "LORONG_DEBUG"
"""Set to 1 (or pass ``--log-level DEBUG``) to get the full traceback instead of a one-line error."""

OTHER_VARIABLES = frozenset({DEBUG_ENV, "LORONG_GRAFANA_TOKEN", "LORONG_DASHBOARDS_DIR"})
"""``LORONG_`` variables that are not :class:`~lorong.core.settings.Settings` fields: read by this module,
by ``lorong dashboards push`` (the Grafana token, kept out of the settings object) and by Grafana's
provisioning files (``dashboards/provisioning``)."""


def _env_name(loc: tuple[int | str, ...]) -> str:
    """Environment variable of a settings field location: ``("mqtt", "port")`` -> ``LORONG_MQTT__PORT``."""
    return "LORONG_" + "__".join(str(part).upper() for part in loc)


def _not_json(field: str) -> list[str]:
    """``LORONG_<FIELD>[__<SUB>]`` variables of a list/dict/model setting whose value is not JSON."""
    import json
    import os
    from typing import get_args, get_origin

    from pydantic import BaseModel

    from lorong.core.settings import Settings

    def complex_(annotation: object) -> bool:
        kinds = [annotation, *get_args(annotation)]
        return any(get_origin(k) in (list, dict) or (isinstance(k, type) and issubclass(k, BaseModel))
                   for k in kinds)

    info = Settings.model_fields.get(field)
    if info is None:
        return []
    wanted = {_env_name((field,)): info.annotation}
    if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
        wanted.update({_env_name((field, sub)): f.annotation for sub, f in info.annotation.model_fields.items()})
    bad = []
    for name, annotation in wanted.items():
        value = os.environ.get(name)
        if value is None or not complex_(annotation):
            continue
        try:
            json.loads(value)
        except ValueError:
            bad.append(name)
    return bad


def error_line(exc: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit status for an error the user can fix, or ``None``.

    Exit status 2: settings that do not validate (pydantic ``ValidationError``, pydantic-settings
    ``SettingsError``) and other :class:`lorong.core.errors.ConfigError`; 1: services failing at run time
    (InfluxDB or the registry database unreachable, another ingester holding the spool) and every
    other :class:`lorong.core.errors.LorongError`.
    """
    import re

    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from lorong.core.errors import ConfigError, LorongError, StoreUnavailable

    if isinstance(exc, ValidationError):
        settings_model = exc.title.endswith("Settings")
        parts = []
        for err in exc.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            if settings_model and msg.startswith("LORONG_"):
                parts.append(msg)  # a rule across fields names its variables itself
                continue
            where = _env_name(err["loc"]) if settings_model else ".".join(map(str, err["loc"]))
            shown = err.get("input")
            secret = any("password" in str(part) for part in err["loc"])
            got = f" (got {shown!r})" if (isinstance(shown, str | int | float) and not secret
                                           and repr(shown) not in msg) else ""
            parts.append(f"{where}: {msg}{got}")
        return "invalid settings: " + "; ".join(parts), 2
    if isinstance(exc, SettingsError):
        field = re.search(r'field "([^"]+)"', str(exc))
        names = _not_json(field.group(1)) if field else []
        if names or isinstance(exc.__cause__, ValueError):
            where = ", ".join(names) or (_env_name((field.group(1),)) + "__*" if field else "a LORONG_ variable")
            return f"invalid settings: {where}: the value must be JSON (e.g. [\"a\", \"b\"] or {{\"k\": 1}})", 2
        return f"invalid settings: {exc}", 2
    if isinstance(exc, StoreUnavailable):
        return f"InfluxDB unavailable: {exc} (is it running? check LORONG_INFLUX__URL)", 1
    if type(exc).__name__ == "SpoolBusy":  # lorong.storage.spool, not imported here: it pulls in sqlite and the spool
        path = Path(exc.path)  # type: ignore[attr-defined]
        return f"another ingester with client id {path.stem} is running (spool {path} is locked)", 1
    if isinstance(exc, ConfigError):
        return str(exc), 2
    if isinstance(exc, LorongError):
        return str(exc), 1
    if type(exc).__name__ == "OperationalError" and type(exc).__module__.startswith("sqlalchemy"):
        # sqlalchemy.exc.OperationalError: the registry database cannot be reached or opened
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
        return f"database unavailable: {first} (is it running? check LORONG_DATABASE_URL)", 1
    return None


def _debug(argv: list[str]) -> bool:
    """True when the user asked for tracebacks (``--log-level DEBUG`` or ``LORONG_DEBUG=1``)."""
    import os

    if os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--log-level=") else (
            argv[i + 1] if arg == "--log-level" and i + 1 < len(argv) else None)
        if value is not None and value.upper() == "DEBUG":
            return True
    return False


def main() -> None:
    """Console-script entry point: loads only the room named on the command line, if any.

    Errors the user can fix (bad settings, InfluxDB down, a second ingester with the same client id)
    print one ``error: ...`` line on stderr and exit 2 (settings) or 1 (services), see
    :func:`error_line`; so does a usage error (an unknown option or command, a bad option value:
    the message and where the help is, exit 2). ``--log-level DEBUG`` or ``LORONG_DEBUG=1`` shows
    the traceback instead.
    """
    room = next((a for a in sys.argv[1:] if a in ROOMS), None)
    try:
        code = build_app(room)(standalone_mode=False)
    except typer.Abort:  # Ctrl-C or end of input at a prompt
        print("Aborted!", file=sys.stderr)
        sys.exit(1)
    except typer.TyperException as exc:  # a bad option or command: one line, as every other fault
        ctx = getattr(exc, "ctx", None)
        where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        print(f"error: {exc.format_message()}{where}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    except Exception as exc:
        line = error_line(exc)
        if line is None or _debug(sys.argv[1:]):
            raise
        print(f"error: {line[0]}", file=sys.stderr)
        sys.exit(line[1])
    if isinstance(code, int):  # typer.Exit(n) of a command (standalone_mode=False returns it)
        sys.exit(code)


if __name__ == "__main__":
    main()
