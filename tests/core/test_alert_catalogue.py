"""The alert-type catalogue: every type the rules can raise has words in both languages, a ladder the
rules keep to, and one role that acts on it; nobody else spells the names."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

import analytics.rules
from analytics.rules import RULES
from dashboards import bins as bins_dashboard
from lorong.core.alerts import ALERT_TYPES, LANGUAGES, ROLES, SEVERITIES, Words, may_act, missing_words, types_for

WEB = Path(__file__).resolve().parents[2] / "api" / "web"


def rule_modules() -> list[ModuleType]:
    """Every module of the analytics.rules package, registered in RULES or not."""
    return [importlib.import_module(f"analytics.rules.{m.name}")
            for m in pkgutil.iter_modules(analytics.rules.__path__)]


def raisable_types() -> set[str]:
    """Types the rules can raise, read from the rules themselves: each module's TYPE and RULES."""
    return {m.TYPE for m in rule_modules() if hasattr(m, "TYPE")} | set(RULES)


def test_every_raisable_type_has_words_in_both_languages() -> None:
    types = raisable_types()
    assert len(types) >= 12  # bin_full ... pm25_episode, as registered today
    assert missing_words(types) == []
    assert missing_words(ALERT_TYPES) == []  # and the API-raised ones (cant_empty)


def test_the_check_catches_a_missing_language() -> None:
    broken = dict(ALERT_TYPES)
    broken["tilt"] = replace(ALERT_TYPES["tilt"], words={"en": ALERT_TYPES["tilt"].words["en"]})
    broken["fire"] = replace(ALERT_TYPES["fire"], words={"id": Words("Api di tong", " "), "en": Words("", "x")})
    assert missing_words(raisable_types() | {"new_rule"}, broken) == [
        "fire: no id action", "fire: no en title", "new_rule: not in the catalogue (lorong/core/alerts.py)",
        "tilt: no id title", "tilt: no id action"]


def test_rule_modules_take_their_type_from_the_catalogue() -> None:
    for module in rule_modules():
        if not hasattr(module, "TYPE"):
            continue
        spec = ALERT_TYPES[module.TYPE]
        assert module.SPEC is spec, module.__name__
        assert spec.source == module.__name__, module.__name__
    assert {t.name for t in ALERT_TYPES.values() if t.source != "api"} == raisable_types()


def test_ladders_roles_and_words() -> None:
    for spec in ALERT_TYPES.values():
        assert set(spec.severities) <= set(SEVERITIES)
        assert spec.role in ROLES
        assert set(spec.words) == set(LANGUAGES)
        assert spec.words["id"].title != spec.words["en"].title, spec.name  # translated, not copied
    assert ALERT_TYPES["bin_full"].severities == ("major", "critical")
    assert ALERT_TYPES["low_battery"].severities == ("warning", "minor")
    assert types_for("crew") == ("bin_full", "bin_full_soon", "fire", "tilt", "lid_open")
    assert types_for("officer") == ("pm25_high", "pm25_spike", "pm25_episode")
    assert types_for("technician") == ("offline", "stuck", "low_battery", "payload_rejects")
    assert types_for("supervisor") == ("cant_empty",)
    with pytest.raises(ValueError, match="least severe first"):
        replace(ALERT_TYPES["bin_full"], severities=("critical", "major"))


def test_who_may_act() -> None:
    assert may_act("crew", "bin_full") and not may_act("crew", "pm25_high") and not may_act("crew", "offline")
    assert may_act("officer", "pm25_high") and not may_act("officer", "bin_full")
    assert may_act("technician", "payload_rejects") and not may_act("technician", "tilt")
    assert may_act("supervisor", "cant_empty") and may_act("supervisor", "bin_full")
    assert not may_act("supervisor", "pm25_high")
    assert all(may_act("admin", t) for t in ALERT_TYPES) and may_act("admin", "unknown")
    assert not may_act("crew", "unknown")


def test_dashboards_and_page_read_the_catalogue() -> None:
    assert types_for("crew") == bins_dashboard.ALERT_TYPES
    page = (WEB / "app.js").read_text(encoding="utf-8")
    page = page.replace('addEventListener("offline"', "")  # the browser's event, not the alert type
    spelled = [name for name in ALERT_TYPES if f'"{name}"' in page or f"'{name}'" in page]
    assert spelled == []  # the page takes names and words from GET /alerts/types
