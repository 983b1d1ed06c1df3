"""Per-device MQTT credentials and the Mosquitto password and ACL files made from them.

Each device gets its own random password (shown once, never stored in clear) and may publish only
on its own uplink topic ``lorong/v1/<id>/up``; the ingester gets a service account that may read
every uplink topic it subscribes to and publish nothing; the alert publisher (the analytics outbox)
gets one that may publish ``lorong/alerts/#`` and read nothing; alert consumers (Node-RED, a
control room) get one that may read ``lorong/alerts/#`` and publish nothing.

Hash format: Mosquitto 2's ``$7$`` entries, PBKDF2-HMAC-SHA512 (RFC 8018 section 5.2) with a
12-byte random salt and 101 iterations, written ``$7$<iterations>$<base64 salt>$<base64 hash>``:
the format ``mosquitto_passwd -U``/``-b`` writes (eclipse/mosquitto ``apps/mosquitto_passwd``,
``src/password_mosq.c``; ``PW_DEFAULT_ITERATIONS`` 101, ``SALT_LEN`` 12). Lorong computes it itself
at issue time, because the clear password exists only then; a test checks the result against
``mosquitto_passwd`` byte for byte.

ACL file syntax: mosquitto.conf(5), "acl_file": ``user <name>`` then ``topic read|write <filter>``
lines; with an ACL file, anything not granted is denied.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from devices.registry import get_device, revoke_credentials
from lorong.core.errors import ConfigError
from lorong.core.settings import Settings
from lorong.storage.stack import reload_broker
from lorong.storage.tables import DeviceCredentialRow, DeviceRow

PBKDF2_ITERATIONS = 101
"""Mosquitto 2.0's default (``PW_DEFAULT_ITERATIONS`` in eclipse/mosquitto ``src/password_mosq.h``)."""
SALT_BYTES = 12
PASSWORD_BYTES = 24
"""Random bytes per device password: 192 bits, 32 URL-safe characters."""
SERVICE_USER = "lorong-ingest"
ALERTS_USER = "lorong-alerts"
"""The alert publisher's broker account (``LORONG_NOTIFY__MQTT_USERNAME``)."""
ALERTS_READER = "lorong-alerts-reader"
"""The alert consumers' broker account."""
ALERTS_FILTER = "lorong/alerts/#"
"""What the alert publisher writes and the alert consumers read (:mod:`analytics.notify_mqtt`): every
city's alerts on the topics of before cities (``lorong/alerts/<kecamatan>/<type>/<device>``)."""
CITY_ALERTS_FILTER = "lorong/+/alerts/#"
"""The per-city alert topics, ``lorong/<city>/alerts/<kecamatan>/<type>/<device>``: the alert publisher
writes them and the alert consumers read them too (a consumer of one city only gets an account of its
own reading ``lorong/<city>/alerts/#``)."""
ALERTS_FILTERS = (ALERTS_FILTER, CITY_ALERTS_FILTER)
ALERTS_ENV = "alerts.env"
ALERTS_READER_ENV = "alerts-reader.env"
PASSWD_FILE = "passwd"
ACL_FILE = "acl"


def device_topic(device_id: str) -> str:
    """The only topic a device may publish on: ``lorong/v1/<id>/up``."""
    return f"lorong/v1/{device_id}/up"


def new_password() -> str:
    """A fresh random MQTT password (32 URL-safe characters, 192 bits from ``secrets``)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def mosquitto_hash(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Hash ``password`` as a Mosquitto 2 ``$7$`` password-file entry (PBKDF2-HMAC-SHA512).

    Args:
        password: the clear password (UTF-8).
        salt: 12 random bytes; a fresh one when ``None``.
        iterations: PBKDF2 iteration count.

    Returns:
        ``$7$<iterations>$<base64 salt>$<base64 64-byte hash>``.
    """
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches a ``$7$`` entry made by :func:`mosquitto_hash` or mosquitto_passwd.

    Raises:
        ValueError: ``encoded`` is not a ``$7$`` entry.
    """
    parts = encoded.split("$")
    if len(parts) != 5 or parts[1] != "7":
        raise ValueError("not a Mosquitto $7$ password hash")
    salt = base64.b64decode(parts[3])
    return hmac.compare_digest(mosquitto_hash(password, salt, int(parts[2])), encoded)


def issue_credential(session: Session, device_id: str, at: datetime,
                     password: str | None = None) -> tuple[DeviceCredentialRow, str]:
    """Give a device a new MQTT credential, revoking its earlier ones (the caller commits).

    Args:
        session: open session.
        device_id: a registered, non-retired device.
        at: issue time, tz-aware.
        password: the clear password (a fresh one when ``None``).

    Returns:
        The credential row (username = device id, topic = :func:`device_topic`) and the clear
        password, which is not stored anywhere: show it once.

    Raises:
        UnknownDevice: no such device.
        ValueError: the device is retired.
    """
    row = get_device(session, device_id)
    if row.status == "retired":
        raise ValueError(f"device {row.id} is retired: it gets no credentials")
    password = password or new_password()
    revoke_credentials(session, row.id, at)
    cred = DeviceCredentialRow(device_id=row.id, username=row.id, password_hash=mosquitto_hash(password),
                               topic=device_topic(row.id), created_at=at)
    session.add(cred)
    session.flush()
    return cred, password


def live_credentials(session: Session) -> Sequence[DeviceCredentialRow]:
    """Credentials that the broker must accept: not revoked, device not retired; ordered by username."""
    q = (select(DeviceCredentialRow).join(DeviceRow, DeviceRow.id == DeviceCredentialRow.device_id)
         .where(DeviceCredentialRow.revoked_at.is_(None), DeviceRow.status != "retired")
         .order_by(DeviceCredentialRow.username, DeviceCredentialRow.id))
    return session.scalars(q).all()


def credentials_of(session: Session, device_id: str) -> Sequence[DeviceCredentialRow]:
    """Every credential a device ever had, oldest first."""
    q = (select(DeviceCredentialRow).where(DeviceCredentialRow.device_id == device_id)
         .order_by(DeviceCredentialRow.created_at, DeviceCredentialRow.id))
    return session.scalars(q).all()


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A Lorong service's broker account (the ingester's, the alert publisher's ...).

    Attributes:
        username: MQTT user name (the ingester's is ``LORONG_MQTT__USERNAME``).
        password_hash: its ``$7$`` hash.
        read_topics: topic filters it may subscribe to (``$share/<group>/`` prefixes removed).
        write_topics: topic filters it may publish on.
    """

    username: str
    password_hash: str
    read_topics: tuple[str, ...]
    write_topics: tuple[str, ...] = ()


def acl_filter(topic_filter: str) -> str:
    """The ACL form of a subscription filter: ``$share/<group>/a/+/b`` -> ``a/+/b``."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        return parts[2] if len(parts) == 3 else topic_filter
    return topic_filter


def service_account(username: str, password: str, topic_filters: Iterable[str]) -> ServiceAccount:
    """Build the ingester's account from its clear password and the filters it subscribes to."""
    filters = tuple(dict.fromkeys(acl_filter(t) for t in topic_filters))
    return ServiceAccount(username, mosquitto_hash(password), filters)


def alerts_account(username: str, password: str, topic_filters: tuple[str, ...] = ALERTS_FILTERS) -> ServiceAccount:
    """The alert publisher's account: publishes ``topic_filters`` (:data:`ALERTS_FILTERS`), reads nothing."""
    return ServiceAccount(username, mosquitto_hash(password), (), topic_filters)


def alerts_reader_account(username: str, password: str,
                          topic_filters: tuple[str, ...] = ALERTS_FILTERS) -> ServiceAccount:
    """The alert consumers' account: reads ``topic_filters`` (:data:`ALERTS_FILTERS`), publishes nothing."""
    return ServiceAccount(username, mosquitto_hash(password), topic_filters)


def render_password_file(creds: Sequence[DeviceCredentialRow], service: ServiceAccount,
                         *others: ServiceAccount) -> str:
    """Mosquitto password file text: ``<username>:<$7$ hash>`` per line, service accounts first.

    Raises:
        ConfigError: two accounts share a name (a device id equals a service account's name), or
            a name holds ``:``.
    """
    services = (service, *others)
    lines, taken = [], set()
    for a in services:
        if a.username in taken or ":" in a.username:
            raise ConfigError(f"service account name {a.username!r} is used twice or holds ':'")
        taken.add(a.username)
        lines.append(f"{a.username}:{a.password_hash}")
    for c in creds:
        if c.username in taken or ":" in c.username:
            raise ConfigError(f"device user name {c.username!r} clashes with the password file format "
                              "or a service account")
        lines.append(f"{c.username}:{c.password_hash}")
    return "\n".join(lines) + "\n"


def render_acl(creds: Sequence[DeviceCredentialRow], service: ServiceAccount, *others: ServiceAccount) -> str:
    """Mosquitto ACL file text: each service account reads and writes its filters; each device
    writes its topic."""
    out = ["# generated by `lorong devices credentials export`; edits are overwritten"]
    for a in (service, *others):
        out += ["", f"user {a.username}"]
        out += [f"topic read {t}" for t in a.read_topics]
        out += [f"topic write {t}" for t in a.write_topics]
    for c in creds:
        out += ["", f"user {c.username}", f"topic write {c.topic}"]
    return "\n".join(out) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path`` with mode 0600."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def export_files(session: Session, out_dir: Path, service: ServiceAccount,
                 *others: ServiceAccount) -> tuple[Path, Path, int]:
    """Write Mosquitto's password file and ACL file for every live credential and the service
    accounts into ``out_dir``.

    Returns:
        ``(password file, ACL file, number of device credentials)``; both files mode 0600.

    Raises:
        ConfigError: see :func:`render_password_file`.
    """
    creds = live_credentials(session)
    out_dir.mkdir(parents=True, exist_ok=True)
    passwd, acl = out_dir / PASSWD_FILE, out_dir / ACL_FILE
    _write_private(passwd, render_password_file(creds, service, *others))
    _write_private(acl, render_acl(creds, service, *others))
    return passwd, acl, len(creds)


def read_env_file(path: Path, user_var: str, password_var: str) -> tuple[str, str]:
    """``(username, password)`` from an env file of ``NAME=value`` lines.

    Raises:
        ConfigError: the file lacks either variable.
        OSError: the file cannot be read.
    """
    values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    user, pw = values.get(user_var), values.get(password_var)
    if not user or not pw:
        raise ConfigError(f"{path} must set {user_var} and {password_var}")
    return user, pw


def load_or_create_service_env(path: Path, username: str = SERVICE_USER, user_var: str = "LORONG_MQTT__USERNAME",
                               password_var: str = "LORONG_MQTT__PASSWORD") -> tuple[str, str]:
    """A service's broker credentials kept in an env file, created with a fresh password if missing.

    The ingester's file holds ``LORONG_MQTT__USERNAME=...`` and ``LORONG_MQTT__PASSWORD=...`` (mode
    0600), the variables it reads (lorong/core/settings.py); ``set -a; . <path>; set +a`` loads them. The
    alert publisher's (``alerts.env``) holds ``LORONG_NOTIFY__MQTT_USERNAME`` and ``..._PASSWORD``.

    Returns:
        ``(username, password)``.

    Raises:
        ConfigError: the file exists but lacks either variable.
    """
    if path.exists():
        return read_env_file(path, user_var, password_var)
    password = new_password()
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, f"{user_var}={username}\n{password_var}={password}\n")
    return username, password


@dataclass(frozen=True)
class BrokerExport:
    """What :func:`export_for` wrote.

    Attributes:
        passwd: the password file.
        acl: the ACL file.
        devices: number of live device credentials in them.
        ingester: the ingester's MQTT user name; ``ingester_source`` where its password came from
            (``"environment"`` or the path of its env file).
        publisher: the alert publisher's user name; ``reader`` the alert consumers' one.
    """

    passwd: Path
    acl: Path
    devices: int
    ingester: str
    ingester_source: str
    publisher: str
    reader: str


def export_for(session: Session, settings: Settings, out_dir: Path) -> BrokerExport:
    """Write the broker's password and ACL files into ``out_dir`` (``lorong devices credentials export``).

    The ingester's account is ``LORONG_MQTT__USERNAME`` / ``_PASSWORD`` when both are set, else the
    one kept in ``<out_dir>/ingest.env`` (created with a fresh password on first export); the alert
    publisher's is ``LORONG_NOTIFY__MQTT_USERNAME`` / ``_PASSWORD``, else ``<out_dir>/alerts.env``;
    alert consumers use ``<out_dir>/alerts-reader.env``.

    Raises:
        ConfigError: an env file lacks its variables, or a user name is taken twice.
    """
    n = settings.notify
    if settings.mqtt.username and settings.mqtt.password:
        user, pw, source = settings.mqtt.username, settings.mqtt.password.get_secret_value(), "environment"
    else:
        user, pw = load_or_create_service_env(out_dir / "ingest.env")
        source = str(out_dir / "ingest.env")
    if n.mqtt_username and n.mqtt_password:
        pub_user, pub_pw = n.mqtt_username, n.mqtt_password.get_secret_value()
    else:
        pub_user, pub_pw = load_or_create_service_env(out_dir / ALERTS_ENV, ALERTS_USER,
                                                      "LORONG_NOTIFY__MQTT_USERNAME", "LORONG_NOTIFY__MQTT_PASSWORD")
    reader_user, reader_pw = load_or_create_service_env(out_dir / ALERTS_READER_ENV, ALERTS_READER,
                                                        "MQTT_USERNAME", "MQTT_PASSWORD")
    passwd, acl, count = export_files(session, out_dir, service_account(user, pw, settings.mqtt.topics),
                                      alerts_account(pub_user, pub_pw), alerts_reader_account(reader_user, reader_pw))
    return BrokerExport(passwd, acl, count, user, source, pub_user, reader_user)


def revoke_on_broker(session: Session, settings: Settings) -> str:
    """Carry a revocation (a retired device, a re-issued password) to the broker at once: when the
    broker's files were exported to ``<var_dir>/mosquitto`` (a broker run with ``--auth``), write
    them again from ``session`` (commit first) and reload the broker Lorong runs on them
    (:func:`lorong.storage.stack.reload_broker`; Mosquitto then drops a connected client whose
    password no longer holds).

    Returns:
        One line for the operator: what was done, or what is left to do.

    Raises:
        ConfigError: as :func:`export_for`.
    """
    out_dir = settings.var_dir / "mosquitto"
    if not (out_dir / PASSWD_FILE).exists():
        return ("no broker password file in this deployment (the broker runs without accounts): "
                "`lorong devices credentials export` and `lorong stack up --auth` give it one")
    export_for(session, settings, out_dir)
    if reload_broker(settings.var_dir):
        return f"broker files in {out_dir} rewritten; the broker reloaded them"
    return (f"broker files in {out_dir} rewritten; no broker started by `lorong stack up` runs here: "
            "make yours re-read them (SIGHUP)")
