"""The city file of a scenario (YAML or JSON) and its model :class:`CityConfig`.

Every key but ``name`` has a default (``firmware_sim/SCENARIO.md``, "The city file"); unknown keys
are refused so that a typo does not silently fall back to a default. The packaged cities live in
``firmware_sim/cities/*.yaml``; :func:`packaged_city` finds them.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from firmware_sim.makassar import KECAMATAN
from lorong.core.settings import CITY_ID, check_zone

CITIES_DIR = Path(__file__).parent / "cities"
"""Folder of the packaged city files."""

SITE_TYPES = ("pasar", "lorong", "school", "office", "terminal")
"""Site types a bin can stand at: market, residential alley, school, office, bus/ferry terminal."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoundsConfig(_Strict):
    """Collection rounds.

    Attributes:
        policy: round policy; only ``fixed`` (the same route every round day) is simulated.
        start: local departure time ``HH:MM`` of the trucks from the depot.
        trucks: number of trucks, each with its own route (bins split by angle around the depot).
        speed_kmh: mean truck speed in town traffic, km/h (our choice: 20 km/h in narrow lorong).
        service_min: minutes per stop to empty a bin (our choice: 3 min for a 660 l bin).
        weekdays: round days, 0 = Monday .. 6 = Sunday.
        partial_prob: chance per stop that waste is left in the bin (partial pickup).
        skip_prob: chance per stop that the bin is skipped (blocked, forgotten).
    """

    policy: str = "fixed"
    start: str = "06:00"
    trucks: int = Field(4, ge=1, le=200)
    speed_kmh: float = Field(20.0, gt=0, le=120)
    service_min: float = Field(3.0, ge=0, le=60)
    weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6])
    partial_prob: float = Field(0.05, ge=0, le=1)
    skip_prob: float = Field(0.02, ge=0, le=1)

    @field_validator("policy")
    @classmethod
    def _policy(cls, v: str) -> str:
        if v != "fixed":
            raise ValueError(f"unknown policy {v!r}; known: fixed")
        return v

    @field_validator("start")
    @classmethod
    def _start(cls, v: str) -> str:
        try:
            h, m = (int(p) for p in v.split(":"))
        except ValueError:
            raise ValueError(f"expected HH:MM, got {v!r}") from None
        if not (0 <= h < 24 and 0 <= m < 60):
            raise ValueError(f"expected HH:MM, got {v!r}")
        return f"{h:02d}:{m:02d}"

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, v: list[int]) -> list[int]:
        if any(not 0 <= d <= 6 for d in v):
            raise ValueError("weekdays are 0 (Monday) .. 6 (Sunday)")
        return sorted(set(v))


class FaultsConfig(_Strict):
    """Injected faults and look-alikes. Counts are per scenario (bins picked by the seed), ``*_per_bin_day``
    are probabilities per bin and day, ``*_share`` fractions of uplinks. All our choice, sized so that a
    5-day city of 200 bins shows each kind a few times.
    """

    bag_over_sensor_per_bin_day: float = Field(0.02, ge=0, le=1)
    stuck: int = Field(3, ge=0)
    offline: int = Field(4, ge=0)
    low_battery: int = Field(3, ge=0)
    fire_fast: int = Field(1, ge=0)
    fire_smouldering: int = Field(1, ge=0)
    sun_heated: int = Field(6, ge=0)
    tilt: int = Field(2, ge=0)
    lid_open: int = Field(3, ge=0)
    lid_blips: int = Field(4, ge=0)
    duplicate_share: float = Field(0.03, ge=0, le=1)
    payload_rejects: int = Field(1, ge=0)


class CityConfig(_Strict):
    """A simulated city (see ``firmware_sim/SCENARIO.md``).

    Attributes:
        name: city name (also the truth's ``city``).
        id_prefix: prefix of native device ids (``MKS`` -> ``MKS-BIN-0001``, ``MKS-AIR-01``).
        timezone: IANA zone of the rounds and daily rhythms.
        start: local midnight the scenario starts at (tz-aware).
        days: simulated days.
        seed: random seed.
        bins, stations: numbers of bins and air stations.
        kecamatan: district -> (lat, lon) centroid, WGS84 degrees (default Makassar's, :mod:`firmware_sim.makassar`).
        spread_deg: half-width, degrees, of the square around a centroid where its devices stand
            (0.008 deg ~ 0.9 km; our choice).
        sites: site type -> share of bins (normalised; types of :data:`SITE_TYPES`).
        rounds: collection rounds.
        faults: injected faults.
        air: settings of the air-station model (``firmware_sim.city_air``), passed through unchanged.
    """

    name: str
    id_prefix: str = Field("MKS", pattern=r"^[A-Z][A-Z0-9]{0,7}$")
    timezone: str = "Asia/Makassar"
    start: datetime = datetime.fromisoformat("2026-03-02T00:00:00+08:00")
    days: int = Field(5, ge=1, le=60)
    seed: int = 1
    bins: int = Field(200, ge=0, le=20000)
    stations: int = Field(20, ge=0, le=2000)
    kecamatan: dict[str, tuple[float, float]] = Field(default_factory=lambda: dict(KECAMATAN))
    spread_deg: float = Field(0.008, ge=0, le=0.5)
    sites: dict[str, float] = Field(default_factory=lambda: {
        "pasar": 0.15, "lorong": 0.5, "school": 0.1, "office": 0.15, "terminal": 0.1})
    rounds: RoundsConfig = Field(default_factory=RoundsConfig)
    faults: FaultsConfig = Field(default_factory=FaultsConfig)
    air: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.match(CITY_ID, v.lower()):
            raise ValueError(f"must be a city id (lower-case letters, digits and '-', at most 32: the registry "
                             f"city a loaded scenario joins), got {v!r}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_zone(v)

    @field_validator("start")
    @classmethod
    def _start(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("start needs a UTC offset, e.g. 2026-03-02T00:00:00+08:00")
        return v

    @field_validator("kecamatan")
    @classmethod
    def _kec(cls, v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        if not v:
            raise ValueError("at least one kecamatan")
        for name, (lat, lon) in v.items():
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError(f"{name}: ({lat}, {lon}) is not a WGS84 position")
        return v

    @field_validator("sites")
    @classmethod
    def _sites(cls, v: dict[str, float]) -> dict[str, float]:
        bad = sorted(set(v) - set(SITE_TYPES))
        if bad:
            raise ValueError(f"unknown site type {', '.join(bad)}; known: {', '.join(SITE_TYPES)}")
        if any(s < 0 for s in v.values()) or sum(v.values()) <= 0:
            raise ValueError("shares must be >= 0 with a positive sum")
        return v

    def tzinfo(self) -> ZoneInfo:
        """The city's time zone."""
        return ZoneInfo(self.timezone)


def city_path(text: str) -> Path:
    """The city file ``--city`` names: a path ending in .yaml, .yml or .json, else a packaged city's name.

    Raises:
        ValueError: an existing file of another kind (``README.md``), or no packaged city of that name
            (the message lists them).
    """
    if text.endswith((".yaml", ".yml", ".json")):
        return Path(text)
    if Path(text).is_file():
        raise ValueError(f"{text}: a city file is YAML or JSON (.yaml, .yml, .json); or name a packaged city "
                         f"({', '.join(sorted(p.stem for p in CITIES_DIR.glob('*.yaml')))})")
    return packaged_city(text)


def packaged_city(name: str = "makassar") -> Path:
    """Path of a packaged city file ``firmware_sim/cities/<name>.yaml``.

    Raises:
        ValueError: no such city; the message lists the packaged ones.
    """
    path = CITIES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CITIES_DIR.glob("*.yaml")))
        raise ValueError(f"no packaged city {name!r}; known: {known}")
    return path


def parse_city(data: object, source: str = "city") -> CityConfig:
    """Validate a decoded city file.

    Raises:
        ValueError: not a mapping, or a bad key; the message names the key (``rounds.trucks: ...``).
    """
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping of keys, got {type(data).__name__}")
    try:
        return CityConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ValueError(f"{source}: {key}: {msg}{more}") from None


def load_city(path: Path) -> CityConfig:
    """Read a city file: YAML (``.yaml``/``.yml``) or JSON (anything else).

    Raises:
        ValueError: unreadable file, bad syntax, or a bad key (named in the message).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml.YAMLError or json.JSONDecodeError: both a syntax error here
        raise ValueError(f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: "
                         f"{str(exc).splitlines()[0]}") from None
    return parse_city(data, str(path))
