"""The top-level README says what the code does: its metric list and its reject reasons."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.formats import lorong_json
from lorong.core.errors import ParseError
from lorong.core.metrics import METRICS

README = (Path(__file__).parent.parent / "README.md").read_text()


def _section(title: str) -> str:
    """The text of the README section ``## <title>`` up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match, title
    return match.group(1)


def test_data_model_lists_every_canonical_metric() -> None:
    listed = set(re.findall(r"`(\w+)`", _section("Data model").split("InfluxDB layout")[0]))
    assert set(METRICS) <= listed, sorted(set(METRICS) - listed)


def test_empty_metrics_object_is_documented_as_bad_json() -> None:
    with pytest.raises(ParseError) as err:
        lorong_json.parse(b'{"metrics": {}}', "lorong/v1/MKS-BIN-0001/up", datetime(2026, 3, 1, tzinfo=UTC))
    assert err.value.reason == "bad_json"
    assert "empty\n  `metrics` object is rejected as `bad_json`" in _section("Native JSON uplink (`lorong-json`)")
    assert "an\nempty `metrics` object of `lorong-json` is `bad_json`" in _section("Validation policy")
