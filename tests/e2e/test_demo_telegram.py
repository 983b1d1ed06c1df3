"""``lorong demo`` reads the linked chats' buttons and ``/chatid`` as ``lorong analytics schedule`` does
(it did not: a press in the demo was never answered). The demo runs as a user starts it, a real
process with its own broker and InfluxDB, against the local Bot API server of
``tests/analytics/fake_telegram.py``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from analytics.alerts import AlertBook
from lorong.core.model import utcnow
from lorong.storage import stack
from tests.analytics.fake_telegram import TOKEN, FakeTelegram
from tests.support import wait_for

pytestmark = pytest.mark.integration

CREW, NEW = -2001, -2002


def test_the_demo_answers_presses_and_chatid(db_url: str, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORONG_")}
    env |= {"LORONG_DATABASE_URL": db_url, "LORONG_VAR_DIR": str(tmp_path / "var"),
            "LORONG_MQTT__PORT": str(stack.free_port()),
            "LORONG_INFLUX__URL": f"http://127.0.0.1:{stack.free_port()}",
            "LORONG_API__PORT": str(api_port := stack.free_port())}
    bot = FakeTelegram(chats={CREW, NEW}).start()
    env |= {"LORONG_NOTIFY__TELEGRAM_TOKEN": TOKEN, "LORONG_NOTIFY__TELEGRAM_API_URL": bot.url,
            "LORONG_NOTIFY__TELEGRAM_POLL_S": "2", "LORONG_NOTIFY__QUIET_HOURS": "",
            "LORONG_NOTIFY__TELEGRAM_CHATS": json.dumps([{"name": "crew-x", "chat_id": CREW, "kecamatan": ["X"],
                                                          "can_act": True}])}
    with sessions.begin() as s:  # an alert of a bin the demo's city does not have, so its rules leave it be
        alert_id = AlertBook(s).raise_("X-BIN-1", "tilt", "major", utcnow(), {}, "X")[0].id
    bot.say(NEW, "/chatid")
    bot.press(CREW, f"ack:{alert_id}", user="budi")
    demo = subprocess.Popen([sys.executable, "-m", "lorong.cli", "demo", "--bins", "2", "--air", "0",
                             "--history-days", "0", "--duration", "90"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: len(bot.answers) == 1 and bool(bot.sent_to(NEW)), 60, "the demo reading the bot's updates")
        stack.wait_for_port(api_port, 60)  # fully started (its SIGTERM handler is set): a clean stop is asked of it
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            out = demo.communicate(timeout=30)[0].decode()
        except subprocess.TimeoutExpired:
            demo.kill()
            out = demo.communicate()[0].decode()
        bot.stop()
        # whatever the demo left running (a kill mid-start leaves its broker and influxd): stopped here
        subprocess.run([sys.executable, "-m", "lorong.cli", "stack", "down"], cwd=tmp_path, env=env,
                       capture_output=True, timeout=60, check=False)
    assert demo.returncode == 0, out
    assert bot.answers[0]["text"] == f"Peringatan {alert_id}: Anda menanganinya."
    assert f"This chat's id is {NEW}." in bot.sent_to(NEW)[0]["text"]
    with sessions() as s:
        row = AlertBook(s).get(alert_id)
        assert (row.acknowledged, row.ack_by) == (True, "telegram:crew-x/budi")
    # and the crew chat heard of the change (the demo's outbox sends it)
    assert any(m["text"].startswith("TINGGI · Tong terguling: sedang ditangani") for m in bot.sent_to(CREW))

