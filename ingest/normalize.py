"""Derived metrics: ultrasonic distance into bin fill level.

Fill level follows the usual ultrasonic level geometry (Milesight EM310-UDL user guide, section
"Distance measurement"; FIWARE WasteContainer.fillingLevel is a 0..1 fraction):

    fillingLevel = (depth_mm - distance_mm) / (depth_mm - blind_zone_mm), clamped to 0..1

where ``depth_mm`` is the distance from the sensor face to the empty floor and
``blind_zone_mm`` the sensor's minimum range (waste closer than that reads as full).
"""

from __future__ import annotations

from lorong.core.errors import ValidationError

ECHO_SLACK = 1.2
"""A distance above depth x 1.2 is an echo from beyond the bin floor: a sensor fault, not data."""


def fill_level(distance_mm: float, depth_mm: float, blind_zone_mm: float = 0.0) -> float:
    """Fill fraction 0..1 of a bin from its sensor's distance reading.

    Args:
        distance_mm: sensor-to-waste distance, mm, > 0.
        depth_mm: sensor-to-empty-floor distance, mm, > blind_zone_mm.
        blind_zone_mm: minimum measurable distance, mm, >= 0.

    Raises:
        ValidationError: ``sensor_sentinel`` for a 0 mm reading (no echo) or one beyond
            depth x :data:`ECHO_SLACK`; ``bad_geometry`` when depth <= blind zone.
    """
    if depth_mm <= blind_zone_mm:
        raise ValidationError("bad_geometry", f"bin depth {depth_mm} mm <= blind zone {blind_zone_mm} mm")
    if distance_mm <= 0.0:
        raise ValidationError("sensor_sentinel", f"distance {distance_mm} mm: no echo")
    if distance_mm > depth_mm * ECHO_SLACK:
        raise ValidationError("sensor_sentinel",
                              f"distance {distance_mm} mm beyond bin depth {depth_mm} mm x {ECHO_SLACK}")
    fraction = (depth_mm - distance_mm) / (depth_mm - blind_zone_mm)
    return min(1.0, max(0.0, fraction))
