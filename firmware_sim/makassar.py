"""Makassar's 15 kecamatan (districts) with approximate centroids (WGS84).

District list: Badan Pusat Statistik Kota Makassar, "Kota Makassar Dalam Angka"; centroids are
rounded approximations for simulation only (OpenStreetMap administrative boundaries).
"""

from __future__ import annotations

KECAMATAN: dict[str, tuple[float, float]] = {
    "Mariso": (-5.1550, 119.4050),
    "Mamajang": (-5.1630, 119.4180),
    "Tamalate": (-5.1850, 119.4100),
    "Rappocini": (-5.1700, 119.4380),
    "Makassar": (-5.1400, 119.4250),
    "Ujung Pandang": (-5.1350, 119.4120),
    "Wajo": (-5.1250, 119.4120),
    "Bontoala": (-5.1250, 119.4250),
    "Ujung Tanah": (-5.1100, 119.4200),
    "Kepulauan Sangkarrang": (-5.0500, 119.3300),
    "Tallo": (-5.1150, 119.4400),
    "Panakkukang": (-5.1450, 119.4500),
    "Manggala": (-5.1650, 119.4900),
    "Biringkanaya": (-5.0900, 119.5100),
    "Tamalanrea": (-5.1200, 119.4900),
}
"""Kecamatan name -> (lat, lon)."""
