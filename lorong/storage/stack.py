"""The embedded stack: Debian's Mosquitto 2 and InfluxDB 1.x run as child processes on loopback.

Configs and data live under one directory (``./var`` by default). Used by ``lorong stack`` and
by the test fixtures, so tests run exactly what users run.

Broker sizing: Mosquitto's default ``max_queued_messages 1000`` silently drops QoS 1 messages
for a lagging or offline subscriber (measured here: 24,872 of 200,000 lost in one burst), so
the generated config raises the per-client queue and turns persistence on (see the
mosquitto.conf(5) man page, options ``max_queued_messages``, ``persistence``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from lorong.core.errors import ConfigError
from lorong.storage.files import private_dir

MAX_QUEUED_MESSAGES = 1_000_000
"""Per-client broker queue for QoS 1/2 while a subscriber lags or is offline (default 1000)."""

MESSAGE_SIZE_FACTOR = 16
"""The broker's payload bound, in multiples of the ingester's ``too_large`` limit
(``IngestSettings.max_payload_bytes``, 64 KiB by default, so 1 MiB). Our choice: a payload up to
16 times over the ingester's limit still reaches it and is dead-lettered as ``too_large`` (its first
64 KiB kept), so a device sending too much shows up by name; beyond that the broker refuses it
before it fills every subscriber's queue (``max_queued_bytes 0`` is no byte bound). No uplink
comes near it: a LoRaWAN application payload is at most 242 bytes (LoRaWAN 1.0.3 Regional
Parameters, AS923) and a ChirpStack or TTN event around it a few kB."""


def broker_message_limit(max_payload_bytes: int) -> int:
    """The broker's ``message_size_limit`` (bytes of one publish's payload) for an ingester whose
    ``too_large`` limit is ``max_payload_bytes`` bytes: :data:`MESSAGE_SIZE_FACTOR` times it."""
    return MESSAGE_SIZE_FACTOR * max_payload_bytes



_HANDED_OUT: set[int] = set()


def free_port(n: int = 1) -> int:
    """A TCP port on 127.0.0.1 that is free right now and that this process was not given before;
    with ``n`` > 1 the first of ``n`` such ports in a row (``ingest run --workers N`` gives its
    workers the metrics ports ``p .. p+N-1``).

    The kernel may hand a just-released port back at the next ``bind(0)``, so two calls made to
    configure one service (a NATS node's monitor and route ports) could get the same port.

    Raises:
        OSError: no new free port (run) in 200 tries.
    """
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        run = range(port, port + n)
        if port + n <= 65536 and not any(p in _HANDED_OUT for p in run) and all(_bindable(p) for p in run[1:]):
            _HANDED_OUT.update(run)
            return port
    raise OSError(f"no new free run of {n} TCP port(s) on 127.0.0.1 in 200 tries")


def _bindable(port: int) -> bool:
    """Whether ``127.0.0.1:port`` can be bound right now."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_for_port(port: int, timeout_s: float = 10.0, host: str = "127.0.0.1") -> None:
    """Block until ``host:port`` accepts TCP connections.

    Raises:
        TimeoutError: still closed after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not open within {timeout_s} s")


def _exe(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if not found:
        raise ConfigError(f"{name} is not installed: run `make setup` (apt-get install mosquitto influxdb)")
    return found


BROKER_USER = "mosquitto"
"""The account Mosquitto drops to when started as root (Debian's package creates it)."""


def _crossable(d: Path, uid: int, gid: int) -> bool:
    st = d.stat()
    return bool(st.st_mode & 0o001 or (st.st_gid == gid and st.st_mode & 0o010)
                or (st.st_uid == uid and st.st_mode & 0o100))


def broker_user(workdir: Path) -> tuple[str, int, int] | None:
    """``(name, uid, gid)`` of :data:`BROKER_USER` when the broker is started as root and that user
    can reach ``workdir``; None otherwise (not root, no such user, or a closed directory above it).

    The parent of ``workdir`` (``var/``, 0700) is handed to the user's group with mode 0710: it may
    pass through, not list or read.
    """
    if os.geteuid() != 0:
        return None
    try:
        import pwd

        entry = pwd.getpwnam(BROKER_USER)
    except (KeyError, ImportError):
        return None
    uid, gid = entry.pw_uid, entry.pw_gid
    parent = workdir.parent
    if any(not _crossable(d, uid, gid) for d in parent.parents):
        return None
    if not _crossable(parent, uid, gid):
        os.chown(parent, -1, gid)
        os.chmod(parent, (parent.stat().st_mode & 0o777) | 0o010)
    return BROKER_USER, uid, gid


def hand_to_broker(workdir: Path) -> None:
    """Give ``workdir`` and its files to the broker's user (:func:`broker_user`), mode 0700 / 0600,
    so that Mosquitto running as that user reads its password and ACL files (also when it re-reads
    them on SIGHUP) and writes its persistence file. Nothing happens when it runs as the caller."""
    who = broker_user(workdir)
    if who is None:
        return
    _, uid, gid = who
    for p in (workdir, *workdir.iterdir()):
        os.chown(p, uid, gid)
        os.chmod(p, 0o700 if p.is_dir() else 0o600)


def mosquitto_conf(
    workdir: Path,
    port: int,
    password_file: Path | None = None,
    acl_file: Path | None = None,
    max_queued_messages: int = MAX_QUEUED_MESSAGES,
    message_size_limit: int = broker_message_limit(65536),
) -> Path:
    """Write a mosquitto.conf for a loopback listener on ``port`` and return its path.

    Without ``password_file`` the broker allows anonymous clients; with it, only clients whose
    username/password are in the file (``mosquitto_passwd`` format), restricted by ``acl_file``.
    ``max_queued_messages`` is the per-client queue (messages); tests pass Mosquitto's default
    1000 to show what it loses. ``message_size_limit`` bounds one publish's payload (bytes,
    :func:`broker_message_limit`): the broker drops a larger one (completing its QoS 1/2 flow, so
    the client stays connected; mosquitto.conf(5) of Mosquitto 2.0.11, which also has
    ``max_packet_size``, but that one disconnects the client and with it a gateway's other uplinks).
    Started as root, Mosquitto drops to :data:`BROKER_USER` when that
    user can reach ``workdir`` (:func:`broker_user`), else it stays root (its ``user`` option).
    """
    private_dir(workdir)
    lines = [
        f"listener {port} 127.0.0.1",
        "persistence true",
        f"persistence_location {workdir}/",
        "autosave_interval 30",
        f"max_queued_messages {max_queued_messages}",
        "max_queued_bytes 0",
        "max_inflight_messages 0",
        f"message_size_limit {message_size_limit}",
        f"log_dest file {workdir}/mosquitto.log",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    if os.geteuid() == 0:
        who = broker_user(workdir)
        lines.append(f"user {who[0] if who else 'root'}")
    if password_file is not None:
        lines += ["allow_anonymous false", f"password_file {password_file}"]
        if acl_file is not None:
            lines.append(f"acl_file {acl_file}")
    else:
        lines.append("allow_anonymous true")
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def influxd_conf(workdir: Path, http_port: int, rpc_port: int) -> Path:
    """Write an influxd 1.x config with data under ``workdir`` and HTTP on ``http_port``."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "influxdb.conf"
    conf.write_text(
        f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{workdir}/meta"
[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "1m"
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  max-body-size = 0
[logging]
  level = "warn"
[subscriber]
  enabled = false
"""
    )
    return conf


@dataclass
class Service:
    """A running child service: its process and where it listens."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        """SIGKILL at once (fault tests)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_mosquitto(
    workdir: Path,
    port: int,
    password_file: Path | None = None,
    acl_file: Path | None = None,
    detach: bool = False,
    timeout_s: float = 10.0,
    max_queued_messages: int = MAX_QUEUED_MESSAGES,
    message_size_limit: int = broker_message_limit(65536),
) -> Service:
    """Start Mosquitto on 127.0.0.1:``port`` and wait until it accepts connections.

    Starting again on the same ``workdir`` after :meth:`Service.stop` resumes the persisted
    sessions, subscriptions and queued messages (``workdir/mosquitto.db``).

    Raises:
        ConfigError: mosquitto is not installed.
        TimeoutError: it did not open the port (its log is in ``workdir/mosquitto.log``).
    """
    if port_in_use(port):
        raise ConfigError(f"port {port} is already in use: another broker (or service) listens there; stop it, "
                          "or set LORONG_MQTT__PORT to a free port")
    conf = mosquitto_conf(workdir, port, password_file, acl_file, max_queued_messages, message_size_limit)
    hand_to_broker(workdir)
    out = open(workdir / "mosquitto.stdout", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen([_exe("mosquitto"), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=detach)
    out.close()
    try:
        wait_for_port(port, timeout_s)
    except TimeoutError:
        proc.kill()
        log = (workdir / "mosquitto.log").read_text(errors="replace")[-2000:] if (
            workdir / "mosquitto.log").exists() else ""
        raise TimeoutError(f"mosquitto did not start on port {port}: {log}") from None
    return Service("mosquitto", proc, port, workdir)


def start_influxd(workdir: Path, port: int, rpc_port: int | None = None, detach: bool = False,
                  timeout_s: float = 30.0) -> Service:
    """Start influxd with HTTP on 127.0.0.1:``port`` and wait until ``/ping`` answers 204.

    Starting again on the same ``workdir`` after :meth:`Service.stop` keeps the data.

    Raises:
        ConfigError: influxd is not installed.
        TimeoutError: it did not answer within ``timeout_s`` (its output is in ``workdir``).
    """
    if port_in_use(port):
        raise ConfigError(f"port {port} is already in use: another influxd (or service) listens there; stop it, "
                          "or set LORONG_INFLUX__URL to a free port (http://127.0.0.1:PORT)")
    conf = influxd_conf(workdir, port, rpc_port or free_port())
    out = open(workdir / "influxd.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen([_exe("influxd"), "-config", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=detach)
    out.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=0.5).status_code == 204 and proc.poll() is None:
                return Service("influxd", proc, port, workdir)
        time.sleep(0.1)
    proc.kill()
    tail = (workdir / "influxd.log").read_text(errors="replace")[-2000:]
    raise TimeoutError(f"influxd did not answer on port {port}: {tail}")


def pid_alive(pid: int) -> bool:
    """True when a process with ``pid`` (> 0) exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[-1].split()[0] == "Z":
                return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat`` field 22,
    proc(5)); None when there is no such process. A reused PID has another start time."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[-1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def process_record(pid: int, workdir: Path) -> dict[str, int | str]:
    """What ``stack.json`` keeps of a started service: its PID, start time (:func:`start_ticks`)
    and working directory (part of its command line, ``-c <workdir>/...``)."""
    return {"pid": pid, "start": start_ticks(pid) or 0, "workdir": str(workdir)}


def is_ours(record: object, name: str, workdir: Path) -> bool:
    """True when ``record`` (from ``stack.json``) is a running ``name`` process Lorong started in
    ``workdir``: alive, its command is ``name`` with ``workdir`` in its arguments, and (for records
    with a start time) it started when recorded. A PID reused by another process fails these checks.

    ``record`` is a :func:`process_record` dict, or a bare PID of an earlier release (checked by
    command line only).
    """
    pid = record.get("pid", 0) if isinstance(record, dict) else record
    if not isinstance(pid, int) or isinstance(pid, bool) or not pid_alive(pid):
        return False
    argv = _cmdline(pid)
    if not argv or Path(argv[0]).name != name or not any(str(workdir) in a for a in argv[1:]):
        return False
    if isinstance(record, dict) and record.get("start"):
        return bool(start_ticks(pid) == record["start"])
    return True


def running_in(name: str, workdir: Path) -> list[int]:
    """PIDs of the running ``name`` processes started on ``workdir``'s config file (Lorong starts
    each service as ``<name> -c|-config <workdir>/<file>.conf``), found in ``/proc`` whatever
    ``stack.json`` says: a lost or overwritten PID file does not orphan them.

    Only a process whose command is ``name`` and one of whose arguments is a file directly in
    ``workdir`` counts, so another broker (or a reused PID) is never taken for ours.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not pid_alive(pid := int(entry.name)):
            continue
        argv = _cmdline(pid)
        if argv and Path(argv[0]).name == name and any(Path(a).parent == workdir for a in argv[1:]):
            found.append(pid)
    return sorted(found)


def reload_broker(var_dir: Path) -> bool:
    """Make the Mosquitto that Lorong runs on ``<var_dir>/mosquitto`` re-read its password and ACL
    files (SIGHUP, mosquitto(8)); it then drops connected clients whose password no longer holds.

    The broker is found by its config file (:func:`running_in`), so a reused PID is never
    signalled. Returns False when no such broker runs.
    """
    workdir = var_dir.resolve() / "mosquitto"
    pids = running_in("mosquitto", workdir)
    if not pids:
        return False
    hand_to_broker(workdir)  # files written since it started are the caller's
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)
    return True


def stop_pid(pid: int, timeout_s: float = 10.0) -> bool:
    """SIGTERM ``pid``, wait, SIGKILL if needed; True when it was running."""
    if not pid_alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True
