"""``lorong export readings``: readings to CSV or Parquet (:mod:`lorong.storage.export`)."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import typer

from lorong.core.errors import StoreRejected, StoreUnavailable
from lorong.core.settings import Settings
from lorong.storage import export
from lorong.storage.files import missing_folder
from lorong.storage.kecamatan import UnknownKecamatan, known_kecamatan, match_kecamatan
from lorong.storage.runtime import open_influx, open_sessions

app = typer.Typer(help="Readings for officers and open-data portals.", no_args_is_help=True)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@app.command("readings")
def readings_cmd(
    start: datetime = typer.Option(..., "--from", help="first time (ISO 8601; UTC without an offset)"),
    end: datetime = typer.Option(..., "--to", help="end of the range, not included"),
    out: Path = typer.Option(..., "--out", help="file to write", dir_okay=False),
    fmt: str = typer.Option("csv", "--format", help="csv or parquet"),
    resolution: str = typer.Option("raw", help="raw readings (the last raw_days), hourly or daily means"),
    city: str | None = typer.Option(None, help="only this city (a city tag); ignored, with a note, "
                                               "while readings carry no city tag: one city per deployment"),
    kecamatan: str | None = typer.Option(None, help="only devices in this kecamatan"),
) -> None:
    """Write one row per reading (time, device_id, kecamatan, kind, metric, value, unit) to OUT.

    Refused with one ``error:`` line on stderr and exit 2, before anything is queried or written: a
    range longer than 400 days (:func:`lorong.storage.export.check_span`) and a ``--kecamatan`` no
    registered device is in (:func:`lorong.storage.kecamatan.match_kecamatan`, which names the known
    ones), as the API's ``/export/readings`` refuses them with a 422.
    """
    if fmt not in ("csv", "parquet"):
        print(f"error: --format {fmt!r}: use csv or parquet")
        raise typer.Exit(1)
    settings = Settings()
    try:
        export.check_span(_aware(start), _aware(end))
    except ValueError as exc:
        print(f"error: --from/--to: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    try:
        sel = export.Selection(_aware(start), _aware(end), resolution, kecamatan, city)  # type: ignore[arg-type]
    except ValueError as exc:
        print(f"error: {exc}")
        raise typer.Exit(1) from None
    if kecamatan is not None:  # a name no device has is a mistake, not an empty file
        with open_sessions(settings)() as s:
            try:
                sel = replace(sel, kecamatan=match_kecamatan(kecamatan, known_kecamatan(s)))
            except UnknownKecamatan as exc:
                print(f"error: --kecamatan: {exc}", file=sys.stderr)
                raise typer.Exit(2) from None
    if (why := missing_folder(out)) is not None:
        print(f"error: {why}", file=sys.stderr)
        raise typer.Exit(1)
    t0 = time.monotonic()
    try:
        with open_influx(settings) as influx:
            if city is not None and not export.city_filter_applies(influx, sel):
                print(f"note: readings carry no city tag yet (one city per deployment): --city {city} exports all")
            with open(out, "wb") as fh:
                size = export.write(export.rows(influx, sel), fmt, fh)  # type: ignore[arg-type]
    except (StoreUnavailable, StoreRejected) as exc:
        print(f"error: {exc}")
        raise typer.Exit(1) from None
    except OSError as exc:  # a directory named like the file, no permission, a full disk
        print(f"error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(f"wrote {out} ({size:,} bytes, {fmt}) in {time.monotonic() - t0:.1f} s")
