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
    """Alert thresholds; sources in :mod:`analytics`.

    Attributes:
        full_threshold: fillingLevel at or above which a bin is full (fraction).
        pm25_limit: PM2.5 hourly mean (ug/m3) above which an air alert opens; 55.4 is the top of
            the ISPU "Sedang" band (Permen LHK P.14/2020).
        interval_s: seconds between scheduler runs.
    """

    full_threshold: float = 0.8
    overflow_threshold: float = 0.95
    pm25_limit: float = 55.4
    interval_s: float = 30.0


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
