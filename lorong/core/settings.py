"""Lorong settings: one pydantic-settings class, built in the entry point and passed down.

Every field can be set with a ``LORONG_`` environment variable (``__`` separates sections,
e.g. ``LORONG_MQTT__PORT=1884``) or in a ``.env`` file in the working directory. The defaults
point at the embedded stack that ``lorong stack up`` runs under ``./var``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Port = Annotated[int, Field(ge=1, le=65535)]
"""A TCP port (RFC 793: 16 bits; 0 is reserved)."""
Fraction = Annotated[float, Field(gt=0, le=1)]
"""A fill or battery fraction in (0, 1]."""
Positive = Annotated[float, Field(gt=0)]
"""A strictly positive duration or factor."""

ONSET_LOOKBACK_MIN = 180
"""How far back (minutes) air buckets are scored for spikes, so that a spike's onset is known up
to this age (the episode rule compares the onsets of its stations' spikes)."""
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def check_zone(tz: str) -> str:
    """``tz`` when it is a known IANA time zone name.

    Raises:
        ValueError: unknown zone (the message suggests one).
    """
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}: use an IANA name such as Asia/Makassar") from None
    return tz


class MqttSettings(BaseModel):
    """Where the MQTT broker is and how the ingester subscribes.

    ``topics`` are MQTT topic filters; prefix one with ``$share/<group>/`` to split a stream
    across several ingesters. ``qos`` 1 gives at-least-once delivery.
    """

    host: str = "127.0.0.1"
    port: Port = 1883
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "lorong-ingest"
    keepalive_s: int = Field(30, ge=1, le=65535)
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


class NatsSettings(BaseModel):
    """The NATS cluster with JetStream that replaces Mosquitto where a deployment must survive a
    machine (``LORONG_INGEST__SOURCE=nats``); README "Three nodes".

    Gateways publish MQTT 3.1.1 at QoS 1 to any node; the node answers PUBACK once the message
    is stored in the JetStream stream ``$MQTT_msgs``, replicated on ``replicas`` nodes;
    ingesters share the durable pull consumer ``durable`` on the subjects of ``mqtt.topics``.

    Attributes:
        servers: NATS client URLs the ingester may use (it moves to another one when its node goes).
        durable: durable pull consumer the ingesters share (each uplink goes to one of them).
        replicas: replicas of the stream (3 survives the loss of one node; NATS allows 1..5).
        ack_wait_s: an uplink an ingester took but did not acknowledge within this time goes to
            another ingester (s); longer than a spool flush under load.
        max_ack_pending: uplinks handed out and not yet acknowledged, all ingesters together
            (bounds each ingester's memory like MQTT's Receive Maximum).
        fetch_batch: uplinks asked for per pull request.
        client_port, route_port, monitor_port: first node's ports for ``lorong stack up --cluster``;
            node i adds i - 1 (its MQTT port is ``mqtt.port`` + i - 1).
    """

    servers: list[str] = Field(default_factory=lambda: [f"nats://127.0.0.1:{4222 + i}" for i in range(3)])
    durable: str = Field("lorong-ingest", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    replicas: int = Field(3, ge=1, le=5)
    ack_wait_s: Positive = 30.0
    max_ack_pending: int = Field(20000, ge=1)
    fetch_batch: int = Field(1000, ge=1, le=10000)
    client_port: Port = 4222
    route_port: Port = 6222
    monitor_port: Port = 8222


HTTP_URL = re.compile(r"^https?://([^\s/@]+@)?(\[[0-9A-Fa-f:.]+\]|[^\s/:@\[\]]+)(:(?P<port>\d{1,5}))?(/\S*)?$")
"""An ``http://`` or ``https://`` URL with a host (a name, an IPv4 or a bracketed IPv6 address), an
optional port and path (RFC 3986, section 3); ``urllib.parse`` is not imported in this no-I/O package."""


class InfluxSettings(BaseModel):
    """InfluxDB 1.x HTTP API (also served by 2.x/3.x v1 compatibility endpoints).

    Attributes:
        url, database: where readings are written and read (one InfluxDB per region is possible:
            each deployment's settings name its own).
        username, password: InfluxDB 1.x credentials (HTTP Basic auth).
        token: API token of InfluxDB 2.x, Cloud or 3.x, sent as ``Authorization: Token <token>``
            to their v1-compatibility ``/write`` and ``/query``; not with ``username``.
        retention: default policy (``autogen``) of a database an ingester creates itself because
            it found none; ``lorong storage retention apply`` (run by ``lorong stack up`` and the
            demo) moves its data into the ``raw`` policy and drops it (see :mod:`lorong.storage.retention`).
        raw_days: days raw readings are kept (retention policy ``raw``, the database default).
        hourly_days: days hourly means are kept (policy ``hourly``; 0 = forever); at least
            ``raw_days``, so a mean is never dropped before its raw readings.
        daily_days: days daily means are kept (policy ``daily``; 0 = forever).
    """

    url: str = "http://127.0.0.1:8086"
    database: str = "lorong"
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    timeout_s: Positive = 10.0
    retention: str = "INF"
    raw_days: int = Field(90, ge=1, le=36500)
    hourly_days: int = Field(1830, ge=0, le=36500)
    daily_days: int = Field(0, ge=0, le=36500)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        """An ``http://`` or ``https://`` URL with a host: ``127.0.0.1:8086`` (no scheme) would pass and make
        every request fail later as if InfluxDB were down."""
        match = HTTP_URL.match(url.strip())
        if match is None or int(match.group("port") or 80) > 65535:
            raise ValueError(f"{url!r} is not an http:// or https:// URL (e.g. http://127.0.0.1:8086)")
        return url.strip().rstrip("/")

    @model_validator(mode="after")
    def _means_outlive_raw(self) -> InfluxSettings:
        if self.token is not None and self.username:
            raise ValueError("LORONG_INFLUX__TOKEN and LORONG_INFLUX__USERNAME are both set: an InfluxDB 2.x/3.x or "
                             "Cloud token replaces the 1.x username and password, unset one of them")
        for name in ("hourly_days", "daily_days"):
            days = getattr(self, name)
            if days and days < self.raw_days:
                raise ValueError(f"LORONG_INFLUX__{name.upper()}={days} is shorter than LORONG_INFLUX__RAW_DAYS="
                                 f"{self.raw_days}: means must be kept at least as long as raw readings (0 = forever)")
        return self


class IngestSettings(BaseModel):
    """Ingester tuning and validation policy.

    Attributes:
        batch_size: points per ``/write`` request (InfluxDB docs recommend 5,000-10,000).
        flush_interval_s: longest time a reading waits in the spool before a write (s); a full
            batch goes at once. 0.2 s keeps points fresh for dashboards at a cost of at most five
            small writes a second per ingester when the stream is thin.
        max_payload_bytes: larger payloads are dead-lettered as ``too_large``.
        max_future_s: device time more than this ahead of receive time is rejected.
        min_year: device time before this year is rejected (clock never set).
        stats_interval_s: seconds between self-metric points in ``ingest_stats``.
        metrics_port: Prometheus text endpoint of the ingester on ``metrics_host`` (0 = off).
        source: where uplinks come from: ``mqtt`` (a broker such as Mosquitto, the default) or
            ``nats`` (the JetStream stream of a NATS cluster, see :class:`NatsSettings`).
        rx_slot, rx_slots: a reading without a device time is stored at a millisecond ``m`` with
            ``m % rx_slots == rx_slot`` (its receive time or the next such one). ``--workers N`` gives
            worker ``i`` slot ``i - 1`` of ``N``, so that workers emptying their sessions at once never
            stamp two readings of one device with the same time (InfluxDB would keep only the last).
    """

    batch_size: int = Field(5000, ge=1)
    flush_interval_s: Positive = 0.2
    max_payload_bytes: int = Field(65536, ge=1)
    max_future_s: float = Field(300.0, ge=0)
    min_year: int = 2020
    spool_dir: Path = Path("var/spool")
    instance: str = "ingest-1"
    stats_interval_s: float = Field(10.0, gt=0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(0, ge=0, le=65535)
    source: Literal["mqtt", "nats"] = "mqtt"
    rx_slot: int = Field(0, ge=0)
    rx_slots: int = Field(1, ge=1)


class AnalyticsSettings(BaseModel):
    """Alert thresholds and job settings; each rule's module in ``analytics/rules`` gives the
    source of its defaults.

    Attributes:
        full_threshold: fillingLevel at or above which a bin is full (fraction).
        overflow_threshold: fillingLevel from which a full bin is critical (fraction).
        full_hysteresis: a full alert clears below ``full_threshold - full_hysteresis``.
        debounce_readings: consecutive readings a bin level or status flag must hold to open.
        debounce_s: or, when set, how long (seconds) it must hold, whichever comes first.
        full_mean_readings: ``bin_full`` also needs the mean of this many newest readings at or
            above the threshold (the EM310-UDL's +-10 mm accuracy moves single readings of a bin
            just below it across the line; the mean of 4 halves that spread).
        pickup_min_drop: fall in fillingLevel between two readings that counts as a pickup.
        recent_window_h: hours of raw readings each run reads (longer when ``stuck_readings``
            readings of a slow device need it); a pickup is seen if the job runs within it.
        forecast_window_h: hours of hourly means used for the fill-rate estimate.
        forecast_interval_s: the scheduler recomputes fill forecasts this often (runs in
            between reuse the stored ones).
        forecast_history_days: days of each bin's history its fill profile by hour of the week
            is learned from (``analytics.fillprofile``; 0: straight-line forecasts only).
        soon_horizon_h: a ``bin_full_soon`` warning opens at most this many hours before the
            forecast crossing (a crew's shift: a warning for tomorrow evening helps nobody
            today, and forecasts further out are less sure).
        collection_times: planned collection times, ``HH:MM`` local time in ``timezone``.
        collection_weekdays: days with collections, Monday = 0.
        timezone: IANA zone of the schedule and of route-plan days (WITA = Asia/Makassar).
        fire_temp_c, fire_rise_c, fire_rise_window_s: fire limit, and rise within a window.
        fire_excess_c: a smouldering fire: this much above the median of all bins' temperatures.
        offline_factor: a device is offline after this many report intervals without data.
        stuck_readings: identical readings in a row that make a sensor stuck.
        battery_low, battery_critical: batteryLevel fractions for warning and minor alerts.
        rejects_limit, rejects_window_s: dead letters per device within the window.
        pm25_limit: PM2.5 hourly mean (ug/m3) above which an air alert opens; 55.4 is the top of
            the ISPU "Sedang" band (Permen LHK P.14/2020).
        pm25_clear_margin: the PM2.5 alert clears at ``pm25_limit - pm25_clear_margin``.
        spike_z, spike_min_excess_ugm3, spike_baseline_h, spike_persistence: robust spike test
            (modified z-score, absolute excess, baseline hours, 10-minute buckets in a row).
        spike_profile_days: days of history for each station's same-time-of-day profile the
            spike test compares against (0: no profile, a plain rolling median).
        episode_min_stations, episode_fraction: city-wide episode when at least this many
            stations, and at least this fraction of those with a baseline (default 0: no
            fraction, three stations are enough whatever the network's size), spike within one hour.
        episode_onset_window_min: ... and their spikes began within this many minutes of each
            other (default 60: "3 or more stations within the hour", the episode's definition in
            issue #12 and the README). Overlapping plumes of local sources (open burning) begin
            at their own times; a haze or an inversion reaches the stations together.
        pm_sensor_by_model: device model (registry ``model``) -> PM sensor model of
            ``analytics.humidity.SENSOR_MODELS`` whose humidity correction applies; default
            ``{"LRG-PM1": "sds011", "T640": "t640"}`` (Lorong's own station design carries an
            SDS011; a T640 is the dry reference monitor of an ISPU station), so the kappa-Koehler
            correction is on by default.
        pm_kappa_by_model: device model -> kappa for the kappa-Koehler correction (fitted
            against a reference monitor; such stations are not fitted from the network).
        pm_kappa_fit: fit each kappa-corrected station's kappa from the network's own data
            once a day (``analytics.kappa_fit``: node-to-node calibration against the city's
            reference monitors where they report, else the median of the other stations); the
            configured kappa stays where the data are too few.
        webhook_url: alert changes are also POSTed here when set.
        webhook_secret: when set, every webhook POST is signed with it (HMAC-SHA256,
            ``X-Lorong-Signature``; see :mod:`analytics.notify_webhook`).
        interval_s: seconds between scheduler runs.
        outbox_backoff_s, outbox_backoff_max_s: a failed notification is retried after
            ``outbox_backoff_s * 2**(attempts - 1)`` seconds, at most ``outbox_backoff_max_s``.
        outbox_retention_days: delivered notifications are deleted after this many days.
        city_workers: cities whose runs go on at once in one tick (threads; most of a run is
            waiting for InfluxDB, which answers on its own cores). On SQLite a city's run holds
            the write lock from its first write to its commit, so the others' writes wait (up to
            the 30 s busy timeout, :func:`lorong.storage.db.make_engine`): keep it small there.
    """

    full_threshold: Fraction = 0.8
    overflow_threshold: Fraction = 0.95
    full_hysteresis: float = Field(0.1, ge=0, lt=1)
    debounce_readings: int = Field(2, ge=1)
    debounce_s: Positive | None = None
    full_mean_readings: int = Field(4, ge=1)
    pickup_min_drop: Fraction = 0.3
    recent_window_h: Positive = 2.0
    forecast_window_h: Positive = 24.0
    forecast_interval_s: Positive = 600.0
    forecast_history_days: float = Field(14.0, ge=0, le=60)
    soon_horizon_h: Positive = 12.0
    soon_slow_factor: float = Field(0.75, gt=0, le=1)
    collection_times: list[str] = Field(default_factory=lambda: ["06:00"])
    collection_weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6])
    timezone: str = "Asia/Makassar"
    fire_temp_c: float = 60.0
    fire_rise_c: float = 10.0
    fire_rise_window_s: Positive = 1800.0
    fire_excess_c: Positive = 12.0
    offline_factor: Positive = 3.0
    stuck_readings: int = Field(12, ge=2)
    battery_low: Fraction = 0.2
    battery_critical: Fraction = 0.1
    rejects_limit: int = Field(5, ge=1)
    rejects_window_s: Positive = 3600.0
    pm25_limit: Positive = 55.4
    pm25_clear_margin: float = Field(5.0, ge=0)
    spike_z: Positive = 3.5
    spike_min_excess_ugm3: float = Field(10.0, ge=0)
    spike_baseline_h: Positive = 24.0
    spike_persistence: int = Field(3, ge=1)
    spike_profile_days: float = Field(7.0, ge=0, le=28)
    episode_min_stations: int = Field(3, ge=1)
    episode_fraction: float = Field(0.0, ge=0, le=1)
    episode_onset_window_min: int = Field(60, ge=10, le=ONSET_LOOKBACK_MIN)
    pm_sensor_by_model: dict[str, str] = Field(default_factory=lambda: {"LRG-PM1": "sds011", "T640": "t640"})
    pm_kappa_by_model: dict[str, float] = Field(default_factory=dict)
    pm_kappa_fit: bool = True
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    interval_s: Positive = 30.0
    outbox_backoff_s: float = Field(5.0, gt=0)
    outbox_backoff_max_s: float = Field(600.0, gt=0)
    outbox_retention_days: float = Field(7.0, ge=0)
    city_workers: int = Field(2, ge=1, le=32)

    def for_city(self, timezone: str, overrides: Mapping[str, object]) -> AnalyticsSettings:
        """These settings with a city's time zone and its overrides of other fields (a city's
        collection times, thresholds ...; see :mod:`devices.cities`).

        Raises:
            pydantic.ValidationError: the overrides do not fit the rest (an overflow threshold
                below the full threshold, an unknown zone ...).
        """
        return AnalyticsSettings.model_validate({**self.model_dump(), **overrides, "timezone": timezone})

    @field_validator("collection_times")
    @classmethod
    def _hhmm(cls, times: list[str]) -> list[str]:
        bad = [t for t in times if not _HHMM.match(t)]
        if bad or not times:
            raise ValueError(f"collection times must be a non-empty JSON list of 24-hour HH:MM times "
                             f"(00:00-23:59), got {bad or times}")
        return times

    @field_validator("collection_weekdays")
    @classmethod
    def _weekdays(cls, days: list[int]) -> list[int]:
        if not days or any(not 0 <= d <= 6 for d in days):
            raise ValueError(f"collection weekdays must be a non-empty list of 0 (Monday) .. 6 (Sunday), got {days}")
        return days

    @field_validator("timezone")
    @classmethod
    def _zone(cls, tz: str) -> str:
        return check_zone(tz)

    @model_validator(mode="after")
    def _ordered(self) -> AnalyticsSettings:
        pre = "LORONG_ANALYTICS__"
        if self.overflow_threshold < self.full_threshold:
            raise ValueError(f"{pre}OVERFLOW_THRESHOLD ({self.overflow_threshold}) must be at least "
                             f"{pre}FULL_THRESHOLD ({self.full_threshold})")
        if self.battery_critical > self.battery_low:
            raise ValueError(f"{pre}BATTERY_CRITICAL ({self.battery_critical}) must be at most "
                             f"{pre}BATTERY_LOW ({self.battery_low})")
        if self.outbox_backoff_max_s < self.outbox_backoff_s:
            raise ValueError(f"{pre}OUTBOX_BACKOFF_MAX_S ({self.outbox_backoff_max_s}) must be at least "
                             f"{pre}OUTBOX_BACKOFF_S ({self.outbox_backoff_s})")
        return self


CITY_ID = r"^[a-z0-9][a-z0-9-]{0,31}$"
"""A city id: a lower-case slug of at most 32 characters (``makassar``, ``jakarta``); it is an
InfluxDB tag value and a Grafana variable value, so it holds no blanks or quotes."""


class TelegramChat(BaseModel):
    """A Telegram chat linked to a crew, a kecamatan or the supervisors.

    Attributes:
        name: the crew's or area's name, ``[A-Za-z0-9_-]``, at most 40 characters; its outbox
            channel is ``telegram:<name>`` and its members act as ``telegram:<name>/<user>``.
        chat_id: Telegram's chat id (a group's is negative); the bot answers ``/chatid`` in a
            chat with it.
        kecamatan: alerts of these kecamatan only; empty: every kecamatan.
        types: alert types only (``bin_full``, ``fire`` ...); empty: every type.
        role: ``crew`` gets every change of its alerts; ``supervisor`` gets the reminders of
            critical alerts nobody acknowledged (``NotifySettings.escalate_after_min``).
        can_act: its "On it" / "Emptied" buttons acknowledge and clear its alerts; without it the
            messages carry no buttons and a pressed button is refused.
        language: the chat's language, ``id`` (Bahasa Indonesia, the default) or ``en``: messages,
            buttons and answers, with the words of the alert type catalogue (:mod:`lorong.core.alerts`).
        city: alerts of this city only (a registry ``cities.id``; its time zone is the messages'
            and the quiet hours'); unset: every city's (one city per deployment, or a province).
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")
    chat_id: int
    kecamatan: list[str] = Field(default_factory=list)
    types: list[str] = Field(default_factory=list)
    role: Literal["crew", "supervisor"] = "crew"
    can_act: bool = False
    language: Literal["id", "en"] = "id"
    city: str | None = Field(None, pattern=CITY_ID)

    @property
    def channel(self) -> str:
        """The chat's outbox channel name."""
        return f"telegram:{self.name}"

    def covers(self, alert: Mapping[str, object]) -> bool:
        """Whether an alert snapshot (``city_id``, ``kecamatan``, ``type``) is this chat's."""
        return ((self.city is None or str(alert.get("city_id") or "") == self.city)
                and (not self.kecamatan or str(alert.get("kecamatan") or "") in self.kecamatan)
                and (not self.types or str(alert.get("type") or "") in self.types))


class NotifySettings(BaseModel):
    """How alerts reach people besides MQTT and the webhook: Telegram chats, escalation of critical
    alerts nobody acknowledged, quiet hours; and the alert publisher's broker account.

    Attributes:
        mqtt_username, mqtt_password: the alert publisher's broker account (``lorong devices
            credentials export`` writes one to ``<var_dir>/mosquitto/alerts.env``, read when these
            are unset); without either, the ingest account ``mqtt.username`` is used.
        mqtt_topics: where alert changes are published (:mod:`analytics.notify_mqtt`): ``both`` the
            city's topic ``lorong/<city>/alerts/...`` and the topic of before cities
            ``lorong/alerts/...``; ``city`` or ``legacy`` one of them.
        telegram_token: the bot's token from @BotFather; Telegram is off without it.
        telegram_api_url: Bot API base URL (tests point it at a local server).
        telegram_chats: linked chats (JSON list of :class:`TelegramChat`).
        telegram_timeout_s: per-request timeout; ``getUpdates`` long polls for
            ``telegram_poll_s`` on top of it.
        telegram_attempts: tries per Bot API call (the first included) for 429 and 5xx answers.
        telegram_max_wait_s: longest ``retry_after`` waited inside one call; a longer one (or the
            last failed try) leaves the row to the outbox, due after at least ``retry_after``.
        telegram_poll_s: ``getUpdates`` long-poll timeout (Telegram allows up to 50 s).
        escalate_after_min: a critical alert nobody acknowledged this many minutes after it became
            critical is sent again to the supervisor chats.
        remind_every_min: then again every this many minutes until acknowledged or cleared.
        quiet_hours: ``HH:MM-HH:MM`` local time in ``analytics.timezone`` (may span midnight) when
            changes of non-critical alerts wait for the end before reaching the Telegram chats
            (MQTT and the webhook are machines: never held); empty: no quiet hours. The default
            ends at the first collection of the day (``analytics.collection_times``).
    """

    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_topics: Literal["both", "city", "legacy"] = "both"
    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    telegram_chats: list[TelegramChat] = Field(default_factory=list)
    telegram_timeout_s: Positive = 10.0
    telegram_attempts: int = Field(3, ge=1, le=10)
    telegram_max_wait_s: float = Field(30.0, ge=0)
    telegram_poll_s: int = Field(25, ge=0, le=50)
    escalate_after_min: Positive = 15.0
    remind_every_min: Positive = 30.0
    quiet_hours: str = "22:00-06:00"

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, text: str) -> str:
        parts = text.split("-")
        if text and (len(parts) != 2 or not all(_HHMM.match(p) for p in parts) or parts[0] == parts[1]):
            raise ValueError(f"LORONG_NOTIFY__QUIET_HOURS must be HH:MM-HH:MM (24-hour, e.g. 22:00-06:00) "
                             f"or empty, got {text!r}")
        return text

    @model_validator(mode="after")
    def _chats(self) -> NotifySettings:
        names = [c.name for c in self.telegram_chats]
        if len(set(names)) != len(names):
            raise ValueError(f"LORONG_NOTIFY__TELEGRAM_CHATS: chat names must be unique, got {names}")
        return self


class CitySettings(BaseModel):
    """The deployment's own city: the one a single-city registry's devices belong to.

    Migration 0008 creates it (with ``analytics.timezone`` as its zone) and assigns every existing
    device to it; ``lorong cities add`` adds more. A device registered without a city joins it
    while it is the only city.

    Attributes:
        id: city id (:data:`CITY_ID`), ``LORONG_CITY__ID``.
        name: name shown to people, ``LORONG_CITY__NAME``.
    """

    id: str = Field("makassar", pattern=CITY_ID)
    name: str = Field("Makassar", min_length=1, max_length=64)


class ApiSettings(BaseModel):
    """HTTP API bind address, and ``header_timeout_s``: seconds a client may take to send a request's
    headers before the connection is closed with a 408 (slowloris; see :mod:`api.server`)."""

    host: str = "127.0.0.1"
    port: Port = 8000
    header_timeout_s: Positive = 10.0


class Settings(BaseSettings):
    """All Lorong settings.

    ``database_url`` is a SQLite or PostgreSQL (psycopg 3) URL: ``sqlite:///var/lorong.db`` (default) or
    ``postgresql+psycopg://user:pass@host/db``.
    """

    model_config = SettingsConfigDict(
        env_prefix="LORONG_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    var_dir: Path = Path("var")
    database_url: str = "sqlite:///var/lorong.db"
    mqtt: MqttSettings = MqttSettings()
    nats: NatsSettings = NatsSettings()
    influx: InfluxSettings = InfluxSettings()
    ingest: IngestSettings = IngestSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    notify: NotifySettings = NotifySettings()
    api: ApiSettings = ApiSettings()
    city: CitySettings = CitySettings()

    @field_validator("database_url")
    @classmethod
    def _supported_db(cls, url: str) -> str:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme not in ("sqlite", "postgresql+psycopg"):
            raise ValueError(f"unsupported database URL {url.split('@')[-1]!r}: use sqlite:///path/to/lorong.db "
                             "or postgresql+psycopg://user:password@host/db")
        return url


def setting_variables(model: type[BaseModel] = Settings, prefix: str = "LORONG_") -> frozenset[str]:
    """The environment variables ``model`` reads, upper case: ``LORONG_<FIELD>`` for every field (a
    section too, as one JSON object) and ``LORONG_<SECTION>__<FIELD>`` for each field of a section
    (``env_nested_delimiter``), at any depth. What :func:`unknown_variables` checks against."""
    names: set[str] = set()
    for field, info in model.model_fields.items():
        name = prefix + field.upper()
        names.add(name)
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            names |= setting_variables(info.annotation, name + "__")
    return frozenset(names)


def unknown_variables(environ: Mapping[str, str], also: frozenset[str] = frozenset()) -> list[tuple[str, str | None]]:
    """The ``LORONG_`` variables of ``environ`` that are no setting (pydantic-settings ignores them, so a
    misspelt ``LORONG_MQTT__PROT`` would go unnoticed), sorted, each with the closest setting name
    (:func:`difflib.get_close_matches`, cutoff 0.8) or None. Names are compared without case, as the
    settings read them; ``also`` lists other variables of Lorong (``LORONG_DEBUG`` ...)."""
    import difflib

    known = sorted(setting_variables() | also)
    found = []
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith("LORONG_") and upper not in known:
            close = difflib.get_close_matches(upper, known, n=1, cutoff=0.8)
            found.append((name, close[0] if close else None))
    return found
