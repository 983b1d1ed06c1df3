"""``lorong export readings``: readings to CSV or Parquet (:mod:`lorong.storage.export`)."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import typer

from lorong.core.errors import StoreRejected
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
    """Write one row per reading (time, device_id, city, kecamatan, kind, metric, value, unit) to OUT.

    Refused with one ``error:`` line on stderr and exit 2 (a usage error), before anything is queried
    or written: a format or resolution not offered, an ``OUT`` named ``.csv`` or ``.parquet`` against
    ``--format``, ``--to`` not after ``--from``, a range longer than
    400 days (:func:`lorong.storage.export.check_span`), a ``--city`` not in the registry
    (:func:`lorong.storage.export.match_city`) and a ``--kecamatan`` no registered device (of ``--city``) is in
    (:func:`lorong.storage.kecamatan.match_kecamatan`); both name the known ones, as the API's
    ``/export/readings`` refuses them with a 422. A Parquet export allocates Arrow memory with the C
    library's ``malloc`` unless ``ARROW_DEFAULT_MEMORY_POOL`` says otherwise and loads no numpy
    (:func:`lorong.storage.export.prefer_system_allocator`, :func:`lorong.storage.export.import_pyarrow_without_numpy`).
    The file is written whole or not at all
    (:func:`lorong.storage.export.write_file`): an InfluxDB that does not answer (exit 1) leaves an
    existing OUT as it was.
    """
    def usage(message: str) -> typer.Exit:
        print(f"error: {message}", file=sys.stderr)
        return typer.Exit(2)

    if fmt not in ("csv", "parquet"):
        raise usage(f"--format {fmt!r}: use csv or parquet")
    named = out.suffix.lower().lstrip(".")
    if named in ("csv", "parquet") and named != fmt:
        raise usage(f"--out {out.name} is a .{named} name but --format is {fmt}: name the file .{fmt} or pass "
                    f"--format {named}")
    if resolution not in export.RESOLUTIONS:
        raise usage(f"--resolution {resolution!r}: use one of {', '.join(export.RESOLUTIONS)}")
    settings = Settings()
    try:
        export.check_span(_aware(start), _aware(end))
        sel = export.Selection(_aware(start), _aware(end), resolution, kecamatan, city)  # type: ignore[arg-type]
    except ValueError as exc:
        raise usage(f"--from/--to: {exc}") from None
    if kecamatan is not None or city is not None:  # a name nothing has is a mistake, not an empty file
        with open_sessions(settings)() as s:
            try:
                if city is not None:
                    sel = replace(sel, city=export.match_city(city, export.known_cities(s)))
            except export.UnknownCityFilter as exc:
                raise usage(f"--city: {exc}") from None
            try:
                if kecamatan is not None:
                    sel = replace(sel, kecamatan=match_kecamatan(kecamatan, known_kecamatan(s, sel.city), sel.city))
            except UnknownKecamatan as exc:
                raise usage(f"--kecamatan: {exc}") from None
    if (why := missing_folder(out)) is not None:
        print(f"error: {why}", file=sys.stderr)
        raise typer.Exit(1)
    if fmt == "parquet":  # this process exports and exits: Arrow with malloc and without numpy (~25 MB less)
        export.prefer_system_allocator()  # before pyarrow is imported
        export.import_pyarrow_without_numpy()
    t0 = time.monotonic()
    try:  # StoreUnavailable goes up to lorong.cli's one line ("InfluxDB unavailable: ... is it running?")
        with open_influx(settings) as influx:
            if sel.city is not None and not export.city_filter_applies(influx, sel):
                print(f"note: readings carry no city tag yet (one city per deployment): --city {sel.city} exports all")
            size = export.write_file(export.rows(influx, sel), fmt, out)  # type: ignore[arg-type]
    except StoreRejected as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    except OSError as exc:  # a directory named like the file, no permission, a full disk
        print(f"error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(f"wrote {out} ({size:,} bytes, {fmt}) in {time.monotonic() - t0:.1f} s")
