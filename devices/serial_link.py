"""The serial port: the only module that imports pyserial.

A :class:`SerialLink` sends and receives the lines of the registration dialogue
(devices/PROTOCOL.md): it ends what it sends with CR LF, accepts CR LF, LF or CR from the
device, and turns every pyserial or OS failure into a :class:`lorong.core.errors.DeviceError` that names
the port.
"""

from __future__ import annotations

import logging
import termios
import time

import serial

from devices.protocol import DeviceTimeout, GarbledLine, LinkLost

log = logging.getLogger(__name__)

BAUDRATE = 115200
MAX_LINE = 255
"""Longest line in bytes, terminator excluded (PROTOCOL.md, "Line discipline")."""
_POLL_S = 0.05
_PRINTABLE = frozenset(range(0x20, 0x7F)) | {0x09}
_PORT_ERRORS = (serial.SerialException, OSError, termios.error)
"""What a vanished port raises: pyserial wraps most faults, but tcdrain/tcflush raise termios.error."""


class SerialLink:
    """An open serial port speaking lines.

    Args:
        port: device path, e.g. ``/dev/ttyUSB0`` or a pty slave ``/dev/pts/5``.
        baudrate: bits per second (8N1, no flow control).

    Raises:
        LinkLost: the port cannot be opened (missing, busy, no permission).
    """

    def __init__(self, port: str, baudrate: int = BAUDRATE) -> None:
        self.port = port
        self._buf = bytearray()
        try:
            self._ser = serial.Serial(port, baudrate, bytesize=8, parity="N", stopbits=1, timeout=_POLL_S,
                                      write_timeout=2.0, exclusive=True)
        except (*_PORT_ERRORS, ValueError) as exc:
            raise LinkLost(f"cannot open serial port {port}: {exc}") from exc

    def write_line(self, line: str) -> None:
        """Send ``line`` followed by CR LF.

        Raises:
            LinkLost: the write failed (port gone) or timed out.
        """
        log.debug("%s > %s", self.port, line.split("password=")[0] + ("password=***" if "password=" in line else ""))
        try:
            self._ser.write(line.encode("ascii") + b"\r\n")
            self._ser.flush()
        except _PORT_ERRORS as exc:
            raise LinkLost(f"serial port {self.port} closed (cable pulled?) while writing: {exc}") from exc

    def _take_line(self) -> bytes | None:
        """Pop the first complete line from the buffer (empty lines dropped), or ``None``."""
        while True:
            ends = [i for i in (self._buf.find(b"\r"), self._buf.find(b"\n")) if i >= 0]
            if not ends:
                return None
            cut = min(ends)
            raw = bytes(self._buf[:cut])
            del self._buf[:cut + 1]
            if raw:
                return raw

    def read_line(self, timeout_s: float) -> str:
        """The next non-empty line from the device, terminator stripped.

        Raises:
            DeviceTimeout: no complete line within ``timeout_s`` (the message shows any partial line).
            GarbledLine: non-ASCII or control bytes, or a line longer than :data:`MAX_LINE`.
            LinkLost: the port closed or vanished.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            raw = self._take_line()
            if raw is not None:
                return self._check(raw)
            if len(self._buf) > MAX_LINE:
                raise GarbledLine(f"line longer than {MAX_LINE} bytes without an ending: {bytes(self._buf[:60])!r}...")
            if time.monotonic() >= deadline:
                if self._buf:
                    raise DeviceTimeout(f"partial line {bytes(self._buf)!r} and no line ending within {timeout_s} s")
                raise DeviceTimeout(f"no reply within {timeout_s} s")
            try:
                chunk = self._ser.read(max(1, self._ser.in_waiting))
            except _PORT_ERRORS as exc:
                raise LinkLost(f"serial port {self.port} closed (cable pulled?): {exc}") from exc
            self._buf += chunk

    def _check(self, raw: bytes) -> str:
        bad = [b for b in raw if b not in _PRINTABLE]
        if bad or len(raw) > MAX_LINE:
            raise GarbledLine(f"garbage on the serial line: {raw[:80]!r} (wrong baud rate, noise, or not a "
                              "Lorong device?)")
        line = raw.decode("ascii")
        log.debug("%s < %s", self.port, line)
        return line

    def reset_input(self) -> None:
        """Discard what the device sent so far (boot noise)."""
        self._buf.clear()
        try:
            self._ser.reset_input_buffer()
        except _PORT_ERRORS as exc:
            raise LinkLost(f"serial port {self.port} failed: {exc}") from exc

    def close(self) -> None:
        """Close the port (errors ignored: it may be gone already)."""
        try:
            self._ser.close()
        except _PORT_ERRORS as exc:
            log.debug("closing %s: %s", self.port, exc)

    def __enter__(self) -> SerialLink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
