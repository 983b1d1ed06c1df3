"""The cities of ``lorong demo --cities makassar,jakarta,banyuwangi``: each a registry city (its IANA
zone, kecamatan with centroids, map centre and collection rounds) with its own simulated fleet.

A demo city is a packaged city file (``firmware_sim/cities/*.yaml``) under a registry id: the file
gives the kecamatan and their centroids, the zone, the rounds' start and days, and device ids that no
other city shares (``id_prefix``; DevEUIs with a byte of the city name, :func:`firmware_sim.city_bins.place_bins`).
Kecamatan names are the real districts of each city (Makassar: BPS Kota Makassar, see
:mod:`firmware_sim.makassar`; Jakarta: BPS Provinsi DKI Jakarta, "Provinsi DKI Jakarta Dalam Angka";
Banyuwangi: BPS Kabupaten Banyuwangi, "Kabupaten Banyuwangi Dalam Angka"); the centroids are the city
files' rounded approximations from OpenStreetMap, rounded again here to 0.001 deg (~110 m).

:func:`register_cities` writes them into the registry (and :func:`drop_unused_start_city` takes out the
empty city a new registry starts with when the demo runs other cities); :class:`LiveCities` plays their
fleets as one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from devices.cities import CityIn, add_city, city_holdings, remove_city
from firmware_sim.city import CityConfig, load_city, packaged_city
from firmware_sim.live import CrewSource, LiveCity
from lorong.core.errors import ConfigError
from lorong.storage.tables import CityRow

DEMO_CITIES: dict[str, tuple[str, str]] = {
    "makassar": ("Makassar", "makassar"),
    "jakarta": ("Jakarta", "jakarta-like"),
    "banyuwangi": ("Banyuwangi", "banyuwangi-like"),
    "small": ("Small", "small"),
}
"""Registry id -> (name, packaged city file) of the cities ``--cities`` knows. Banyuwangi (East Java)
is on WIB like Jakarta: both files give ``Asia/Jakarta``; Makassar is WITA, ``Asia/Makassar``."""

CENTROID_DECIMALS = 3
"""Decimals of the registry's kecamatan centroids and map centre (0.001 deg ~ 110 m: a district's
label on a map, not a boundary)."""

SINGLE_BINS, SINGLE_AIR = 40, 5
"""At most this many bins and air stations of the demo's one city (the first of its file's): enough
for every site type and the air episodes (3 stations), light on a 2-core machine."""

MULTI_BINS, MULTI_AIR = 20, 3
"""Bins and air stations per city when the demo runs several (one city: 40 and 5). Three cities of
20 bins and 3 stations send 60 bin and 9 air uplinks per 10 min, about what one city of 40 and 5
sends on the demo's 2-core machine, so several cities cost the ingester and analytics about the same."""


@dataclass(frozen=True)
class DemoCity:
    """A city of the demo: registry ``id`` and ``name``, and its simulated city ``config``."""

    id: str
    name: str
    config: CityConfig

    def fleet(self, bins: int | None, air: int | None, several: bool) -> tuple[int, int]:
        """How many bins and air stations the demo runs of this city: ``bins`` and ``air`` when given,
        else its first :data:`SINGLE_BINS` and :data:`SINGLE_AIR` (:data:`MULTI_BINS`, :data:`MULTI_AIR`
        each with ``several`` cities), never more than the city file has: a town of 3 bins stays 3. Numbers
        given are kept as they are, even past the file's (the city places more bins by its site shares)."""
        default_bins, default_air = (MULTI_BINS, MULTI_AIR) if several else (SINGLE_BINS, SINGLE_AIR)
        return (bins if bins is not None else min(default_bins, self.config.bins),
                air if air is not None else min(default_air, self.config.stations))

    def registry_city(self) -> CityIn:
        """The registry's entry: the file's zone, its kecamatan centroids and, as the map centre,
        their mean, rounded to :data:`CENTROID_DECIMALS`; the collection rounds at the file's round
        start and days (``collection_times``, ``collection_weekdays`` overrides)."""
        kec = {k: (round(lat, CENTROID_DECIMALS), round(lon, CENTROID_DECIMALS))
               for k, (lat, lon) in self.config.kecamatan.items()}
        centre = (round(sum(p[0] for p in kec.values()) / len(kec), CENTROID_DECIMALS),
                  round(sum(p[1] for p in kec.values()) / len(kec), CENTROID_DECIMALS))
        rounds = self.config.rounds
        return CityIn(id=self.id, name=self.name, timezone=self.config.timezone, centre=centre, kecamatan=kec,
                      analytics={"collection_times": [rounds.start], "collection_weekdays": list(rounds.weekdays)})


def parse_cities(text: str) -> list[DemoCity]:
    """The cities of ``--cities`` (comma-separated ids of :data:`DEMO_CITIES`), in the order given.

    Raises:
        ValueError: an empty list, an unknown or repeated id (the message lists the known ones).
    """
    ids = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not ids:
        raise ValueError("--cities: name at least one city, e.g. makassar,jakarta,banyuwangi")
    unknown = [i for i in ids if i not in DEMO_CITIES]
    if unknown:
        raise ValueError(f"--cities: unknown city {', '.join(unknown)}; known: {', '.join(DEMO_CITIES)}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"--cities: a city named twice in {text!r}")
    return [DemoCity(i, DEMO_CITIES[i][0], load_city(packaged_city(DEMO_CITIES[i][1]))) for i in ids]


def file_city(config: CityConfig) -> DemoCity:
    """The demo's city of a city file (``lorong demo --city FILE``, ``lorong sim load``): its registry id
    is the file's name lower-cased (a :data:`lorong.core.settings.CITY_ID`, checked by the file's
    :class:`firmware_sim.city.CityConfig`), its name the file's."""
    return DemoCity(config.name.lower(), config.name, config)


def register_cities(session: Session, cities: Sequence[DemoCity]) -> list[str]:
    """Add each city to the registry (the caller commits). A city already registered keeps its name,
    zone and overrides; it gets the demo's kecamatan and map centre only if it has none (the city
    migration 0008 made from an empty registry).

    Returns:
        the ids of the cities added.

    Raises:
        ConfigError: a city already registered with another time zone than its file's (its devices'
            rounds and "today" would be in the wrong zone).
    """
    added = []
    for city in cities:
        entry = city.registry_city()
        row = session.get(CityRow, city.id)
        if row is None:
            add_city(session, entry)
            added.append(city.id)
            continue
        if row.timezone != entry.timezone:
            raise ConfigError(f"city {city.id} is registered with the time zone {row.timezone}, the demo's is "
                             f"{entry.timezone}: use another database (LORONG_DATABASE_URL)")
        if not row.kecamatan:
            row.kecamatan = {k: list(v) for k, v in entry.kecamatan.items()}
        if row.centre_lat is None and entry.centre is not None:
            row.centre_lat, row.centre_lon = entry.centre
    session.flush()
    return added


def drop_unused_start_city(session: Session, city_id: str, running: Sequence[DemoCity]) -> bool:
    """Take the deployment's city out of the registry when the demo runs other cities and that city is
    still the empty one migration 0008 makes in every new registry (the caller commits).

    Without this, ``lorong demo --cities jakarta,banyuwangi`` on a new database left a third city nobody
    asked for (``cities list``: no devices, kecamatan or map centre) that ``lorong analytics route`` and
    ``devices add`` then asked the user to choose between.

    Args:
        session: an open registry session.
        city_id: the deployment's city, ``LORONG_CITY__ID``.
        running: the demo's cities.

    Returns:
        True when it was removed: registered, not one of ``running``, without kecamatan, map centre and
        analytics overrides, and nothing refers to it (no device, API token, alert or route plan, not even
        a retired, revoked or cleared one). A city someone filled in or used is never touched.
    """
    row = session.get(CityRow, city_id)
    if row is None or city_id in {c.id for c in running}:
        return False
    if row.kecamatan or row.centre_lat is not None or row.analytics:
        return False
    held = city_holdings(session, city_id)
    if held.live() or held.history():
        return False
    remove_city(session, city_id)
    return True


class LiveCities:
    """Several :class:`firmware_sim.live.LiveCity` played as one fleet (``firmware_sim.cli.run_fleet``'s
    interface), with one ``crew`` source polled for all of them every ``crew_poll_s`` seconds of the
    clock: a bin a person emptied is emptied in the city that has it.

    Args:
        cities: the live cities (their own ``crew`` left unset).
        crew: the bins people emptied, ``(device id, when)`` (:class:`firmware_sim.live_store.CrewWatch`).
        crew_poll_s: seconds between polls of ``crew``.
    """

    def __init__(self, cities: Sequence[LiveCity], crew: CrewSource | None = None, crew_poll_s: float = 5.0) -> None:
        self.cities = list(cities)
        self.crew, self.crew_poll_s = crew, crew_poll_s
        self._last_poll = float("-inf")

    def step(self, dt_s: float, now: datetime) -> list[tuple[str, bytes]]:
        """The uplinks of every city due up to ``now`` (tz-aware), city after city, each in receive order."""
        t = now.timestamp()
        if self.crew is not None and t - self._last_poll >= self.crew_poll_s:
            self._last_poll = t
            for device_id, at in self.crew():
                for city in self.cities:
                    if city.empty(device_id, at):
                        break
        return [msg for city in self.cities for msg in city.step(dt_s, now)]
