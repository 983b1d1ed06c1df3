"""``lorong api``: serve the HTTP API; ``lorong api token create|list|revoke``: manage API tokens."""

from __future__ import annotations

import errno
import socket

import typer
import uvicorn
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from api.auth import Role, UnknownToken, create_token, list_tokens, resolve_area, revoke_token
from api.main import create_app
from api.server import header_timeout_protocol
from devices.cities import get_city
from lorong.core.errors import UnknownCity
from lorong.core.settings import Settings
from lorong.storage.db import default_city, migrate
from lorong.storage.kecamatan import area_kecamatan
from lorong.storage.runtime import check_database, database_location, open_sessions

app = typer.Typer(help="The HTTP API and crew page.", invoke_without_command=True)
token_app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")
console = Console()


def banner(host: str, port: int, database: str = "") -> str:
    """What ``lorong api`` prints once it listens: its URL, the crew page, the docs, the database
    it uses (tokens and devices live there) and how to stop.

    Args:
        host: the address it is bound to (an IPv6 address is bracketed in the URL, RFC 3986 3.2.2).
        port: the TCP port.
        database: :func:`lorong.storage.runtime.database_location` of its database ("" leaves the line out).
    """
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return (f"Lorong API serving on {url}\n  crew page: {url}/\n  API docs:  {url}/docs\n"
            + (f"  database:  {database}\n" if database else "") + "Press Ctrl-C to stop.")


class _Server(uvicorn.Server):
    """uvicorn's server that prints :func:`banner` once its socket is bound (not when the bind failed)."""

    database = ""
    """Where its database is, for the banner."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Bind and start as uvicorn does, then print where it serves."""
        await super().startup(sockets)
        if not self.should_exit:
            print(banner(self.config.host, self.config.port, self.database), flush=True)


@app.callback()
def serve(ctx: typer.Context, host: str | None = typer.Option(None), port: int | None = typer.Option(None)) -> None:
    """Serve the API (OpenAPI docs at /docs, crew page at /) until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    settings = Settings()
    check_database(settings.database_url)  # refuse to serve a new, empty file (lorong.storage.runtime)
    migrate(settings.database_url, default_city=default_city(settings))
    config = uvicorn.Config(create_app(settings), host=host or settings.api.host, port=port or settings.api.port,
                            log_level="warning", http=header_timeout_protocol(settings.api.header_timeout_s))
    sock = listen_socket(config.host, config.port)
    server = _Server(config)
    server.database = database_location(settings.database_url)
    server.run(sockets=[sock])


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` for uvicorn (bound here, as uvicorn would bind it, so that a
    port in use is one ``error:`` line instead of uvicorn's log line and exit status 3).

    Raises:
        typer.Exit: 1, after the error line on stderr: the address is in use or not this machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart need not wait out TIME_WAIT
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        url = f"http://[{host}]:{port}" if family == socket.AF_INET6 else f"http://{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            why = ("is already in use (another `lorong api` or `lorong demo`?): stop it, or set LORONG_API__PORT "
                   "(or --port)")
        else:  # EADDRNOTAVAIL: an address of another machine; EACCES: a port below 1024 without the right
            why = (f"cannot be listened on ({exc.strerror}): check LORONG_API__HOST and LORONG_API__PORT "
                   "(or --host, --port)")
        typer.echo(f"error: {url} {why}", err=True)
        raise typer.Exit(1) from None
    sock.set_inheritable(True)
    return sock


@token_app.command("create")
def token_create(
    role: Role = typer.Option(..., help="crew, officer, technician, supervisor or admin"),
    name: str = typer.Option(..., help="who holds it (a person, a team or a system)"),
    city: str | None = typer.Option(None, help="the one city it sees (`lorong cities list`); default every city"),
    kecamatan: str = typer.Option("", help="the token's area: kecamatan, comma-separated (Wajo,Tallo), of its "
                                           "--city if given; it then sees and acts on the bins and alerts there only"),
) -> None:
    """Create a token and print it once: it is stored only as a SHA-256 hash."""
    sessions = open_sessions(Settings())
    try:
        with sessions.begin() as s:
            if city is not None:
                get_city(s, city)
            known = area_kecamatan(s, city)
            area, unknown = resolve_area(kecamatan.split(","), known)
            if unknown and known:
                raise ValueError(f"--kecamatan: no device{f' of {city}' if city else ''} is in {', '.join(unknown)}; "
                                 f"known kecamatan: {', '.join(known)}")
            row, token = create_token(s, name, role, city=city, area=area)
            token_id = row.id
    except (ValueError, UnknownCity) as exc:  # what the user typed: exit 2, as a usage error
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    print(token)
    if unknown:
        typer.echo(f"warning: no device is registered yet, so {', '.join(unknown)} could not be checked", err=True)
    where = f", area {', '.join(area)}" if area else ""
    typer.echo(f"token {token_id} ({role.value}, {name!r}{where}) created; copy it now, it is not shown again",
               err=True)


@token_app.command("list")
def token_list() -> None:
    """List tokens (id, name, role, area, created, last used, revoked); never the secrets."""
    sessions = open_sessions(Settings())
    with sessions() as s:
        rows = list_tokens(s)
    table = Table("id", "name", "role", "city", "area", "created", "last used", "revoked")
    for r in rows:
        table.add_row(str(r.id), r.name, r.role, r.city_id or "all", ", ".join(r.area or []) or "city",
                      r.created_at.isoformat(timespec="seconds"),
                      r.last_used_at.isoformat(timespec="seconds") if r.last_used_at else "-",
                      r.revoked_at.isoformat(timespec="seconds") if r.revoked_at else "-")
    for col in table.columns:  # an 80-column terminal folds long cells instead of cutting them (…)
        col.overflow = "fold"
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: int = typer.Argument(..., help="id from `lorong api token list`")) -> None:
    """Revoke a token at once."""
    sessions = open_sessions(Settings())
    try:
        with sessions.begin() as s:
            row = revoke_token(s, token_id)
            name = row.name
    except UnknownToken as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    console.print(f"token {token_id} ({name!r}) revoked")
