"""The ``lorong`` command: one sub-command group per room, and ``lorong demo``."""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path

import typer

from analytics import aqi_cli

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


@root.callback()
def _root(log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR")) -> None:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_level.upper() != "DEBUG":  # one line per HTTP request or migration step drowns what matters
        for noisy in ("httpx", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


@root.command("demo")
def demo(
    bins: int | None = typer.Option(None, min=1, max=5000,
                                    help="bins of each city (its first N; default 40, 20 each with --cities)"),
    air: int | None = typer.Option(None, min=0, max=500,
                                   help="air stations of each city (default 5, 3 each with --cities)"),
    city: Path | None = typer.Option(None, "--city", dir_okay=False,
                                     help="city file, YAML or JSON (default firmware_sim/cities/makassar.yaml)"),
    cities: str | None = typer.Option(None, "--cities",
                                      help="several registry cities at once, e.g. makassar,jakarta,banyuwangi"),
    history_days: float = typer.Option(2.0, min=0.0, max=14.0,
                                       help="days of the city's past loaded first, at their simulated times"),
    seed: int | None = typer.Option(None, help="random seed (default the city file's); same seed, same city"),
    duration: float | None = typer.Option(None, help="stop after this many seconds (default: Ctrl-C)"),
) -> None:
    """Start the embedded stack, the ingester, the analytics scheduler, a simulated city and the API;
    stop everything cleanly on Ctrl-C.

    With Telegram on (``LORONG_NOTIFY__TELEGRAM_TOKEN``), the linked chats get the alerts and their
    buttons act, as under ``lorong analytics schedule``.

    The city (:class:`firmware_sim.live.LiveCity`) first loads ``--history-days`` of its past through
    the ingest pipeline, then runs in real time: bins fill bag by bag, the trucks' rounds empty them,
    and a bin a person reports emptied (crew page, API, Telegram) is emptied in the city too
    (:class:`firmware_sim.live_store.CrewWatch`).

    With ``--cities`` each city is registered (:func:`firmware_sim.demo_cities.register_cities`: its zone,
    kecamatan, map centre and rounds) and runs its own fleet; the analytics run per city, and each
    city gets its own admin token scoped to it (kept in ``var/demo-token-<city>``).
    """
    from contextlib import ExitStack

    import uvicorn

    from analytics.escalation import Escalation
    from analytics.notify import build_notifiers, build_outbox, start_telegram_updates
    from analytics.scheduler import Scheduler
    from api.auth import kept_token
    from api.main import create_app
    from api.server import header_timeout_protocol
    from devices.cities import list_cities
    from firmware_sim import cli as sim_cli
    from firmware_sim.city import load_city, packaged_city
    from firmware_sim.demo_cities import MULTI_AIR, MULTI_BINS, DemoCity, LiveCities, parse_cities, register_cities
    from firmware_sim.live import LiveCity
    from firmware_sim.live_store import CrewWatch, backfill
    from firmware_sim.publisher import Publisher
    from ingest import cli as ingest_cli
    from ingest.service import spool_path_for
    from lorong.core.errors import ConfigError, StoreError, UnknownCity
    from lorong.core.model import utcnow
    from lorong.core.settings import Settings
    from lorong.storage import cli as stack_cli
    from lorong.storage.runtime import create_database, database_location, open_influx, open_sessions
    from lorong.storage.spool import SpoolBusy, ensure_free
    from lorong.storage.stack import port_in_use

    try:
        if cities is not None and city is not None:
            raise ValueError("give --city FILE or --cities A,B,C, not both")
        plans = (parse_cities(cities) if cities is not None else
                 [DemoCity("", "", load_city(city or packaged_city("makassar")))])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    several = cities is not None
    bins = bins if bins is not None else (MULTI_BINS if several else 40)
    air = air if air is not None else (MULTI_AIR if several else 5)
    settings = Settings()
    settings.analytics.interval_s = min(settings.analytics.interval_s, 10.0)
    url = f"http://{settings.api.host}:{settings.api.port}"
    if port_in_use(settings.api.port, settings.api.host):
        print(f"error: {url} is already in use (another `lorong demo` or `lorong api`?); "
              "stop it or set LORONG_API__PORT")
        raise typer.Exit(1)
    spool = settings.ingest.spool_dir / spool_path_for(settings)
    try:  # before the stack starts and the history loads (minutes): the ingester would fail on it last
        ensure_free(spool)
    except SpoolBusy:
        print(f"error: another `lorong demo` (or `lorong ingest`) runs here: its spool {spool} is locked; "
              "stop it first (Ctrl-C in its terminal), or give this one its own LORONG_MQTT__CLIENT_ID")
        raise typer.Exit(1) from None
    stop = threading.Event()
    with ExitStack() as cleanup:  # everything started is stopped in reverse order, even on a failed start
        cleanup.callback(print, "stopped.")
        try:
            # own sessions for the services, so that Ctrl-C in the terminal reaches only this process, which
            # then stops the fleet, the ingester and the API before the broker and InfluxDB
            services = stack_cli.up(settings, detach=True)
            cleanup.callback(stack_cli.release, settings, services)  # only what this demo started
            created = create_database(settings)
            print(f"created a new database: {created}" if created else
                  f"database: {database_location(settings.database_url)}")
            sessions = open_sessions(settings)
            influx = open_influx(settings)
            influx.create_database(settings.influx.retention)
            if several:
                with sessions.begin() as s:
                    added = register_cities(s, plans)
                print(f"cities: {', '.join(p.id for p in plans)}"
                      + (f" ({', '.join(added)} added to the registry)" if added else ""))
            else:  # one city: new devices join the registry's only city, or the deployment's among several
                with sessions() as s:
                    plans[0] = DemoCity(settings.city.id if len(list_cities(s)) > 1 else "", "", plans[0].config)
            now = utcnow()
            lives = []
            for plan in plans:
                live = LiveCity(plan.config, now - timedelta(days=history_days), bins=bins, stations=air, seed=seed)
                if history_days > 0:
                    whose = f"{plan.name}'s" if plan.name else "the city's"
                    print(f"loading {whose} past {history_days:g} days through the ingest pipeline...", flush=True)
                last = plan is plans[-1]  # the means are computed once, over every city's points of the span
                loaded = backfill(live, now, sessions, influx, city_id=plan.id or None,
                                  means_tz=settings.analytics.timezone if last else None)
                print(f"{plan.name or plan.config.name}: {bins} bins, {air} air stations, seed {live.seed}; the past "
                      f"{history_days:g} days loaded ({loaded.messages} uplinks, {loaded.points} points, "
                      f"{loaded.seconds:.0f} s)" + (", with their hourly and daily means" if last else ""))
                lives.append(live)
            fleet = LiveCities(lives, CrewWatch(sessions).poll)  # a bin a person emptied is emptied in its city
            ingester = ingest_cli.build(settings)
        except (ConfigError, TimeoutError, SpoolBusy, StoreError, UnknownCity) as exc:
            print(f"error: {exc}")
            raise typer.Exit(1) from None
        ingester.start()
        cleanup.callback(ingester.stop)
        notifiers, close_notifiers = build_notifiers(settings, influx)
        cleanup.callback(close_notifiers)
        outbox = build_outbox(settings, sessions)  # alert changes on MQTT lorong/alerts/#
        cleanup.callback(outbox.close)
        scheduler = Scheduler(sessions, influx, settings.analytics, notifiers, outbox=outbox,
                              escalation=Escalation.from_settings(settings.notify))
        scheduler.start()
        cleanup.callback(scheduler.stop)
        telegram_stop = threading.Event()  # the linked chats' buttons and /chatid, as `analytics schedule` reads them
        cleanup.callback(start_telegram_updates(settings, sessions, outbox, telegram_stop, influx))
        cleanup.callback(telegram_stop.set)
        pub = Publisher(settings.mqtt.host, settings.mqtt.port)
        cleanup.callback(pub.close)
        # real time: each reading at its own time, never ahead of the clock (LiveCity.step)
        sim_thread = threading.Thread(target=sim_cli.run_fleet, args=(fleet, pub, 1.0, stop), daemon=True)
        sim_thread.start()
        cleanup.callback(sim_thread.join, 10)
        cleanup.callback(stop.set)
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.api.host,
                                               port=settings.api.port, log_level="warning",
                                               http=header_timeout_protocol(settings.api.header_timeout_s)))
        with sessions.begin() as s:  # the same token across restarts, so a phone stays logged in
            token, kept = kept_token(s, settings.var_dir / "demo-token", "demo", "admin")
        print(f"\nLorong demo running: API {url}  (docs {url}/docs, crew page {url}/)")
        made = f"kept in {settings.var_dir / 'demo-token'}" if kept else "made for this demo"
        print(f"API token (admin, {made}; paste it into the crew page once): {token}\n"
              f"  curl -H 'Authorization: Bearer {token}' {url}/alerts")
        for plan in plans if several else []:  # a token per city: it sees only that city (README, Cities)
            with sessions.begin() as s:
                city_token, _ = kept_token(s, settings.var_dir / f"demo-token-{plan.id}", f"demo-{plan.id}", "admin",
                                           city=plan.id)
            print(f"  {plan.id} ({plan.name}, {plan.config.timezone}): admin of {plan.id} only, token {city_token}\n"
                  f"    curl -H 'Authorization: Bearer {city_token}' {url}/alerts  (also /devices, /routes)")
        print("Press Ctrl-C to stop.\n", flush=True)
        if duration is not None:
            timer = threading.Timer(duration, lambda: setattr(server, "should_exit", True))
            timer.daemon = True
            timer.start()
        signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
        server.run()


DEBUG_ENV = "LORONG_DEBUG"
"""Set to 1 (or pass ``--log-level DEBUG``) to get the full traceback instead of a one-line error."""


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
    :func:`error_line`; ``--log-level DEBUG`` or ``LORONG_DEBUG=1`` shows the traceback instead.
    """
    room = next((a for a in sys.argv[1:] if a in ROOMS), None)
    try:
        build_app(room)()
    except Exception as exc:
        line = error_line(exc)
        if line is None or _debug(sys.argv[1:]):
            raise
        print(f"error: {line[0]}", file=sys.stderr)
        sys.exit(line[1])


if __name__ == "__main__":
    main()
