"""Lorong's side of the simulated city's closed loop (:mod:`firmware_sim.policy`): what the sensors
report, and the bins production's code picks for a round from that alone.

:class:`Planner` takes the readings the city's ultrasonic sensors sent (:class:`Sensor`: the
scenario's :func:`~firmware_sim.city_bins.sensor_mm` jitter, the stuck and offline stretches of
:func:`~firmware_sim.city_bins.plan_faults`, a bag held over the sensor; converted as ingest does,
:func:`ingest.normalize.fill_level`; fire, tilt, lid, battery and LoRa duplicates do not change the
distance and are left out). Before a round it runs, in process and in the job's order: pickup
detection (:func:`analytics.pickups.detect`) into the ``collections`` table and the history read
back from it (:func:`analytics.pickups.history`), each bin's fill profile
(:func:`analytics.fillprofile.learn_profile`, once a local day) and forecast
(:func:`analytics.bins.forecasts`), ``device_latest`` as the job writes it
(:func:`analytics.bins.bin_derived`), then :func:`analytics.routes.select_stops` and
:func:`analytics.routes.solve`, as ``lorong analytics route`` does. Nothing of the decision is
reimplemented here; the plumbing is: the registry is a scratch SQLite database in memory (created
from the table models, which a test keeps equal to the migrations) and InfluxDB's hourly means are
computed on the readings (:func:`hourly_means`). The truth reaches the planner only as the true
levels its :class:`Choice` records for the figures.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from analytics import bins as fc_bins
from analytics import pickups, routes
from analytics.fillprofile import FillProfile, learn_profile
from analytics.jobs import recent_window
from analytics.rules.base import Device, DeviceSeries
from devices.cities import CityIn, add_city
from devices.registry import DeviceIn, add_device
from firmware_sim.city_bins import SimBin, Stop, Thresholds, counterfactual, fill_bin, registry_row, sensor_mm
from ingest.normalize import fill_level
from lorong.core.errors import ValidationError
from lorong.core.model import DeviceKind, utc_from_ms
from lorong.storage.tables import Base, CollectionRow, DeviceLatestRow

if TYPE_CHECKING:
    from firmware_sim.policy import SimCity

BIN_L = 660.0
"""Volume of the simulated bins, litres (EN 840 four-wheel container, as their registry rows)."""
SOLVER_CAP_S = 300.0
"""Time limit of one solve, s: a cap far above the first local optimum's few seconds, never reached."""
FILL = "fillingLevel"
HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Choice:
    """A bin Lorong chose for a round: ``reported`` level and ``full_at`` as Lorong saw them, the true level
    then, and when the bin would truly have crossed the full threshold had nobody come (epoch s, None beyond
    48 h); ``next_round`` the round after this one and ``due`` when it could reach a bin left out
    (:func:`analytics.routes.collect_by`; epoch s)."""

    device_id: str
    at: float
    reported: float | None
    full_at: str | None
    true_level: float
    true_cross: float | None
    next_round: float
    due: float


class Sensor:
    """One bin's ultrasonic sensor (see the module docstring): call :meth:`read` for every read time in
    order; draws come from ``random.Random("<seed>:policy-sensor:<bin index>")``."""

    def __init__(self, sim: SimCity, b: SimBin) -> None:
        self.b, self.dist = b, list[int]()
        self.rnd = random.Random(f"{sim.seed}:policy-sensor:{b.index}")
        read_t = sim.read_t[b.index]
        self.stuck: dict[int, int] = {}
        for start, n in sim.faults.stuck.get(b.index, []):
            a = bisect.bisect_left(read_t, start)
            self.stuck.update((k, a) for k in range(a, min(a + n, len(read_t))))
        self.offline = sim.faults.offline.get(b.index, [])
        day0 = sim.city.start.astimezone(sim.city.tzinfo())
        self.bags = {bisect.bisect_left(read_t, (day0 + timedelta(days=d, hours=self.rnd.uniform(7, 20))).timestamp())
                     for d in range(sim.city.days)
                     if self.rnd.random() < sim.city.faults.bag_over_sensor_per_bin_day}

    def read(self, k: int, t: float, level: float) -> float | None:
        """Reading ``k`` (the next one) at ``t`` over the true ``level``."""
        mm = sensor_mm(self.b, level, self.rnd)
        self.dist.append(mm)
        if k in self.stuck:
            mm = self.dist[self.stuck[k]]
        elif k in self.bags and level < 0.7:
            mm = round(self.rnd.uniform(160, 320))  # a bag held over the sensor for one reading
        if any(s <= t < e for s, e in self.offline):
            return None
        try:
            return fill_level(mm, self.b.depth_mm, self.b.blind_zone_mm)
        except ValidationError:
            return None  # ingest rejects it (no echo, beyond the floor)


def hourly_means(t_ms: np.ndarray, v: np.ndarray, start_ms: float, end_ms: float) -> DeviceSeries:
    """Hourly means of the readings in ``(start, end]``, bucket starts aligned to the epoch (InfluxQL
    ``GROUP BY time(1h) fill(none)``)."""
    sel = (t_ms > start_ms) & (t_ms <= end_ms)
    bucket = t_ms[sel] // HOUR_MS * HOUR_MS
    keys, first = np.unique(bucket, return_index=True)
    sums = np.add.reduceat(v[sel], first) if len(keys) else np.zeros(0)
    counts = np.diff(np.r_[first, len(bucket)])
    return DeviceSeries(keys.astype(np.int64), {FILL: sums / np.maximum(counts, 1)})


class Planner:
    """Lorong's side of the loop (see the module docstring): the readings so far, a scratch registry,
    and :meth:`choose`, the bins of a round and their routes."""

    def __init__(self, sim: SimCity) -> None:
        self.sim, self.cfg = sim, sim.cfg
        engine = create_engine("sqlite://", poolclass=StaticPool)
        Base.metadata.create_all(engine)
        self.session = Session(engine)
        add_city(self.session, CityIn(id="sim", name=sim.city.name, timezone=sim.cfg.timezone))
        installed = sim.city.start - timedelta(days=30)
        self.devs = []
        for b in sim.bins:
            row = add_device(self.session, DeviceIn.model_validate(registry_row(b, installed.isoformat())))
            self.devs.append(Device(row.id, DeviceKind.BIN, row.kecamatan, row.model, sim.cfg.full_threshold,
                                    row.report_interval_s, installed))
        self.index = {d.device_id: i for i, d in enumerate(self.devs)}
        self.sensors = [Sensor(sim, b) for b in sim.bins]
        self.t: list[list[int]] = [[] for _ in sim.bins]
        self.v: list[list[float]] = [[] for _ in sim.bins]
        self.done = [0] * len(sim.bins)
        self.state = [(sim.t0, b.level0) for b in sim.bins]  # (time, true level then)
        self.scanned = sim.t0
        self.profiles: tuple[datetime, dict[str, FillProfile]] | None = None

    def observe(self, now: float, visits: list[list[Stop]]) -> list[float]:
        """Take every reading sent before ``now`` (epoch s) given the ``visits`` so far (none of them later
        than ``now``); returns each bin's true level at ``now`` (for the record of choices only).

        The true levels come from :func:`~firmware_sim.city_bins.fill_bin`, continued from the level at
        the previous call (bags and visits after it only), so a run costs one pass over the readings."""
        truth = []
        for i, b in enumerate(self.sim.bins):
            read_t, (since, level) = self.sim.read_t[i], self.state[i]
            upto = bisect.bisect_left(read_t, now)
            j = bisect.bisect_right(b.bag_t, since)
            rest = replace(b, level0=level, bag_t=b.bag_t[j:], bag_s=b.bag_s[j:])
            levels = fill_bin(rest, [v for v in visits[i] if v.t > since], [*read_t[self.done[i]:upto], now],
                              since, now + 1.0, Thresholds()).levels
            for k, lv in zip(range(self.done[i], upto), levels, strict=False):
                value = self.sensors[i].read(k, read_t[k], lv)
                if value is not None:
                    self.t[i].append(round(read_t[k] * 1000))
                    self.v[i].append(value)
            self.done[i], self.state[i] = upto, (now, levels[-1])
            truth.append(levels[-1])
        return truth

    def _pickups(self, now: float) -> None:
        """Detect pickups in the readings since the last scan (3 h overlap) and keep the new ones."""
        lo = (self.scanned - 3 * 3600) * 1000
        ids, ts, vs = [], [], []
        for d, t, v in zip(self.devs, self.t, self.v, strict=True):
            a = bisect.bisect_right(t, lo)
            ids += [d.device_id] * (len(t) - a)
            ts += t[a:]
            vs += v[a:]
        frame = pd.DataFrame({"device_id": ids, "time": pd.to_datetime(ts, unit="ms", utc=True), FILL: vs})
        seen = set(self.session.execute(select(CollectionRow.device_id, CollectionRow.at)).tuples())
        for p in pickups.detect(frame, self.cfg.pickup_min_drop):
            if (p.device_id, p.at) not in seen:
                self.session.add(CollectionRow(device_id=p.device_id, at=p.at, level_before=p.level_before,
                                               level_after=p.level_after))
        self.session.flush()
        self.scanned = now

    def _learned(self, now: datetime, hist: dict[str, pickups.History]) -> dict[str, FillProfile]:
        """Each bin's profile from the hourly means and pickups before the local midnight (learned once a
        local day)."""
        cfg = self.cfg
        midnight = now.astimezone(self.sim.city.tzinfo()).replace(hour=0, minute=0, second=0, microsecond=0)
        if self.profiles is None or self.profiles[0] != midnight:
            hi = midnight.timestamp() * 1000
            lo = hi - cfg.forecast_history_days * 86400 * 1000
            got = {}
            for d, t, v in zip(self.devs, self.t, self.v, strict=True):
                after = hist[d.device_id].after_pickups(midnight) if d.device_id in hist else []
                prof = learn_profile(*hourly_means(np.array(t), np.array(v), lo, hi).values(FILL), cfg.timezone,
                                     pickups=after)
                if prof is not None:
                    got[d.device_id] = prof
            self.profiles = (midnight, got)
        return self.profiles[1] if cfg.forecast_history_days > 0 else {}

    def choose(self, now: float, visits: list[list[Stop]], next_round: float) -> tuple[routes.Plan, list[Choice]]:
        """Lorong's plan for the round starting at ``now`` (epoch s): the bins and their routes."""
        sim, cfg = self.sim, self.cfg
        truth = self.observe(now, visits)
        self._pickups(now)
        at = utc_from_ms(round(now * 1000))
        hist = pickups.history(self.session, at)
        last = {d: h.at[-1] for d, h in hist.items() if h.at}
        now_ms, raw_ms = now * 1000, recent_window(cfg, {d.device_id: d for d in self.devs}).total_seconds() * 1000
        hourly, recent = {}, {}
        for d, t, v in zip(self.devs, self.t, self.v, strict=True):
            ta, va = np.array(t, dtype=np.int64), np.array(v)
            hourly[d.device_id] = hourly_means(ta, va, now_ms - cfg.forecast_window_h * HOUR_MS, now_ms)
            keep = ta > now_ms - raw_ms
            recent[d.device_id] = DeviceSeries(ta[keep], {FILL: va[keep]})
        fcs = fc_bins.forecasts(self.devs, hourly, recent, last, hist, at, cfg.pickup_min_drop, self._learned(at, hist))
        for d, t, v in zip(self.devs, self.t, self.v, strict=True):
            if not t:
                continue
            row = self.session.get(DeviceLatestRow, d.device_id) or DeviceLatestRow(device_id=d.device_id)
            row.ts, row.metrics = utc_from_ms(t[-1]), {FILL: [v[-1], t[-1]]}
            row.derived = fc_bins.bin_derived(fcs.get(d.device_id), last.get(d.device_id))
            self.session.add(row)
        self.session.flush()
        stops = routes.select_stops(self.session, cfg, at, BIN_L)
        due = routes.collect_by(self.session, cfg, at).timestamp()
        plan = routes.solve(sim.depot, stops, sim.city.rounds.trucks, sim.capacity_l, SOLVER_CAP_S, local_optimum=True)
        choices = []
        for s in stops:
            i = self.index[s.device_id]
            fc = fcs.get(s.device_id)
            choices.append(Choice(s.device_id, now, s.level, None if fc is None or fc.full_at is None
                                  else fc.full_at.isoformat(), truth[i],
                                  _cross(sim.bins[i], truth[i], now, cfg.full_threshold), next_round, due))
        return plan, choices


def _cross(b: SimBin, level: float, t: float, full: float) -> float | None:
    """When ``b``, left alone from ``t`` at ``level``, truly crosses ``full`` (epoch s, within 48 h)."""
    return counterfactual(b, level, t, Thresholds(full=full))[0]
