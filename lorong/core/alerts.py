"""The catalogue of alert types: names, severity ladders, words and the role that acts on each.

As :mod:`lorong.core.metrics` is for metrics, this is the one place an alert type is named. The rules
(:mod:`analytics.rules`) take their ``TYPE`` and severities from here, the API serves it at
``GET /alerts/types``, the crew page reads its words from that, and the dashboards pick their
alert types by role.

Severities follow the ThingsBoard alarm model (critical, major, minor, warning). A type's
``severities`` is its ladder, least severe first: the only severities it may be raised with.

Roles (see :mod:`api.auth`): ``crew`` empties and rights bins; ``officer`` answers for air quality
(Dinas Lingkungan Hidup); ``technician`` keeps devices alive; ``supervisor`` hears what the crew
could not do. The words are Bahasa Indonesia (``id``, the default) and English (``en``); the
fire brigade number 113 is Indonesia's national number for the Dinas Pemadam Kebakaran.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

SEVERITIES = ("critical", "major", "minor", "warning")
"""Severities, most severe first (ThingsBoard alarm severities)."""

SEVERITY_WORDS: dict[str, dict[str, str]] = {
    "critical": {"id": "Kritis", "en": "Critical"},
    "major": {"id": "Tinggi", "en": "High"},
    "minor": {"id": "Sedang", "en": "Medium"},
    "warning": {"id": "Rendah", "en": "Low"},
}
"""What a person reads for each of :data:`SEVERITIES`: ``{severity: {"id": word, "en": word}}``, one
scale (critical / high / medium / low) so that a level reads the same in both languages."""

LANGUAGES = ("id", "en")
"""Languages every type has words in: Bahasa Indonesia first (the page's default), then English."""

ROLES = ("crew", "officer", "technician", "supervisor")
"""Roles an alert type can be assigned to (a subset of :class:`api.auth.Role`; ``admin`` acts on all)."""

Kind = Literal["bin", "air", "device", "city"]


@dataclass(frozen=True, slots=True)
class Words:
    """What a person reads about an alert type in one language.

    Attributes:
        title: a short name for a card or a notification (a few words).
        action: what to do about it, one sentence in the imperative.
    """

    title: str
    action: str


@dataclass(frozen=True, slots=True)
class AlertType:
    """One alert type.

    Attributes:
        name: the type as stored in ``alerts.type`` and sent on ``lorong/alerts/...`` (snake case).
        severities: the ladder, least severe first: the severities the type may be raised with.
        role: the role that acts on it (acknowledges and clears it): one of :data:`ROLES`.
        kind: what it is about: a ``bin``, an air ``station`` (``air``), any ``device`` (health),
            or the ``city`` as a whole.
        words: ``{"id": Words, "en": Words}``.
        source: where it is raised: ``analytics.rules.<module>`` or ``api`` (a person's report).
        cleared_by_emptying: a person's "Emptied" for the bin clears it (``POST /bins/{id}/emptied``).
    """

    name: str
    severities: tuple[str, ...]
    role: str
    kind: Kind
    words: dict[str, Words]
    source: str
    cleared_by_emptying: bool = False

    def __post_init__(self) -> None:
        if not self.severities or any(s not in SEVERITIES for s in self.severities):
            raise ValueError(f"{self.name}: severities must be some of {SEVERITIES}")
        ranks = [SEVERITIES.index(s) for s in self.severities]
        if ranks != sorted(ranks, reverse=True):
            raise ValueError(f"{self.name}: severities go least severe first")
        if self.role not in ROLES:
            raise ValueError(f"{self.name}: role must be one of {ROLES}")

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (``GET /alerts/types``)."""
        return {"name": self.name, "severities": list(self.severities), "role": self.role, "kind": self.kind,
                "source": self.source,
                "cleared_by_emptying": self.cleared_by_emptying,
                "words": {lang: {"title": w.title, "action": w.action} for lang, w in self.words.items()}}


def _w(id_title: str, id_action: str, en_title: str, en_action: str) -> dict[str, Words]:
    return {"id": Words(id_title, id_action), "en": Words(en_title, en_action)}


BIN_FULL = AlertType(
    "bin_full", ("major", "critical"), "crew", "bin",
    _w("Tong penuh", "Kosongkan tong ini hari ini; kritis berarti sampah sudah hampir meluap.",
       "Bin full", "Empty this bin today; critical means it is about to overflow."),
    "analytics.rules.bin_full", cleared_by_emptying=True)
BIN_FULL_SOON = AlertType(
    "bin_full_soon", ("warning",), "crew", "bin",
    _w("Tong segera penuh", "Tong ini penuh sebelum truk datang: ambil lebih awal bila bisa.",
       "Bin full soon", "This bin fills before its truck comes: pick it up earlier if you can."),
    "analytics.rules.full_soon", cleared_by_emptying=True)
FIRE = AlertType(
    "fire", ("major", "critical"), "crew", "bin",
    _w("Api di tong", "Jauhi tong, jangan buka tutupnya, telepon pemadam kebakaran 113.",
       "Fire in bin", "Keep away, do not open the lid, call the fire brigade on 113."),
    "analytics.rules.fire")
TILT = AlertType(
    "tilt", ("major",), "crew", "bin",
    _w("Tong terguling", "Tegakkan tong dan pungut sampah yang tercecer.",
       "Bin knocked over", "Set the bin upright and pick up the spilled waste."),
    "analytics.rules.tilt")
LID_OPEN = AlertType(
    "lid_open", ("minor",), "crew", "bin",
    _w("Tutup terbuka", "Tutup tongnya; periksa apakah engselnya rusak.",
       "Lid open", "Close the lid; check the hinge is not broken."),
    "analytics.rules.lid_open")
OFFLINE = AlertType(
    "offline", ("major",), "technician", "device",
    _w("Sensor tidak mengirim", "Periksa baterai, antena dan sinyal gateway di lokasi.",
       "Sensor silent", "Check the battery, the antenna and the gateway's signal on site."),
    "analytics.rules.offline")
STUCK = AlertType(
    "stuck", ("minor",), "technician", "device",
    _w("Sensor macet", "Bacaan tidak berubah: bersihkan sensor atau mulai ulang perangkat.",
       "Sensor stuck", "The reading never changes: clean the sensor or restart the device."),
    "analytics.rules.stuck")
LOW_BATTERY = AlertType(
    "low_battery", ("warning", "minor"), "technician", "device",
    _w("Baterai lemah", "Jadwalkan penggantian baterai pada kunjungan berikutnya.",
       "Low battery", "Plan a battery change on the next visit."),
    "analytics.rules.battery")
PAYLOAD_REJECTS = AlertType(
    "payload_rejects", ("minor",), "technician", "device",
    _w("Data ditolak", "Pesan perangkat ditolak: periksa codec dan firmware (lihat dead letters).",
       "Payloads rejected", "The device's messages are refused: check its codec and firmware (see dead letters)."),
    "analytics.rules.rejects")
PM25_HIGH = AlertType(
    "pm25_high", ("major", "critical"), "officer", "air",
    _w("PM2.5 tinggi", "Umumkan peringatan kesehatan: pakai masker, kurangi kegiatan di luar ruangan.",
       "High PM2.5", "Issue a health advisory: wear masks, spend less time outdoors."),
    "analytics.rules.pm25_high")
PM25_SPIKE = AlertType(
    "pm25_spike", ("minor",), "officer", "air",
    _w("Lonjakan PM2.5", "Cari sumber di dekat stasiun: pembakaran sampah, genset, asap dapur.",
       "PM2.5 spike", "Look for a source near the station: waste burning, a generator, cooking smoke."),
    "analytics.rules.pm25_spike")
PM25_EPISODE = AlertType(
    "pm25_episode", ("major",), "officer", "city",
    _w("Kabut asap se-kota", "Banyak stasiun naik bersama: koordinasikan peringatan untuk seluruh kota.",
       "City-wide haze", "Many stations rise together: coordinate a city-wide advisory."),
    "analytics.rules.pm25_episode")
CANT_EMPTY = AlertType(
    "cant_empty", ("major",), "supervisor", "bin",
    _w("Tong tidak bisa dikosongkan", "Baca alasan dari petugas dan atur pengambilan lain atau perbaikan.",
       "Bin could not be emptied", "Read the crew's reason and arrange another pickup or a repair."),
    "api", cleared_by_emptying=True)

_ROWS = (BIN_FULL, BIN_FULL_SOON, FIRE, TILT, LID_OPEN, OFFLINE, STUCK, LOW_BATTERY, PAYLOAD_REJECTS, PM25_HIGH,
         PM25_SPIKE, PM25_EPISODE, CANT_EMPTY)

ALERT_TYPES: dict[str, AlertType] = {t.name: t for t in _ROWS}
"""Every alert type by name."""

CANT_EMPTY_REASONS = ("blocked", "not_found", "damaged", "sensor_broken")
"""Why a crew could not empty a bin (``POST /bins/{id}/cant-empty``): the way is blocked (a parked car,
a market), the bin is not where the registry says, the bin is damaged, or the sensor is broken."""

CANT_EMPTY_WORDS: dict[str, dict[str, str]] = {
    "blocked": {"id": "Jalan terhalang", "en": "Way blocked"},
    "not_found": {"id": "Tong tidak ditemukan", "en": "Bin not found"},
    "damaged": {"id": "Tong rusak", "en": "Bin damaged"},
    "sensor_broken": {"id": "Sensor rusak", "en": "Sensor broken"},
}
"""Words of every :data:`CANT_EMPTY_REASONS` entry."""


def missing_words(names: Iterable[str], catalogue: Mapping[str, AlertType] | None = None) -> list[str]:
    """What is missing for ``names`` to be shown to people: one line per type not in the catalogue,
    and per language of :data:`LANGUAGES` without a title or an action (empty list: nothing)."""
    known = ALERT_TYPES if catalogue is None else catalogue
    out: list[str] = []
    for name in sorted(set(names)):
        spec = known.get(name)
        if spec is None:
            out.append(f"{name}: not in the catalogue (lorong/core/alerts.py)")
            continue
        for lang in LANGUAGES:
            w = spec.words.get(lang)
            if w is None or not w.title.strip():
                out.append(f"{name}: no {lang} title")
            if w is None or not w.action.strip():
                out.append(f"{name}: no {lang} action")
    return out


def alert_type(name: str) -> AlertType:
    """The catalogue entry of ``name``.

    Raises:
        KeyError: not a known alert type.
    """
    return ALERT_TYPES[name]


def payload_words(name: str) -> dict[str, object]:
    """The catalogue's words of an alert type for a notification payload (MQTT, webhook), so that
    subscribers need no table of their own: ``{"title": {"id": ..., "en": ...}, "what_to_do":
    {"id": ..., "en": ...}, "role": "crew"}``; empty for a type not in the catalogue."""
    spec = ALERT_TYPES.get(name)
    if spec is None:
        return {}
    return {"title": {lang: w.title for lang, w in spec.words.items()},
            "what_to_do": {lang: w.action for lang, w in spec.words.items()}, "role": spec.role}


def types_for(role: str) -> tuple[str, ...]:
    """Names of the types ``role`` acts on, in catalogue order."""
    return tuple(t.name for t in _ROWS if t.role == role)


def may_act(role: str, name: str) -> bool:
    """True when a token of ``role`` may acknowledge or clear an alert of type ``name``.

    ``admin`` acts on every type; a ``supervisor`` also on the crew's types (the crew reports to
    them); every other role on its own types. An unknown type is the admin's alone.
    """
    spec = ALERT_TYPES.get(name)
    if role == "admin":
        return True
    if spec is None:
        return False
    return spec.role == role or (role == "supervisor" and spec.role == "crew")
