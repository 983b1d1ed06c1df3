"""LoRaWAN byte codecs: FRMPayload bytes of one device model into canonical raw readings.

Each codec module exposes ``CODEC_IDS`` (ids ``<vendor>-<model>`` in lower case, e.g.
``milesight-em310-udl``) and ``decode(fport: int, payload: bytes) -> list[RawReading]``.
``decode`` is pure (no I/O, no clock) and returns canonical metric names and units
(:mod:`lorong.core.metrics`): distance in mm, fractions 0..1, pressure hPa, temperature degC. History
records carry their own ``ts``. It raises :class:`lorong.core.errors.CodecError` and nothing else,
with reason ``unknown_fport``, ``short_frame``, ``bad_frame`` or ``sensor_sentinel``.

The registry is an explicit dict (no registration by import side effect). Its ids are those of
the catalogue :data:`lorong.core.codecs.CODEC_MODELS`, which the device registry checks a device's codec
against without importing a decoder (``tests/core/test_codec_catalogue.py`` keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from ingest.codecs import (
    decentlab_dl_iam,
    decentlab_dl_lp8p,
    decentlab_dl_mbx,
    decentlab_dl_pm,
    dragino_laq4,
    dragino_ldds,
    elsys_ers,
    milesight_am103,
    milesight_am107,
    milesight_am307,
    milesight_am308,
    milesight_am319,
    milesight_em310_udl,
    milesight_em400,
    milesight_em500_co2,
    milesight_em500_udl,
    pepperl_fuchs_wilsen,
)
from lorong.core.errors import CodecError
from lorong.core.model import RawReading

Codec = Callable[[int, bytes], list[RawReading]]

_MODULES: tuple[ModuleType, ...] = (
    milesight_em310_udl,
    milesight_em400,
    milesight_em500_udl,
    milesight_em500_co2,
    milesight_am103,
    milesight_am107,
    milesight_am307,
    milesight_am308,
    milesight_am319,
    dragino_ldds,
    dragino_laq4,
    decentlab_dl_mbx,
    decentlab_dl_pm,
    decentlab_dl_lp8p,
    decentlab_dl_iam,
    pepperl_fuchs_wilsen,
    elsys_ers,
)

CODECS: dict[str, Codec] = {cid: m.decode for m in _MODULES for cid in m.CODEC_IDS}
"""Codec functions by id."""


def get_codec(codec_id: str) -> Codec:
    """The decode function of ``codec_id``.

    Raises:
        CodecError: reason ``unknown_codec`` when no codec has that id.
    """
    try:
        return CODECS[codec_id]
    except KeyError:
        raise CodecError("unknown_codec", f"{codec_id!r}; known: {', '.join(sorted(CODECS))}") from None


def decode_hex(codec_id: str, fport: int, hex_payload: str) -> list[RawReading]:
    """Decode a hex-written FRMPayload with the codec ``codec_id`` (for ``lorong ingest decode``).

    Args:
        codec_id: a key of :data:`CODECS`.
        fport: LoRaWAN FPort.
        hex_payload: payload as hex digits; spaces and an ``0x`` prefix are allowed.

    Raises:
        CodecError: ``unknown_codec``, ``bad_frame`` (not hex), or whatever the codec raises.
    """
    codec = get_codec(codec_id)
    text = "".join(hex_payload.split())
    if text[:2].lower() == "0x":
        text = text[2:]
    try:
        payload = bytes.fromhex(text)
    except ValueError as exc:
        raise CodecError("bad_frame", f"payload is not hex: {exc}") from None
    return codec(fport, payload)
