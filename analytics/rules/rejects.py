"""Too many rejected payloads: ``payload_rejects`` (minor) when a device has ``rejects_limit`` (5)
or more dead letters within ``rejects_window_s`` (1 h): a wrong codec, a firmware sending a new
layout, a clock never set. The dead-letter store keeps topic and raw payload; the device is
read from the topic (:func:`device_from_topic`). Clears when the count falls below half the limit.
"""

from __future__ import annotations

import re

from analytics.rules.base import Context, Verdict
from core import alerts

SPEC = alerts.PAYLOAD_REJECTS
TYPE = SPEC.name
(MINOR,) = SPEC.severities

_HEX16 = re.compile(r"^(?:eui-)?([0-9A-Fa-f]{16})$")


def device_from_topic(topic: str) -> str | None:
    """The device id in an uplink topic, or None for a topic of no known layout.

    Layouts: ``lorong/v1/<id>/up`` (native JSON), ``v3/<app>/devices/<id>/up`` (The Things
    Stack v3), ``application/<app>/device/<devEui>/event/up`` (ChirpStack v4),
    ``airrohr/<id>`` and ``senml/<id>``. A 16-hex-digit id (optionally ``eui-`` prefixed, as
    The Things Stack names devices by default) is a DevEUI and is upper-cased like the registry.
    """
    parts = topic.split("/")
    dev: str | None = None
    if len(parts) == 4 and parts[0] == "lorong" and parts[3] == "up":
        dev = parts[2]
    elif len(parts) >= 5 and (parts[0], parts[2]) in (("v3", "devices"), ("application", "device")):
        dev = parts[3]
    elif len(parts) == 2 and parts[0] in ("airrohr", "senml"):
        dev = parts[1]
    if not dev:
        return None
    m = _HEX16.match(dev)
    return m.group(1).upper() if m else dev


def evaluate(ctx: Context) -> list[Verdict]:
    """Raise or clear ``payload_rejects`` for every active device."""
    limit = ctx.cfg.rejects_limit
    out: list[Verdict] = []
    for dev in ctx.devices.values():
        reasons = ctx.rejects.get(dev.device_id, {})
        count = sum(reasons.values())
        if count >= limit:
            out.append(Verdict(dev.device_id, TYPE, MINOR,
                               {"rejected": count, "window_s": ctx.cfg.rejects_window_s, "reasons": dict(reasons)},
                               kecamatan=dev.kecamatan, evidence_at=ctx.rejects_newest.get(dev.device_id)))
        elif count < limit / 2 and ctx.is_active(dev.device_id, TYPE):
            out.append(Verdict(dev.device_id, TYPE, None, reason=f"{count} rejects in the window",
                               kecamatan=dev.kecamatan))
    return out
