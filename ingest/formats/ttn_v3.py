"""The Things Stack v3 uplink messages (``ttn-v3``).

Topic ``v3/{application id}@{tenant id}/devices/{device id}/up`` (The Things Stack MQTT
server docs, https://www.thethingsindustries.com/docs/integrations/mqtt/). The JSON is the
``ApplicationUp`` message: ``end_device_ids.{device_id, dev_eui}``, ``received_at``, and
``uplink_message.{f_port, f_cnt, frm_payload (base64), decoded_payload, rx_metadata, received_at}``.

- Device id: ``end_device_ids.dev_eui`` in upper-case hex, else ``end_device_ids.device_id``.
  A message without ``end_device_ids`` is not an ApplicationUp (kotori's
  ``test_tts_ttn_minimal.json`` has only a ``decoded_payload``): ``bad_envelope``. The topic's
  device id must equal ``end_device_ids.device_id`` (``device_mismatch``).
- Values: ``decoded_payload`` when it carries known metrics (:mod:`ingest.vendor_keys`, which
  also strips CayenneLPP ``_<channel>`` suffixes); otherwise ``frm_payload`` goes to the device's
  byte codec as a :class:`lorong.core.model.Frame`.
- ``f_cnt``: TTS omits zero-valued fields from its JSON (protobuf JSON mapping), so a message
  with ``f_port`` and no ``f_cnt`` is frame 0.
- Time: ``uplink_message.received_at`` (network server), else the top-level ``received_at``.
- ``rssi``: the strongest gateway's ``rx_metadata[].rssi`` (dBm).
- Other application messages (``join_accept``, ``downlink_*``, ``location_solved``,
  ``service_data``) are rejected as ``not_an_uplink`` if a wider subscription routes them here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ingest.formats._common import as_int, best_rssi, load_json_object, lorawan_frame, parse_time
from ingest.vendor_keys import readings_from_object
from lorong.core.errors import ParseError
from lorong.core.model import Uplink

NAME = "ttn-v3"
TOPICS = ("v3/+/devices/+/up",)
DEVICE_LEVEL = 3
"""Level of ``TOPICS`` holding the device id (0-based): the one place that says so."""

_OTHER_MESSAGES = ("join_accept", "downlink_ack", "downlink_nack", "downlink_sent", "downlink_failed",
                   "downlink_queued", "downlink_queue_invalidated", "location_solved", "service_data")


def _device_id(obj: dict[str, Any], topic: str) -> str:
    ids = obj.get("end_device_ids")
    if not isinstance(ids, dict):
        raise ParseError("bad_envelope", f"{NAME}: no end_device_ids object, so no device to attribute it to")
    dev_id, dev_eui = ids.get("device_id"), ids.get("dev_eui")
    parts = topic.split("/")
    level = parts[DEVICE_LEVEL] if len(parts) == 5 else ""
    if isinstance(dev_id, str) and dev_id and level and level != dev_id:
        raise ParseError("device_mismatch", f"{NAME}: end_device_ids.device_id {dev_id!r:.80} on topic of {level!r}")
    if isinstance(dev_eui, str) and dev_eui:
        return dev_eui.upper()
    if isinstance(dev_id, str) and dev_id:
        return dev_id
    raise ParseError("bad_envelope", f"{NAME}: end_device_ids has neither dev_eui nor device_id")


def parse(payload: bytes, topic: str, received_at: datetime) -> list[Uplink]:
    """Parse one TTS v3 uplink message.

    Args:
        payload: the MQTT payload (UTF-8 JSON).
        topic: the MQTT topic; its device id is checked against the payload.
        received_at: unused (TTS times are absolute).

    Returns:
        one :class:`Uplink`: decoded readings (vendor units) plus ``rssi``, or a ``frame``.

    Raises:
        ParseError: ``bad_json``, ``not_an_uplink``, ``bad_envelope`` (no uplink_message, no
            device ids, no values, no integer f_port with a frm_payload), ``device_mismatch``,
            ``bad_base64``, ``bad_time``, ``bad_value`` (a ``decoded_payload`` value that is a
            string but neither a number nor a sensor's no-value word, see
            :func:`ingest.vendor_keys.readings_from_object`).
    """
    obj = load_json_object(payload, NAME)
    up = obj.get("uplink_message")
    if not isinstance(up, dict):
        other = next((k for k in _OTHER_MESSAGES if k in obj), None)
        if other:
            raise ParseError("not_an_uplink", f"{NAME}: a {other} message carries no measurements")
        raise ParseError("bad_envelope", f"{NAME}: no uplink_message object")
    device_id = _device_id(obj, topic)
    ts_text = up.get("received_at") or obj.get("received_at")
    ts = parse_time(ts_text, NAME) if ts_text else None
    fport = as_int(up.get("f_port"))
    fcnt = as_int(up.get("f_cnt"))
    if fcnt is None and fport is not None and "f_cnt" not in up:
        fcnt = 0
    decoded = up.get("decoded_payload")
    readings = tuple(readings_from_object(decoded)) if isinstance(decoded, dict) else ()
    frame = None
    if not readings:
        frame = lorawan_frame(up.get("frm_payload"), up.get("f_port"), NAME,
                              ("decoded_payload", "frm_payload", "f_port"))
    meta = up.get("rx_metadata")
    rssi = best_rssi(m.get("rssi") for m in meta if isinstance(m, dict)) if isinstance(meta, list) else None
    if rssi is not None:
        readings = (*readings, rssi)
    return [Uplink(device_id=device_id, readings=readings, frame=frame, fcnt=fcnt, ts=ts)]
