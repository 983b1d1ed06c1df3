"""Score a replay's decisions against a scenario's truth (firmware_sim/SCENARIO.md, "Scoring").

Pure: :func:`score` takes the two parsed JSON documents (``truth.json`` version 1, the decisions
of :mod:`analytics.replay` version 1) and returns a :class:`ScoreReport`; :func:`load` reads a
file; :func:`targets_met` lists the targets a report misses.

Rules, in the scenario's words and ours:

* **alerts**: an alert of a type matches an event of that type and device when it opened within
  ``[start - 10 min, (end or scenario end) + grace]``; grace 30 min (``offline``, ``stuck``: 60);
  an event with ``info.match_from`` earlier than that (``bin_full``: when the true level came within
  the sensor's accuracy of the threshold, where its readings cannot tell the two apart) matches
  alerts opened from then on.
  Alerts are taken in opening order. One that matches a required event no alert has hit yet is a
  hit (the earliest such event); one that matches only required events already hit is a re-open;
  one that matches only events that do not count (``required: false``, or started in the warm-up)
  is ignored; any other is a false alarm. Precision = hits / (hits + false alarms + re-opens);
  recall = hits / required events. Delay = open time - event start; for ``bin_full_soon`` the
  lead time ``info.cross_at`` - open time instead.
* **warm-up**: events that start before ``truth.start + warmup_h``, or whose ``info.match_from``
  is before it, do not count (neither required nor a reason for a false alarm); alerts opened
  before it and forecasts made before it are ignored (so an event an alert in the warm-up may
  rightly have caught is not scored). Pickups need no history and are all scored.
* **pickups**: taken in time order, a decision pickup matches the closest unmatched truth pickup
  of its bin within 30 min; matching a ``required: false`` one it is ignored, matching none it is
  false. Recall counts required truth pickups only.
* **time to full**: each forecast ``(device, now, full_at)`` is compared with the ``cross_at`` of
  the bin's truth cycle holding ``now`` (``start <= now < end``, or ``end`` null) when
  ``now < cross_at``; horizon ``cross_at - now`` in buckets ``[1, 3)``, ``[3, 6)``, ``[6, 12)``,
  ``[12, 24)`` h; error ``|full_at - cross_at|`` in hours. A forecast with ``full_at`` null in a
  bucket is counted in ``n_missing``.
* **lookalikes** (informative): per lookalike kind (its type and ``what`` with numbers as ``#``),
  alerts of its type (type ``pickup``: stored pickups) on its device within 1 h either side of it.

Quantiles interpolate linearly between order statistics (numpy's default).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from lorong.core.errors import LorongError

CITY_WIDE = "city"
"""The truth's device of city-wide events, the rules' pseudo-device (:data:`analytics.rules.pm25_episode.CITY`);
a city run on its own writes ``city:<id>`` (:func:`analytics.jobs.city_device`)."""
TOLERANCE = timedelta(minutes=10)
"""How long before an event's start an alert may open and still match it."""
GRACE = timedelta(minutes=30)
"""How long after an event's end an alert may open and still match it (default)."""
GRACE_BY_TYPE: dict[str, timedelta] = {"offline": timedelta(minutes=60), "stuck": timedelta(minutes=60)}
"""Types whose grace differs from :data:`GRACE`."""
PICKUP_WINDOW = timedelta(minutes=30)
"""Largest time difference of a decision pickup and the truth pickup it matches."""
LOOKALIKE_WINDOW = timedelta(hours=1)
"""An alert within this time of a lookalike (either side) was fooled by it."""
BUCKETS: tuple[tuple[str, float, float], ...] = (("1-3", 1.0, 3.0), ("3-6", 3.0, 6.0), ("6-12", 6.0, 12.0),
                                                 ("12-24", 12.0, 24.0))
"""Time-to-full horizon buckets: ``(name, from_h, to_h)``, from included, to excluded."""
LEAD_TYPES = frozenset({"bin_full_soon"})
"""Types whose timing is a lead time (``info.cross_at`` - open time), not a delay."""

TARGETS: dict[str, tuple[float, float]] = {"bin_full": (0.98, 0.99), "pm25_episode": (0.90, 0.90)}
"""Per-type (precision, recall) targets; other types :data:`DEFAULT_TARGET`."""
DEFAULT_TARGET = (0.95, 0.95)
PICKUP_TARGET = (0.98, 0.98)
TTF_TARGET_H: dict[str, float] = {"1-3": 1.5, "3-6": 1.5, "6-12": 1.5, "12-24": 3.0}
"""Largest median absolute time-to-full error per bucket, hours."""


_NUMBER = re.compile(r"(?<![A-Za-z])\d+(\.\d+)?")
"""A number in a lookalike's ``what`` (not a unit's digit: ``ug/m3`` stays)."""


class ScoreInputError(LorongError):
    """A truth or decisions document is unreadable, of another version, or misses a field."""


class NothingToScore(ScoreInputError):
    """The scenario ends within the warm-up: every event, alert and forecast would be left out, and
    an empty score reads as "all targets met"."""


@dataclass(frozen=True, slots=True)
class TypeScore:
    """How one alert type did.

    Attributes:
        type: alert type.
        required: required events that count (started after the warm-up).
        not_required: events with ``required: false`` after the warm-up.
        warmup_events: events that started during the warm-up (not counted).
        alerts: alerts of the type opened after the warm-up.
        hits, false_alarms, reopens, ignored: what those alerts were (they add up to ``alerts``).
        misses: required events no alert hit.
        precision, recall, f1: fractions 0..1; ``None`` when undefined (no alerts scored / no
            required events).
        timing: ``delay`` (open - start) or ``lead`` (cross_at - open, ``bin_full_soon``).
        timing_p50_min, timing_p90_min: quantiles of the hits' delay or lead, minutes (``None``
            without hits).
    """

    type: str
    required: int
    not_required: int
    warmup_events: int
    alerts: int
    hits: int
    false_alarms: int
    reopens: int
    ignored: int
    misses: int
    precision: float | None
    recall: float | None
    f1: float | None
    timing: str
    timing_p50_min: float | None
    timing_p90_min: float | None


@dataclass(frozen=True, slots=True)
class PickupScore:
    """Pickups found against truth pickups.

    Attributes:
        truth: truth pickups; ``required`` of them count for recall.
        decisions: pickups the job stored.
        hits: decision pickups matched to a required truth pickup.
        false: decision pickups matching none.
        ignored: decision pickups matched to a ``required: false`` truth pickup.
        misses: required truth pickups not matched.
        precision, recall, f1: 0..1 or ``None`` when undefined.
        offset_p50_min: median of ``|decision - truth|`` over hits, minutes.
    """

    truth: int
    required: int
    decisions: int
    hits: int
    false: int
    ignored: int
    misses: int
    precision: float | None
    recall: float | None
    f1: float | None
    offset_p50_min: float | None


@dataclass(frozen=True, slots=True)
class TtfBucket:
    """Time-to-full error in one horizon bucket.

    Attributes:
        bucket: ``"1-3"`` ... (hours, see :data:`BUCKETS`).
        n: forecasts with a ``full_at`` in the bucket.
        median_h, p90_h: quantiles of ``|full_at - cross_at|``, hours (``None`` when ``n`` is 0).
        n_missing: forecasts in the bucket with ``full_at`` null.
    """

    bucket: str
    n: int
    median_h: float | None
    p90_h: float | None
    n_missing: int


@dataclass(frozen=True, slots=True)
class LookalikeScore:
    """Lookalikes of one kind and how many alerts they drew.

    Attributes:
        type: the alert type the lookalike imitates (``pickup``: a pickup; ``duplicate``: nothing to open).
        what: the kind, numbers replaced by ``#`` (``"round reaches it # h before it fills"``).
        n: lookalikes of the kind after the warm-up.
        fooled: alerts of ``type`` on the lookalike's device opened within 1 h of one.
    """

    type: str
    what: str
    n: int
    fooled: int


@dataclass(frozen=True, slots=True)
class ScoreReport:
    """The whole score (see the module docstring).

    Attributes:
        warmup_h: warm-up used, hours.
        decisions: one :class:`TypeScore` per type with events or alerts, sorted by type.
        pickups: the :class:`PickupScore`.
        ttf: one :class:`TtfBucket` per bucket of :data:`BUCKETS`.
        idempotency_checked: replay steps run twice.
        idempotency_changed: repeats that changed something.
        routes: ``truth.routes`` as given.
        lookalikes: one :class:`LookalikeScore` per kind.
    """

    warmup_h: float
    decisions: list[TypeScore]
    pickups: PickupScore
    ttf: list[TtfBucket]
    idempotency_checked: int
    idempotency_changed: int
    routes: dict[str, Any] = field(default_factory=dict)
    lookalikes: list[LookalikeScore] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON-ready dict (the same numbers as the table)."""
        out = asdict(self)
        out["idempotency"] = {"checked": out.pop("idempotency_checked"), "changed": out.pop("idempotency_changed")}
        out["targets_unmet"] = targets_met(self)
        return out


def load(path: Path, expected: str = "a truth.json or decisions.json") -> dict[str, Any]:
    """Read a truth or decisions JSON document.

    Args:
        path: the file.
        expected: what the file should be, for the messages (e.g. "the truth.json `lorong sim
            scenario` writes").

    Raises:
        ScoreInputError: the file is missing, unreadable, not JSON, not an object, or not version 1;
            the message names the file and what it should be.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScoreInputError(f"{path}: no such file; give {expected}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoreInputError(f"{path}: cannot be read ({exc.__class__.__name__}); give {expected}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScoreInputError(f"{path} is not one JSON document ({exc.msg}, line {exc.lineno}); "
                              f"give {expected}") from None
    if not isinstance(doc, dict):
        raise ScoreInputError(f"{path}: not a JSON object; give {expected}")
    if doc.get("version") is None:
        raise ScoreInputError(f"{path} has no \"version\": it is not {expected}")
    if doc.get("version") != 1:
        raise ScoreInputError(f"{path}: version {doc.get('version')!r}, expected 1")
    return doc


def _t(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise ScoreInputError(f"{what}: expected an ISO-8601 time, got {value!r}")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise ScoreInputError(f"{what}: {value!r} is not an ISO-8601 time") from None
    if ts.tzinfo is None:
        raise ScoreInputError(f"{what}: {value!r} has no offset")
    return ts


def _opt_t(value: Any, what: str) -> datetime | None:
    return None if value is None else _t(value, what)


def quantile(values: Sequence[float], q: float) -> float | None:
    """Quantile ``q`` (0..1) with linear interpolation between order statistics; ``None`` if empty."""
    if not values:
        return None
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _f1(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return 2 * p * r / (p + r) if p + r else 0.0


def _round(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


@dataclass
class _Event:
    start: datetime
    end: datetime  # the scenario's end when open
    counts: bool  # required and after the warm-up
    cross_at: datetime | None
    match_from: datetime  # the earliest opening that matches
    hit: bool = False


def _score_type(type_: str, events: list[dict[str, Any]], alerts: list[tuple[datetime, dict[str, Any]]],
                scenario_end: datetime, cut: datetime) -> TypeScore:
    by_device: dict[str, list[_Event]] = defaultdict(list)
    required = not_required = warmup = 0
    for i, e in enumerate(events):
        where = f"truth events[{i}]"
        start = _t(e.get("start"), f"{where}.start")
        end = _opt_t(e.get("end"), f"{where}.end") or scenario_end
        req = bool(e.get("required", True))
        info = e.get("info") or {}
        early = _opt_t(info.get("match_from"), f"{where}.info.match_from")
        in_warmup = start < cut or (early is not None and early < cut)
        counts = req and not in_warmup
        if in_warmup:
            warmup += 1
        elif req:
            required += 1
        else:
            not_required += 1
        by_device[str(e.get("device_id"))].append(
            _Event(start, end, counts, _opt_t(info.get("cross_at"), f"{where}.info.cross_at"),
                   min(start - TOLERANCE, early) if early is not None else start - TOLERANCE))
    for evs in by_device.values():
        evs.sort(key=lambda ev: ev.start)
    grace = GRACE_BY_TYPE.get(type_, GRACE)
    hits = false = reopens = ignored = 0
    timing: list[float] = []
    lead = type_ in LEAD_TYPES
    for opened, a in alerts:
        matching = [ev for ev in by_device.get(str(a.get("device_id")), [])
                    if ev.match_from <= opened <= ev.end + grace]
        fresh = [ev for ev in matching if ev.counts and not ev.hit]
        if fresh:
            ev = fresh[0]
            ev.hit = True
            hits += 1
            if lead:
                if ev.cross_at is not None:
                    timing.append((ev.cross_at - opened).total_seconds() / 60.0)
            else:
                timing.append((opened - ev.start).total_seconds() / 60.0)
        elif any(ev.counts for ev in matching):
            reopens += 1
        elif matching:
            ignored += 1
        else:
            false += 1
    precision = _ratio(hits, hits + false + reopens)
    recall = _ratio(hits, required)
    return TypeScore(type_, required, not_required, warmup, len(alerts), hits, false, reopens, ignored,
                     required - hits, precision, recall, _f1(precision, recall), "lead" if lead else "delay",
                     _round(quantile(timing, 0.5)), _round(quantile(timing, 0.9)))


def _score_pickups(truth: list[dict[str, Any]], decided: list[dict[str, Any]]) -> PickupScore:
    by_device: dict[str, list[tuple[datetime, bool]]] = defaultdict(list)
    for i, p in enumerate(truth):
        by_device[str(p.get("device_id"))].append((_t(p.get("at"), f"truth pickups[{i}].at"),
                                                   bool(p.get("required", True))))
    used: set[tuple[str, int]] = set()
    hits = false = ignored = 0
    offsets: list[float] = []
    mine = sorted(((_t(p.get("at"), f"decisions pickups[{i}].at"), str(p.get("device_id")))
                   for i, p in enumerate(decided)), key=lambda x: x[0])
    for at, device in mine:
        best: tuple[timedelta, int] | None = None
        for j, (t_at, _) in enumerate(by_device.get(device, [])):
            gap = abs(at - t_at)
            if (device, j) not in used and gap <= PICKUP_WINDOW and (best is None or gap < best[0]):
                best = (gap, j)
        if best is None:
            false += 1
            continue
        used.add((device, best[1]))
        if by_device[device][best[1]][1]:
            hits += 1
            offsets.append(best[0].total_seconds() / 60.0)
        else:
            ignored += 1
    required = sum(1 for evs in by_device.values() for _, req in evs if req)
    precision, recall = _ratio(hits, hits + false), _ratio(hits, required)
    return PickupScore(len(truth), required, len(decided), hits, false, ignored, required - hits, precision,
                       recall, _f1(precision, recall), _round(quantile(offsets, 0.5)))


def _score_ttf(cycles: list[dict[str, Any]], forecasts: list[dict[str, Any]], cut: datetime) -> list[TtfBucket]:
    by_device: dict[str, list[tuple[datetime, datetime | None, datetime]]] = defaultdict(list)
    for i, c in enumerate(cycles):
        cross = _opt_t(c.get("cross_at"), f"truth cycles[{i}].cross_at")
        if cross is not None:
            by_device[str(c.get("device_id"))].append(
                (_t(c.get("start"), f"truth cycles[{i}].start"), _opt_t(c.get("end"), f"truth cycles[{i}].end"), cross))
    errors: dict[str, list[float]] = defaultdict(list)
    missing: dict[str, int] = defaultdict(int)
    for i, f in enumerate(forecasts):
        now = _t(f.get("now"), f"decisions forecasts[{i}].now")
        if now < cut:
            continue
        cross = next((x for s, e, x in by_device.get(str(f.get("device_id")), [])
                      if s <= now and (e is None or now < e) and now < x), None)
        if cross is None:
            continue
        horizon = (cross - now).total_seconds() / 3600.0
        bucket = next((name for name, lo, hi in BUCKETS if lo <= horizon < hi), None)
        if bucket is None:
            continue
        full_at = _opt_t(f.get("full_at"), f"decisions forecasts[{i}].full_at")
        if full_at is None:
            missing[bucket] += 1
        else:
            errors[bucket].append(abs((full_at - cross).total_seconds()) / 3600.0)
    return [TtfBucket(name, len(errors[name]), _round(quantile(errors[name], 0.5), 2),
                      _round(quantile(errors[name], 0.9), 2), missing[name]) for name, _, _ in BUCKETS]


def _score_lookalikes(lookalikes: list[dict[str, Any]], alerts: Mapping[str, list[tuple[datetime, dict[str, Any]]]],
                      pickups: list[dict[str, Any]], cut: datetime) -> list[LookalikeScore]:
    n: dict[tuple[str, str], int] = defaultdict(int)
    fooled: dict[tuple[str, str], int] = defaultdict(int)
    found = dict(alerts)
    found["pickup"] = [(_t(p.get("at"), f"decisions pickups[{i}].at"), p) for i, p in enumerate(pickups)]
    for i, lk in enumerate(lookalikes):
        at = _t(lk.get("at"), f"truth lookalikes[{i}].at")
        if at < cut:
            continue
        key = (str(lk.get("type")), _NUMBER.sub("#", str(lk.get("what"))))
        n[key] += 1
        fooled[key] += sum(1 for opened, a in found.get(key[0], [])
                           if a.get("device_id") == lk.get("device_id") and abs(opened - at) <= LOOKALIKE_WINDOW)
    return [LookalikeScore(t, w, n[(t, w)], fooled[(t, w)]) for t, w in sorted(n)]


def score(truth: dict[str, Any], decisions: dict[str, Any], warmup_h: float = 24) -> ScoreReport:
    """Score ``decisions`` against ``truth`` (see the module docstring).

    Args:
        truth: a parsed ``truth.json`` (version 1): ``start``, ``end``, ``events``, ``pickups``,
            ``cycles``, ``lookalikes``, ``routes``; lists may be missing (empty).
        decisions: a parsed decisions document (:mod:`analytics.replay`): ``alerts``, ``pickups``,
            ``forecasts``, ``idempotency``.
        warmup_h: hours after ``truth.start`` whose events, alerts and forecasts are left out, >= 0.

    Returns:
        The :class:`ScoreReport`.

    Raises:
        ScoreInputError: a time is missing or malformed, ``warmup_h`` is negative, or the decisions'
            ``from``-``to`` misses the scenario after its warm-up (another scenario's replay), or
            the truth holds decisions or the decisions a truth (files given the wrong way round).
        NothingToScore: the scenario ends before the warm-up does (``truth.end <= start + warmup_h``).
    """
    if warmup_h < 0:
        raise ScoreInputError("the warm-up cannot be negative")
    if "events" not in truth and ("alerts" in truth or "forecasts" in truth):
        raise ScoreInputError("--truth: this file holds decisions (alerts, forecasts), not a scenario's truth.json")
    if "events" in decisions and "alerts" not in decisions:
        raise ScoreInputError("--decisions: this file is a scenario's truth (events), not the decisions "
                              "`lorong analytics replay --out` writes")
    start, end = _t(truth.get("start"), "truth start"), _t(truth.get("end"), "truth end")
    cut = start + timedelta(hours=warmup_h)
    if end <= cut:
        raise NothingToScore(f"nothing to score: the scenario runs {(end - start).total_seconds() / 3600:g} h, all of "
                             f"it inside the {warmup_h:g} h warm-up; score a longer scenario, or pass a smaller "
                             "--warmup-h")
    mine = decisions.get("scenario")
    if isinstance(mine, dict) and "seed" in truth:
        theirs = {"city": truth.get("city"), "seed": truth.get("seed")}
        if {"city": mine.get("city"), "seed": mine.get("seed")} != theirs:
            raise ScoreInputError(f"these are the decisions of {mine.get('city')} seed {mine.get('seed')}, the "
                                  f"truth of {theirs['city']} seed {theirs['seed']}: score each replay against its "
                                  "own scenario's truth.json")
    if decisions.get("from") is not None and decisions.get("to") is not None:
        d_from, d_to = _t(decisions.get("from"), "decisions from"), _t(decisions.get("to"), "decisions to")
        if d_to <= cut or d_from >= end:
            raise ScoreInputError(f"the decisions cover {d_from.isoformat()} to {d_to.isoformat()}, not the scenario's "
                                  f"{cut.isoformat()} to {end.isoformat()} (after the warm-up): are they of another "
                                  "scenario's replay?")
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in truth.get("events") or []:
        events[str(e.get("type"))].append(e)
    alerts: dict[str, list[tuple[datetime, dict[str, Any]]]] = defaultdict(list)
    own = f"{CITY_WIDE}:{str(truth.get('city') or '').lower()}"  # the scenario's city run per city
    for i, a in enumerate(decisions.get("alerts") or []):
        opened = _t(a.get("opened_at"), f"decisions alerts[{i}].opened_at")
        if a.get("device_id") == own:
            a = {**a, "device_id": CITY_WIDE}
        alerts[str(a.get("type"))].append((opened, a))
    for lst in alerts.values():
        lst.sort(key=lambda x: (x[0], x[1].get("id") or 0))
    scored = {t: [x for x in lst if x[0] >= cut] for t, lst in alerts.items()}
    types = sorted(set(events) | {t for t, lst in scored.items() if lst})
    idem = decisions.get("idempotency") or {}
    return ScoreReport(
        warmup_h=warmup_h,
        decisions=[_score_type(t, events.get(t, []), scored.get(t, []), end, cut) for t in types],
        pickups=_score_pickups(truth.get("pickups") or [], decisions.get("pickups") or []),
        ttf=_score_ttf(truth.get("cycles") or [], decisions.get("forecasts") or [], cut),
        idempotency_checked=int(idem.get("checked", 0)),
        idempotency_changed=len(idem.get("changed") or []),
        routes=dict(truth.get("routes") or {}),
        lookalikes=_score_lookalikes(truth.get("lookalikes") or [], alerts, decisions.get("pickups") or [], cut),
    )


def _below(name: str, what: str, value: float | None, target: float) -> str | None:
    if value is None or value < target:
        shown = "-" if value is None else f"{value:.3f}"
        return f"{name} {what} {shown} < {target:.2f}"
    return None


def targets_met(report: ScoreReport) -> list[str]:
    """The targets ``report`` misses, one short sentence each (empty: all met).

    Targets: per alert type precision and recall >= 0.95 (``bin_full`` 0.98 / 0.99,
    ``pm25_episode`` 0.90 / 0.90; a type with neither required events nor alerts is skipped, an
    undefined precision or recall is skipped: no alerts, or no required events); pickups 0.98 /
    0.98 (the same); time-to-full median error <= 1.5 h in the 1-3, 3-6 and 6-12 h buckets and <= 3 h in
    12-24 h (a bucket with neither forecasts nor misses is skipped); no idempotency change.
    """
    out: list[str] = []
    for ts in report.decisions:
        if ts.required == 0 and ts.hits + ts.false_alarms + ts.reopens == 0:
            continue
        p_min, r_min = TARGETS.get(ts.type, DEFAULT_TARGET)
        if ts.precision is not None:
            out.append(_below(ts.type, "precision", ts.precision, p_min) or "")
        if ts.recall is not None:
            out.append(_below(ts.type, "recall", ts.recall, r_min) or "")
    pk = report.pickups
    if pk.precision is not None:
        out.append(_below("pickups", "precision", pk.precision, PICKUP_TARGET[0]) or "")
    if pk.recall is not None:
        out.append(_below("pickups", "recall", pk.recall, PICKUP_TARGET[1]) or "")
    for b in report.ttf:
        limit = TTF_TARGET_H[b.bucket]
        if b.n == 0 and b.n_missing:
            out.append(f"time to full {b.bucket} h: no forecast, {b.n_missing} missing")
        elif b.median_h is not None and b.median_h > limit:
            out.append(f"time to full {b.bucket} h median error {b.median_h:.2f} h > {limit:g} h")
    if report.idempotency_changed:
        out.append(f"idempotency: {report.idempotency_changed} repeated runs changed something")
    return [x for x in out if x]
