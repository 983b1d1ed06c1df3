"""A simulated city run live: the model of :mod:`firmware_sim.city_bins` and :mod:`firmware_sim.city_air`
stepped forward on a clock, with a state per bin that people can change (a crew empties a bin).

``lorong demo`` drives it: first :meth:`LiveCity.advance` from ``now - history`` to ``now`` (the
backfill, loaded at the simulated times through the ingest pipeline), then :meth:`LiveCity.step` once a
second with the real clock. Every reading carries the simulated time it was taken at, and a reading is
sent only once the clock given has passed its receive time, so nothing is stamped in the future.

Bins: the bags of :func:`~firmware_sim.city_bins.grow_bags` (by site type, hour and weekday), the fixed
rounds of :func:`~firmware_sim.city_bins.plan_rounds` (trucks reaching bins one after another, partial
pickups and skips) and the faults of :func:`~firmware_sim.city_bins.plan_faults` (offline, stuck, tilt,
lid open, fire, sun heating, low battery, a bag held over the sensor, LoRa duplicates) are planned in
windows of :data:`WINDOW_DAYS` days; each bin's true fill level is state, moved by the bags, the truck
stops and :meth:`LiveCity.empty` in time order. Readings: :func:`~firmware_sim.city_bins.sensor_mm`
(+-10 mm), EM310-UDL frames in TTN v3 uplinks or native JSON, as in a scenario. Not sent live: the bursts
of malformed payloads (``payload_rejects``), which a scenario has. Air stations: the series of
:func:`~firmware_sim.city_air.simulate_air` per window, sent when due (nothing a person does changes the air).

Deterministic: the same city, seed, start and calls give the same messages. Pure (no I/O, no clock): a
crew's actions come in through :meth:`LiveCity.empty` or the ``crew`` callable polled by
:meth:`LiveCity.advance`. Not thread-safe: call it from one thread.
"""

from __future__ import annotations

import bisect
import math
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from firmware_sim.city import CityConfig
from firmware_sim.city_bins import (
    STEP_S,
    FaultPlan,
    SimBin,
    Stop,
    grow_bags,
    ms_iso,
    place_bins,
    plan_faults,
    plan_rounds,
    registry_row,
    sensor_mm,
    temperature,
)
from firmware_sim.encoders.milesight import encode_em310_udl
from firmware_sim.fleet import lorong_json_uplink, ttn_v3_uplink

WINDOW_DAYS = 7
"""Days of bags, rounds, faults and air planned at a time (the next window is planned when the clock
nears its end, with a seed derived from the city's seed and the window number)."""

CATALOGUE = 20000
"""Bins a live city's site types are shared out over (:func:`firmware_sim.city_bins.place_bins`), the city
file's largest ``bins``: a run of N bins has the catalogue's first N, so a device id is the same bin
(site, kecamatan, place, fill rate) whatever the fleet size of a run with that city and seed."""

RX_LAG_S = 2.0
"""A reading taken at ``t`` is sent once the clock is at ``t + RX_LAG_S``: the LoRaWAN network server
stamps it up to 1.6 s after the sensor measured (the scenario's radio and backhaul delays)."""

EMPTIED_MAX = 0.03
"""A crew leaves at most this fill in an emptied bin (the fixed rounds' full pickups leave 0-0.03)."""

Uplink = tuple[float, str, bytes]
"""``(receive time epoch s, topic, payload)``."""

CrewSource = Callable[[], list[tuple[str, datetime]]]
"""Returns the bins people emptied since its last call: ``(device id, when)``, tz-aware."""


@dataclass
class LiveBin:
    """One bin's live state.

    Attributes:
        sim: placement, geometry and planned bags (epoch s) of the bin.
        level: true fill level, fraction 0..1, as of ``settled_t``.
        settled_t: time (epoch s) up to which bags, stops and crew empties are applied.
        next_t: time (epoch s) of its next reading.
        stops: truck stops planned for it, time order.
        crew: times (epoch s) people emptied it, not applied yet, sorted.
        battery: battery, %.
        sent: readings taken (the uplink counter: LoRaWAN FCnt, lorong-json ``seq``).
    """

    sim: SimBin
    level: float
    settled_t: float
    next_t: float
    battery: float
    rnd: random.Random
    crew_rnd: random.Random
    stops: list[Stop] = field(default_factory=list)
    crew: list[float] = field(default_factory=list)
    sent: int = 0
    bag_i: int = 0
    stop_i: int = 0
    stuck_left: int = 0
    stuck_mm: int = 0


def _window_seed(seed: int, k: int) -> int:
    """Seed of planning window ``k`` (window 0 uses the city's own seed)."""
    return seed if k == 0 else zlib.crc32(f"{seed}:window:{k}".encode())


def _inside(spans: list[tuple[float, float]] | None, t: float) -> bool:
    return spans is not None and any(s <= t < e for s, e in spans)


class LiveCity:
    """A city whose bins and air stations report as a clock moves forward.

    Args:
        city: the city file's model; ``bins``, ``stations`` and ``seed`` override its values.
        start: tz-aware time the simulation starts at (the first readings are at or after it).
        crew: polled every ``crew_poll_s`` simulated seconds by :meth:`advance`; each bin it names is
            emptied (:meth:`empty`) at the time it gives.
        crew_poll_s: seconds between polls of ``crew``.

    Raises:
        ValueError: a naive ``start``, or sizes the city file does not allow.
    """

    def __init__(self, city: CityConfig, start: datetime, bins: int | None = None, stations: int | None = None,
                 seed: int | None = None, crew: CrewSource | None = None, crew_poll_s: float = 5.0) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be tz-aware")
        update = {k: v for k, v in (("bins", bins), ("stations", stations), ("seed", seed)) if v is not None}
        local = start.astimezone(city.tzinfo())
        day0 = local.replace(hour=0, minute=0, second=0, microsecond=0)
        self.city = CityConfig.model_validate({**city.model_dump(), **update, "start": day0,
                                               "days": WINDOW_DAYS})
        self.seed = self.city.seed
        self.crew, self.crew_poll_s = crew, crew_poll_s
        self.clock = start.timestamp()
        self._day0 = day0
        self._last_poll = -math.inf
        self._windows: list[tuple[float, float, FaultPlan]] = []
        self._air: list[tuple[float, str, bytes]] = []
        self._air_devices: list[dict[str, Any]] = []
        self._air_stored: dict[str, float] = {}  # topic -> epoch s up to which the store has the station's uplinks
        t0 = day0.timestamp()
        self.bins: dict[str, LiveBin] = {}
        for b in place_bins(self.city, self.seed, catalogue=CATALOGUE):
            first = t0 + b.phase_s + max(0, math.ceil((self.clock - t0 - b.phase_s) / STEP_S)) * STEP_S
            self.bins[b.device_id] = LiveBin(
                b, b.level0, self.clock, first, b.battery0, random.Random(f"{self.seed}:sensor:{b.index}"),
                random.Random(f"{self.seed}:crew:{b.index}"))
        self._plan_next()
        for lb in self.bins.values():  # waste and rounds before the start are the bin's past, not replayed
            lb.bag_i = bisect.bisect_right(lb.sim.bag_t, self.clock)
            lb.stop_i = bisect.bisect_right([s.t for s in lb.stops], self.clock)
        self._air = [m for m in self._air if m[0] > self.clock]

    def registry_rows(self) -> list[dict[str, Any]]:
        """Registry rows (fields of ``devices.registry.DeviceIn``): bins, then air stations."""
        installed = (self._day0 - timedelta(days=30)).isoformat()
        return [registry_row(lb.sim, installed) for lb in self.bins.values()] + list(self._air_devices)

    def level(self, device_id: str) -> float:
        """True fill level (fraction 0..1) of a bin as of its last reading.

        Raises:
            KeyError: not a bin of this city.
        """
        return self.bins[device_id].level

    def empty(self, device_id: str, at: datetime | None = None) -> bool:
        """A person emptied the bin at ``at`` (default: the clock): its level drops to at most
        :data:`EMPTIED_MAX` from then on. A time before the bin's last reading counts from that
        reading (what was sent stays sent).

        Returns:
            False if ``device_id`` is not a bin of this city (nothing changes).
        """
        lb = self.bins.get(device_id)
        if lb is None:
            return False
        t = max(at.timestamp() if at is not None else self.clock, lb.settled_t)
        bisect.insort(lb.crew, t)
        return True

    def resume(self, device_id: str, stored_until: datetime, level: float | None = None) -> bool:
        """The store already holds the device's readings up to ``stored_until`` (an earlier run of the
        city on the same data: ``lorong demo`` restarted, maybe with another fleet size): its readings
        taken until then are not sent again, and a bin goes on from ``level`` then.

        A second simulation of a span already stored is another past (the trucks' rounds depend on the
        fleet; the network server's timestamps on the readings before): sent again, it would lie
        beside the stored one, two pickups per truck stop. The bags and truck stops until
        ``stored_until`` are that past; the bin's true level then is ``level`` (its last stored
        ``fillingLevel``, fraction 0..1; ``None``: this run's own), so its series goes on without a
        jump. The bin's battery drains and its uplink counter counts through the readings not sent.
        A time at or before the bin's last reading changes nothing.

        Args:
            device_id: a bin or air station of this city.
            stored_until: tz-aware time of the device's newest stored reading.
            level: a bin's fill level at ``stored_until`` (air stations: not used).

        Returns:
            False if ``device_id`` is not a device of this city (nothing changes).
        """
        t = stored_until.timestamp() + 0.001  # the store keeps milliseconds: a reading in that ms is stored
        if any(d["id"] == device_id for d in self._air_devices):
            topic = f"lorong/v1/{device_id}/up"  # the stations' topic (city_air: lorong-json uplinks)
            self._air_stored[topic] = max(t, self._air_stored.get(topic, -math.inf))
            return True
        lb = self.bins.get(device_id)
        if lb is None:
            return False
        if lb.settled_t >= t or lb.next_t > t:
            return True
        while self._windows[-1][1] < t + STEP_S:  # the stops up to then are planned
            self._plan_next()
        skipped = math.floor((t - lb.next_t) / STEP_S) + 1
        lb.next_t += skipped * STEP_S
        lb.sent += skipped
        lb.battery = max(0.0, lb.battery - lb.sim.drain_per_day * skipped * STEP_S / 86400)
        lb.bag_i = max(lb.bag_i, bisect.bisect_right(lb.sim.bag_t, t))
        lb.stop_i = max(lb.stop_i, bisect.bisect_right([s.t for s in lb.stops], t))
        lb.stuck_left = 0
        if level is not None:
            lb.level = min(1.0, max(0.0, level))
        lb.settled_t = t
        return True

    def step(self, dt_s: float, now: datetime) -> list[tuple[str, bytes]]:
        """The uplinks due up to ``now`` (``firmware_sim.cli.run_fleet``'s interface).

        ``dt_s`` is not used: a live city runs on the clock it is given, never ahead of it.
        """
        return [(topic, payload) for _rx, topic, payload in self.advance(now.timestamp())]

    def advance(self, until: float) -> list[Uplink]:
        """Move the clock to ``until`` (epoch s; an earlier time changes nothing) and return every uplink
        received by then, sorted by receive time."""
        if self.crew is not None and until - self._last_poll >= self.crew_poll_s:
            self._last_poll = until
            for device_id, at in self.crew():
                self.empty(device_id, at)
        while self._windows[-1][1] < until + STEP_S:
            self._plan_next()
        out: list[Uplink] = []
        for lb in self.bins.values():
            while lb.next_t + RX_LAG_S <= until:
                self._settle(lb, lb.next_t)
                out += self._reading(lb, lb.next_t)
                lb.next_t += STEP_S
        n = bisect.bisect_right(self._air, (until, "\uffff", b""))
        out += [m for m in self._air[:n] if m[0] > self._air_stored.get(m[1], -math.inf)]
        del self._air[:n]
        self.clock = max(self.clock, until)
        out.sort()
        return out

    def _plan_next(self) -> None:
        """Plan the next window: bags, rounds, faults of the bins, and the air stations' series."""
        k = len(self._windows)
        seed = _window_seed(self.seed, k)
        city = self.city.model_copy(update={"start": self._day0 + timedelta(days=k * WINDOW_DAYS)})
        t0, t1 = city.start.timestamp(), (city.start + timedelta(days=WINDOW_DAYS)).timestamp()
        sims = [lb.sim for lb in self.bins.values()]
        for b in sims:
            grow_bags(b, city, seed, t0, t1)
        rounds = plan_rounds(city, seed, WINDOW_DAYS, [(b.lat, b.lon) for b in sims])
        before = [b.battery0 for b in sims]
        faults = plan_faults(city, seed, t0, t1, sims)
        for lb, was in zip(self.bins.values(), before, strict=True):
            lb.stops += rounds.stops[lb.sim.index]
            if lb.sim.battery0 != was:  # a low-battery fault: a weak cell from this window on
                lb.battery = lb.sim.battery0
        self._windows.append((t0, t1, faults))
        if self.city.stations:
            from firmware_sim.city_air import simulate_air

            air = simulate_air({"id_prefix": self.city.id_prefix, **self.city.air}, self.city.kecamatan,
                               self.city.stations, city.start, WINDOW_DAYS, seed, self.city.timezone)
            if k == 0:
                installed = (self._day0 - timedelta(days=30)).astimezone(UTC).isoformat()
                self._air_devices = [{"installed_at": installed, **d} for d in air.devices]
            self._air += [(rx.timestamp(), topic, payload) for rx, topic, payload in air.messages]
            self._air.sort()

    def _faults(self, t: float) -> FaultPlan:
        """The fault plan of the window holding ``t``."""
        for t0, t1, plan in self._windows:
            if t0 <= t < t1:
                return plan
        return self._windows[-1][2]

    def _settle(self, lb: LiveBin, t: float) -> None:
        """Apply the bags, truck stops and crew empties up to ``t`` to ``lb.level``, in time order."""
        b = lb.sim
        while True:
            tb = b.bag_t[lb.bag_i] if lb.bag_i < len(b.bag_t) else math.inf
            ts = lb.stops[lb.stop_i].t if lb.stop_i < len(lb.stops) else math.inf
            tc = lb.crew[0] if lb.crew else math.inf
            first = min(tb, ts, tc)
            if first > t:
                break
            if first == tb:
                lb.level = min(1.0, lb.level + b.bag_s[lb.bag_i])
                lb.bag_i += 1
            elif first == ts:
                stop = lb.stops[lb.stop_i]
                lb.stop_i += 1
                if stop.outcome == "full":
                    lb.level = min(lb.level, stop.param)
                elif stop.outcome == "partial":
                    lb.level *= stop.param
            else:
                lb.crew.pop(0)
                lb.level = min(lb.level, lb.crew_rnd.uniform(0.0, EMPTIED_MAX))
        lb.settled_t = max(lb.settled_t, t)

    def _reading(self, lb: LiveBin, t: float) -> list[Uplink]:
        """The uplinks of one reading at ``t`` (none while offline; two for a LoRa duplicate)."""
        b, rnd, plan, city = lb.sim, lb.rnd, self._faults(t), self.city
        i, dev, prev = b.index, b.device_id, t - STEP_S
        lb.sent += 1
        dist = sensor_mm(b, lb.level, rnd)
        if any(prev < s <= t for s, _n in plan.stuck.get(i, [])):
            lb.stuck_mm, lb.stuck_left = dist, next(n for s, n in plan.stuck[i] if prev < s <= t) - 1
        elif lb.stuck_left > 0:
            dist, lb.stuck_left = lb.stuck_mm, lb.stuck_left - 1
        local = datetime.fromtimestamp(t, city.tzinfo())
        # a bag held over the sensor: bag_over_sensor_per_bin_day spread over the 78 readings of 07-20 h
        if (7 <= local.hour < 20 and lb.level < 0.7 and lb.stuck_left == 0
                and rnd.random() < city.faults.bag_over_sensor_per_bin_day / 78):
            dist = round(rnd.uniform(160, 320))
        lb.battery = max(0.0, lb.battery - b.drain_per_day * STEP_S / 86400)
        if _inside(plan.offline.get(i), t):
            return []
        battery = max(0, min(100, round(lb.battery)))
        tilt = _inside(plan.tilt.get(i), t)
        if b.lorawan:
            gw = f"gw-{city.id_prefix.lower()}-{list(city.kecamatan).index(b.kecamatan) + 1:02d}"
            app, rssi = f"lorong-{city.id_prefix.lower()}@ttn", -100 + (i * 7) % 15
            frame = encode_em310_udl(dist, battery, tilt)
            ns = t + rnd.uniform(0.05, 0.4)
            rx = ns + rnd.uniform(0.2, 1.2)
            out = [(rx, *ttn_v3_uplink(dev, lb.sent, frame, ms_iso(ns), ((gw, rssi),), app=app))]
            if rnd.random() < city.faults.duplicate_share:
                gws = ((gw, rssi), (f"{gw}b", rssi - rnd.randint(3, 12)))
                out.append((rx + rnd.uniform(0.1, 0.5), *ttn_v3_uplink(dev, lb.sent, frame, ms_iso(ns), gws,
                                                                       app=app)))
            return out
        temp = temperature(b, t, local.hour + local.minute / 60, plan) + rnd.uniform(-0.2, 0.2)
        lid = _inside(plan.lid.get(i), t) or any(prev < s <= t for s in plan.lid_blip.get(i, []))
        topic, payload = lorong_json_uplink(dev, ms_iso(t), lb.sent, {
            "distance": {"value": dist, "unit": "mm"}, "batteryLevel": {"value": battery, "unit": "%"},
            "temperature": {"value": round(min(temp, 125.0), 1), "unit": "degC"},
            "tilt": int(tilt), "lidOpen": int(lid)})
        return [(t + rnd.uniform(0.05, 1.0), topic, payload)]
