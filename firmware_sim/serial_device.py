"""A simulated sensor console: the device side of ``lorong-serial/1`` on a pseudo-terminal.

The dialogue is specified in devices/PROTOCOL.md. :class:`SerialDevice` opens a pty pair
(``os.openpty``), serves the master end from a thread and exposes the slave path as
:attr:`SerialDevice.port`, so ``lorong devices register --port <that path>`` talks to it
exactly as to a USB-serial adapter. Faults make it misbehave once, on a chosen command, the way
real consoles do in the field:

=========  ================================================================================
fault      what the device does on the faulted command
=========  ================================================================================
ok         nothing wrong
slow       replies after ``delay_s`` (longer than the host's timeout)
partial    sends the first half of the reply and no line ending, then stays silent
garbage    sends noise bytes (a wrong baud rate looks like this) instead of the reply
nak        answers ``ERR <COMMAND> flash_locked ...`` and does not act on the command
hangup     closes the pty before acting on the command (the cable is pulled)
corrupt    stores the value of a ``SET`` with its last character lost (read-back differs)
=========  ================================================================================

With ``slow``, ``partial`` and ``garbage`` the command still takes effect (a ``SAVE`` saves): only
the reply is lost, as when a cable is pulled after the device acted.

``ending`` picks the line ending the device uses for every line: ``crlf``, ``lf`` or ``cr``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import threading
import tty
from enum import StrEnum
from urllib.parse import quote, unquote

ENDINGS = {"crlf": b"\r\n", "lf": b"\n", "cr": b"\r"}
KEYS = ("broker_host", "broker_port", "topic", "username", "password", "interval_s")
NOISE = b"\xfe\x13\x8b\x00\xc3\x7f\xe0\x01"
"""What 115200-baud text looks like when read at 9600 baud: high and control bytes."""


class Fault(StrEnum):
    """How the simulated device misbehaves (see the module docstring)."""

    OK = "ok"
    SLOW = "slow"
    PARTIAL = "partial"
    GARBAGE = "garbage"
    NAK = "nak"
    HANGUP = "hangup"
    CORRUPT = "corrupt"


def _enc(value: str) -> str:
    return quote(value, safe="-._~")


class SerialDevice:
    """A Lorong sensor console on a pty.

    Args:
        device_id: the serial number it reports.
        kind: ``bin`` or ``air``.
        model, firmware: reported by ``ID``.
        fault: misbehaviour (a :class:`Fault` value).
        fault_on: the command line prefix the fault applies to, once (``"SET"``, ``"SET password"``,
            ``"ID"``, ``"TEST"``, ``"GET"``, ``"SAVE"`` ...).
        ending: ``crlf``, ``lf`` or ``cr``: the line ending of every line it sends.
        delay_s: reply delay of the ``slow`` fault, seconds.
        reading: the self-test reading, canonical metric -> value (default: a plausible one).

    Attributes:
        port: path of the pty slave to open as the serial port.
        saved: the configuration after ``SAVE`` (``None`` before), key -> value.
        commands: every command line received (passwords masked).
    """

    def __init__(self, device_id: str = "MKS-BIN-0042", kind: str = "bin", model: str = "LRG-US1",
                 firmware: str = "1.4.2", fault: str = "ok", fault_on: str = "SET", ending: str = "crlf",
                 delay_s: float = 5.0, reading: dict[str, float] | None = None) -> None:
        self.device_id, self.kind, self.model, self.firmware = device_id, kind, model, firmware
        self.fault, self.fault_on, self.delay_s = Fault(fault), fault_on, delay_s
        self.eol = ENDINGS[ending]
        self.reading = reading or ({"distance": 812.0, "batteryLevel": 0.93, "temperature": 31.5} if kind == "bin"
                                   else {"pm25": 18.4, "pm10": 31.0, "temperature": 30.2, "relativeHumidity": 0.78})
        self.staged: dict[str, str] = {}
        self.saved: dict[str, str] | None = None
        self.commands: list[str] = []
        self._fault_pending = self.fault is not Fault.OK
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"serial-device-{device_id}", daemon=True)
        self._closed = False

    def start(self) -> SerialDevice:
        """Boot: print a log line and some noise (the host must discard it), then serve."""
        self._send(b"# lorong " + self.kind.encode() + b" sensor booting" + self.eol + NOISE[:3])
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the pty."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._close()

    def __enter__(self) -> SerialDevice:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            for fd in (self._master, self._slave):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self._master, data)

    def _serve(self) -> None:
        buf = bytearray()
        while not self._stop.is_set() and not self._closed:
            try:
                ready, _, _ = select.select([self._master], [], [], 0.1)
                if not ready:
                    continue
                buf += os.read(self._master, 1024)
            except OSError:  # the host side closed and nothing holds the slave, or we hung up
                return
            while not self._closed:
                cuts = [i for i in (buf.find(b"\r"), buf.find(b"\n")) if i >= 0]
                if not cuts:
                    break
                raw, buf = bytes(buf[:min(cuts)]), buf[min(cuts) + 1:]
                if raw:
                    self._handle(raw.decode("ascii", errors="replace"))

    def _handle(self, line: str) -> None:
        self.commands.append(line.split("password=")[0] + "password=***" if "password=" in line else line)
        faulted = self._fault_pending and line.startswith(self.fault_on)
        if faulted:
            self._fault_pending = False
        if faulted and self.fault is Fault.HANGUP:
            self._close()
            return
        if faulted and self.fault is Fault.NAK:  # refused: no state change
            self._send(f"ERR {line.split()[0]} flash_locked configuration memory is write-protected".encode()
                       + self.eol)
            return
        # the command takes effect; only the reply misbehaves
        reply = self._answer(line, corrupt=faulted and self.fault is Fault.CORRUPT).encode("ascii")
        if not faulted or self.fault is Fault.CORRUPT:
            self._send(reply + self.eol)
        elif self.fault is Fault.SLOW:
            if not self._stop.wait(self.delay_s):
                self._send(reply + self.eol)
        elif self.fault is Fault.PARTIAL:
            self._send(reply[: max(1, len(reply) // 2)])
        elif self.fault is Fault.GARBAGE:
            self._send(NOISE + reply[:4] + NOISE + self.eol)

    def _answer(self, line: str, corrupt: bool = False) -> str:
        command, _, arg = line.partition(" ")
        if command == "HELLO":
            if arg.strip() != "lorong-serial/1":
                return f"ERR HELLO unsupported this firmware speaks lorong-serial/1, not {arg.strip()}"
            self.staged.clear()
            self._send(b"# console ready" + self.eol)
            return "OK HELLO proto=1"
        if command == "ID":
            return (f"OK ID id={_enc(self.device_id)} kind={self.kind} model={_enc(self.model)} "
                    f"fw={_enc(self.firmware)}")
        if command == "TEST":
            return "OK TEST " + " ".join(f"{k}={v:g}" for k, v in self.reading.items())
        if command == "SET":
            return self._set(arg, corrupt)
        if command == "GET":
            fields = {k: v for k, v in self.staged.items() if k != "password"}
            if "password" in self.staged:
                fields["password_sha256"] = hashlib.sha256(self.staged["password"].encode()).hexdigest()
            return "OK GET " + " ".join(f"{k}={_enc(v)}" for k, v in fields.items())
        if command == "SAVE":
            missing = [k for k in KEYS if k not in self.staged]
            if missing:
                return f"ERR SAVE incomplete missing {','.join(missing)}"
            self.saved = dict(self.staged)
            return "OK SAVE"
        return f"ERR {command or '?'} unknown_command"

    def _set(self, arg: str, corrupt: bool) -> str:
        key, sep, raw = arg.partition("=")
        if not sep or key not in KEYS:
            return f"ERR SET unknown_key {key!r} is not a setting"
        value = unquote(raw)
        if key in ("broker_port", "interval_s"):
            limit = 65535 if key == "broker_port" else 604800
            if not value.isdigit() or not 1 <= int(value) <= limit:
                return f"ERR SET bad_value {key} must be 1..{limit}"
        self.staged[key] = value[:-1] if corrupt else value
        return f"OK SET {key}"
