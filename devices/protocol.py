"""The host side of the ``lorong-serial/1`` registration dialogue (specified in devices/PROTOCOL.md).

This module knows the commands and replies; it talks through any :class:`LineLink` (the real
serial port is :class:`devices.serial_link.SerialLink`), so it never touches pyserial.

Errors (all :class:`lorong.core.errors.DeviceError`)::

    DeviceError
      DeviceTimeout    no reply, or a partial line, within the timeout
      GarbledLine      bytes that are not a protocol line (noise, wrong baud rate, wrong reply)
      DeviceNak        the device answered ERR
      LinkLost         the port closed or vanished (cable pulled)
      VerifyFailed     the read-back configuration differs from what was written
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote

from lorong.core.errors import DeviceError
from lorong.core.metrics import METRICS

log = logging.getLogger(__name__)

PROTOCOL = "lorong-serial/1"
REPLY_TIMEOUT_S = 2.0
"""Default wait for one reply (PROTOCOL.md, "Timeouts and failures")."""
TEST_TIMEOUT_S = 5.0
"""Wait for the self-test reply: one ultrasonic or PM measurement takes about a second."""
CONFIG_KEYS = ("broker_host", "broker_port", "topic", "username", "password", "interval_s")


class DeviceTimeout(DeviceError):
    """No complete reply line within the timeout."""


class GarbledLine(DeviceError):
    """Bytes on the line that are not a protocol line, or a reply to another command."""


class DeviceNak(DeviceError):
    """The device refused a command (``ERR <COMMAND> <code> ...``).

    Attributes:
        command: the refused command word.
        code: the device's short error code.
    """

    def __init__(self, command: str, code: str, text: str) -> None:
        self.command = command
        self.code = code
        super().__init__(f"device refused {command}: {code}" + (f" ({text})" if text else ""))


class LinkLost(DeviceError):
    """The serial port closed or vanished."""


class VerifyFailed(DeviceError):
    """The configuration read back from the device differs from what was written."""


class LineLink(Protocol):
    """A bidirectional line channel to a device console."""

    def write_line(self, line: str) -> None:
        """Send one line; the link adds CR LF.

        Raises:
            LinkLost: the port is gone.
        """

    def read_line(self, timeout_s: float) -> str:
        """The next non-empty line (terminator stripped), waiting at most ``timeout_s`` seconds.

        Raises:
            DeviceTimeout, GarbledLine, LinkLost.
        """

    def reset_input(self) -> None:
        """Discard buffered input."""


@dataclass(frozen=True, slots=True)
class Identity:
    """What a device says it is (``OK ID``)."""

    device_id: str
    kind: str
    model: str
    firmware: str


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """The MQTT configuration written to a device.

    Attributes:
        broker_host: host name or IP address as the device reaches the broker.
        broker_port: TCP port, 1..65535.
        topic: uplink topic, ``lorong/v1/<id>/up``.
        username: MQTT user name (the device id).
        password: the device's MQTT password (never logged).
        interval_s: seconds between uplinks.
    """

    broker_host: str
    broker_port: int
    topic: str
    username: str
    password: str
    interval_s: int

    def items(self) -> list[tuple[str, str]]:
        """``(key, value)`` pairs in ``SET`` order, values as text."""
        return [(k, str(getattr(self, k))) for k in CONFIG_KEYS]

    def expected_readback(self) -> dict[str, str]:
        """What ``GET`` must return: every key, the password as ``password_sha256``."""
        out = {k: v for k, v in self.items() if k != "password"}
        out["password_sha256"] = hashlib.sha256(self.password.encode("ascii")).hexdigest()
        return out

    def __repr__(self) -> str:
        return f"DeviceConfig({self.broker_host}:{self.broker_port}, topic={self.topic}, user={self.username})"


def encode_value(value: str) -> str:
    """Percent-encode a value (RFC 3986 section 2.1: only ``A-Za-z0-9-._~`` stay as they are)."""
    return quote(value, safe="-._~")


def parse_reply(line: str, command: str) -> dict[str, str]:
    """Parse the reply to ``command`` into its ``key=value`` fields (values decoded).

    The reply to ``SET`` echoes the key as a bare word and comes back as ``{"key": <key>}``.

    Raises:
        DeviceNak: ``ERR <command> ...``.
        GarbledLine: not ``OK``/``ERR``, a reply to another command, or a field without ``=``.
    """
    words = line.split()
    if len(words) < 2 or words[0] not in ("OK", "ERR"):
        raise GarbledLine(f"expected a reply to {command}, got {line!r}")
    if words[1] != command:
        raise GarbledLine(f"expected a reply to {command}, got a reply to {words[1]}: {line!r}")
    if words[0] == "ERR":
        code = words[2] if len(words) > 2 else "unspecified"
        raise DeviceNak(command, code, " ".join(words[3:]))
    if command == "SET":  # ``OK SET <key>``: the key comes back as a bare word
        if len(words) != 3 or "=" in words[2]:
            raise GarbledLine(f"malformed reply to SET: {line!r}")
        return {"key": words[2]}
    fields: dict[str, str] = {}
    for word in words[2:]:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise GarbledLine(f"malformed field {word!r} in reply to {command}: {line!r}")
        fields[key] = unquote(value, errors="strict")
    return fields


class Console:
    """One registration dialogue with a device over ``link``.

    Args:
        link: the line channel (a :class:`devices.serial_link.SerialLink` in production).
        timeout_s: seconds to wait for each reply.
        test_timeout_s: seconds to wait for the self-test reply.
    """

    def __init__(self, link: LineLink, timeout_s: float = REPLY_TIMEOUT_S,
                 test_timeout_s: float = TEST_TIMEOUT_S) -> None:
        self.link = link
        self.timeout_s = timeout_s
        self.test_timeout_s = max(test_timeout_s, timeout_s)

    def call(self, command: str, argument: str = "", timeout_s: float | None = None) -> dict[str, str]:
        """Send ``command [argument]`` and return the fields of its ``OK`` reply; log lines are skipped.

        Raises:
            DeviceTimeout, GarbledLine, DeviceNak, LinkLost.
        """
        wait = self.timeout_s if timeout_s is None else timeout_s
        self.link.write_line(f"{command} {argument}".rstrip())
        try:
            while True:  # bounded: every read_line waits at most `wait` and log lines are finite
                line = self.link.read_line(wait)
                if line.startswith("#"):
                    log.debug("device log: %s", line)
                    continue
                return parse_reply(line, command)
        except DeviceTimeout as exc:
            raise DeviceTimeout(f"{command}: {exc}") from None

    def hello(self) -> None:
        """Discard buffered noise and check the device speaks ``lorong-serial/1``.

        Raises:
            DeviceNak: the device does not support this protocol version.
        """
        self.link.reset_input()
        fields = self.call("HELLO", PROTOCOL)
        if fields.get("proto") != "1":
            raise GarbledLine(f"device speaks protocol version {fields.get('proto')!r}, this host only 1")

    def identify(self) -> Identity:
        """The device's id, kind, model and firmware version.

        Raises:
            GarbledLine: a field is missing or the kind is not bin/air.
        """
        fields = self.call("ID")
        missing = [k for k in ("id", "kind", "model", "fw") if not fields.get(k)]
        if missing:
            raise GarbledLine(f"ID reply lacks {', '.join(missing)}")
        if fields["kind"] not in ("bin", "air"):
            raise GarbledLine(f"device reports unknown kind {fields['kind']!r}")
        return Identity(fields["id"], fields["kind"], fields["model"], fields["fw"])

    def self_test(self, kind: str) -> dict[str, float]:
        """One live reading: canonical metric name -> value in its canonical unit.

        Raises:
            DeviceError: no metric, an unknown metric, a non-number, a value outside the
                metric's physical range (lorong/core/metrics.py), or a bin without ``distance``.
        """
        fields = self.call("TEST", timeout_s=self.test_timeout_s)
        if not fields:
            raise DeviceError("self-test returned no reading")
        reading: dict[str, float] = {}
        for name, text in fields.items():
            spec = METRICS.get(name)
            if spec is None:
                raise DeviceError(f"self-test reports unknown metric {name!r}")
            try:
                value = float(text)
            except ValueError:
                raise DeviceError(f"self-test value {name}={text!r} is not a number") from None
            if not spec.low <= value <= spec.high:
                raise DeviceError(f"self-test {name}={value} {spec.unit} is outside {spec.low}..{spec.high}: "
                                  "sensor fault?")
            reading[name] = value
        if kind == "bin" and "distance" not in reading:
            raise DeviceError("self-test of a bin sensor did not report distance")
        return reading

    def write_config(self, config: DeviceConfig) -> None:
        """Stage every setting with ``SET``.

        Raises:
            DeviceNak: the device refused a setting.
        """
        for key, value in config.items():
            echoed = self.call("SET", f"{key}={encode_value(value)}")["key"]
            if echoed != key:
                raise GarbledLine(f"SET {key}: device acknowledged {echoed!r} instead")

    def verify_config(self, config: DeviceConfig) -> None:
        """Read the staged configuration back and compare it with ``config``.

        Raises:
            VerifyFailed: a key differs or is missing (the password is compared by SHA-256).
        """
        got = self.call("GET")
        want = config.expected_readback()
        bad = sorted(k for k in want if got.get(k) != want[k])
        if bad:
            shown = ", ".join(f"{k}: wrote {'<password>' if k == 'password_sha256' else want[k]!r}, "
                              f"read {got.get(k)!r}" for k in bad)
            raise VerifyFailed(f"configuration read back differs: {shown}")

    def save(self) -> None:
        """Persist the staged configuration (``SAVE``)."""
        self.call("SAVE")

