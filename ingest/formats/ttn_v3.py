"""The Things Stack v3 uplink messages (``ttn-v3``).

Topic ``v3/{application id}@{tenant id}/devices/{device id}/up`` (The Things Stack MQTT
server docs, https://www.thethingsindustries.com/docs/integrations/mqtt/). The JSON is the
``ApplicationUp`` message: ``end_device_ids.dev_eui``, ``received_at``, and
``uplink_message.{f_port, f_cnt, frm_payload (base64), decoded_payload, rx_metadata}``.

``decoded_payload`` is used when it carries known metrics (:mod:`ingest.vendor_keys`);
otherwise ``frm_payload`` goes to the device's byte codec. The device id is the DevEUI in
upper-case hex, else the TTS device id from the topic.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from core.errors import ParseError
from core.model import Frame, RawReading, Uplink
from ingest.formats._common import load_json_object, parse_time
from ingest.vendor_keys import readings_from_object

NAME = "ttn-v3"
TOPICS = ("v3/+/devices/+/up",)


def parse(payload: bytes, topic: str, received_at: datetime) -> list[Uplink]:
    """Parse one TTS v3 uplink message.

    Raises:
        ParseError: ``bad_json``, ``bad_envelope`` (no uplink_message / no device id / no
            f_port with a frm_payload), ``bad_base64``, ``bad_time``.
    """
    obj = load_json_object(payload, NAME)
    up = obj.get("uplink_message")
    if not isinstance(up, dict):
        raise ParseError("bad_envelope", f"{NAME}: no uplink_message object")
    ids: dict[str, Any] = obj.get("end_device_ids") or {}
    parts = topic.split("/")
    device_id = str(ids.get("dev_eui") or "").upper() or str(ids.get("device_id") or "") or (
        parts[3] if len(parts) == 5 else "")
    if not device_id:
        raise ParseError("bad_envelope", f"{NAME}: no end_device_ids.dev_eui and no device in topic")
    ts_text = up.get("received_at") or obj.get("received_at")
    ts = parse_time(ts_text, NAME) if ts_text else None
    fcnt = up.get("f_cnt")
    fcnt = fcnt if isinstance(fcnt, int) else (0 if "f_port" in up and "f_cnt" not in up else None)
    decoded = up.get("decoded_payload")
    readings = tuple(readings_from_object(decoded)) if isinstance(decoded, dict) else ()
    frame = None
    if not readings:
        raw = up.get("frm_payload")
        if raw is None:
            raise ParseError("bad_envelope", f"{NAME}: neither decoded_payload metrics nor frm_payload")
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ParseError("bad_base64", f"{NAME}: frm_payload is not base64") from None
        fport = up.get("f_port")
        if not isinstance(fport, int):
            raise ParseError("bad_envelope", f"{NAME}: frm_payload without an integer f_port")
        frame = Frame(fport=fport, payload=data)
    rssi = [m.get("rssi") for m in up.get("rx_metadata") or [] if isinstance(m, dict)]
    best = max((r for r in rssi if isinstance(r, int | float) and not isinstance(r, bool)), default=None)
    if best is not None:  # strongest gateway's RSSI, dBm
        readings = (*readings, RawReading("rssi", float(best), "dBm"))
    return [Uplink(device_id=device_id, readings=readings, frame=frame, fcnt=fcnt, ts=ts)]
