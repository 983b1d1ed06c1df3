"""``lorong ingest run --workers N``: N full ingester processes in one ``$share`` group.

One ingester is bound to one CPU core by the GIL (its network thread parses and validates every
message). N workers split the stream through an MQTT 5 shared subscription (MQTT 5.0 section
4.8.2): each message goes to one member of ``$share/<group>/<filter>``. Each worker is a
complete ingester with the delivery guarantees of :mod:`ingest.service`: its own client id
(``<client id>-<i>``, hence its own persistent session and its own spool file), its own
``instance`` tag (``<instance>-<i>``) and, when the Prometheus endpoint is on, its own port
(``metrics_port + i - 1``).

Before it starts the workers, the parent takes over from the single ingester's session when one
ran with this spool directory (:mod:`ingest.handover`); one ingester does the same the other way.

The parent then only supervises: it forwards SIGTERM/SIGINT to the workers and waits for their
clean stop, and restarts a worker that died (the broker keeps handing a stopped member its
share of the stream, README "Several ingesters", so a member must not stay away). A worker that
dies again soon after a restart is restarted later and later (1 s doubling to 60 s). A worker
that exits with :data:`EXIT_SETUP` (a setup error it printed as one ``error:`` line: a damaged
spool, bad settings) is not restarted: nothing changes until a person fixes it, so the
supervisor stops the other workers and exits with the same status.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ingest.service import spool_name
from lorong.core.errors import HandoverError
from lorong.core.settings import MqttSettings, Settings
from lorong.storage.spool import spool_in_use

if TYPE_CHECKING:
    from ingest.handover import RetiringFactory

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0
"""Wait before restarting a worker that exited on its own (s); doubled after each quick death."""

MAX_RESTART_DELAY_S = 60.0
"""Longest wait before a restart (s)."""

STABLE_S = 60.0
"""A worker that ran this long before dying is restarted after :data:`RESTART_DELAY_S` again (s)."""

EXIT_SETUP = 2
"""Exit status of ``lorong`` for a setup error (:func:`lorong.cli.error_line`): never restarted."""

STOP_TIMEOUT_S = 60.0
"""How long a worker may take for its clean stop (flush, ack, drain) before it is killed (s)."""


def shared_filter(topic: str, group: str) -> str:
    """``topic`` as a filter of the shared subscription ``group`` (unchanged if already shared).

    Raises:
        ValueError: ``group`` is empty or holds ``/``, ``+`` or ``#`` (MQTT 5.0 section 4.8.2).
    """
    if not group or any(c in group for c in "/+#"):
        raise ValueError(f"share group {group!r} must be non-empty without '/', '+' or '#'")
    return topic if topic.startswith("$share/") else f"$share/{group}/{topic}"


def worker_env(settings: Settings, index: int, group: str, base: Mapping[str, str],
               workers: int = 1) -> dict[str, str]:
    """Environment of worker ``index`` (1-based) of ``workers``: ``base`` plus the ``LORONG_*``
    overrides that make it a distinct member of the share group (client id, instance, metrics
    port, and the receive-time slot ``index - 1`` of ``workers``, ``IngestSettings.rx_slot``).

    Raises:
        ValueError: bad ``group`` (see :func:`shared_filter`).
    """
    mqtt, ingest = settings.mqtt, settings.ingest
    env = dict(base)
    env["LORONG_MQTT__CLIENT_ID"] = f"{mqtt.client_id}-{index}"
    env["LORONG_MQTT__TOPICS"] = json.dumps([shared_filter(t, group) for t in mqtt.topics])
    env["LORONG_INGEST__INSTANCE"] = f"{ingest.instance}-{index}"
    env["LORONG_INGEST__METRICS_PORT"] = str(ingest.metrics_port + index - 1 if ingest.metrics_port else 0)
    env["LORONG_INGEST__RX_SLOT"], env["LORONG_INGEST__RX_SLOTS"] = str(index - 1), str(max(workers, index))
    return env


def supervise(command: Sequence[str], envs: Sequence[Mapping[str, str]], stop: threading.Event,
              poll_s: float = 0.5) -> int:
    """Run one ``command`` per environment until ``stop`` is set; restart any that exits early,
    with backoff (see the module docstring), except after a setup error.

    Returns:
        0 when every worker stopped cleanly after ``stop``; :data:`EXIT_SETUP` when a worker
        stopped on a setup error (the others are stopped); else 1.
    """
    procs: list[subprocess.Popen[bytes] | None] = [None] * len(envs)
    started_at = [0.0] * len(envs)
    restart_at = [0.0] * len(envs)
    quick_deaths = [0] * len(envs)
    gave_up = False

    def spawn(i: int) -> None:
        procs[i] = subprocess.Popen(list(command), env=dict(envs[i]))
        started_at[i] = time.monotonic()
        log.info("worker %d started (pid %d)", i + 1, procs[i].pid)  # type: ignore[union-attr]

    for i in range(len(envs)):
        spawn(i)
    while not gave_up and not stop.wait(poll_s):
        for i, p in enumerate(procs):
            now = time.monotonic()
            if p is not None and p.poll() is not None:
                procs[i] = None
                if p.returncode == EXIT_SETUP:
                    log.error("worker %d (pid %d) stopped on a setup error (exit %d, see its error line); "
                              "not restarting it, stopping the others", i + 1, p.pid, p.returncode)
                    gave_up = True
                    break
                quick_deaths[i] = quick_deaths[i] + 1 if now - started_at[i] < STABLE_S else 0
                delay = min(RESTART_DELAY_S * 2 ** quick_deaths[i], MAX_RESTART_DELAY_S)
                restart_at[i] = now + delay
                log.error("worker %d (pid %d) exited with %s; restarting it in %.0f s", i + 1, p.pid,
                          p.returncode, delay)
            elif p is None and now >= restart_at[i]:
                spawn(i)
    live = [p for p in procs if p is not None]
    for p in live:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    ok = True
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for p in live:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker pid %d did not stop in %.0f s; killing it", p.pid, STOP_TIMEOUT_S)
            p.kill()
            p.wait()
        ok = ok and p.returncode == 0
    if gave_up:
        return EXIT_SETUP
    return 0 if ok else 1


def worker_command(argv: Sequence[str]) -> list[str]:
    """The command line of one worker: this Python, ``-m lorong.cli``, the global options given
    before ``ingest`` in ``argv`` (the parent's ``sys.argv[1:]``), then ``ingest run``."""
    head = list(argv[:argv.index("ingest")]) if "ingest" in argv else []
    return [sys.executable, "-m", "lorong.cli", *head, "ingest", "run"]


def worker_mqtt(settings: Settings, index: int, group: str) -> MqttSettings:
    """The MQTT settings worker ``index`` runs with (as :func:`worker_env` sets them).

    Raises:
        ValueError: bad ``group`` (see :func:`shared_filter`).
    """
    mqtt = settings.mqtt
    return mqtt.model_copy(update={"client_id": f"{mqtt.client_id}-{index}",
                                   "topics": [shared_filter(t, group) for t in mqtt.topics]})


def run_workers(settings: Settings, workers: int, group: str, stop: threading.Event,
                retiring: RetiringFactory | None = None) -> int:
    """Migrate the database, take over from the single ingester's session when it ran here
    (:func:`ingest.handover.hand_over`, with ``retiring``), then start ``workers`` ingester
    processes in share group ``group`` and supervise them until ``stop``.

    Returns:
        the exit status for the parent (see :func:`supervise`); 0 when stopped during the hand-over.

    Raises:
        ValueError: bad ``group``.
        lorong.core.errors.HandoverError: the single ingester, or one of these workers, is running; the
            hand-over stalled or lost a connection (it was undone).
    """
    from ingest.handover import hand_over
    from lorong.storage.db import (  # once here: workers migrating a new SQLite file at once collide
        default_city,
        migrate,
    )
    from lorong.storage.runtime import check_database

    check_database(settings.database_url)
    migrate(settings.database_url, default_city=default_city(settings))
    own = [worker_mqtt(settings, i, group) for i in range(1, workers + 1)]
    envs = [worker_env(settings, i, group, os.environ, workers) for i in range(1, workers + 1)]
    if retiring is not None:
        busy = [m.client_id for m in own if spool_in_use(settings.ingest.spool_dir / spool_name(m.client_id))]
        if busy:  # a hand-over would take their live sessions over
            raise HandoverError(f"ingesters with client ids {', '.join(busy)} already run (their spools are locked)")
        if not hand_over(settings, own, retiring, stop):  # stopped meanwhile
            return 0
    return supervise(worker_command(sys.argv[1:]), envs, stop)
