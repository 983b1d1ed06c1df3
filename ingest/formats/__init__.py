"""Payload formats: one module per gateway format, each pure.

A format module exposes ``NAME``, ``TOPICS`` (the MQTT topic filters it serves by default),
``DEVICE_LEVEL`` (the topic level holding the device id, read by :func:`device_in_topic`) and
``parse(payload: bytes, topic: str, received_at: datetime) -> list[Uplink]``. ``parse`` does no
I/O and reads no clock (``received_at`` is given for relative times); it raises
:class:`lorong.core.errors.ParseError` (reason ``bad_json``, ``bad_envelope``, ``bad_value`` ...) and
nothing else. LoRaWAN formats return an :class:`lorong.core.model.Uplink` with a ``frame`` when the
network server did not decode the bytes; the pipeline then applies the device's codec.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from types import ModuleType

from ingest.formats import airrohr, chirpstack_v4, lorong_json, senml, ttn_v3
from lorong.core.errors import UnknownFormat
from lorong.core.model import Uplink

Parser = Callable[[bytes, str, datetime], list[Uplink]]

_MODULES: tuple[ModuleType, ...] = (lorong_json, ttn_v3, chirpstack_v4, senml, airrohr)

FORMATS: dict[str, Parser] = {m.NAME: m.parse for m in _MODULES}
"""Parser functions by format name."""

TOPICS: dict[str, tuple[str, ...]] = {m.NAME: tuple(m.TOPICS) for m in _MODULES}
DEVICE_LEVEL: dict[str, int] = {m.NAME: m.DEVICE_LEVEL for m in _MODULES}
"""Topic level of the device id, by format name."""
"""Default MQTT topic filters served by each format."""


def get_parser(name: str) -> Parser:
    """The parse function of format ``name``.

    Raises:
        UnknownFormat: no format has that name.
    """
    try:
        return FORMATS[name]
    except KeyError:
        raise UnknownFormat(name, sorted(FORMATS)) from None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching (MQTT 5.0 section 4.7): ``+`` one level, ``#`` the rest.

    A ``$share/<group>/`` prefix on the filter is ignored.
    """
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    for i, f in enumerate(f_parts):
        if f == "#":
            return True
        if i >= len(t_parts) or (f != "+" and f != t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)


def format_for_topic(topic: str) -> str:
    """Name of the format whose topic filters match ``topic``.

    Raises:
        UnknownFormat: no format serves that topic.
    """
    for name, filters in TOPICS.items():
        if any(topic_matches(f, topic) for f in filters):
            return name
    raise UnknownFormat(f"(topic {topic})", sorted(FORMATS))


_HEX16 = re.compile(r"^(?:eui-)?([0-9A-Fa-f]{16})$")


def device_in_topic(topic: str) -> str | None:
    """The device id in an uplink topic of a known format (:data:`DEVICE_LEVEL` of the format whose
    ``TOPICS`` match), or None. A 16-hex-digit id (optionally ``eui-`` prefixed, as The Things
    Stack names devices by default) is a DevEUI and is upper-cased like the registry.

    Used for messages that did not parse (their payload names no device); a parsed uplink's
    device id comes from the payload.
    """
    try:
        name = format_for_topic(topic)
    except UnknownFormat:
        return None
    level = topic.split("/")[DEVICE_LEVEL[name]]
    if not level:
        return None
    m = _HEX16.match(level)
    return m.group(1).upper() if m else level
