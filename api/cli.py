"""``lorong api``: serve the HTTP API."""

from __future__ import annotations

import typer
import uvicorn

from api.main import create_app
from core.settings import Settings
from storage.db import migrate

app = typer.Typer(help="The HTTP API and crew page.", invoke_without_command=True)


@app.callback()
def serve(ctx: typer.Context, host: str | None = typer.Option(None), port: int | None = typer.Option(None)) -> None:
    """Serve the API (OpenAPI docs at /docs) until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    settings = Settings()
    migrate(settings.database_url)
    uvicorn.run(create_app(settings), host=host or settings.api.host, port=port or settings.api.port,
                log_level="warning")
