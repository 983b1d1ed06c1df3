"""``lorong storage``: retention policies, hourly and daily means, backfill (:mod:`lorong.storage.retention`)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import typer

from lorong.core.errors import ConfigError, StoreRejected
from lorong.core.settings import Settings
from lorong.storage import retention as ret
from lorong.storage.runtime import day_zones, open_influx

app = typer.Typer(help="Retention of the time-series data: raw readings, hourly and daily means.",
                  no_args_is_help=True)
retention_app = typer.Typer(help="Retention policies and continuous queries.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


def _kept(days: int) -> str:
    return f"{days} d" if days else "forever"


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@retention_app.command("apply")
def apply_cmd() -> None:
    """Create or migrate the policies raw/hourly/daily and the continuous queries (idempotent;
    `lorong stack up` runs it too). Daily means follow each registered city's time zone: run it again
    after `lorong cities add` of a city in a new zone when InfluxDB was not running."""
    settings = Settings()
    try:
        zones = day_zones(settings)
        with open_influx(settings) as influx:
            done = ret.apply(influx, settings.influx, zones)
    except (ConfigError, StoreRejected) as exc:  # InfluxDB down: the CLI's one line, with its hint
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    for line in done:
        print(line)
    cfg = settings.influx
    print(f"{'changed' if done else 'already in place'}: raw readings {_kept(cfg.raw_days)}, hourly means "
          f"{_kept(cfg.hourly_days)}, daily means {_kept(cfg.daily_days)}")


@retention_app.command("backfill")
def backfill_cmd(
    start: datetime = typer.Option(..., "--from", help="first time to average (ISO 8601; UTC without an offset)"),
    end: datetime | None = typer.Option(None, "--to", help="end of the range (default now)"),
) -> None:
    """Compute the hourly and daily means of readings already stored (the continuous queries only
    average new data); each city's days are local days of its own time zone. ``--to`` not after
    ``--from`` is a usage error: one ``error:`` line on stderr, exit 2, before InfluxDB is asked."""
    first, last = _aware(start), _aware(end or datetime.now(UTC))
    if first >= last:
        print(f"error: --from/--to: backfill start {first.isoformat()} is not before end {last.isoformat()}",
              file=sys.stderr)
        raise typer.Exit(2)
    settings = Settings()
    try:
        zones = day_zones(settings)
        with open_influx(settings) as influx:
            written = ret.backfill(influx, zones, first, last)
    except (ConfigError, ValueError, StoreRejected) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(f"means written: {written['hourly']} hourly, {written['daily']} daily")


@retention_app.command("show")
def show_cmd() -> None:
    """List the database's retention policies and Lorong's continuous queries."""
    settings = Settings()
    try:
        with open_influx(settings) as influx:
            pols, cqs = ret.existing_policies(influx), ret.existing_cqs(influx)
    except StoreRejected as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    for p in pols.values():
        print(f"policy {p.name:8s} {_kept(p.days)}, shards {p.shard_days} d{' (default)' if p.default else ''}")
    for name in cqs:
        print(f"continuous query {name}")
