"""``lorong aqi``: print an air-quality index and category for one concentration."""

from __future__ import annotations

import typer

from analytics.aqi import Standard, sub_index

_TITLES = {
    Standard.ISPU: "ISPU (Permen LHK P.14/2020)",
    Standard.US: "US AQI (EPA, 2024 breakpoints)",
}


def aqi(
    standard: str = typer.Option("ispu", help="ispu (Permen LHK P.14/2020) or us (US EPA 2024)"),
    pollutant: str = typer.Option("pm25", help="pm25, pm10, so2, co, o3, no2, hc"),
    value: float = typer.Option(..., help="concentration in ug/m3"),
) -> None:
    """Print the index, category and band for one pollutant concentration.

    Exit code 2 with a message on stderr for an unknown standard or pollutant or a bad value.
    """
    try:
        s = sub_index(standard, pollutant, value)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    band = s.band
    used = f" (truncated to {s.used_ugm3:g})" if s.used_ugm3 != s.concentration_ugm3 else ""
    typer.echo(f"standard   {_TITLES[s.standard]}, {s.averaging_h} h average")
    typer.echo(f"pollutant  {s.pollutant} = {s.concentration_ugm3:g} ug/m3{used}")
    typer.echo(f"index      {s.index}" + (" (beyond the scale, extrapolated)" if s.beyond_scale else ""))
    typer.echo(f"category   {s.category.name_id} / {s.category.name_en}")
    if s.beyond_scale:
        typer.echo(f"band       above {band.index_high} (> {band.conc_high_ugm3:g} ug/m3)")
    elif s.standard is Standard.ISPU and band.index_low > 0:  # ISPU lower limits are exclusive
        typer.echo(f"band       {band.index_low}-{band.index_high} "
                   f"({band.conc_low_ugm3:g} < c <= {band.conc_high_ugm3:g} ug/m3)")
    else:
        typer.echo(f"band       {band.index_low}-{band.index_high} "
                   f"({band.conc_low_ugm3:g}-{band.conc_high_ugm3:g} ug/m3)")
