"""The raw window a run reads is known before the registry's rows are loaded: the active devices' report
intervals alone (:func:`analytics.jobs.active_intervals`) give the window the loaded devices give
(:func:`analytics.jobs.recent_window`), so the raw read starts first."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update

from analytics.jobs import active_intervals, load_devices, recent_window, window_of
from devices.cities import CityIn, add_city
from devices.registry import DeviceIn, add_device
from lorong.core.settings import AnalyticsSettings
from lorong.storage.tables import DeviceRow


def test_the_intervals_give_the_loaded_devices_window(sessions: Any) -> None:
    cfg = AnalyticsSettings()
    with sessions.begin() as s:
        add_city(s, CityIn(id="jayapura", name="Jayapura", timezone="Asia/Jayapura"))
        for i, every in enumerate((600, 900, 300)):
            add_device(s, DeviceIn(id=f"B-{i}", kind="bin", depth_mm=1000, report_interval_s=every, city_id="makassar"))
        add_device(s, DeviceIn(id="SLOW", kind="bin", depth_mm=1000, report_interval_s=7200, status="in_stock",
                               city_id="makassar"))
        add_device(s, DeviceIn(id="A-1", kind="air", report_interval_s=600, city_id="jayapura"))
    with sessions() as s:
        devices, _, _ = load_devices(s, cfg)
        intervals = sorted(d.report_interval_s for d in devices.values())
        assert sorted(active_intervals(s)) == intervals == [300, 600, 600, 900]
        assert window_of(cfg, active_intervals(s)) == recent_window(cfg, devices) == timedelta(seconds=900 * 13)
        jayapura, _, _ = load_devices(s, cfg, "jayapura")
        assert active_intervals(s, "jayapura") == [600]
        assert window_of(cfg, active_intervals(s, "jayapura")) == recent_window(cfg, jayapura) == timedelta(minutes=130)
        s.execute(update(DeviceRow).where(DeviceRow.id == "B-1").values(report_interval_s=0))  # none: 600 s, as loaded
        devices, _, _ = load_devices(s, cfg)
        intervals = sorted(d.report_interval_s for d in devices.values())
        assert sorted(active_intervals(s)) == intervals == [300, 600, 600, 600]
        assert window_of(cfg, []) == recent_window(cfg, {}) == timedelta(hours=cfg.recent_window_h)
        assert window_of(cfg, [86400]) == timedelta(hours=24)  # at most MAX_RECENT
