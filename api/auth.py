"""API tokens and the roles that decide what a token may do.

==========  ==========================================================================
role        may
==========  ==========================================================================
crew        read everything; act on bin alerts; report a bin emptied or not emptiable
officer     read everything; act on air-quality alerts
technician  read everything; act on device-health alerts; create, change, retire devices
supervisor  read everything; act on the crew's alerts and on bins the crew could not empty
admin       all of the above, and manage API tokens
==========  ==========================================================================

"Act on" an alert is acknowledging and clearing it; which role acts on which alert type is the
catalogue's (:func:`core.alerts.may_act`), checked per alert by :meth:`Principal.require_act`.

A token is ``lrg_`` followed by the URL-safe base64 of 32 random bytes from :mod:`secrets`
(256 bits, 43 characters). Only its SHA-256 hex digest is stored (``api_tokens.token_hash``);
the plain token is shown once, when it is created. Clients send it as
``Authorization: Bearer <token>`` (RFC 6750). A fast hash is enough here: the token is random
and long, so the digest cannot be brute-forced the way a password hash can.

This module has no FastAPI imports: :mod:`api.deps` turns it into dependencies, and
``lorong api token`` uses it directly.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.alerts import may_act
from core.errors import LorongError
from core.model import utcnow
from storage.tables import ApiTokenRow

TOKEN_PREFIX = "lrg_"
TOKEN_BYTES = 32
NO_TOKEN = ("this needs an API token: send 'Authorization: Bearer <token>' "
            "(an admin creates one with `lorong api token create`)")
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""``last_used_at`` is written at most once a minute per token, to keep reads free of writes."""


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


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.CREW: frozenset({Permission.READ, Permission.ALERTS, Permission.COLLECT}),
    Role.OFFICER: frozenset({Permission.READ, Permission.ALERTS}),
    Role.TECHNICIAN: frozenset({Permission.READ, Permission.ALERTS, Permission.DEVICES}),
    Role.SUPERVISOR: frozenset({Permission.READ, Permission.ALERTS, Permission.COLLECT}),
    Role.ADMIN: frozenset(Permission),
}
"""Permissions of every role (the table in the module docstring). ``ALERTS`` lets a role act on the
alert types the catalogue gives it (:meth:`Principal.require_act`); ``COLLECT`` report a bin emptied
or not emptiable."""


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
    """

    token_id: int
    name: str
    role: Role

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
        (:func:`core.alerts.may_act`: the catalogue's role, a supervisor for the crew, an admin)."""
        if not may_act(self.role.value, alert_type):
            allowed = ", ".join(r.value for r in Role if may_act(r.value, alert_type))
            article = "an" if self.role.value[0] in "aeiou" else "a"
            raise Forbidden(f"{article} {self.role.value} token cannot do this; it needs a token with role {allowed} "
                            f"({alert_type} alerts are acted on by {allowed})")

    @property
    def actor(self) -> str:
        """``role:name``, as recorded in alert history (``crew:Budi``)."""
        return f"{self.role.value}:{self.name}"[:64]


class TokenCache:
    """Valid tokens seen in the last ``ttl_s`` seconds, so most requests need no token query.

    Only valid tokens are kept (a new token works at once). A token revoked through the API is
    dropped at once (:meth:`clear`); one revoked elsewhere (the CLI, another API process) keeps
    working here for at most ``ttl_s`` seconds. ``ttl_s`` 0 turns the cache off.
    """

    def __init__(self, ttl_s: float = 10.0) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._items: dict[str, tuple[Principal, float]] = {}
        self._stripes = [asyncio.Lock() for _ in range(64)]

    def lookup_lock(self, digest: str) -> asyncio.Lock:
        """One of 64 locks chosen by ``digest``: concurrent misses of one token make one query, not one each
        (when an entry expires under load, hundreds of requests would otherwise query and write at once)."""
        return self._stripes[int(digest[:8], 16) % len(self._stripes)]

    def get(self, digest: str) -> Principal | None:
        """The principal of a token digest seen less than ``ttl_s`` ago, else ``None``."""
        item = self._items.get(digest)
        if item is None or item[1] < time.monotonic():
            return None
        return item[0]

    def put(self, digest: str, principal: Principal) -> None:
        """Remember a valid token (no-op when the cache is off)."""
        if self.ttl_s > 0:
            with self._lock:
                if len(self._items) > 10_000:
                    self._items.clear()
                self._items[digest] = (principal, time.monotonic() + self.ttl_s)

    def clear(self) -> None:
        """Forget every token (after a revocation)."""
        with self._lock:
            self._items.clear()


def hash_token(token: str) -> str:
    """SHA-256 hex digest (64 characters) of a plain token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh plain token: ``lrg_`` + 43 URL-safe characters (32 random bytes)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def create_token(session: Session, name: str, role: Role | str, now: datetime | None = None) -> tuple[ApiTokenRow, str]:
    """Create a token (the caller commits).

    Args:
        session: database session.
        name: who or what holds it, 1..64 characters.
        role: one of :class:`Role`.
        now: creation time (tz-aware); default now.

    Returns:
        the stored row and the plain token, which is not stored anywhere and must be shown now.

    Raises:
        ValueError: empty or too long name, or unknown role.
    """
    name = name.strip()
    if not 1 <= len(name) <= 64:
        raise ValueError("token name must be 1 to 64 characters")
    role = Role(role)
    token = new_token()
    row = ApiTokenRow(name=name, role=role.value, token_hash=hash_token(token), created_at=now or utcnow())
    session.add(row)
    session.flush()
    return row, token


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


def authenticate(session: Session, token: str | None, now: datetime | None = None) -> Principal:
    """The holder of ``token``; marks it used (at most once a minute, in its own transaction).

    Raises:
        NotAuthenticated: no token, or it is unknown or revoked.
    """
    if not token:
        raise NotAuthenticated(NO_TOKEN)
    row = session.scalars(select(ApiTokenRow).where(ApiTokenRow.token_hash == hash_token(token))).first()
    if row is None:
        raise NotAuthenticated("this API token is not known: check it was copied whole, or ask an admin for a new one")
    if row.revoked_at is not None:
        raise NotAuthenticated("this API token was revoked: ask an admin for a new one")
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        session.execute(update(ApiTokenRow).where(ApiTokenRow.id == row.id).values(last_used_at=now))
        session.commit()
    return Principal(token_id=row.id, name=row.name, role=Role(row.role))


def kept_token(session: Session, path: Path, name: str, role: Role | str) -> tuple[str, bool]:
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
        if row is not None and row.revoked_at is None and row.name == name and row.role == role.value:
            return kept, True
    for old in list_tokens(session, include_revoked=False):
        if old.name == name:
            revoke_token(session, old.id)
    token = create_token(session, name, role)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(token + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)
    return token, False
