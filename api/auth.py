"""API tokens and the roles that decide what a token may do.

==========  ==========================================================================
role        may
==========  ==========================================================================
crew        read everything; act on bin alerts; report a bin emptied or not emptiable
officer     read everything; act on air-quality alerts; export readings (``GET /export/readings``)
technician  read everything; act on device-health alerts; create, change, retire devices
supervisor  read everything; act on the crew's alerts and on bins the crew could not empty
admin       all of the above, and manage API tokens
==========  ==========================================================================

"Act on" an alert is acknowledging and clearing it; which role acts on which alert type is the
catalogue's (:func:`lorong.core.alerts.may_act`), checked per alert by :meth:`Principal.require_act`.

A token may also have an *area*: the kecamatan its holder works in (``lorong api token create
--kecamatan Wajo,Tallo``). A token with an area, whatever its role, sees the bins, alerts and route
stops of those kecamatan only, exports only their readings, and acts only there
(:meth:`Principal.require_area`, 403 elsewhere); a token without one (the default) covers the whole
city. Air stations stay readable by everyone.
A token may be scoped to a city too (``--city``, :attr:`Principal.city`): it then gets 404 for
another city's devices, alerts and tokens, and its area, if any, is kecamatan of that city.

A token is ``lrg_`` followed by the URL-safe base64 of 32 random bytes from :mod:`secrets`
(256 bits, 43 characters). Only its SHA-256 hex digest is stored (``api_tokens.token_hash``);
the plain token is shown once, when it is created. Clients send it as
``Authorization: Bearer <token>`` (RFC 6750). A fast hash is enough here: the token is random
and long, so the digest cannot be brute-forced the way a password hash can.

Every request looks its token up in the database (one indexed read; there is no token cache), so a
token revoked anywhere (the CLI, another API process) is refused from the next request on. A read
never waits for a write: ``last_used_at`` is written at most once a minute per token, and only
when the database can take the write at once (:func:`touch`); a database write-locked by another
process (a long migration, a backup) leaves it older, never fails or slows the request.

This module has no FastAPI imports: :mod:`api.deps` turns it into dependencies, and
``lorong api token`` uses it directly.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from lorong.core.alerts import may_act
from lorong.core.errors import LorongError, UnknownCity
from lorong.core.model import utcnow
from lorong.storage.tables import ApiTokenRow, CityRow

log = logging.getLogger(__name__)

TOKEN_PREFIX = "lrg_"
TOKEN_BYTES = 32
NO_TOKEN = ("this needs an API token: send 'Authorization: Bearer <token>' "
            "(an admin creates one with `lorong api token create`)")
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""``last_used_at`` is written at most once a minute per token (it says "in use lately", not "this second")."""
PG_LOCK_TIMEOUT = "100ms"
"""How long PostgreSQL may wait for the ``last_used_at`` row lock before the write is skipped."""


class Role(StrEnum):
    """Who holds a token."""

    CREW = "crew"
    OFFICER = "officer"
    TECHNICIAN = "technician"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class Permission(StrEnum):
    """What an endpoint needs."""

    READ = "read"
    ALERTS = "alerts"
    COLLECT = "collect"
    DEVICES = "devices"
    TOKENS = "tokens"
    EXPORT = "export"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.CREW: frozenset({Permission.READ, Permission.ALERTS, Permission.COLLECT}),
    Role.OFFICER: frozenset({Permission.READ, Permission.ALERTS, Permission.EXPORT}),
    Role.TECHNICIAN: frozenset({Permission.READ, Permission.ALERTS, Permission.DEVICES}),
    Role.SUPERVISOR: frozenset({Permission.READ, Permission.ALERTS, Permission.COLLECT}),
    Role.ADMIN: frozenset(Permission),
}
"""Permissions of every role (the table in the module docstring). ``ALERTS`` lets a role act on the
alert types the catalogue gives it (:meth:`Principal.require_act`); ``COLLECT`` report a bin emptied
or not emptiable; ``EXPORT`` download readings in bulk (a year of a city: officers and admins only)."""


class AuthError(LorongError):
    """A request that cannot go ahead with the credentials it carries."""


class NotAuthenticated(AuthError):
    """No token, an unknown token or a revoked one (HTTP 401)."""


class Forbidden(AuthError):
    """A valid token whose role lacks the permission (HTTP 403)."""


class UnknownToken(LorongError):
    """No token with that id (HTTP 404)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The holder of a valid token.

    Attributes:
        token_id: ``api_tokens.id``.
        name: the name given at creation (a person or a device), used as the actor of alert changes.
        role: the token's role.
        city: the one city the token sees (``cities.id``), or ``None`` for every city (a
            provincial officer). A scoped token gets 404 for another city's devices and alerts,
            as if they did not exist, and lists only its own city's.
        area: the kecamatan the token is limited to, sorted; empty for the whole city (of its
            ``city``, or of every city). Outside the area it gets 403 (the city is known to it).
    """

    token_id: int
    name: str
    role: Role
    city: str | None = None
    area: tuple[str, ...] = ()

    def sees(self, city: str | None) -> bool:
        """True when the token may see what belongs to ``city`` (every city for an unscoped token;
        a scoped one sees its own city's only, not even what has no city)."""
        return self.city is None or city == self.city

    def covers(self, kecamatan: str) -> bool:
        """True when the token's area includes ``kecamatan`` (always, for a token without an area).
        Names are compared as the registry spells them (the area is resolved when the token is made)."""
        return not self.area or kecamatan in self.area

    def require_area(self, kecamatan: str, what: str) -> None:
        """Raise :class:`Forbidden` unless the token's area includes ``kecamatan``.

        Args:
            kecamatan: where the bin or alert is.
            what: what is asked for, for the message (``bin MKS-BIN-0003``, ``alert 12``).
        """
        if not self.covers(kecamatan):
            where = kecamatan or "no kecamatan"
            raise Forbidden(f"{what} is in {where}, outside this token's area ({', '.join(self.area)})")

    def require_filter(self, kecamatan: str | None) -> None:
        """Raise :class:`Forbidden` when a listing asks for a ``kecamatan`` outside the token's area."""
        if kecamatan is not None and not self.covers(kecamatan):
            raise Forbidden(f"kecamatan={kecamatan} is outside this token's area ({', '.join(self.area)})")

    def can(self, permission: Permission) -> bool:
        """True when the role grants ``permission``."""
        return permission in GRANTS[self.role]

    def require(self, permission: Permission) -> None:
        """Raise :class:`Forbidden` unless the role grants ``permission``."""
        if not self.can(permission):
            allowed = ", ".join(r.value for r in Role if permission in GRANTS[r])
            article = "an" if self.role.value[0] in "aeiou" else "a"
            raise Forbidden(f"{article} {self.role.value} token cannot do this; it needs a token with role {allowed}")

    def require_act(self, alert_type: str) -> None:
        """Raise :class:`Forbidden` unless this role may acknowledge and clear alerts of ``alert_type``
        (:func:`lorong.core.alerts.may_act`: the catalogue's role, a supervisor for the crew, an admin)."""
        if not may_act(self.role.value, alert_type):
            allowed = ", ".join(r.value for r in Role if may_act(r.value, alert_type))
            article = "an" if self.role.value[0] in "aeiou" else "a"
            raise Forbidden(f"{article} {self.role.value} token cannot do this; it needs a token with role {allowed} "
                            f"({alert_type} alerts are acted on by {allowed})")

    @property
    def actor(self) -> str:
        """``role:name``, as recorded in alert history (``crew:Budi``)."""
        return f"{self.role.value}:{self.name}"[:64]


def hash_token(token: str) -> str:
    """SHA-256 hex digest (64 characters) of a plain token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh plain token: ``lrg_`` + 43 URL-safe characters (32 random bytes)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def create_token(session: Session, name: str, role: Role | str, now: datetime | None = None,
                 city: str | None = None, area: Sequence[str] | None = None) -> tuple[ApiTokenRow, str]:
    """Create a token (the caller commits).

    Args:
        session: database session.
        name: who or what holds it, 1..64 characters.
        role: one of :class:`Role`.
        now: creation time (tz-aware); default now.
        city: the one city it sees (a registered ``cities.id``); ``None``: every city.
        area: kecamatan the token is limited to, as the registry spells them (:func:`resolve_area`,
            within ``city`` when it has one); ``None`` or empty for the whole city.

    Returns:
        the stored row and the plain token, which is not stored anywhere and must be shown now.

    Raises:
        ValueError: empty or too long name, unknown role, or an empty or over-long kecamatan name.
        UnknownCity: ``city`` is not registered.
    """
    name = name.strip()
    if not 1 <= len(name) <= 64:
        raise ValueError("token name must be 1 to 64 characters")
    role = Role(role)
    names = sorted({k.strip() for k in area or ()})
    if any(not 1 <= len(k) <= 64 for k in names):
        raise ValueError("a kecamatan name in a token's area must be 1 to 64 characters")
    if city is not None and session.get(CityRow, city) is None:
        raise UnknownCity(f"no city {city!r} in the registry (`lorong cities list` shows them)")
    token = new_token()
    row = ApiTokenRow(name=name, role=role.value, city_id=city, token_hash=hash_token(token),
                      created_at=now or utcnow(), area=names or None)
    session.add(row)
    session.flush()
    return row, token


def resolve_area(names: Sequence[str], known: Sequence[str]) -> tuple[list[str], list[str]]:
    """Match the kecamatan names given for a token's area to the registry's spelling, without case.

    Args:
        names: as typed (``["wajo", "Tallo"]``); blanks are dropped.
        known: every kecamatan in the registry, or in the token's city (:func:`api.query.known_kecamatan`).

    Returns:
        the registry's spelling of each (a name matching none is kept as typed), and the names
        that matched none (empty when all are known).
    """
    by_fold = {k.casefold(): k for k in known}
    out: list[str] = []
    unknown: list[str] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        match = by_fold.get(name.casefold())
        if match is None:
            unknown.append(name)
        out.append(match or name)
    return sorted(set(out)), unknown


def list_tokens(session: Session, include_revoked: bool = True) -> Sequence[ApiTokenRow]:
    """Tokens ordered by id (hashes only; plain tokens are never stored)."""
    q = select(ApiTokenRow).order_by(ApiTokenRow.id)
    if not include_revoked:
        q = q.where(ApiTokenRow.revoked_at.is_(None))
    return session.scalars(q).all()


def revoke_token(session: Session, token_id: int, at: datetime | None = None) -> ApiTokenRow:
    """Revoke a token from ``at`` on (the caller commits); revoking twice keeps the first time.

    Raises:
        UnknownToken: no token with that id.
    """
    row = session.get(ApiTokenRow, token_id)
    if row is None:
        raise UnknownToken(f"no API token with id {token_id}")
    if row.revoked_at is None:
        row.revoked_at = at or utcnow()
        session.flush()
    return row


def touch(session: Session, token_id: int, now: datetime) -> bool:
    """Set ``last_used_at`` of a token to ``now`` if it is older than :data:`LAST_USED_RESOLUTION`,
    without waiting for a lock: on its own connection, SQLite with ``busy_timeout`` 0 and PostgreSQL
    with ``lock_timeout`` :data:`PG_LOCK_TIMEOUT`.

    Returns:
        True when written (or not due), False when the database was locked and the write skipped.
    """
    engine = session.get_bind()
    if not isinstance(engine, Engine):  # a session bound to one connection: that connection may be mid-write
        return False
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar() if sqlite else None
        try:
            no_wait = "PRAGMA busy_timeout = 0" if sqlite else f"SET LOCAL lock_timeout = '{PG_LOCK_TIMEOUT}'"
            conn.exec_driver_sql(no_wait)
            conn.execute(update(ApiTokenRow)
                         .where(ApiTokenRow.id == token_id,
                                or_(ApiTokenRow.last_used_at.is_(None),
                                    ApiTokenRow.last_used_at <= now - LAST_USED_RESOLUTION))
                         .values(last_used_at=now))
            conn.commit()
            return True
        except OperationalError as exc:
            conn.rollback()
            log.debug("last_used_at of token %d not written (database busy): %s", token_id, exc)
            return False
        finally:
            if sqlite:
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(busy or 0)}")
                conn.rollback()


def authenticate(session: Session, token: str | None, now: datetime | None = None) -> Principal:
    """The holder of ``token`` (one read); marks it used when due, if the database lets it at once (:func:`touch`).

    Raises:
        NotAuthenticated: no token, or it is unknown or revoked.
    """
    if not token:
        raise NotAuthenticated(NO_TOKEN)
    row = session.execute(select(ApiTokenRow.id, ApiTokenRow.name, ApiTokenRow.role, ApiTokenRow.revoked_at,
                                 ApiTokenRow.last_used_at, ApiTokenRow.city_id, ApiTokenRow.area)
                          .where(ApiTokenRow.token_hash == hash_token(token))).first()
    if row is None:
        raise NotAuthenticated("this API token is not known: check it was copied whole, or ask an admin for a new one")
    if row.revoked_at is not None:
        raise NotAuthenticated("this API token was revoked: ask an admin for a new one")
    now = now or utcnow()
    session.rollback()  # end the read before writing elsewhere: SQLite allows one writer, readers never wait
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        touch(session, row.id, now)
    area = tuple(sorted(str(k) for k in row.area)) if isinstance(row.area, list) else ()
    return Principal(token_id=row.id, name=row.name, role=Role(row.role), city=row.city_id, area=area)


def kept_token(session: Session, path: Path, name: str, role: Role | str,
               city: str | None = None) -> tuple[str, bool]:
    """A token that outlives restarts: the one whose plain text is kept in ``path``, or a new one.

    ``lorong demo`` prints a token to paste into the crew page once; a phone stays logged in across
    restarts only if the token stays valid. The plain token is kept in ``path`` (mode 0600, as SSH
    keeps private keys) and reused while it is known, not revoked, and still has ``name`` and
    ``role``. Otherwise every live token named ``name`` is revoked (one such token at a time), a new
    one is created and written to ``path``. The caller commits.

    Args:
        session: database session.
        path: where the plain token is kept (its directory is created).
        name: the token's name (``demo``).
        role: its role.
        city: the city it is scoped to (``None``: every city); a kept token of another scope is replaced.

    Returns:
        the plain token, and ``True`` when it is the kept one.
    """
    role = Role(role)
    try:
        kept = path.read_text(encoding="utf-8").strip()
    except OSError:
        kept = ""
    if kept:
        row = session.scalars(select(ApiTokenRow).where(ApiTokenRow.token_hash == hash_token(kept))).first()
        if (row is not None and row.revoked_at is None and row.name == name and row.role == role.value
                and row.city_id == city):
            return kept, True
    for old in list_tokens(session, include_revoked=False):
        if old.name == name:
            revoke_token(session, old.id)
    token = create_token(session, name, role, city=city)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(token + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)
    return token, False
