"""Lorong settings: one pydantic-settings class, built in the entry point and passed down.

Every field can be set with a ``LORONG_`` environment variable (``__`` separates sections,
e.g. ``LORONG_MQTT__PORT=1884``) or in a ``.env`` file in the working directory. The defaults
point at the embedded stack that ``lorong stack up`` runs under ``./var``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class MqttSettings(BaseModel):
    """Where the MQTT broker is and how the ingester subscribes.

    ``topics`` are MQTT topic filters; prefix one with ``$share/<group>/`` to split a stream
    across several ingesters. ``qos`` 1 gives at-least-once delivery.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "lorong-ingest"
    keepalive_s: int = 30
    qos: int = Field(1, ge=0, le=2)
    topics: list[str] = Field(
        default_factory=lambda: [
            "lorong/v1/+/up",
            "v3/+/devices/+/up",
            "application/+/device/+/event/up",
            "airrohr/+",
            "senml/+",
        ]
    )


class InfluxSettings(BaseModel):
    """InfluxDB 1.x HTTP API (also served by 2.x/3.x v1 compatibility endpoints)."""

    url: str = "http://127.0.0.1:8086"
    database: str = "lorong"
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: float = 10.0
    retention: str = "INF"


class IngestSettings(BaseModel):
    """Ingester tuning and validation policy.

    Attributes:
        batch_size: points per ``/write`` request (InfluxDB docs recommend 5,000-10,000).
        flush_interval_s: longest time a reading waits in the spool before a write.
        max_payload_bytes: larger payloads are dead-lettered as ``too_large``.
        max_future_s: device time more than this ahead of receive time is rejected.
        min_year: device time before this year is rejected (clock never set).
        stats_interval_s: seconds between self-metric points in ``ingest_stats``.
        metrics_port: Prometheus text endpoint of the ingester on ``metrics_host`` (0 = off).
    """

    batch_size: int = 5000
    flush_interval_s: float = 0.5
    max_payload_bytes: int = 65536
    max_future_s: float = 300.0
    min_year: int = 2020
    spool_dir: Path = Path("var/spool")
    instance: str = "ingest-1"
    stats_interval_s: float = Field(10.0, gt=0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(0, ge=0, le=65535)


class AnalyticsSettings(BaseModel):
    """Alert thresholds and job settings; each rule's module in ``analytics/rules`` gives the
    source of its defaults.

    Attributes:
        full_threshold: fillingLevel at or above which a bin is full (fraction).
        overflow_threshold: fillingLevel from which a full bin is critical (fraction).
        full_hysteresis: a full alert clears below ``full_threshold - full_hysteresis``.
        debounce_readings: consecutive readings a bin level or status flag must hold to open.
        debounce_s: or, when set, how long (seconds) it must hold, whichever comes first.
        pickup_min_drop: fall in fillingLevel between two readings that counts as a pickup.
        recent_window_h: hours of raw readings each run reads (longer when ``stuck_readings``
            readings of a slow device need it); a pickup is seen if the job runs within it.
        forecast_window_h: hours of hourly means used for the fill-rate estimate.
        forecast_interval_s: the scheduler recomputes fill forecasts this often (runs in
            between reuse the stored ones).
        collection_times: planned collection times, ``HH:MM`` local time in ``timezone``.
        collection_weekdays: days with collections, Monday = 0.
        timezone: IANA zone of the schedule and of route-plan days (WITA = Asia/Makassar).
        fire_temp_c, fire_rise_c, fire_rise_window_s: fire limit, and rise within a window.
        offline_factor: a device is offline after this many report intervals without data.
        stuck_readings: identical readings in a row that make a sensor stuck.
        battery_low, battery_critical: batteryLevel fractions for warning and minor alerts.
        rejects_limit, rejects_window_s: dead letters per device within the window.
        pm25_limit: PM2.5 hourly mean (ug/m3) above which an air alert opens; 55.4 is the top of
            the ISPU "Sedang" band (Permen LHK P.14/2020).
        pm25_clear_margin: the PM2.5 alert clears at ``pm25_limit - pm25_clear_margin``.
        spike_z, spike_min_excess_ugm3, spike_baseline_h, spike_persistence: robust spike test
            (modified z-score, absolute excess, baseline hours, 10-minute buckets in a row).
        episode_min_stations, episode_fraction: city-wide episode when at least this many
            stations (and this fraction of those with a baseline) spike within one hour.
        pm_sensor_by_model: device model (registry ``model``) -> PM sensor model of
            ``analytics.humidity.SENSOR_MODELS`` whose humidity correction applies.
        pm_kappa_by_model: device model -> kappa for the kappa-Koehler correction.
        webhook_url: alert changes are also POSTed here when set.
        interval_s: seconds between scheduler runs.
        outbox_backoff_s, outbox_backoff_max_s: a failed notification is retried after
            ``outbox_backoff_s * 2**(attempts - 1)`` seconds, at most ``outbox_backoff_max_s``.
        outbox_retention_days: delivered notifications are deleted after this many days.
    """

    full_threshold: float = 0.8
    overflow_threshold: float = 0.95
    full_hysteresis: float = 0.1
    debounce_readings: int = Field(2, ge=1)
    debounce_s: float | None = None
    pickup_min_drop: float = 0.3
    recent_window_h: float = 2.0
    forecast_window_h: float = 24.0
    forecast_interval_s: float = 600.0
    collection_times: list[str] = Field(default_factory=lambda: ["06:00"])
    collection_weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6])
    timezone: str = "Asia/Makassar"
    fire_temp_c: float = 60.0
    fire_rise_c: float = 10.0
    fire_rise_window_s: float = 1800.0
    offline_factor: float = 3.0
    stuck_readings: int = Field(12, ge=2)
    battery_low: float = 0.2
    battery_critical: float = 0.1
    rejects_limit: int = Field(5, ge=1)
    rejects_window_s: float = 3600.0
    pm25_limit: float = 55.4
    pm25_clear_margin: float = 5.0
    spike_z: float = 3.5
    spike_min_excess_ugm3: float = 10.0
    spike_baseline_h: float = 24.0
    spike_persistence: int = Field(3, ge=1)
    episode_min_stations: int = Field(3, ge=1)
    episode_fraction: float = 0.5
    pm_sensor_by_model: dict[str, str] = Field(default_factory=dict)
    pm_kappa_by_model: dict[str, float] = Field(default_factory=dict)
    webhook_url: str | None = None
    interval_s: float = 30.0
    outbox_backoff_s: float = Field(5.0, gt=0)
    outbox_backoff_max_s: float = Field(600.0, gt=0)
    outbox_retention_days: float = Field(7.0, ge=0)


class ApiSettings(BaseModel):
    """HTTP API bind address."""

    host: str = "127.0.0.1"
    port: int = 8000


class Settings(BaseSettings):
    """All Lorong settings.

    ``database_url`` is any SQLAlchemy URL: ``sqlite:///var/lorong.db`` (default) or
    ``postgresql+psycopg://user:pass@host/db``.
    """

    model_config = SettingsConfigDict(
        env_prefix="LORONG_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    var_dir: Path = Path("var")
    database_url: str = "sqlite:///var/lorong.db"
    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    ingest: IngestSettings = IngestSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    api: ApiSettings = ApiSettings()
