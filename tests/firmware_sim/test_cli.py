"""`lorong sim` against a real Mosquitto: the count it prints is what the broker delivered."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from lorong.storage import stack
from tests.support import kill_if_running, wait_for

LORONG = Path(sys.executable).parent / "lorong"


def test_ctrl_c_prints_the_real_count(mosquitto: stack.Service, tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) between ticks ends the run and prints how many uplinks were acknowledged."""
    received: list[str] = []
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            received.append(msg.topic)

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sim-cli-test", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.connect("127.0.0.1", mosquitto.port, keepalive=30)
    sub.subscribe([("lorong/v1/+/up", 1), ("v3/+/devices/+/up", 1)])
    sub.loop_start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORONG_")}
    env.update(LORONG_MQTT__HOST="127.0.0.1", LORONG_MQTT__PORT=str(mosquitto.port),
               LORONG_VAR_DIR=str(tmp_path / "var"))
    proc = subprocess.Popen([str(LORONG), "sim", "--bins", "4", "--air", "2", "--speed", "600", "--no-register",
                             "--duration", "60"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # let the subscription settle before the first tick's uplinks arrive
        wait_for(lambda: len(received) >= 6, timeout_s=20, what="the first tick's 6 uplinks")
        time.sleep(0.3)  # the tick's publishes are acknowledged; the simulator now waits for the next tick
        proc.send_signal(signal.SIGINT)
        out, errors = proc.communicate(timeout=20)
    finally:
        kill_if_running(proc)
        sub.loop_stop()
        sub.disconnect()
    assert proc.returncode == 0, errors
    match = re.search(r"published (-?\d+) uplinks", out)
    assert match, out
    with lock:
        assert int(match.group(1)) == len(received) >= 6
