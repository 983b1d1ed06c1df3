"""Validation: the only place ingest turns raw values into :class:`lorong.core.model.Reading`.

Parse is syntax, validate is meaning. Policy (documented in the README):

- the device must be registered and not retired (``unknown_device``, ``retired_device``);
- every value must be a known metric (``unknown_metric``), convertible to its canonical unit
  (``bad_unit``), finite (``sensor_sentinel`` for vendor sentinels such as "No Sensor",
  ``non_finite`` otherwise), not a known sensor sentinel number (``sensor_sentinel``, see
  :data:`SENTINELS`) and inside the metric's physical range (``out_of_range``,
  :mod:`lorong.core.metrics`);
- device time is kept when present and sane; more than ``max_future_s`` ahead of receive time
  is ``future_time``, before ``min_year`` is ``too_old`` (clock never set, or a history record
  decoded from the wrong bytes); without a device time the network server's time, else the
  receive time, is used. Time is checked before the value, so a mis-parsed record (1976,
  5760 degC) is reported as ``too_old``: its time is the clearer symptom;
- a message is accepted or rejected whole, so one bad value never leaves half a message stored.

Order of checks per reading: ``unknown_metric``, ``sensor_sentinel`` (nan), ``future_time`` /
``too_old``, ``non_finite``, ``sensor_sentinel`` (-200), ``bad_unit``, ``sensor_sentinel``
(per metric), ``out_of_range``. Payload size (``too_large``) is checked by the pipeline before
parsing, against ``IngestSettings.max_payload_bytes``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ingest.normalize import fill_level
from lorong.core.errors import ValidationError
from lorong.core.metrics import METRICS
from lorong.core.model import DeviceInfo, DeviceKind, RawReading, Reading
from lorong.core.units import convert


@dataclass(frozen=True, slots=True)
class Policy:
    """Validation limits.

    Attributes:
        max_future_s: seconds a device time may run ahead of receive time (default 300).
        min_year: earliest acceptable year of a device time (default 2020).
    """

    max_future_s: float = 300.0
    min_year: int = 2020


MISSING_VALUE = -200.0
"""The missing-value tag of the UCI Air Quality data set (De Vito et al., UCI ML Repository
"Air Quality", AirQualityUCI.csv: "Missing values are tagged with -200 value"), also used by
stations that forward its layout. Rejected for every metric, in whatever unit it arrives."""

SENTINELS: dict[str, tuple[float, ...]] = {
    # Nova Fitness SDS011 datasheet V1.3: PM2.5/PM10 range 0.0-999.9 ug/m3, so 999.9 is the
    # saturated reading; 1999.9 is what failing units report in the Sensor.Community archive
    # (tests/data/sensor-community-abdn, sensor 15462).
    "pm1": (999.9, 1999.9),
    "pm25": (999.9, 1999.9),
    "pm10": (999.9, 1999.9),
    # DallasTemperature library (milesburton/Arduino-Temperature-Control-Library):
    # DEVICE_DISCONNECTED_C = -127 for a DS18B20 probe that does not answer.
    "temperature": (-127.0,),
}
"""Values, in the canonical unit, that a sensor reports instead of a measurement."""


def is_sentinel(metric: str, value: float) -> bool:
    """True when ``value`` (canonical unit) is within 1e-9 of a known no-measurement value of ``metric``."""
    for s in SENTINELS.get(metric, ()):  # noqa: SIM110 - a loop is faster than any() and a generator
        if -1e-9 <= value - s <= 1e-9:  # math.isclose(value, s, rel_tol=0, abs_tol=1e-9)
            return True
    return False


def check_time(ts: datetime, received_at: datetime, policy: Policy) -> None:
    """Reject device times in the future or before ``policy.min_year``.

    Raises:
        ValidationError: ``future_time`` or ``too_old``.
    """
    if (ts - received_at).total_seconds() > policy.max_future_s:
        raise ValidationError("future_time", f"{ts.isoformat()} is ahead of receive time {received_at.isoformat()}")
    if ts.year < policy.min_year:
        raise ValidationError("too_old", f"{ts.isoformat()} is before {policy.min_year}")


def validate(
    raws: list[RawReading],
    device: DeviceInfo,
    received_at: datetime,
    fallback_ts: datetime | None = None,
    policy: Policy = Policy(),
) -> list[Reading]:
    """Validate the raw readings of one message from ``device``.

    For a bin with a known depth, each ``distance`` also yields a ``fillingLevel``, unless the
    device reported its own ``fillingLevel`` in the same message.

    Returns:
        readings in canonical units, in input order (fill levels after their distance).

    Raises:
        ValidationError: the first problem found; the message is rejected whole.
    """
    dev = device.device_id
    return [Reading(dev, metric, value, unit, ts, received_at)
            for metric, value, unit, ts in validate_values(raws, device, received_at, fallback_ts, policy)]


def validate_values(
    raws: Sequence[RawReading],
    device: DeviceInfo,
    received_at: datetime,
    fallback_ts: datetime | None = None,
    policy: Policy = Policy(),
) -> list[tuple[str, float, str, datetime]]:
    """:func:`validate` without building :class:`Reading` objects (the ingester's hot path).

    Returns:
        ``(metric, value, unit, ts)`` per reading: canonical metric name and unit, value in that
        unit, measurement time (tz-aware UTC); same order and rules as :func:`validate`.

    Raises:
        ValidationError: the first problem found; the message is rejected whole.
    """
    if not raws:
        raise ValidationError("no_readings", "the message carries no measurement")
    out: list[tuple[str, float, str, datetime]] = []
    default_ts = fallback_ts or received_at
    checked: datetime | None = None  # readings of one message share a time: check it once
    metrics, sentinels, inf = METRICS, SENTINELS, math.inf
    for metric, value, unit, raw_ts in raws:  # RawReading is a NamedTuple: unpacking is the cheap read
        spec = metrics.get(metric)
        if spec is None:
            raise ValidationError("unknown_metric", f"{metric!r} is not a Lorong metric")
        if value != value:  # NaN: math.isnan() without the call
            raise ValidationError("sensor_sentinel", f"{metric}: the sensor reported no value")
        ts = raw_ts or default_ts
        if ts is not checked:
            check_time(ts, received_at, policy)
            checked = ts
        if not -inf < value < inf:  # math.isfinite() without the call (NaN is already out)
            raise ValidationError("non_finite", f"{metric}: {value}")
        if value == MISSING_VALUE:
            raise ValidationError("sensor_sentinel", f"{metric} = -200: the missing-value tag")
        name = spec.name
        if unit != spec.unit:
            value = convert(value, unit, spec.unit)
        sentinel = sentinels.get(name)
        if sentinel is not None:
            for no_data in sentinel:  # is_sentinel() inlined: this loop runs for most readings
                if -1e-9 <= value - no_data <= 1e-9:
                    raise ValidationError("sensor_sentinel",
                                          f"{metric} = {value:g} {spec.unit}: a sensor's no-data value")
        if not spec.low <= value <= spec.high:
            raise ValidationError("out_of_range",
                                  f"{metric} = {value:g} {spec.unit} outside {spec.low:g}..{spec.high:g}")
        out.append((name, value, spec.unit, ts))
        if (name == "distance" and device.kind is DeviceKind.BIN and device.bin_depth_mm
                # a sensor that reports its own fill level (WILSEN.sonic.level) is taken at its word
                and not any(r.metric == "fillingLevel" for r in raws)):
            out.append(("fillingLevel", fill_level(value, device.bin_depth_mm, device.blind_zone_mm), "1", ts))
    return out
