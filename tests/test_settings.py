"""Settings refuse values that cannot work, naming the environment variable where a rule spans fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lorong.core.settings import Settings


def settings_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> ValidationError:
    """The ValidationError of ``Settings()`` built from ``env`` (LORONG_ prefix added; no .env file)."""
    for k, v in env.items():
        monkeypatch.setenv(f"LORONG_{k}", v)
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None)
    return info.value


@pytest.mark.parametrize(("env", "loc", "text"), [
    ({"ANALYTICS__FULL_THRESHOLD": "1.5"}, ("analytics", "full_threshold"), "less than or equal to 1"),
    ({"ANALYTICS__FULL_THRESHOLD": "0"}, ("analytics", "full_threshold"), "greater than 0"),
    ({"ANALYTICS__FULL_THRESHOLD": "0.9", "ANALYTICS__OVERFLOW_THRESHOLD": "0.5"}, ("analytics",),
     "LORONG_ANALYTICS__OVERFLOW_THRESHOLD (0.5) must be at least LORONG_ANALYTICS__FULL_THRESHOLD (0.9)"),
    ({"ANALYTICS__BATTERY_LOW": "0.1", "ANALYTICS__BATTERY_CRITICAL": "0.2"}, ("analytics",),
     "LORONG_ANALYTICS__BATTERY_CRITICAL (0.2) must be at most LORONG_ANALYTICS__BATTERY_LOW (0.1)"),
    ({"MQTT__PORT": "99999"}, ("mqtt", "port"), "less than or equal to 65535"),
    ({"MQTT__PORT": "0"}, ("mqtt", "port"), "greater than or equal to 1"),
    ({"API__PORT": "70000"}, ("api", "port"), "less than or equal to 65535"),
    ({"ANALYTICS__INTERVAL_S": "0"}, ("analytics", "interval_s"), "greater than 0"),
    ({"ANALYTICS__TIMEZONE": "Mars/Base"}, ("analytics", "timezone"), "unknown time zone 'Mars/Base'"),
    ({"ANALYTICS__COLLECTION_TIMES": '["25:00"]'}, ("analytics", "collection_times"), "HH:MM"),
    ({"ANALYTICS__COLLECTION_WEEKDAYS": "[7]"}, ("analytics", "collection_weekdays"), "0 (Monday) .. 6"),
    ({"DATABASE_URL": "mysql://x"}, ("database_url",), "sqlite:///path/to/lorong.db or postgresql+psycopg://"),
])
def test_bad_values_refused(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], loc: tuple[str, ...],
                            text: str) -> None:
    [err] = settings_error(monkeypatch, **env).errors()
    assert err["loc"] == loc
    assert text in err["msg"]


def test_good_values_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {"ANALYTICS__FULL_THRESHOLD": "1", "ANALYTICS__OVERFLOW_THRESHOLD": "1", "MQTT__PORT": "65535",
                 "ANALYTICS__COLLECTION_TIMES": '["00:00", "23:59"]', "ANALYTICS__TIMEZONE": "Asia/Jakarta",
                 "DATABASE_URL": "postgresql+psycopg://u:p@127.0.0.1/lorong"}.items():
        monkeypatch.setenv(f"LORONG_{k}", v)
    s = Settings(_env_file=None)
    assert (s.analytics.full_threshold, s.analytics.overflow_threshold, s.mqtt.port) == (1.0, 1.0, 65535)
    assert s.analytics.collection_times == ["00:00", "23:59"] and s.analytics.timezone == "Asia/Jakarta"
