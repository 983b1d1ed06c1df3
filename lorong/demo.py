"""``lorong demo``: the whole system on one machine, started and stopped as one.

The embedded broker and InfluxDB, the ingester, the analytics scheduler (with Telegram when it is
on), a simulated city and the API, built from settings and wired together here. With
:mod:`lorong.cli` it is the composition root, the only code allowed to import every room
(``tests/test_layering.py``).
"""

from __future__ import annotations

import signal
import sys
import threading
from datetime import timedelta

import typer


def _one_stop_server() -> type:
    """uvicorn's Server whose second stop signal waits for the first (uvicorn is imported when the
    demo runs, not when the CLI loads)."""
    import uvicorn

    class OneStop(uvicorn.Server):
        """A second Ctrl-C (or SIGTERM) while the demo is already stopping waits for the first: uvicorn
        forced the exit and, after it, raised every captured signal again, and two quick Ctrl-C printed
        about 40 lines of traceback (KeyboardInterrupt in its lifespan, CancelledError) before
        ``stopped.``. The stop takes a few seconds either way."""

        def handle_exit(self, sig: int, frame: object) -> None:
            if self.should_exit:
                return
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    return OneStop


def demo(
    bins: int | None = typer.Option(None, min=1, max=5000,
                                    help="bins of each city (default 40, 20 each with --cities, at most the city "
                                         "file's; a number you give is simulated even past the file's, placed "
                                         "by its site shares)"),
    air: int | None = typer.Option(None, min=0, max=500,
                                   help="air stations of each city (default 5, 3 each with --cities; at most "
                                        "the city file's)"),
    city: str | None = typer.Option(None, "--city",
                                    help="a packaged city (makassar, small, ...) or a city file, YAML or JSON "
                                         "(default makassar)"),
    cities: str | None = typer.Option(None, "--cities",
                                      help="several registry cities at once, e.g. makassar,jakarta,banyuwangi"),
    history_days: float = typer.Option(2.0, min=0.0, max=14.0,
                                       help="days of the city's past loaded first, at their simulated times"),
    seed: int | None = typer.Option(None, help="random seed (default the city file's); same seed, same city"),
    duration: float | None = typer.Option(None, min=0.0, help="stop after this many seconds (default: Ctrl-C)"),
) -> None:
    """Start the embedded stack, the ingester, the analytics scheduler, a simulated city and the API;
    stop everything cleanly on Ctrl-C.

    With Telegram on (LORONG_NOTIFY__TELEGRAM_TOKEN), the linked chats get the alerts and their
    buttons act, as under `lorong analytics schedule`.

    The city first loads --history-days of its past through the ingest pipeline, then runs in real
    time: bins fill bag by bag, the trucks' rounds empty them, and a bin a person reports emptied
    (crew page, API, Telegram) is emptied in the city too.

    The city file's city, or with --cities each city, is registered with its zone, kecamatan, map
    centre and rounds, and runs its own fleet; the analytics run per city, and with --cities each
    city gets its own admin token scoped to it (kept in var/demo-token-<city>).
    """
    from contextlib import ExitStack

    import uvicorn

    from analytics.escalation import Escalation
    from analytics.notify import build_notifiers, build_outbox, start_telegram_updates
    from analytics.scheduler import Scheduler
    from api.auth import kept_token
    from api.main import create_app
    from api.server import header_timeout_protocol
    from devices.cities import city_settings, get_city, resolve_city
    from firmware_sim import cli as sim_cli
    from firmware_sim.city import city_path, load_city
    from firmware_sim.demo_cities import (
        LiveCities,
        drop_unused_start_city,
        file_city,
        parse_cities,
        register_cities,
    )
    from firmware_sim.live import LiveCity
    from firmware_sim.live_store import CrewWatch, backfill
    from firmware_sim.publisher import Publisher
    from ingest import cli as ingest_cli
    from ingest.service import spool_path_for
    from lorong.core.errors import ConfigError, StoreError, UnknownCity
    from lorong.core.model import utcnow
    from lorong.core.settings import Settings
    from lorong.storage import cli as stack_cli
    from lorong.storage import retention
    from lorong.storage.runtime import create_database, database_location, day_zones, open_influx, open_sessions
    from lorong.storage.spool import SpoolBusy, ensure_free
    from lorong.storage.stack import port_in_use

    try:
        if cities is not None and city is not None:
            raise ValueError("give --city FILE or --cities A,B,C, not both")
        plans = (parse_cities(cities) if cities is not None else
                 [file_city(load_city(city_path(city or "makassar")))])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    several = cities is not None
    settings = Settings()
    settings.analytics.interval_s = min(settings.analytics.interval_s, 10.0)
    url = f"http://{settings.api.host}:{settings.api.port}"
    if port_in_use(settings.api.port, settings.api.host):
        print(f"error: {url} is already in use (another `lorong demo` or `lorong api`?); "
              "stop it or set LORONG_API__PORT", file=sys.stderr)
        raise typer.Exit(1)
    spool = settings.ingest.spool_dir / spool_path_for(settings)
    try:  # before the stack starts and the history loads (minutes): the ingester would fail on it last
        ensure_free(spool)
    except SpoolBusy:
        print(f"error: another `lorong demo` (or `lorong ingest`) runs here: its spool {spool} is locked; "
              "stop it first (Ctrl-C in its terminal), or give this one its own LORONG_MQTT__CLIENT_ID",
              file=sys.stderr)
        raise typer.Exit(1) from None
    stop = threading.Event()
    with ExitStack() as cleanup:  # everything started is stopped in reverse order, even on a failed start
        cleanup.callback(print, "stopped.")
        try:
            # own sessions for the services, so that Ctrl-C in the terminal reaches only this process, which
            # then stops the fleet, the ingester and the API before the broker and InfluxDB
            services = stack_cli.up(settings, detach=True)
            cleanup.callback(stack_cli.release, settings, services)  # only what this demo started
            if (left := stack_cli.kept(services)) is not None:
                print(left)
            created = create_database(settings)
            print(f"created a new database: {created}" if created else
                  f"database: {database_location(settings.database_url)}")
            sessions = open_sessions(settings)
            influx = open_influx(settings)
            influx.create_database(settings.influx.retention)
            with sessions.begin() as s:  # one city file too: its own city, in its zone with its rounds
                added = register_cities(s, plans)
                dropped = drop_unused_start_city(s, settings.city.id, plans)  # a new registry's empty city
            print(f"{'cities' if several else 'city'}: {', '.join(p.id for p in plans)}"
                  + (f" ({', '.join(added)} added to the registry)" if added else ""))
            if dropped:
                print(f"city {settings.city.id} (LORONG_CITY__ID) had nothing in it and is taken out of the registry: "
                      "the demo runs only the cities above")
            retention.sync_continuous_queries(influx, day_zones(settings))  # daily means in each city's zone
            now = utcnow()
            sizes = [plan.fleet(bins, air, several) for plan in plans]  # at most the city file's
            lives = [LiveCity(plan.config, now - timedelta(days=history_days), bins=n_bins, stations=n_air, seed=seed)
                     for plan, (n_bins, n_air) in zip(plans, sizes, strict=True)]
            run = {row["id"] for live in lives for row in live.registry_rows()}  # an earlier run's others leave
            for plan, live, (n_bins, n_air) in zip(plans, lives, sizes, strict=True):
                if history_days > 0:
                    whose = f"{plan.name}'s" if plan.name else "the city's"
                    print(f"loading {whose} past {history_days:g} days through the ingest pipeline...", flush=True)
                last = plan is plans[-1]  # the means are computed once, over every city's points of the span
                with sessions() as s:  # the city's pickup threshold (its analytics overrides)
                    min_drop = city_settings(settings.analytics,
                                             get_city(s, resolve_city(s, plan.id or None))).pickup_min_drop
                loaded = backfill(live, now, sessions, influx, city_id=plan.id or None,
                                  means_tz=day_zones(settings) if last else None, run=run,
                                  pickup_min_drop=min_drop)
                print(f"{plan.name or plan.config.name}: {n_bins} bin{'' if n_bins == 1 else 's'}, {n_air} air "
                      f"station{'' if n_air == 1 else 's'}, seed {live.seed}; the past "
                      f"{history_days:g} days loaded ({loaded.messages} uplinks, {loaded.points} points, "
                      f"{loaded.pickups} pickups, {loaded.seconds:.0f} s)"
                      + (", with their hourly and daily means" if last else ""))
            fleet = LiveCities(lives, CrewWatch(sessions).poll)  # a bin a person emptied is emptied in its city
            ingester = ingest_cli.build(settings)
        except (ConfigError, TimeoutError, SpoolBusy, StoreError, UnknownCity) as exc:
            print(f"error: {exc}", file=sys.stderr)
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
        server = _one_stop_server()(uvicorn.Config(create_app(settings), host=settings.api.host,
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
