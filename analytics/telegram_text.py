"""What a Telegram chat reads: messages and button words in the chat's language.

A linked chat has a ``language`` (:class:`lorong.core.settings.TelegramChat`, ``id`` Bahasa Indonesia by
default, or ``en``). A message takes the alert type's title and "what to do" from the catalogue
(:mod:`lorong.core.alerts`, the words the crew page shows), the place from the device registry (street,
kelurahan, kecamatan, landmark) and a link to the point on OpenStreetMap, which Telegram opens in
the browser or the phone's map app. The severity words are the catalogue's
(:data:`lorong.core.alerts.SEVERITY_WORDS`), as on the crew page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from lorong.core.alerts import ALERT_TYPES, SEVERITY_WORDS
from lorong.storage.tables import DeviceRow

ACTIONS = ("opened", "escalated", "deescalated", "acknowledged", "cleared", "reminder")
"""The changes a message tells of (:class:`analytics.alerts.AlertChange` actions)."""

BIN_TYPES = frozenset({"bin_full", "bin_full_soon"})
"""Alert types a crew clears by emptying the bin (button "Emptied")."""

WORDS: dict[str, dict[str, str]] = {
    "id": {
        "opened": "baru", "escalated": "makin parah", "deescalated": "mereda", "acknowledged": "sedang ditangani",
        "cleared": "selesai", "reminder": "BELUM DITANGANI",
        "since": "sejak {at}, terlihat {n}x", "acked": "ditangani oleh {who} pukul {at}",
        "cleared_by": "diselesaikan oleh {who} pukul {at}",
        "unacked": "belum ditangani selama {min} menit (pengingat ke-{n})", "alert": "peringatan {id}",
        "nowhere": "tanpa kecamatan", "on_it": "Saya tangani", "emptied": "Sudah dikosongkan", "resolved": "Selesai",
        "unknown_button": "Tombol tidak dikenal", "chat_may_not": "Chat ini tidak boleh menangani peringatan.",
        "alert_may_not": "Chat ini tidak boleh menangani peringatan {id} ({type}, {kecamatan}).",
        "done_ack": "Peringatan {id}: Anda menanganinya.", "done_clear": "Peringatan {id} selesai ({how}).",
    },
    "en": {
        "opened": "new", "escalated": "more severe", "deescalated": "less severe", "acknowledged": "someone is on it",
        "cleared": "cleared", "reminder": "STILL NOT ACKNOWLEDGED",
        "since": "since {at}, seen {n}x", "acked": "acknowledged by {who} at {at}",
        "cleared_by": "cleared by {who} at {at}",
        "unacked": "not acknowledged for {min} min (reminder {n})", "alert": "alert {id}",
        "nowhere": "no kecamatan", "on_it": "On it", "emptied": "Emptied", "resolved": "Resolved",
        "unknown_button": "Unknown button", "chat_may_not": "This chat may not act on alerts.",
        "alert_may_not": "This chat may not act on alert {id} ({type}, {kecamatan}).",
        "done_ack": "Alert {id}: you are on it.", "done_clear": "Alert {id} cleared ({how}).",
    },
}
"""Every phrase of a Telegram message or answer outside the catalogue, per language."""


def say(language: str, key: str, **values: Any) -> str:
    """The phrase ``key`` of :data:`WORDS` in ``language`` (Bahasa Indonesia for an unknown one),
    with ``values`` filled in."""
    return WORDS.get(language, WORDS["id"])[key].format(**values)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a device is, from the registry.

    Attributes:
        street, kelurahan, landmark: as registered (empty when unknown).
        lat, lon: WGS84 degrees, or ``None``.
    """

    street: str = ""
    kelurahan: str = ""
    landmark: str = ""
    lat: float | None = None
    lon: float | None = None


Locate = Callable[[str], Place | None]
"""``locate(device_id)``: the device's :class:`Place`, or ``None`` (unknown device, ``city``)."""


def registry_places(sessions: sessionmaker[Session]) -> Locate:
    """A :data:`Locate` reading the device registry (one primary-key read per message)."""

    def locate(device_id: str) -> Place | None:
        with sessions() as s:
            row = s.get(DeviceRow, device_id)
            if row is None:
                return None
            return Place(row.street or "", row.kelurahan or "", row.landmark or "", row.lat, row.lon)

    return locate


def map_link(lat: float, lon: float) -> str:
    """An OpenStreetMap link to the point at street zoom (the crew page's map link)."""
    return f"https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=18/{lat}/{lon}"


def message_text(action: str, alert: Mapping[str, Any], tz: ZoneInfo, language: str = "id",
                 place: Place | None = None) -> str:
    """The plain text of one change (the one place a Telegram message is worded).

    Args:
        action: opened, escalated, deescalated, acknowledged, cleared or reminder.
        alert: the snapshot (:func:`analytics.alerts.snapshot`): id, type, severity, device_id,
            kecamatan, started_at, ack_by/ack_at, cleared_by/cleared_at, count, details; a
            reminder also ``reminder`` (``unacknowledged_min``, ``reminder``).
        tz: the city's time zone for the times shown.
        language: ``id`` or ``en``.
        place: the device's place (:func:`registry_places`), if known.

    Returns:
        Lines: severity, title and change; device and place; the catalogue's "what to do"; since
        when; the details; who acted; the map link; the alert id. E.g. ``"TINGGI · Tong penuh:
        baru\\nMKS-BIN-0001 · Jl. Somba Opu, Melayu Baru, Wajo (depan Masjid Raya)\\n..."``.
    """
    def local(iso: Any) -> str:
        if not iso:
            return "-"
        ts = datetime.fromisoformat(str(iso)).astimezone(tz)
        return f"{ts:%Y-%m-%d %H:%M} {ts.tzname() or ''}".rstrip()

    type_ = str(alert.get("type"))
    spec = ALERT_TYPES.get(type_)
    words = spec.words.get(language, spec.words["id"]) if spec else None
    severity = str(alert.get("severity", ""))
    sev = SEVERITY_WORDS[severity][language].lower() if severity in SEVERITY_WORDS else severity
    change = say(language, action) if action in ACTIONS else action
    head = f"{sev.upper()} · {words.title if words else type_}: {change}"
    where = [p for p in ((place.street, place.kelurahan) if place else ()) if p]
    where.append(str(alert.get("kecamatan") or "") or say(language, "nowhere"))
    spot = f"{alert.get('device_id')} · {', '.join(where)}"
    if place is not None and place.landmark:
        spot += f" ({place.landmark})"
    lines = [head, spot]
    if words:
        lines.append(words.action)
    lines.append(say(language, "since", at=local(alert.get("started_at")), n=alert.get("count", 1)))
    reminder = alert.get("reminder") if action == "reminder" else None
    if isinstance(reminder, dict):
        lines.append(say(language, "unacked", min=reminder.get("unacknowledged_min"), n=reminder.get("reminder")))
    details = alert.get("details") or {}
    if isinstance(details, dict) and details:
        lines.append(", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in list(details.items())[:4]))
    if alert.get("cleared_by"):
        lines.append(say(language, "cleared_by", who=alert["cleared_by"], at=local(alert.get("cleared_at"))))
    elif alert.get("ack_by"):
        lines.append(say(language, "acked", who=alert["ack_by"], at=local(alert.get("ack_at"))))
    if place is not None and place.lat is not None and place.lon is not None:
        lines.append(map_link(place.lat, place.lon))
    lines.append(say(language, "alert", id=alert.get("id")))
    return "\n".join(lines)


def clear_words(alert_type: str, language: str = "id") -> tuple[str, str]:
    """``(button label in language, clear reason)`` of the clear button for an alert type: "Emptied"
    with the reason ``emptied`` for a full bin, else "Resolved" with ``resolved``."""
    key = "emptied" if alert_type in BIN_TYPES else "resolved"
    return say(language, key), key
