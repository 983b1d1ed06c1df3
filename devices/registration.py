"""Registration of a device over its serial console, committed to the registry only when the device
has accepted, verified and saved its configuration (devices/PROTOCOL.md).

The steps are separate functions so the CLI can ask the technician for the installation details
between reading the identity and writing the configuration:

1. :func:`identify` - ``HELLO``, ``ID``, ``TEST``; and the registry check (fail before writing).
2. the caller collects location and geometry into a :class:`~devices.registry.DeviceIn`.
3. :func:`configure` - ``SET`` each key, ``GET`` and compare, ``SAVE``.
4. :func:`commit` - the registry row and the MQTT credential in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from devices.credentials import device_topic, issue_credential, new_password
from devices.protocol import Console, DeviceConfig, Identity
from devices.registry import DeviceIn, DeviceUpdate, add_device, normalize_id, update_device
from lorong.core.errors import DeviceExists
from lorong.storage.tables import DeviceCredentialRow, DeviceRow

log = logging.getLogger(__name__)

REREGISTRABLE = ("in_stock", "maintenance")
"""Statuses of an existing row that a serial registration may take over (and make active)."""


@dataclass(frozen=True, slots=True)
class Probe:
    """What the device told us before anything was written.

    Attributes:
        identity: id (normalised), kind, model, firmware.
        reading: self-test values, canonical metric -> value in its canonical unit.
        existing: the registry row's status when the device is already known (in_stock or
            maintenance), else ``None``.
    """

    identity: Identity
    reading: dict[str, float]
    existing: str | None


@dataclass(frozen=True, slots=True)
class Registered:
    """The outcome of a successful registration.

    Attributes:
        device: the committed registry row.
        credential: the committed MQTT credential row.
        password: the device's clear MQTT password: show it once, it is stored nowhere.
    """

    device: DeviceRow
    credential: DeviceCredentialRow
    password: str


def registrable_status(session: Session, device_id: str) -> str | None:
    """``None`` for an unknown id, the status for an in_stock or maintenance device.

    Raises:
        DeviceExists: the device is active or retired.
    """
    row = session.get(DeviceRow, device_id)
    if row is None:
        return None
    if row.status not in REREGISTRABLE:
        hint = "ids are never reused" if row.status == "retired" else (
            "set it to maintenance first (`lorong devices update --status maintenance`) to re-register it")
        raise DeviceExists(f"device {row.id} is already registered ({row.status}): {hint}")
    return row.status


def identify(console: Console, sessions: sessionmaker[Session]) -> Probe:
    """Greet the device, read its identity and a live reading, and check the registry can take it.

    Raises:
        DeviceError: the dialogue failed (see devices/protocol.py).
        DeviceExists: the device is already registered and active or retired.
        ValueError: the device reports an id that is not a valid Lorong id.
    """
    console.hello()
    raw = console.identify()
    identity = Identity(normalize_id(raw.device_id), raw.kind, raw.model, raw.firmware)
    with sessions() as s:
        existing = registrable_status(s, identity.device_id)
    reading = console.self_test(identity.kind)
    log.info("device %s (%s %s, fw %s) self-test %s", identity.device_id, identity.kind, identity.model,
             identity.firmware, reading)
    return Probe(identity, reading, existing)


def device_config(device: DeviceIn, broker_host: str, broker_port: int, password: str) -> DeviceConfig:
    """The configuration to write: the device's own topic, user name = id, its report interval."""
    return DeviceConfig(broker_host=broker_host, broker_port=broker_port, topic=device_topic(device.id),
                        username=device.id, password=password, interval_s=device.report_interval_s)


def configure(console: Console, config: DeviceConfig) -> None:
    """Write, read back and verify, then save the configuration on the device.

    Raises:
        DeviceError: a NAK, a timeout, garbage, a lost link, or a read-back difference.
    """
    console.write_config(config)
    console.verify_config(config)
    console.save()


def commit(sessions: sessionmaker[Session], device: DeviceIn, password: str, at: datetime) -> Registered:
    """Write the registry row (insert, or take over an in_stock/maintenance row) and the credential,
    in one transaction.

    Raises:
        DeviceExists: the id became active or retired meanwhile (nothing is written).
    """
    with sessions.begin() as s:
        if registrable_status(s, device.id) is None:
            row = add_device(s, device)
        else:
            keep = {"id"} if device.city_id is not None else {"id", "city_id"}  # no city named: it keeps its own
            row = update_device(s, device.id, DeviceUpdate.model_validate(device.model_dump(exclude=keep)))
        cred, clear = issue_credential(s, row.id, at, password)
    return Registered(row, cred, clear)


def register(console: Console, sessions: sessionmaker[Session], device: DeviceIn, broker_host: str,
             broker_port: int, at: datetime) -> Registered:
    """Steps 3 and 4 for a device already probed: configure it, then commit.

    ``device.id`` must be the probed id. A fresh password is generated here.

    Raises:
        DeviceError: the device did not take the configuration (nothing is written).
        DeviceExists: see :func:`commit`.
    """
    password = new_password()
    configure(console, device_config(device, broker_host, broker_port, password))
    return commit(sessions, device, password, at)
