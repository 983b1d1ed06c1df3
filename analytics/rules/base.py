"""What every rule reads (:class:`Context`) and returns (:class:`Verdict`).

A rule is a pure function ``evaluate(ctx) -> list[Verdict]``: no I/O, no clock. The job builds
the context once per run (one InfluxQL query per frame), runs every rule, and applies the
verdicts to the alert book. A rule says nothing about a device whose state should not change
(not enough data yet, or a level inside the hysteresis band): silence keeps an alert as it is.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from analytics.forecast import FillForecast
from lorong.core.model import DeviceKind, to_ms, utc_from_ms
from lorong.core.settings import AnalyticsSettings


@dataclass(frozen=True, slots=True)
class Device:
    """The registry facts a rule needs about one active device.

    Attributes:
        device_id: registry id.
        kind: bin or air.
        kecamatan: district (alert topic level).
        model: device model string from the registry (selects the PM humidity correction).
        full_threshold: this bin's full threshold (per-device override or the default), 0..1.
        report_interval_s: expected seconds between uplinks.
        since: when the device was installed (or registered), UTC.
    """

    device_id: str
    kind: DeviceKind
    kecamatan: str
    model: str
    full_threshold: float
    report_interval_s: int
    since: datetime | None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rule's decision for one device and alert type.

    Attributes:
        device_id: the device (or ``city`` for city-wide alerts).
        type: alert type (``bin_full``, ``offline`` ...).
        severity: critical, major, minor or warning to raise; ``None`` to clear.
        details: JSON-ready facts behind the decision (values, limits, times as ISO strings).
        reason: why an alert clears (stored in the history).
        kecamatan: the device's district.
        evidence_at: time (tz-aware UTC) of the newest data behind a raise; ``None`` means the
            device's newest reading (``Context.latest_ts``). After a person cleared the alert,
            the job raises it again only when this is after the clear.
    """

    device_id: str
    type: str
    severity: str | None
    details: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    kecamatan: str = ""
    evidence_at: datetime | None = None

    @property
    def clears(self) -> bool:
        """True when this verdict clears the alert."""
        return self.severity is None


@dataclass
class Context:
    """Everything the rules read in one run.

    Attributes:
        now: the run's time (tz-aware UTC); all windows end here.
        cfg: thresholds.
        devices: active devices by id.
        active: severity of each active alert by ``(device_id, type)``, and its start.
        active_details: the ``details`` of each active alert by ``(device_id, type)`` as the last run
            that raised it left them, and that run's time (the alert's ``updated_at``, UTC) - what a
            rule needs to carry a fact (``bin_full``'s ``since``) past the readings one run reads.
        recent: raw recent points of bins and stations (see :func:`analytics.frames.recent_points`):
            columns device_id, time and one float column per field, sorted by device and time.
        latest_ts: time of each device's newest reading (UTC).
        pickups: time of each bin's last detected pickup (UTC).
        forecasts: each bin's fill forecast.
        expected_pickup: when each bin's truck is next expected (UTC; see
            :func:`analytics.fillprofile.expected_pickup`).
        last_opened: the newest opening (UTC) of each device's alerts of the types the job
            asks for (``bin_full_soon``), active or cleared, within the last days.
        air_1h: per-station PM2.5 over the last hour, index device_id, columns ``pm25``
            (humidity-corrected mean, ug/m3) and ``n`` (readings).
        air_spikes: per-station 10-minute buckets, columns device_id, time, pm25, z, excess,
            spike (see :func:`analytics.air.score_spikes`).
        rejects: per-device dead-letter counts by reason within the rejects window.
        rejects_newest: per-device time of the newest dead letter in that window (UTC).
    """

    now: datetime
    cfg: AnalyticsSettings
    devices: dict[str, Device]
    active: dict[tuple[str, str], tuple[str, datetime]] = field(default_factory=dict)
    active_details: dict[tuple[str, str], tuple[dict[str, Any], datetime]] = field(default_factory=dict)
    recent: pd.DataFrame = field(default_factory=pd.DataFrame)
    latest_ts: dict[str, datetime] = field(default_factory=dict)
    pickups: dict[str, datetime] = field(default_factory=dict)
    forecasts: dict[str, FillForecast] = field(default_factory=dict)
    expected_pickup: dict[str, datetime] = field(default_factory=dict)
    last_opened: dict[tuple[str, str], datetime] = field(default_factory=dict)
    air_1h: pd.DataFrame = field(default_factory=pd.DataFrame)
    air_spikes: pd.DataFrame = field(default_factory=pd.DataFrame)
    rejects: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    rejects_newest: Mapping[str, datetime] = field(default_factory=dict)
    _groups: dict[str, DeviceSeries] | None = field(default=None, init=False, repr=False)

    def of_kind(self, kind: DeviceKind) -> Iterator[Device]:
        """Active devices of one kind, by id."""
        return (d for d in self.devices.values() if d.kind is kind)

    def is_active(self, device_id: str, type_: str) -> bool:
        """True when an alert of that device and type is active."""
        return (device_id, type_) in self.active

    def series(self, device_id: str) -> DeviceSeries:
        """The device's recent points (empty if none), ascending time."""
        if self._groups is None:
            self._groups = split_by_device(self.recent)
        return self._groups.get(device_id, EMPTY)

    def fill_since_pickup(self, device_id: str) -> tuple[np.ndarray, np.ndarray, bool]:
        """A bin's recent ``fillingLevel`` readings since its last pickup (``self.pickups``; a sensor's
        pickup is timed at its first reading after the fall, a crew's Emptied at the press): a level read
        before the bin was emptied is not its level now.

        Returns:
            ``(t_ms, levels, cut)``: epoch ms and levels (0..1) ascending, and whether readings before the
            pickup were left out.
        """
        t, levels = self.series(device_id).values("fillingLevel")
        pickup = self.pickups.get(device_id)
        if pickup is None:
            return t, levels, False
        after = t >= to_ms(pickup)
        return t[after], levels[after], not bool(after.all())


@dataclass(frozen=True, slots=True)
class DeviceSeries:
    """One device's recent points as numpy arrays (fast to slice in per-device loops).

    Attributes:
        t_ms: epoch milliseconds, int64, ascending.
        fields: field name -> float64 array aligned with ``t_ms`` (NaN where a point lacks it).
        dense: names of the fields that hold no NaN (every point carries them): :meth:`values` returns
            their arrays as they are, without the mask and its two copies (20,000 bins times a rule's
            reads; bench/analytics_job.py).
    """

    t_ms: np.ndarray
    fields: dict[str, np.ndarray]
    dense: frozenset[str] = frozenset()

    def values(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(t_ms, values)`` of the points that carry ``name`` (both empty if none); arrays that may be
        views into the series (read-only when :func:`split_by_device` made it)."""
        v = self.fields.get(name)
        if v is None:
            return _NO_T, _NO_V
        if name in self.dense:
            return self.t_ms, v
        ok = ~np.isnan(v)
        return self.t_ms[ok], v[ok]


_NO_T = np.zeros(0, dtype=np.int64)
_NO_V = np.zeros(0, dtype=float)
EMPTY = DeviceSeries(_NO_T, {})


def split_by_device(frame: pd.DataFrame) -> dict[str, DeviceSeries]:
    """Cut a long frame (sorted by device_id, time) into one :class:`DeviceSeries` per device; its arrays
    are read-only views of the frame's columns, and a column without NaN is ``dense`` in every series."""
    if frame.empty:
        return {}
    devices = frame["device_id"].to_numpy()
    t_ms = frame["time"].dt.tz_convert(None).to_numpy().astype("datetime64[ms]").astype(np.int64)
    cols = {c: frame[c].to_numpy(dtype=float) for c in frame.columns if c not in ("device_id", "time")}
    for arr in (t_ms, *cols.values()):
        arr.setflags(write=False)
    dense = frozenset(c for c, v in cols.items() if not np.isnan(v).any())
    starts = np.flatnonzero(np.r_[True, devices[1:] != devices[:-1]])
    ends = np.r_[starts[1:], len(devices)]
    return {str(devices[a]): DeviceSeries(t_ms[a:b], {c: v[a:b] for c, v in cols.items()}, dense)
            for a, b in zip(starts, ends, strict=True)}


def iso(ts: datetime | pd.Timestamp | None) -> str | None:
    """ISO-8601 text of a time (UTC offset kept), or None."""
    if ts is None or (isinstance(ts, pd.Timestamp) and pd.isna(ts)):
        return None
    if isinstance(ts, pd.Timestamp):
        ts = ts.to_pydatetime()
    return ts.isoformat()


def ms_iso(t_ms: int | np.integer) -> str:
    """ISO-8601 UTC text of epoch milliseconds."""
    return utc_from_ms(int(t_ms)).isoformat()


def run_length(hit: np.ndarray, t_ms: np.ndarray) -> tuple[int, float]:
    """How many of the newest values satisfy ``hit`` in a row, and the seconds they span.

    Args:
        hit: booleans, ascending time.
        t_ms: their epoch milliseconds.

    Returns:
        ``(count, span_s)``; ``(0, 0.0)`` when the newest value misses.
    """
    n = len(hit)
    if n == 0 or not hit[-1]:
        return 0, 0.0
    misses = np.flatnonzero(~hit)
    count = n if len(misses) == 0 else n - 1 - int(misses[-1])
    return count, float(t_ms[-1] - t_ms[n - count]) / 1000.0


def debounced(count: int, span_s: float, cfg: AnalyticsSettings) -> bool:
    """True when a condition held for ``cfg.debounce_readings`` readings or, when set,
    ``cfg.debounce_s`` seconds (whichever comes first)."""
    return count >= cfg.debounce_readings or (cfg.debounce_s is not None and count >= 2
                                             and span_s >= cfg.debounce_s)


def run_start(ctx: Context, device_id: str, type_: str, t: np.ndarray, count: int) -> tuple[str, bool]:
    """When the newest run of ``count`` readings in a condition (a level at or above the threshold, a
    frozen value, a flag set) began, and whether that is exact.

    Args:
        ctx: the run's context (the active alert's last ``details`` and time, ``ctx.active_details``).
        device_id: the device.
        type_: the alert type whose condition the run is.
        t: epoch milliseconds of the readings read, ascending; the run is ``t[-count:]``, ``count >= 1``.

    Returns:
        ``(since, exact)``: ISO-8601 UTC text and True when a reading outside the condition precedes
        the run in ``t``; when the run fills ``t``, the active alert's ``since`` (and its exactness) if the
        run that wrote it is not older than ``t[0]``, else ``t[0]`` and False (at or before then).
    """
    first = int(t[len(t) - count])
    if count < len(t):
        return ms_iso(first), True
    prev = ctx.active_details.get((device_id, type_))
    if prev is not None and isinstance(prev[0].get("since"), str) and to_ms(prev[1]) >= first:
        try:
            earlier = to_ms(datetime.fromisoformat(prev[0]["since"]))
        except ValueError:
            earlier = first
        if earlier <= first:
            return ms_iso(earlier), bool(prev[0].get("since_exact", True))
    return ms_iso(first), False
