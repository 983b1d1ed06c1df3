"""The codec catalogue below the rooms (:mod:`lorong.core.codecs`) and the decoders of :mod:`ingest.codecs`
name the same ids, so the device registry accepts exactly the codecs the ingester can decode."""

from __future__ import annotations

import pytest

from ingest.codecs import CODECS
from lorong.core.codecs import CODEC_MODELS, check_codec_id


def test_catalogue_and_decoders_name_the_same_ids() -> None:
    assert sorted(CODEC_MODELS) == sorted(CODECS)


def test_an_id_outside_the_catalogue_is_refused_with_the_known_ids() -> None:
    assert check_codec_id("dragino-ldds75") == "dragino-ldds75"
    with pytest.raises(ValueError, match=r"unknown codec 'dragino-ldds99'; known: decentlab-dl-iam, "):
        check_codec_id("dragino-ldds99")
