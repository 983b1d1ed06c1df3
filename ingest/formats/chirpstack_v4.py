"""ChirpStack v4 integration events (``chirpstack-v4``), JSON encoding.

Topic ``application/<application id>/device/<dev eui>/event/<event>`` (ChirpStack docs,
integrations/mqtt.md). Only ``up`` events carry measurements (integrations/events.md):
``deviceInfo.{devEui, tags}``, ``time``, ``fCnt``, ``fPort``, ``data`` (base64 FRMPayload),
``object`` (the device profile codec's output, when one is set), ``rxInfo[].rssi``.

- Device id: ``deviceInfo.devEui`` upper-cased; it must equal the topic's DevEUI
  (``device_mismatch``).
- Values: ``object`` when it carries known metrics (:mod:`ingest.vendor_keys`), else ``data`` +
  ``fPort`` as a :class:`lorong.core.model.Frame` for the device's codec.
- ``fCnt``/``fPort``: ChirpStack's JSON omits zero values (the docs' ``up`` example has no
  ``fCnt``, ``adr`` or ``confirmed``), so a missing ``fCnt`` is frame 0.
- ``time`` (RFC 3339, nanoseconds) is the uplink time; ``deviceInfo.tags`` become
  :attr:`lorong.core.model.Uplink.tags`; the strongest gateway's ``rssi`` (dBm) becomes a reading.

Other events (``status``, ``join``, ``ack``, ``txack``, ``log``, ``location``, ``integration``):
the default subscription (``lorong.core.settings.MqttSettings.topics``) asks the broker for
``.../event/up`` only, so they never arrive. :data:`TOPICS` still routes every event topic
here, so that a wider subscription (``application/#``) or a replayed capture gets a clear
``not_an_uplink`` rejection naming the event instead of ``unknown_format``. (``status`` carries
the LoRaWAN DevStatusAns battery level; Lorong reads the device's own battery value instead.)
ChirpStack v3 messages (``devEUI`` at top level, no ``deviceInfo``) and protobuf-encoded
events (integration setting ``json=false``) are rejected as ``bad_envelope`` / ``bad_json``.
"""

from __future__ import annotations

from datetime import datetime

from ingest.formats._common import as_int, best_rssi, load_json_object, lorawan_frame, parse_time, topic_parts
from ingest.vendor_keys import readings_from_object
from lorong.core.errors import ParseError
from lorong.core.model import Uplink

NAME = "chirpstack-v4"
TOPICS = ("application/+/device/+/event/+",)
DEVICE_LEVEL = 3
"""Level of ``TOPICS`` holding the device id (0-based): the one place that says so."""

EVENTS = ("up", "status", "join", "ack", "txack", "log", "location", "integration")
"""Event types of ChirpStack v4 (integrations/events.md)."""


def parse(payload: bytes, topic: str, received_at: datetime) -> list[Uplink]:
    """Parse one ChirpStack v4 ``up`` event.

    Args:
        payload: the MQTT payload (UTF-8 JSON).
        topic: ``application/<app id>/device/<dev eui>/event/<event>``.
        received_at: unused (ChirpStack times are absolute).

    Returns:
        one :class:`Uplink`: decoded readings (vendor units) plus ``rssi``, or a ``frame``.

    Raises:
        ParseError: ``bad_topic``, ``not_an_uplink`` (any event but ``up``), ``bad_json``,
            ``bad_envelope`` (no deviceInfo.devEui, no values, bad fPort), ``device_mismatch``,
            ``bad_base64``, ``bad_time``, ``bad_value`` (a non-numeric string under a known key of
            ``object`` that is not a sensor's no-data text, see :mod:`ingest.vendor_keys`).
    """
    parts = topic_parts(topic, NAME, "application/+/device/+/event/+")
    event = parts[5]
    if event != "up":
        kind = "event" if event in EVENTS else "unknown event"
        raise ParseError("not_an_uplink", f"{NAME}: {kind} '{event[:40]}' carries no measurements (only 'up' does)")
    try:
        obj = load_json_object(payload, NAME)
    except ParseError as exc:
        if "not UTF-8" not in exc.detail:
            raise
        raise ParseError("bad_json", f"{exc.detail} (protobuf events? set the integration's json=true)") from None
    info = obj.get("deviceInfo")
    if not isinstance(info, dict):
        hint = " (a ChirpStack v3 message?)" if "devEUI" in obj else ""
        raise ParseError("bad_envelope", f"{NAME}: no deviceInfo object{hint}")
    dev_eui = info.get("devEui")
    if not isinstance(dev_eui, str) or not dev_eui:
        raise ParseError("bad_envelope", f"{NAME}: no deviceInfo.devEui")
    if dev_eui.upper() != parts[3].upper():
        raise ParseError("device_mismatch", f"{NAME}: deviceInfo.devEui {dev_eui!r:.40} on topic of {parts[3]!r}")
    ts = parse_time(obj["time"], NAME) if obj.get("time") is not None else None
    fcnt = as_int(obj.get("fCnt", 0))
    decoded = obj.get("object")
    readings = tuple(readings_from_object(decoded)) if isinstance(decoded, dict) else ()
    frame = None
    if not readings:
        frame = lorawan_frame(obj.get("data"), obj.get("fPort", 0), NAME, ("object", "data", "fPort"))
    rx = obj.get("rxInfo")
    rssi = best_rssi(g.get("rssi") for g in rx if isinstance(g, dict)) if isinstance(rx, list) else None
    if rssi is not None:
        readings = (*readings, rssi)
    raw_tags = info.get("tags")
    tags = tuple(sorted((str(k), str(v)) for k, v in raw_tags.items() if isinstance(v, str | int | float)
                        and not isinstance(v, bool))) if isinstance(raw_tags, dict) else ()
    return [Uplink(device_id=dev_eui.upper(), readings=readings, frame=frame, fcnt=fcnt, ts=ts, tags=tags)]
