"""``lorong dashboards``: write the dashboards' JSON, or upload them to a Grafana.

Both commands build the dashboards for the retention in the settings (``LORONG_INFLUX__RAW_DAYS``,
``LORONG_INFLUX__HOURLY_DAYS``, ``LORONG_INFLUX__DAILY_DAYS``, as ``lorong storage retention apply``
reads them), so that averaging panels read the hourly means where raw readings are gone
(:func:`dashboards.panels.mean_targets`), and for the zones of the registry's cities: "Days in" offers
Indonesia's three zones, ``analytics.timezone`` (selected) and every city's zone
(:func:`dashboards.panels.day_variable`), so a city added in another zone needs a new build (or push).
``dashboards/out`` in the repository holds the build for the default retention and Indonesia's zones.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from dashboards import build as builder
from dashboards.panels import DaysIn, day_options
from dashboards.push import PushError, push_all
from lorong.core.errors import ConfigError
from lorong.core.settings import InfluxSettings, Settings
from lorong.storage.runtime import day_zones

app = typer.Typer(help="Grafana dashboards as code: build the JSON, push it to Grafana.", no_args_is_help=True)


@app.command("build")
def build_cmd(
    out: Path = typer.Option(builder.OUT_DIR, help="folder for the dashboards' JSON (one <uid>.json each)"),
    provisioning: Path = typer.Option(builder.PROVISIONING_DIR, help="folder for the provisioning YAML"),
) -> None:
    """Write every dashboard as stable, sorted JSON, and the Grafana provisioning files.

    The dashboards are built for the retention of LORONG_INFLUX__RAW_DAYS / HOURLY_DAYS / DAILY_DAYS,
    and "Days in" offers the zones of the registry's cities besides Indonesia's three.
    """
    settings = Settings()
    keep, days = settings.influx, days_in(settings)
    typer.echo(f"retention: {retention_text(keep)}", err=True)
    typer.echo(f"days in: {days_text(days)}", err=True)
    for path in builder.write(out, provisioning, keep, days):
        print(path)


def days_in(settings: Settings) -> DaysIn:
    """The zones "Days in" offers: ``analytics.timezone`` (selected) and every registered city's zone.

    Raises:
        ConfigError: the registry cannot be read, or a zone is not an IANA zone (one line naming it).
    """
    zones = day_zones(settings)
    days = DaysIn.of(zones.default, zones.cities.values())
    try:
        day_options(days)
    except ValueError as exc:
        raise ConfigError(f"Days in: {exc}: fix analytics.timezone or the city's zone (lorong cities)") from None
    return days


def days_text(days: DaysIn) -> str:
    """``WITA (UTC+8) (selected), WIB (UTC+7), WIT (UTC+9), Europe/London``: what "Days in" offers."""
    return ", ".join(f"{text} (selected)" if zone == days.default else text
                     for text, zone in day_options(days).items())


def retention_text(keep: InfluxSettings) -> str:
    """``raw 90 d, hourly means 1830 d, daily means forever``: the retention a build is for."""
    def days(n: int) -> str:
        return f"{n} d" if n else "forever"

    return f"raw {days(keep.raw_days)}, hourly means {days(keep.hourly_days)}, daily means {days(keep.daily_days)}"


TOKEN_ENV = "LORONG_GRAFANA_TOKEN"
"""Environment variable holding the Grafana service-account token (never a command-line option:
``ps`` shows every process's arguments to every user of the machine)."""


def read_token(token_file: Path | None) -> str:
    """The Grafana token from ``token_file`` (first line) or else :data:`TOKEN_ENV`.

    Raises:
        typer.Exit: (1) neither gives a token, or the file cannot be read; one ``error:`` line says which.
    """
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            typer.echo(f"error: cannot read --token-file {token_file}: {exc.strerror}", err=True)
            raise typer.Exit(1) from None
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        typer.echo(f"error: no Grafana token: set {TOKEN_ENV} or pass --token-file (a file holding only the "
                   "token, mode 0600)", err=True)
        raise typer.Exit(1)
    return token


@app.command("push")
def push_cmd(
    url: str = typer.Option(..., help="Grafana base URL, e.g. http://127.0.0.1:3000"),
    token_file: Path | None = typer.Option(None, dir_okay=False, help="file holding the service-account token "
                                           f"(Editor); default: the {TOKEN_ENV} environment variable"),
    folder: str | None = typer.Option(None, help="folder title, created if missing (default: General)"),
    datasource_uid: str | None = typer.Option(None, help="uid of an existing InfluxDB datasource in that Grafana "
                                              "to use instead of the provisioned 'lorong-influx'"),
    timeout: float = typer.Option(10.0, min=0.1, help="per-request timeout, seconds"),
) -> None:
    """Create or update every dashboard in Grafana, keyed by uid (unchanged ones are left alone).

    The token is read from LORONG_GRAFANA_TOKEN or --token-file, never from the command line. The
    datasource the panels query must exist in that Grafana (checked first; nothing is pushed otherwise).
    The dashboards are built for the retention of LORONG_INFLUX__RAW_DAYS / HOURLY_DAYS / DAILY_DAYS,
    and "Days in" offers the zones of the registry's cities besides Indonesia's three.
    """
    token = read_token(token_file)
    settings = Settings()
    keep, days = settings.influx, days_in(settings)
    try:
        results = push_all(url, token, builder.build_all(keep, days), folder, timeout, datasource_uid)
    except PushError as exc:
        typer.echo(f"push failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    for r in results:
        print(f"{r.action:11} {r.uid:14} v{r.version:<4} {r.url}  {r.title}")
