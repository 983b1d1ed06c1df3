"""``lorong dashboards``: write the dashboards' JSON, or upload them to a Grafana."""

from __future__ import annotations

from pathlib import Path

import typer

from dashboards import build as builder
from dashboards.push import PushError, push_all

app = typer.Typer(help="Grafana dashboards as code: build the JSON, push it to Grafana.", no_args_is_help=True)


@app.command("build")
def build_cmd(
    out: Path = typer.Option(builder.OUT_DIR, help="folder for the dashboards' JSON (one <uid>.json each)"),
    provisioning: Path = typer.Option(builder.PROVISIONING_DIR, help="folder for the provisioning YAML"),
) -> None:
    """Write every dashboard as stable, sorted JSON, and the Grafana provisioning files."""
    for path in builder.write(out, provisioning):
        print(path)


@app.command("push")
def push_cmd(
    url: str = typer.Option(..., help="Grafana base URL, e.g. http://127.0.0.1:3000"),
    token: str = typer.Option(..., envvar="LORONG_GRAFANA_TOKEN",
                              help="service-account token (Editor); or set LORONG_GRAFANA_TOKEN"),
    folder: str | None = typer.Option(None, help="folder title, created if missing (default: General)"),
    timeout: float = typer.Option(10.0, min=0.1, help="per-request timeout, seconds"),
) -> None:
    """Create or update every dashboard in Grafana, keyed by uid (unchanged ones are left alone)."""
    try:
        results = push_all(url, token, builder.build_all(), folder, timeout)
    except PushError as exc:
        typer.echo(f"push failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    for r in results:
        print(f"{r.action:11} {r.uid:14} v{r.version:<4} {r.url}  {r.title}")
