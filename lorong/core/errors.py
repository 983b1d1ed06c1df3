"""Lorong's error tree, sorted by what the caller does next.

::

    LorongError
      PayloadError          drop the message, dead-letter it with .reason, count it
        UnknownFormat       no parser for that format name
        ParseError          bytes/JSON/envelope do not parse (syntax)
        CodecError          LoRaWAN bytes do not decode (unknown FPort, short frame, sentinel)
        ValidationError     parsed, but meaningless (unknown device, out of range, bad time)
      StoreError
        StoreUnavailable    network / 5xx: keep the batch, retry with backoff
        StoreRejected       4xx: the points are bad, split the batch and dead-letter them
        StoreNotReady       a retention policy is missing: run `lorong storage retention apply`
      DatabaseUnavailable   the SQL database does not answer (restart, failover): retry later
      RegistryError
        UnknownDevice       no such device id in the registry
        DeviceExists        a device with that id is already registered
        DeviceRetired       a retired device cannot be changed
        UnknownCity         no such city id in the registry
        CityExists          a city with that id is already registered
        CityInUse           a city still has devices, tokens, route plans or alerts: not removed
      DeviceError           serial dialogue failed (timeout, garbage, NAK, cable pulled)
      HandoverError         a run-mode switch cannot start (the other mode runs) or stalled: undone
      ConfigError           settings or files that make no sense together
"""

from __future__ import annotations


class LorongError(Exception):
    """Root of every error Lorong raises on purpose."""


class PayloadError(LorongError):
    """A message that cannot become readings.

    Attributes:
        reason: short machine-readable reason code (``bad_json``, ``unknown_fport`` ...),
            used as the dead-letter reason and as a metrics label.
        detail: human-readable explanation.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class UnknownFormat(PayloadError):
    """No parser is registered under that format name."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__("unknown_format", f"{name!r}; known formats: {', '.join(known)}")


class ParseError(PayloadError):
    """The payload is not valid syntax for its format."""


class CodecError(PayloadError):
    """LoRaWAN bytes that the device's codec cannot decode."""


class ValidationError(PayloadError):
    """Parsed values that are not physically or logically acceptable."""


class StoreError(LorongError):
    """The time-series store did not take a write or answer a query."""


class StoreUnavailable(StoreError):
    """Retryable: network failure, timeout or HTTP 5xx."""


class StoreRejected(StoreError):
    """Not retryable: the store refused the data (HTTP 4xx).

    Attributes:
        status: the HTTP status (400, 404, 413 ...), or None when the refusal came in a 200 answer
            (an InfluxQL statement error).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class StoreNotReady(StoreError):
    """The database lacks a retention policy Lorong reads (the means): not set up yet."""


class DatabaseUnavailable(LorongError):
    """Retryable: the SQL database (SQLite busy, PostgreSQL down or failing over) did not answer;
    nothing of the operation was committed. The API answers 503, the analytics job skips a run.

    Attributes:
        locked: another process holds the write lock (SQLite ``database is locked``, PostgreSQL
            ``lock_not_available`` after ``lock_timeout``), so waiting a little helps; set where the
            driver's error is translated (:func:`lorong.storage.db.unavailable`).
    """

    def __init__(self, message: str, locked: bool = False) -> None:
        super().__init__(message)
        self.locked = locked


class RegistryError(LorongError):
    """A device-registry operation that cannot be done."""


class UnknownDevice(RegistryError):
    """No device with that id is registered."""


class DeviceExists(RegistryError):
    """A device with that id is already registered."""


class DeviceRetired(RegistryError):
    """The device is retired: it cannot be changed (register a new one instead)."""


class UnknownCity(RegistryError):
    """No city with that id is registered (``lorong cities list`` shows them)."""


class CityExists(RegistryError):
    """A city with that id is already registered."""


class CityInUse(RegistryError):
    """A city that still has devices, API tokens, route plans or alerts cannot be removed (the
    message names them and how to move or remove them)."""


class DeviceError(LorongError):
    """A device's serial console misbehaved during registration."""


class HandoverError(LorongError):
    """Switching between one ingester and ``--workers N`` (:mod:`ingest.handover`) cannot start,
    because the other mode's ingesters still run (nothing was done: stop them), or it stalled or
    lost a connection (it was undone: start again)."""


class ConfigError(LorongError):
    """Settings or configuration files that cannot work."""
