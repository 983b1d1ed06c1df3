"""``lorong aqi``: print an air-quality index and category for one concentration."""

from __future__ import annotations

import typer


def aqi(
    standard: str = typer.Option("ispu", help="ispu (Permen LHK P.14/2020) or us (US EPA 2024)"),
    pollutant: str = typer.Option("pm25", help="pm25, pm10, so2, co, o3, no2, hc"),
    value: float = typer.Option(..., help="concentration in ug/m3"),
) -> None:
    """Print the index, category and band for one pollutant concentration."""
    raise typer.Exit(code=2)
