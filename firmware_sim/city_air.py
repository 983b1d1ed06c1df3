"""The air stations of a simulated city: true PM2.5, what a low-cost sensor reports, and the truth.

Pure model (no I/O, no clock, no global random state): :func:`simulate_air` turns the city file's
``air`` section into registry rows, native ``lorong-json`` uplinks (the payload
:mod:`firmware_sim.fleet` builds) and the ``events`` / ``lookalikes`` of ``truth.json``
(see ``firmware_sim/SCENARIO.md``). The same arguments give identical results: every draw comes
from ``random.Random(f"{seed}:air:<part>")`` or a numpy Generator seeded from the same string.

The ``air`` section (every key optional):

=====================  ===================  ===================================================
key                    default              meaning
=====================  ===================  ===================================================
``episodes``           2                    city-wide haze episodes (``pm25_episode``); none
                                            with fewer than 3 stations
``burning_stations``   3 (at most n)        stations with open burning nearby
``plumes_per_day``     1.0                  mean plumes per burning station and day (Poisson)
``rain_events``        2                    city-wide rain showers (RH 96-99 %, PM washout)
``kappa_range``        [0.20, 0.40]         range of each sensor's aerosol hygroscopicity kappa
                                            (continental aerosol: 0.3 +- 0.1, Andreae and
                                            Rosenfeld 2008, Earth-Sci. Rev. 89:13-41)
``interval_s``         300                  report interval of every station, s
``reference_stations`` 0 (at most n)        the first stations are reference monitors (T640 of
                                            an ISPU station: they read dry PM, see below)
``pm_base_range``      [12, 28]             range of the city's daily background PM2.5, ug/m3
``station_offline``    1 if n >= 6 else 0   stations that go offline once for 1-3 h
``id_prefix``          ``"MKS"``            device ids ``<prefix>-AIR-00``
``warmup_h``           12                   no event starts in the first hours (the spike
                                            test needs a baseline: 6 h of buckets)
=====================  ===================  ===================================================

The model, per station, on its own 5-minute report times (our choices unless a source is named):

* **true PM2.5** (dry, reference grade), ug/m3 =
  (background x diurnal traffic cycle + plume + haze) x rain washout x (1 + noise).
  Background: a city-wide random walk of daily values in ``pm_base_range`` (step sd 3 ug/m3,
  interpolated between local noons) times a station factor 0.8-1.3. Diurnal cycle
  (:func:`traffic_factor`): 0.7 at night, morning peak 1.8-2.2 at 07:30 local, 1.0 at midday,
  1.5 at 18:30. Noise: AR(1), sd 4 %, clipped at +-8 %.
* **relative humidity**, %: night 85-95 %, afternoon 55-70 % (daily draws, shape
  :func:`heat_shape`), station offset +-2 %; rain lifts it to 96-99 % for 2-5 h.
* **reported PM2.5** (LRG-PM1, an SDS011-class optical sensor) = true x C(RH) x (1 + e), with C the
  kappa-Koehler mass growth factor of Crilley et al. 2018 (:func:`analytics.humidity.kappa_growth_factor`)
  at the reported RH (capped at 0.985) and the station's own kappa; e ~ N(0, 1.5 %) clipped at
  +-4 %; clipped at 999.9 ug/m3 (SDS011 datasheet V1.3 range; a clipped value is left out of
  the payload). PM10 = PM2.5 x 1.5-1.8 (station
  ratio, +-3 % per reading); temperature 25-33 degC diurnal, following RH inversely (33 degC at 55 %, 25 degC at
  95 %), 2.5 degC cooler in rain. Payload: ``lorong/v1/<id>/up`` with ``device_id``, ``time``
  (ISO, UTC), ``seq`` (the report's number, lost reports of an outage included) and the metrics
  pm25, pm10 (ug/m3), temperature (degC), relativeHumidity (%); rx = device time.
* a **reference monitor** (the first ``reference_stations`` stations, registry model ``T640``, a
  Teledyne T640 whose heated inlet dries the sample) reports true x (1 + e), the same e, no growth:
  the same station, site and events as it would be with an optical sensor, only the sensor differs.

Truth (events): ``pm25_spike`` per open-burning plume (1-3 h, +40-150 ug/m3, 10-20 min ramp;
required when its peak excess is >= 25 ug/m3 and it lasts >= 40 min) and per station of an
episode (required false); ``pm25_episode`` on device ``city`` (at least 3 stations, 40-80 % of
them, rise within 45 min by +30-90 ug/m3 for 3-8 h; starts when the 3rd station has risen to half
its excess, ends when fewer than 3 stay above half; plumes that began within the hour at 3 or more
stations: a ``pm25_episode`` that is not required, :func:`coincident_plumes`); ``pm25_high`` where
the true rolling 1-hour mean exceeds 55.4 ug/m3 (dips under 30 min merged; required from 20 min on
and 5 % over the limit, matching from 5 % under it; near-limit stretches not required:
:data:`PM25_ACCURACY`); ``offline`` (required from 45 min on).
Lookalikes: the morning traffic rise (one per station-day), rain washout (one per station and
shower), humid over-reads (reported 1-hour mean above 55.4 while the true one is not).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from analytics.humidity import kappa_growth_factor

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

PM25_LIMIT = 55.4
"""Top of the ISPU "Sedang" band for PM2.5, ug/m3 (Permen LHK P.14/2020); ``pm25_limit`` of truth.json."""
RH_CAP = 0.985
"""Highest RH fraction put into the growth factor (our choice: C grows without bound at 1)."""
SDS011_MAX = 999.9
"""Top of the SDS011 measuring range, ug/m3 (Nova Fitness SDS011 datasheet V1.3)."""
MODEL = "LRG-PM1"
"""Registry model of the simulated stations."""
REFERENCE_MODEL = "T640"
"""Registry model of the simulated reference monitors (``analytics.humidity`` sensor ``t640``)."""
PM25_ACCURACY = 0.05
"""Relative accuracy of a humidity-corrected optical PM2.5 reading: after the kappa-Koehler correction
an optical sensor read 1.05 times the reference (Di Antonio et al. 2018, "Developing a relative
humidity correction for low-cost sensors measuring ambient particulate matter", Sensors 18:2790,
doi:10.3390/s18092790); the simulated sensor's own noise alone is clipped at +-4 %, and a station's
kappa fitted against its neighbours is typically 0.02-0.03 off, 4-6 % of the growth factor at 90 % RH.
A true 1-hour mean within this fraction of :data:`PM25_LIMIT` cannot be told from one at the limit:
the truth allows for it as it does for the bins' +-10 mm (SCENARIO.md)."""
HIGH_MIN_S = 20 * 60
"""A ``pm25_high`` stretch is required from this length on, s (our choice: two job steps)."""
HIGH_MERGE_S = 30 * 60
"""Two ``pm25_high`` stretches less than this apart are one occurrence, s (our choice: the scoring
grace; the rule's hysteresis keeps its alert open through such a dip)."""
SPIKE_MIN_EXCESS = 25.0
"""A plume is a required ``pm25_spike`` from this peak excess on, ug/m3 (our choice)."""
SPIKE_MIN_S = 40 * 60
"""... and from this length on, s (the rule needs 3 x 10-minute buckets plus a step)."""
OFFLINE_MIN_S = 45 * 60
"""An outage is a required ``offline`` from this length on, s (3 x 300 s + a job step)."""
EPISODE_MIN_STATIONS = 3
"""Stations that must rise together for a ``pm25_episode`` (SCENARIO.md)."""
EPISODE_ONSET_S = 3600.0
"""... within this long of each other, s: "three stations within the hour" (README, the rule's
``episode_onset_window_min``)."""

DEFAULTS: dict[str, Any] = {
    "episodes": 2, "burning_stations": 3, "plumes_per_day": 1.0, "rain_events": 2,
    "kappa_range": [0.20, 0.40], "interval_s": 300, "pm_base_range": [12.0, 28.0],
    "id_prefix": "MKS", "warmup_h": 12.0, "reference_stations": 0,
}
"""Defaults of the ``air`` section (``station_offline`` depends on the station count)."""


@dataclass
class AirResult:
    """What the air stations sent and what really happened.

    Attributes:
        devices: registry rows (fields of ``devices.registry.DeviceIn``): id, kind ``air``, model,
            lat, lon (WGS84 degrees), kecamatan, report_interval_s (s), installed_at (ISO, 30 days
            before ``start``).
        messages: ``(rx, topic, payload)``; rx tz-aware UTC (= device time), sorted by rx then topic.
        events: truth.json event objects (type, device_id, start, end, required, what, info).
        lookalikes: truth.json lookalike objects (type, device_id, at, end, what).
    """

    devices: list[dict[str, Any]]
    messages: list[tuple[datetime, str, bytes]]
    events: list[dict[str, Any]]
    lookalikes: list[dict[str, Any]]


@dataclass(frozen=True)
class StationTruth:
    """One station's simulated series, one element per scheduled report (sent or not).

    Attributes:
        device_id: registry id.
        kappa: the sensor's hygroscopicity (what a perfect kappa-Koehler correction would use).
        times: report times, tz-aware UTC.
        true_pm25: true dry PM2.5, ug/m3.
        rh_pct: relative humidity as reported, %, rounded to 0.1.
        reported_pm25: PM2.5 as reported, ug/m3, rounded to 0.1.
        sent: False where the station was offline (no message).
    """

    device_id: str
    kappa: float
    times: list[datetime]
    true_pm25: FloatArray
    rh_pct: FloatArray
    reported_pm25: FloatArray
    sent: BoolArray


@dataclass(frozen=True)
class _Config:
    episodes: int
    burning_stations: int
    plumes_per_day: float
    rain_events: int
    kappa_range: tuple[float, float]
    interval_s: int
    pm_base_range: tuple[float, float]
    station_offline: int
    id_prefix: str
    warmup_s: float
    reference_stations: int = 0


@dataclass
class _Station:
    index: int
    device_id: str
    kecamatan: str
    lat: float
    lon: float
    factor: float
    kappa: float
    pm10_ratio: float
    phase_s: int
    rh_offset: float
    temp_offset: float
    peak_jitter: float
    busy: list[tuple[float, float]] = field(default_factory=list)
    reference: bool = False


@dataclass(frozen=True)
class _Pulse:
    """A trapezoid excess: 0 at ``t0``, ``amp`` from ``t0 + up`` to ``t1 - down``, 0 at ``t1`` (s)."""

    t0: float
    up: float
    down: float
    t1: float
    amp: float

    def at(self, t: FloatArray) -> FloatArray:
        rise = np.clip((t - self.t0) / self.up, 0.0, 1.0)
        fall = np.clip((self.t1 - t) / self.down, 0.0, 1.0)
        return np.asarray(self.amp * np.minimum(rise, fall), dtype=np.float64)


@dataclass(frozen=True)
class _Rain:
    t0: float
    t1: float
    rh: float
    washout: float
    recovery_s: float

    def rh_at(self, t: FloatArray) -> FloatArray:
        """RH floor in %: ramps to ``rh`` over 20 min, holds, decays over the recovery."""
        up = np.clip((t - self.t0) / 1200.0, 0.0, 1.0)
        down = np.clip(1.0 - (t - self.t1) / self.recovery_s, 0.0, 1.0)
        return np.asarray(self.rh * np.minimum(up, down), dtype=np.float64)

    def wash_at(self, t: FloatArray) -> FloatArray:
        """PM multiplier: 1 -> ``washout`` over 30 min, held, back to 1 over the recovery."""
        up = np.clip((t - self.t0) / 1800.0, 0.0, 1.0)
        down = np.clip(1.0 - (t - self.t1) / self.recovery_s, 0.0, 1.0)
        return np.asarray(1.0 - (1.0 - self.washout) * np.minimum(up, down), dtype=np.float64)


def _num(air: dict[str, Any], key: str, default: Any, low: float) -> float:
    value = air.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < low:
        raise ValueError(f"air.{key} must be a number >= {low}, got {value!r}")
    return float(value)


def _range(air: dict[str, Any], key: str, low: float) -> tuple[float, float]:
    value = air.get(key, DEFAULTS[key])
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"air.{key} must be [low, high], got {value!r}")
    a = _num({key: value[0]}, key, None, low)
    b = _num({key: value[1]}, key, None, low)
    if a > b:
        raise ValueError(f"air.{key}: low {a} above high {b}")
    return a, b


def _config(air: dict[str, Any], n_stations: int) -> _Config:
    prefix = air.get("id_prefix", DEFAULTS["id_prefix"])
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"air.id_prefix must be a non-empty string, got {prefix!r}")
    interval = _num(air, "interval_s", DEFAULTS["interval_s"], 1)
    return _Config(
        episodes=int(_num(air, "episodes", DEFAULTS["episodes"], 0)),
        burning_stations=min(n_stations, int(_num(air, "burning_stations", DEFAULTS["burning_stations"], 0))),
        plumes_per_day=_num(air, "plumes_per_day", DEFAULTS["plumes_per_day"], 0),
        rain_events=int(_num(air, "rain_events", DEFAULTS["rain_events"], 0)),
        kappa_range=_range(air, "kappa_range", 0),
        interval_s=int(interval),
        pm_base_range=_range(air, "pm_base_range", 0),
        station_offline=min(n_stations, int(_num(air, "station_offline", 1 if n_stations >= 6 else 0, 0))),
        id_prefix=prefix,
        warmup_s=_num(air, "warmup_h", DEFAULTS["warmup_h"], 0) * 3600.0,
        reference_stations=min(n_stations, int(_num(air, "reference_stations", DEFAULTS["reference_stations"], 0))),
    )


def _np_rng(seed: int, part: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:air:{part}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def _bump(hour: FloatArray, centre: float, width: float) -> FloatArray:
    d = np.abs(hour - centre)
    d = np.minimum(d, 24.0 - d)
    return np.asarray(np.exp(-0.5 * (d / width) ** 2), dtype=np.float64)


def traffic_factor(hour: FloatArray, morning_peak: FloatArray) -> FloatArray:
    """Diurnal traffic multiplier of background PM2.5 at local ``hour`` (0-24, fractional).

    Shape (our choice, after the morning and evening rush-hour peaks seen at urban stations):
    0.7 at night, a smooth day plateau of 1.0 between about 06:00 and 21:00, a morning bump to
    ``morning_peak`` at 07:30 (sd 1 h) and an evening bump to 1.5 at 18:30 (sd 1.2 h).

    Args:
        hour: local hour of day, array.
        morning_peak: factor at 07:30 (1.8-2.2 in the city model), array broadcastable to ``hour``.

    Returns:
        Factor array, >= 0.7.
    """
    plateau = 1.0 / (1.0 + np.exp(-(hour - 5.5) / 0.4)) - 1.0 / (1.0 + np.exp(-(hour - 21.5) / 0.6))
    return np.asarray(0.7 + 0.3 * plateau + (morning_peak - 1.0) * _bump(hour, 7.5, 1.0)
                      + 0.5 * _bump(hour, 18.5, 1.2), dtype=np.float64)


def heat_shape(hour: FloatArray) -> FloatArray:
    """Diurnal heating, 0 at 05:30 local (coolest, most humid) to 1 at 14:00 (warmest, driest).

    Cosine halves between the two (our choice: the usual tropical lowland cycle).

    Args:
        hour: local hour of day, array.

    Returns:
        Array in [0, 1].
    """
    lo, hi = 5.5, 14.0
    rising = (hour >= lo) & (hour < hi)
    since_hi = np.mod(hour - hi, 24.0)
    up = 0.5 - 0.5 * np.cos(np.pi * (hour - lo) / (hi - lo))
    down = 0.5 + 0.5 * np.cos(np.pi * since_hi / (24.0 - (hi - lo)))
    return np.asarray(np.where(rising, up, down), dtype=np.float64)


def rolling_mean_1h(t_s: FloatArray, values: FloatArray) -> FloatArray:
    """Mean of ``values`` over the trailing hour ``(t - 3600 s, t]`` at every ``t`` of ``t_s``.

    Args:
        t_s: sample times, s, sorted ascending.
        values: samples, same length.

    Returns:
        Rolling means (the first hour averages what there is).
    """
    csum = np.concatenate([[0.0], np.cumsum(values)])
    first = np.searchsorted(t_s, t_s - 3600.0, side="right")
    idx = np.arange(1, len(t_s) + 1)
    return np.asarray((csum[idx] - csum[first]) / (idx - first), dtype=np.float64)


def _poisson(rnd: random.Random, mean: float) -> int:
    """Knuth's Poisson sampler (fine for the small means used here)."""
    limit, k, p = math.exp(-mean), 0, rnd.random()
    while p > limit:
        k += 1
        p *= rnd.random()
    return k


def _free(busy: list[tuple[float, float]], t0: float, t1: float, margin: float) -> bool:
    return all(t1 + margin <= a or t0 >= b + margin for a, b in busy)


class _Clock:
    """Seconds since ``start`` <-> UTC times and local wall-clock hours."""

    def __init__(self, start: datetime, tz: ZoneInfo) -> None:
        self.start = start
        self.tz = tz
        self.day0 = start.astimezone(tz).date()

    def utc(self, t_s: float) -> datetime:
        return self.start + timedelta(seconds=float(t_s))

    def iso(self, t_s: float | None) -> str | None:
        """ISO-8601 UTC of ``t_s`` rounded to the second (None stays None: "past the scenario")."""
        return None if t_s is None else self.utc(round(t_s)).isoformat()

    def local_at(self, day: int, hour: float) -> float:
        """Seconds since start of local ``hour`` on local day ``day`` (0 = the start's date)."""
        d = self.day0 + timedelta(days=day)
        local = datetime.combine(d, time(0), self.tz) + timedelta(hours=hour)
        return (local.astimezone(UTC) - self.start).total_seconds()

    def hours_days(self, t_s: FloatArray) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        hours, days = [], []
        for t in t_s:
            loc = self.utc(float(t)).astimezone(self.tz)
            hours.append(loc.hour + loc.minute / 60.0 + loc.second / 3600.0)
            days.append((loc.date() - self.day0).days)
        return np.asarray(hours, dtype=np.float64), np.asarray(days, dtype=np.int64)


def _event(kind: str, device_id: str, start: str | None, end: str | None, required: bool, what: str,
           info: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "device_id": device_id, "start": start, "end": end, "required": required,
            "what": what, "info": info}


def _lookalike(kind: str, device_id: str, at: str | None, end: str | None, what: str) -> dict[str, Any]:
    return {"type": kind, "device_id": device_id, "at": at, "end": end, "what": what}


def simulate_air(air: dict[str, Any], kecamatan: dict[str, tuple[float, float]], n_stations: int,
                 start: datetime, days: int, seed: int, tz: str) -> AirResult:
    """Simulate ``n_stations`` air stations for ``days`` days from ``start``.

    Args:
        air: the city file's ``air`` section (keys and defaults in the module docstring).
        kecamatan: district name -> (lat, lon) centroid, WGS84 degrees; stations are spread over them.
        n_stations: number of stations, >= 0.
        start: tz-aware start of the scenario (a local midnight in the city file).
        days: scenario length in days, >= 1.
        seed: scenario seed.
        tz: IANA zone of the city's daily rhythms (``Asia/Makassar``).

    Returns:
        The :class:`AirResult`.

    Raises:
        ValueError: naive ``start``, ``days`` < 1, ``n_stations`` < 0, no kecamatan, a bad ``air`` value.
        zoneinfo.ZoneInfoNotFoundError: unknown ``tz``.
    """
    return simulate_air_with_truth(air, kecamatan, n_stations, start, days, seed, tz)[0]


def simulate_air_with_truth(air: dict[str, Any], kecamatan: dict[str, tuple[float, float]], n_stations: int,
                            start: datetime, days: int, seed: int,
                            tz: str) -> tuple[AirResult, dict[str, StationTruth]]:
    """:func:`simulate_air` plus each station's series (for tests and plots).

    Returns:
        ``(result, truth)`` with ``truth`` device id -> :class:`StationTruth`.

    Raises:
        ValueError, zoneinfo.ZoneInfoNotFoundError: as :func:`simulate_air`.
    """
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be tz-aware")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if n_stations < 0:
        raise ValueError(f"n_stations must be >= 0, got {n_stations}")
    if not kecamatan:
        raise ValueError("kecamatan is empty: stations need a district")
    cfg = _config(air, n_stations)
    clock = _Clock(start.astimezone(UTC), ZoneInfo(tz))
    total_s = days * 86400.0
    stations = _stations(cfg, kecamatan, n_stations, seed)
    events: list[dict[str, Any]] = []
    lookalikes: list[dict[str, Any]] = []

    weather = _Weather(seed, days, clock, cfg)
    haze = _episodes(cfg, stations, seed, total_s, clock, events)
    rains = _rains(cfg, seed, total_s, haze)
    plumes = _plumes(cfg, stations, seed, days, clock, rains)
    offline = _offline(cfg, stations, seed, total_s)
    events += coincident_plumes({stations[i].device_id: ps for i, ps in plumes.items()}, clock)

    messages: list[tuple[datetime, str, bytes]] = []
    truth: dict[str, StationTruth] = {}
    for st in stations:
        series = _station_series(st, cfg, seed, total_s, clock, weather, haze.get(st.index, []),
                                 plumes.get(st.index, []), rains, offline.get(st.index))
        truth[st.device_id] = series
        messages += _messages(st, series, seed)
        events += _station_events(st, series, plumes.get(st.index, []), offline.get(st.index), clock, total_s)
        lookalikes += _station_lookalikes(st, series, rains, clock, days, total_s)

    messages.sort(key=lambda m: (m[0], m[1]))
    events.sort(key=lambda e: (e["start"], e["type"], e["device_id"]))
    lookalikes.sort(key=lambda x: (x["at"], x["type"], x["device_id"]))
    installed = (start - timedelta(days=30)).astimezone(UTC).isoformat()
    devices = [{"id": st.device_id, "kind": "air", "model": REFERENCE_MODEL if st.reference else MODEL,
                "lat": round(st.lat, 6), "lon": round(st.lon, 6),
                "kecamatan": st.kecamatan, "report_interval_s": cfg.interval_s, "installed_at": installed}
               for st in stations]
    return AirResult(devices, messages, events, lookalikes), truth


def _stations(cfg: _Config, kecamatan: dict[str, tuple[float, float]], n: int, seed: int) -> list[_Station]:
    names = list(kecamatan)
    width = max(2, len(str(n - 1)))
    out = []
    for j in range(n):
        rnd = random.Random(f"{seed}:air:station:{j}")
        step = 4 if math.gcd(4, len(names)) == 1 else 1  # spread neighbours apart, as fleet.py does
        kec = names[(j * step) % len(names)]
        lat, lon = kecamatan[kec]
        out.append(_Station(
            index=j, device_id=f"{cfg.id_prefix}-AIR-{j:0{width}d}", kecamatan=kec,
            lat=lat + rnd.uniform(-0.006, 0.006), lon=lon + rnd.uniform(-0.006, 0.006),
            factor=rnd.uniform(0.8, 1.3), kappa=rnd.uniform(*cfg.kappa_range), pm10_ratio=rnd.uniform(1.5, 1.8),
            phase_s=rnd.randrange(cfg.interval_s), rh_offset=rnd.uniform(-2.0, 2.0),
            temp_offset=rnd.uniform(-0.8, 0.8), peak_jitter=rnd.uniform(-0.1, 0.1),
            reference=j < cfg.reference_stations))
    return out


class _Weather:
    """City-wide daily draws, anchored at local noons (background, RH) or per local day (morning
    peak, index = local day + 1)."""

    def __init__(self, seed: int, days: int, clock: _Clock, cfg: _Config) -> None:
        rnd = random.Random(f"{seed}:air:weather")
        lo, hi = cfg.pm_base_range
        day_ids = range(-1, days + 2)
        self.noons = np.asarray([clock.local_at(d, 12.0) for d in day_ids], dtype=np.float64)
        walk, b = [], rnd.uniform(lo, hi)
        for _ in day_ids:
            walk.append(b)
            b += rnd.gauss(0.0, 3.0)
            b = min(hi, max(lo, 2 * hi - b if b > hi else 2 * lo - b if b < lo else b))  # reflect at the bounds
        self.background = np.asarray(walk, dtype=np.float64)
        self.night_rh = np.asarray([rnd.uniform(85.0, 95.0) for _ in day_ids], dtype=np.float64)
        self.noon_rh = np.asarray([rnd.uniform(55.0, 70.0) for _ in day_ids], dtype=np.float64)
        self.morning = np.asarray([rnd.uniform(1.9, 2.1) for _ in day_ids], dtype=np.float64)

    def at(self, values: FloatArray, t_s: FloatArray) -> FloatArray:
        return np.asarray(np.interp(t_s, self.noons, values), dtype=np.float64)


def _episodes(cfg: _Config, stations: list[_Station], seed: int, total_s: float, clock: _Clock,
              events: list[dict[str, Any]]) -> dict[int, list[_Pulse]]:
    """Place the haze episodes; append their events; return station index -> haze pulses."""
    out: dict[int, list[_Pulse]] = {}
    n = len(stations)
    if cfg.episodes and n < EPISODE_MIN_STATIONS:
        log.warning("%d air station%s: no city-wide episode (needs %d)", n, "" if n == 1 else "s", EPISODE_MIN_STATIONS)
        return out
    rnd = random.Random(f"{seed}:air:episodes")
    placed: list[tuple[float, float]] = []
    for k in range(cfg.episodes):
        dur, t0 = rnd.uniform(3.0, 8.0) * 3600.0, None
        span = dur * 1.15 + 2700.0  # longest station stretch plus the latest start offset
        for _ in range(50):
            latest = total_s - span - 3600.0
            if latest <= cfg.warmup_s:
                break
            t = rnd.uniform(cfg.warmup_s, latest)
            if _free(placed, t, t + span, 6 * 3600.0):
                t0 = t
                break
        if t0 is None:
            log.warning("episode %d dropped: no free %.1f h in the scenario", k, span / 3600.0)
            continue
        placed.append((t0, t0 + span))
        count = min(n, max(EPISODE_MIN_STATIONS, round(rnd.uniform(0.4, 0.8) * n)))
        chosen = sorted(rnd.sample(range(n), count))
        risen, down, members = [], [], []
        for i in chosen:
            s = t0 + rnd.uniform(0.0, 2700.0)
            up, fall = rnd.uniform(1200.0, 2400.0), rnd.uniform(1800.0, 3600.0)
            d = min(8 * 3600.0, max(3 * 3600.0, dur * rnd.uniform(0.85, 1.15)))
            pulse = _Pulse(s, up, fall, s + d, rnd.uniform(30.0, 90.0))
            out.setdefault(i, []).append(pulse)
            stations[i].busy.append((s, s + d))
            risen.append(s)  # rising from the pulse's start, as a plume's pm25_spike starts at its start
            down.append(s + d - fall / 2)
            members.append(stations[i].device_id)
            events.append(_event("pm25_spike", stations[i].device_id, clock.iso(s), clock.iso(s + d), False,
                                 "regional haze at this station (covered by the city-wide episode)",
                                 {"source": "episode", "episode": k, "peak_excess_ugm3": round(pulse.amp, 1)}))
        ep_start = sorted(risen)[EPISODE_MIN_STATIONS - 1]
        ep_end = ep_start
        for b in sorted(x for x in risen + down if x >= ep_start):
            if sum(r <= b < d for r, d in zip(risen, down, strict=True)) < EPISODE_MIN_STATIONS:
                ep_end = b
                break
        first_three = sorted(risen)[:EPISODE_MIN_STATIONS]
        events.append(_event("pm25_episode", "city", clock.iso(ep_start), clock.iso(ep_end), True,
                             f"regional haze: {count} of {n} stations rose by 30-90 ug/m3 within 45 min",
                             {"episode": k, "stations": members,
                              "rise_spread_min": round((first_three[-1] - first_three[0]) / 60.0, 1)}))
    return out


def _rains(cfg: _Config, seed: int, total_s: float, haze: dict[int, list[_Pulse]]) -> list[_Rain]:
    """Place the city-wide showers, away from the haze episodes (2 h margin)."""
    rnd = random.Random(f"{seed}:air:rain")
    busy = [(p.t0, p.t1) for pulses in haze.values() for p in pulses]
    out: list[_Rain] = []
    for _ in range(cfg.rain_events):
        for _ in range(50):
            dur, rec = rnd.uniform(2.0, 5.0) * 3600.0, rnd.uniform(1.0, 2.0) * 3600.0
            t0 = rnd.uniform(cfg.warmup_s, max(cfg.warmup_s, total_s - dur - rec))
            if t0 + dur + rec <= total_s and _free(busy, t0, t0 + dur + rec, 2 * 3600.0):
                out.append(_Rain(t0, t0 + dur, rnd.uniform(96.0, 99.0), rnd.uniform(0.4, 0.6), rec))
                busy.append((t0, t0 + dur + rec))
                break
        else:
            log.warning("rain event dropped: no free time left")
    return sorted(out, key=lambda r: r.t0)


def _plumes(cfg: _Config, stations: list[_Station], seed: int, days: int, clock: _Clock,
            rains: list[_Rain]) -> dict[int, list[_Pulse]]:
    """Open-burning plumes at the burning stations: station index -> pulses (no rain, no overlap)."""
    rnd = random.Random(f"{seed}:air:plumes")
    out: dict[int, list[_Pulse]] = {}
    wet = [(r.t0, r.t1 + r.recovery_s) for r in rains]
    total_s = days * 86400.0
    for i in sorted(rnd.sample(range(len(stations)), cfg.burning_stations)):
        st = stations[i]
        for day in range(days + 1):
            for _ in range(_poisson(rnd, cfg.plumes_per_day)):
                for _ in range(20):
                    t0 = clock.local_at(day, rnd.uniform(7.0, 21.0))
                    dur = rnd.uniform(1.0, 3.0) * 3600.0
                    if t0 < cfg.warmup_s or t0 + dur > total_s:
                        continue
                    if _free(st.busy, t0, t0 + dur, 3600.0) and _free(wet, t0, t0 + dur, 1800.0):
                        pulse = _Pulse(t0, rnd.uniform(600.0, 1200.0), rnd.uniform(600.0, 1800.0), t0 + dur,
                                       rnd.uniform(40.0, 150.0))
                        out.setdefault(i, []).append(pulse)
                        st.busy.append((t0, t0 + dur))
                        break
    return out


def coincident_plumes(plumes: dict[str, list[_Pulse]], clock: _Clock) -> list[dict[str, Any]]:
    """Local plumes that began within :data:`EPISODE_ONSET_S` of each other at
    :data:`EPISODE_MIN_STATIONS` or more stations: ``pm25_episode`` events that are not required.

    They meet the episode's own definition (stations rising together within the hour), and the
    readings cannot tell them from regional haze, so an alert then is neither a hit nor a false
    alarm. Each begins when the third station's plume begins and ends when fewer than three of them
    are still up (each plume is up until half its fall, as an episode station is).

    Args:
        plumes: station device id -> its plumes.
        clock: the scenario's clock.

    Returns:
        Truth events (``device_id`` ``city``, ``info.stations``), in time order, overlapping ones merged.
    """
    starts = sorted((p.t0, dev, p) for dev, ps in plumes.items() for p in ps)
    spans: list[tuple[float, float, set[str]]] = []
    for i, (t0, _, _) in enumerate(starts):
        group: dict[str, _Pulse] = {}
        for t, dev, p in starts[i:]:
            if t - t0 > EPISODE_ONSET_S:
                break
            group.setdefault(dev, p)
        if len(group) < EPISODE_MIN_STATIONS:
            continue
        risen = sorted(p.t0 for p in group.values())
        down = sorted(p.t1 - p.down / 2.0 for p in group.values())
        start, end = risen[EPISODE_MIN_STATIONS - 1], down[len(down) - EPISODE_MIN_STATIONS]
        if end <= start:
            continue
        if spans and start <= spans[-1][1]:
            a, b, devs = spans[-1]
            spans[-1] = (a, max(b, end), devs | set(group))
        else:
            spans.append((start, end, set(group)))
    return [_event("pm25_episode", "city", clock.iso(a), clock.iso(b), False,
                   f"{len(devs)} local plumes began within the hour: an episode by its definition, not regional haze",
                   {"source": "open_burning", "stations": sorted(devs)}) for a, b, devs in spans]


def _offline(cfg: _Config, stations: list[_Station], seed: int, total_s: float) -> dict[int, tuple[float, float]]:
    """Outages: station index -> (t0, t1) s, away from its plumes and episodes (1 h margin)."""
    rnd = random.Random(f"{seed}:air:offline")
    out: dict[int, tuple[float, float]] = {}
    for i in sorted(rnd.sample(range(len(stations)), cfg.station_offline)):
        for _ in range(50):
            dur = rnd.uniform(1.0, 3.0) * 3600.0
            t0 = rnd.uniform(cfg.warmup_s, max(cfg.warmup_s, total_s - dur - 3600.0))
            if t0 + dur < total_s and _free(stations[i].busy, t0, t0 + dur, 3600.0):
                out[i] = (t0, t0 + dur)
                break
    return out


def _station_series(st: _Station, cfg: _Config, seed: int, total_s: float, clock: _Clock, weather: _Weather,
                    haze: list[_Pulse], plumes: list[_Pulse], rains: list[_Rain],
                    offline: tuple[float, float] | None) -> StationTruth:
    """Compute one station's true and reported series on its report times."""
    rng = _np_rng(seed, f"series:{st.index}")
    t = np.arange(float(st.phase_s), total_s, float(cfg.interval_s))
    n = len(t)
    hour, day = clock.hours_days(t)
    peak = weather.morning[np.clip(day + 1, 0, len(weather.morning) - 1)] + st.peak_jitter
    base = weather.at(weather.background, t) * st.factor * traffic_factor(hour, peak)
    extra = np.zeros(n)
    for p in [*haze, *plumes]:
        extra += p.at(t)
    wash = np.ones(n)
    rain_rh = np.zeros(n)
    for r in rains:
        wash *= r.wash_at(t)
        rain_rh = np.maximum(rain_rh, r.rh_at(t))
    ar = np.empty(n)
    x = rng.normal(0.0, 0.04)
    shocks = rng.normal(0.0, 0.04 * math.sqrt(1 - 0.8**2), n)
    for k in range(n):
        x = 0.8 * x + shocks[k]
        ar[k] = x
    true = (base + extra) * wash * (1.0 + np.clip(ar, -0.08, 0.08))

    heat = heat_shape(hour)
    night, noon = weather.at(weather.night_rh, t), weather.at(weather.noon_rh, t)
    rh = night + (noon - night) * heat + st.rh_offset + rng.normal(0.0, 1.0, n)
    rh = np.round(np.clip(np.maximum(rh, rain_rh + rng.normal(0.0, 0.3, n)), 30.0, 99.5), 1)
    kappa = 0.0 if st.reference else st.kappa  # a reference monitor dries its sample
    growth = np.asarray([kappa_growth_factor(min(h / 100.0, RH_CAP), kappa) for h in rh], dtype=np.float64)
    sensor = 1.0 + np.clip(rng.normal(0.0, 0.015, n), -0.04, 0.04)
    reported = np.round(np.clip(true * growth * sensor, 0.0, SDS011_MAX), 1)
    sent = np.ones(n, dtype=np.bool_)
    if offline is not None:
        sent &= ~((t >= offline[0]) & (t < offline[1]))
    return StationTruth(st.device_id, kappa, [clock.utc(float(s)) for s in t], np.asarray(true, dtype=np.float64),
                        np.asarray(rh, dtype=np.float64), np.asarray(reported, dtype=np.float64), sent)


def _messages(st: _Station, s: StationTruth, seed: int) -> list[tuple[datetime, str, bytes]]:
    """The station's lorong-json uplinks (the payload of :mod:`firmware_sim.fleet`).

    A PM value at the SDS011 clip (999.9 ug/m3) is left out of the payload (our firmware's choice:
    the clip value is a no-data sentinel that :mod:`ingest.validate` rejects with the whole message).
    """
    rng = _np_rng(seed, f"extras:{st.index}")
    n = len(s.times)
    jitter = 1.0 + np.clip(rng.normal(0.0, 0.02, n), -0.03, 0.03)
    pm10 = np.round(np.clip(s.reported_pm25 * st.pm10_ratio * jitter, 0.0, SDS011_MAX), 1)
    pm10_ok, pm25_ok = pm10 < SDS011_MAX, s.reported_pm25 < SDS011_MAX
    # temperature follows RH inversely: warm afternoons are dry, showers cool the air
    hum = np.clip((s.rh_pct - 55.0) / 40.0, 0.0, 1.1)
    temp = np.round(33.0 - 8.0 * np.minimum(hum, 1.0) + st.temp_offset * 0.5 + rng.normal(0.0, 0.2, n)
                    - 2.5 * (s.rh_pct > 96.0), 1)
    topic = f"lorong/v1/{st.device_id}/up"
    out = []
    for k in np.flatnonzero(s.sent):
        ts = s.times[k]
        metrics: dict[str, dict[str, float | str]] = {}
        if pm25_ok[k]:
            metrics["pm25"] = {"value": float(s.reported_pm25[k]), "unit": "ug/m3"}
        if pm10_ok[k]:
            metrics["pm10"] = {"value": float(pm10[k]), "unit": "ug/m3"}
        metrics["temperature"] = {"value": float(temp[k]), "unit": "degC"}
        metrics["relativeHumidity"] = {"value": float(s.rh_pct[k]), "unit": "%"}
        body = {"device_id": st.device_id, "time": ts.isoformat(), "seq": int(k) + 1, "metrics": metrics}
        out.append((ts, topic, json.dumps(body).encode()))
    return out


def _runs(mask: BoolArray) -> list[tuple[int, int]]:
    """``(first, stop)`` index pairs of the True runs of ``mask`` (``stop`` exclusive)."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _station_events(st: _Station, s: StationTruth, plumes: list[_Pulse], offline: tuple[float, float] | None,
                    clock: _Clock, total_s: float) -> list[dict[str, Any]]:
    t = np.asarray([(x - clock.start).total_seconds() for x in s.times], dtype=np.float64)
    out = []
    for p in plumes:
        inside = (t >= p.t0) & (t <= p.t1)
        peak = float(np.max(p.at(t[inside]))) if inside.any() else 0.0
        dur = p.t1 - p.t0
        out.append(_event("pm25_spike", st.device_id, clock.iso(p.t0), clock.iso(p.t1),
                          peak >= SPIKE_MIN_EXCESS and dur >= SPIKE_MIN_S, "open burning nearby",
                          {"source": "open_burning", "peak_excess_ugm3": round(peak, 1),
                           "duration_min": round(dur / 60.0, 1)}))
    out += _high_events(st.device_id, t, rolling_mean_1h(t, s.true_pm25), clock, total_s)
    if offline is not None:
        t0, t1 = offline
        out.append(_event("offline", st.device_id, clock.iso(t0), clock.iso(t1), t1 - t0 >= OFFLINE_MIN_S,
                          "station sent nothing (power or link lost)", {"duration_min": round((t1 - t0) / 60.0, 1)}))
    return out


def _merged_runs(t: FloatArray, mask: BoolArray) -> list[tuple[int, int]]:
    """:func:`_runs` of ``mask`` with gaps shorter than :data:`HIGH_MERGE_S` merged."""
    runs: list[tuple[int, int]] = []
    for a, b in _runs(mask):
        if runs and t[a] - t[runs[-1][1]] < HIGH_MERGE_S:
            runs[-1] = (runs[-1][0], b)  # a short dip does not end the occurrence
        else:
            runs.append((a, b))
    return runs


def _high_events(device_id: str, t: FloatArray, roll: FloatArray, clock: _Clock,
                 total_s: float) -> list[dict[str, Any]]:
    """``pm25_high`` truth of one station from its true rolling 1-hour mean ``roll`` (ug/m3) at ``t`` (s).

    Each stretch above :data:`PM25_LIMIT` (dips under :data:`HIGH_MERGE_S` merged) is an event, required
    when it lasts :data:`HIGH_MIN_S` and its mean went :data:`PM25_ACCURACY` over the limit (closer, a
    corrected sensor cannot tell it from the limit: an alert or none are both right); ``info.match_from``
    is when the mean came within :data:`PM25_ACCURACY` under the limit, if earlier. A stretch within
    that band that never crossed is a ``required: false`` event (an alert there is not a false alarm).
    """
    near_line, sure_line = PM25_LIMIT * (1.0 - PM25_ACCURACY), PM25_LIMIT * (1.0 + PM25_ACCURACY)
    near = _runs(roll > near_line)
    out = []
    for a, b in _merged_runs(t, roll > PM25_LIMIT):
        end = float(t[b]) if b < len(t) else None
        length = (end if end is not None else total_s) - float(t[a])
        peak = float(np.max(roll[a:b]))
        frm = next((float(t[na]) for na, nb in near if na <= a < nb), float(t[a]))
        out.append(_event("pm25_high", device_id, clock.iso(float(t[a])), clock.iso(end),
                          length >= HIGH_MIN_S and peak >= sure_line, "true 1-hour mean PM2.5 above 55.4 ug/m3",
                          {"max_1h_mean_ugm3": round(peak, 1)}
                          | ({"match_from": clock.iso(frm)} if frm < t[a] else {})))
    for a, b in near:
        if float(np.max(roll[a:b])) <= PM25_LIMIT:
            end = float(t[b]) if b < len(t) else None
            out.append(_event("pm25_high", device_id, clock.iso(float(t[a])), clock.iso(end), False,
                              "within the corrected sensor's accuracy under 55.4 ug/m3",
                              {"max_1h_mean_ugm3": round(float(np.max(roll[a:b])), 1)}))
    return out


def _station_lookalikes(st: _Station, s: StationTruth, rains: list[_Rain], clock: _Clock, days: int,
                        total_s: float) -> list[dict[str, Any]]:
    out = []
    for day in range(days + 1):
        a, b = clock.local_at(day, 5.0), clock.local_at(day, 10.0)
        if a >= 0 and b <= total_s:
            out.append(_lookalike("pm25_spike", st.device_id, clock.iso(a), clock.iso(b), "morning traffic rise"))
    for r in rains:
        out.append(_lookalike("pm25_spike", st.device_id, clock.iso(r.t0), clock.iso(r.t1 + r.recovery_s),
                              "rain washout: true PM falls while the wet sensor over-reads"))
    # humid over-reads: clock-hour buckets of the sent readings
    t = np.asarray([(x - clock.start).total_seconds() for x in s.times], dtype=np.float64)
    offset = clock.start.minute * 60 + clock.start.second + clock.start.microsecond / 1e6
    bucket = np.floor((t + offset) / 3600.0).astype(np.int64)
    flagged: list[int] = []
    for h in np.unique(bucket[s.sent]):
        sel = (bucket == h) & s.sent
        if float(np.mean(s.reported_pm25[sel])) > PM25_LIMIT >= float(np.mean(s.true_pm25[sel])):
            flagged.append(int(h))
    runs: list[list[int]] = []
    for h in flagged:
        if runs and runs[-1][-1] == h - 1:
            runs[-1].append(h)
        else:
            runs.append([h])
    for run in runs:
        a, b = run[0] * 3600.0 - offset, (run[-1] + 1) * 3600.0 - offset
        out.append(_lookalike("pm25_high", st.device_id, clock.iso(max(0.0, a)), clock.iso(min(total_s, b)),
                              "humid over-read: reported 1-hour mean above 55.4 ug/m3, true mean not"))
    return out
