"""``lorong stack``: run the embedded Mosquitto + InfluxDB under ``./var``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import urlparse

import typer

from lorong.core.errors import ConfigError
from lorong.core.settings import Settings
from lorong.storage import retention, stack
from lorong.storage.runtime import create_database, database_location, day_zones, open_influx, sqlite_file

app = typer.Typer(help="Run the embedded broker and time-series database (Debian mosquitto + influxd).",
                  no_args_is_help=True)


def _pidfile(settings: Settings) -> Path:
    return settings.var_dir / "run" / "stack.json"


def _ports(settings: Settings) -> tuple[int, int]:
    return settings.mqtt.port, urlparse(settings.influx.url).port or 8086


def _workdirs(settings: Settings) -> dict[str, Path]:
    var = settings.var_dir.resolve()
    nodes = {f"nats-n{i}": var / "nats" / f"n{i}" for i in range(1, 6)}  # `stack up --cluster N`, N <= 5
    return {"mosquitto": var / "mosquitto", "influxd": var / "influxdb", **nodes}


def _state(settings: Settings) -> dict[str, object]:
    pidfile = _pidfile(settings)
    try:
        state = json.loads(pidfile.read_text()) if pidfile.exists() else {}
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def _ours(settings: Settings, state: dict[str, object], name: str) -> int | None:
    """The PID of ``name`` when ``state`` records a process Lorong started and it still runs
    (:func:`lorong.storage.stack.is_ours`: PIDs are reused, so a bare PID proves nothing)."""
    record = state.get(name)
    binary = "nats-server" if name.startswith("nats-") else name
    if not stack.is_ours(record, binary, _workdirs(settings)[name]):
        return None
    pid = record.get("pid") if isinstance(record, dict) else record
    return pid if isinstance(pid, int) else None


def up(settings: Settings, auth: bool = False, detach: bool = True) -> list[stack.Service]:
    """Start both services (idempotent: running ones are kept), record their PIDs and start times,
    and apply the retention layout (:func:`lorong.storage.retention.apply`, daily means in the
    registered cities' zones).

    A start that fails stops the services this call started (a broker started just before
    InfluxDB's port turned out to be taken was left running, orphaned, before).

    Raises:
        ConfigError: a binary is missing, ``auth`` without exported credentials, or the registry
            cannot be read.
        TimeoutError: a service did not come up.
    """
    started: list[stack.Service] = []
    try:
        return _up(settings, auth, detach, started)
    except BaseException:
        for svc in reversed(started):
            svc.stop()
        if started and _pidfile(settings).exists():  # written when the failure came after the starts
            state = _state(settings)
            for svc in started:
                state.pop(svc.name, None)
            _pidfile(settings).write_text(json.dumps(state))
        raise


def _up(settings: Settings, auth: bool, detach: bool, started: list[stack.Service]) -> list[stack.Service]:
    """:func:`up`'s work; each service it starts is appended to ``started`` at once."""
    pidfile = _pidfile(settings)
    state = _state(settings)
    mqtt_port, influx_port = _ports(settings)
    var = settings.var_dir.resolve()
    dirs = _workdirs(settings)
    if _ours(settings, state, "mosquitto") is None:
        pw = acl = None
        if auth:
            pw, acl = var / "mosquitto" / "passwd", var / "mosquitto" / "acl"
            missing = [str(f) for f in (pw, acl) if not f.exists()]
            if missing:
                raise ConfigError(f"no {' or '.join(missing)}: run `lorong devices credentials export` first")
        svc = stack.start_mosquitto(dirs["mosquitto"], mqtt_port, pw, acl, detach=detach,
                                    message_size_limit=stack.broker_message_limit(settings.ingest.max_payload_bytes))
        started.append(svc)
        state["mosquitto"] = stack.process_record(svc.proc.pid, dirs["mosquitto"])
    if _ours(settings, state, "influxd") is None:
        svc = stack.start_influxd(dirs["influxd"], influx_port, detach=detach)
        started.append(svc)
        state["influxd"] = stack.process_record(svc.proc.pid, dirs["influxd"])
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(json.dumps(state))
    with open_influx(settings) as influx:
        influx.create_database(settings.influx.retention)
        retention.apply(influx, settings.influx, day_zones(settings))
    return started


def up_cluster(settings: Settings, nodes: int = 3, detach: bool = True) -> list[str]:
    """Start a NATS cluster of ``nodes`` nodes (data under ``var/nats/n<i>``) in place of Mosquitto,
    and influxd; make the cluster keep the uplinks on ``nats.replicas`` nodes
    (:func:`lorong.storage.cluster.ensure_uplinks`). Running nodes are kept; PIDs go to the PID file as
    ``nats-n<i>``.

    Returns:
        the node client URLs.

    Raises:
        ConfigError: nats-server or influxd missing, a port taken, too few nodes for the replicas.
        TimeoutError: a node or influxd did not come up.
    """
    from lorong.storage import cluster

    pidfile = _pidfile(settings)
    state = _state(settings)
    var = settings.var_dir.resolve()
    try:
        members = cluster.make_cluster(var / "nats", settings.nats, settings.mqtt.port, nodes)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    todo = [n for n in members if _ours(settings, state, f"nats-{n.name}") is None]
    try:
        for node in todo:
            node.start(detach=detach)
            state[f"nats-{node.name}"] = stack.process_record(node.proc.pid if node.proc else 0, node.workdir)
        cluster.wait_jetstream([n.ports.monitor for n in members])
        if _ours(settings, state, "influxd") is None:
            _, influx_port = _ports(settings)
            svc = stack.start_influxd(var / "influxdb", influx_port, detach=detach)
            state["influxd"] = stack.process_record(svc.proc.pid, var / "influxdb")
    finally:
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(json.dumps(state))
    urls = [n.url for n in members]
    cluster.ensure_uplinks(urls, members[0].ports.mqtt, settings.nats, settings.mqtt.topics)
    with open_influx(settings) as influx:
        influx.create_database(settings.influx.retention)
        retention.apply(influx, settings.influx, day_zones(settings))
    return urls


def down(settings: Settings) -> list[str]:
    """Stop the services Lorong started on this ``var`` folder and that still run; returns the
    names stopped.

    The PID file's records come first (a recorded PID now used by another process is left
    alone, :func:`lorong.storage.stack.is_ours`); then any mosquitto, influxd or NATS node still running
    on this folder's config files (:func:`lorong.storage.stack.running_in`), which a lost or overwritten
    PID file no longer names.
    """
    pidfile = _pidfile(settings)
    state = _state(settings)
    dirs = _workdirs(settings)
    stopped = []
    for name in ["mosquitto", *sorted(k for k in dirs if k.startswith("nats-")), "influxd"]:
        pids = {stack_pid} if (stack_pid := _ours(settings, state, name)) is not None else set()
        pids |= set(stack.running_in("nats-server" if name.startswith("nats-") else name, dirs[name]))
        if sum(stack.stop_pid(pid) for pid in sorted(pids)):
            stopped.append(name)
    pidfile.unlink(missing_ok=True)
    return stopped


SERVICES = ("mosquitto", "influxd")
"""The services :func:`up` starts, in its order."""


def kept(started: list[stack.Service]) -> str | None:
    """What an :func:`up` call found already running and will not stop with :func:`release`, as one
    line for the user (None when it started both): a demo run on a stack that `lorong stack up`
    started leaves that stack up."""
    names = {svc.name for svc in started}
    running = [n for n in SERVICES if n not in names]
    if not running:
        return None
    one = len(running) == 1
    return (f"{' and '.join(running)} {'was' if one else 'were'} running before (`lorong stack up`): "
            f"{'it stays' if one else 'they stay'} up after this stops; `lorong stack down` stops "
            f"{'it' if one else 'them'}")


def release(settings: Settings, services: list[stack.Service]) -> None:
    """Stop ``services`` (what one :func:`up` call started) and forget their PIDs; services that
    were already running before that call are left alone."""
    for svc in services:
        svc.stop()
    pidfile = _pidfile(settings)
    if pidfile.exists():  # a service restarted since (another PID under the same name) is not ours to forget
        mine = {svc.name: svc.proc.pid for svc in services}
        state = {k: v for k, v in _state(settings).items()
                 if k not in mine or (v.get("pid") if isinstance(v, dict) else v) != mine[k]}
        if state:
            pidfile.write_text(json.dumps(state))
        else:
            pidfile.unlink()


def reload(settings: Settings) -> bool:
    """Make the running broker re-read its password and ACL files (SIGHUP, mosquitto(8));
    False when no broker started by `lorong stack up` runs (:func:`lorong.storage.stack.reload_broker`)."""
    return stack.reload_broker(settings.var_dir)


def _say_database(settings: Settings) -> None:
    """Create the registry database if it is missing, and print which one this deployment uses."""
    created = create_database(settings)
    print(f"created a new database: {created}" if created else
          f"database: {database_location(settings.database_url)}")


@app.command("up")
def up_cmd(auth: bool = typer.Option(False, help="broker with per-device passwords and ACLs from "
                                                 "`lorong devices credentials export`"),
           cluster: int = typer.Option(0, "--cluster", min=0, max=5,
                                       help="run this many NATS nodes (MQTT on each, uplinks replicated) "
                                            "instead of mosquitto")) -> None:
    """Start mosquitto (or with --cluster 3 three NATS nodes) and influxd on 127.0.0.1 (data under
    ./var) and wait until they answer."""
    settings = Settings()
    if cluster:
        if auth:
            print("error: --auth is for mosquitto; the NATS cluster runs without broker accounts", file=sys.stderr)
            raise typer.Exit(1)
        try:
            urls = up_cluster(settings, cluster)
        except (ConfigError, TimeoutError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
        mqtt = ", ".join(f"127.0.0.1:{settings.mqtt.port + i}" for i in range(cluster))
        _say_database(settings)
        print(f"NATS cluster of {cluster}: clients {', '.join(urls)}; MQTT 3.1.1 on {mqtt}; uplinks kept on "
              f"{settings.nats.replicas} nodes; influxd on 127.0.0.1:{_ports(settings)[1]}; data in "
              f"{settings.var_dir}/\ningesters read it with LORONG_INGEST__SOURCE=nats "
              f"LORONG_NATS__SERVERS='{json.dumps(urls)}'")
        return
    try:
        up(settings, auth=auth)
    except (ConfigError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    mqtt_port, influx_port = _ports(settings)
    print(f"mosquitto on 127.0.0.1:{mqtt_port}, influxd on 127.0.0.1:{influx_port}, data in {settings.var_dir}/")
    _say_database(settings)
    if auth:
        print("broker requires per-device credentials; the ingester logs in with LORONG_MQTT__USERNAME/PASSWORD "
              f"(kept in {settings.var_dir}/mosquitto/ingest.env); the alert publisher with its own account "
              f"(read from {settings.var_dir}/mosquitto/alerts.env)")


@app.command("reload")
def reload_cmd() -> None:
    """Make the running broker re-read the password and ACL files (after `lorong devices credentials export`)."""
    if not reload(Settings()):
        print("error: no broker started by `lorong stack up` is running", file=sys.stderr)
        raise typer.Exit(1)
    print("broker reloaded its password and ACL files")


@app.command("down")
def down_cmd() -> None:
    """Stop the services started by `lorong stack up`."""
    stopped = down(Settings())
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command("status")
def status_cmd() -> None:
    """Show whether each service runs and answers."""
    settings = Settings()
    state = _state(settings)
    mqtt_port, _ = _ports(settings)
    ok = True
    nodes = sorted(k for k in state if k.startswith("nats-"))
    for name in [*nodes, "influxd"] if nodes else ["mosquitto", "influxd"]:
        pid = _ours(settings, state, name)
        alive = pid is not None
        if name.startswith("nats-"):
            answers = alive and stack.port_in_use(settings.nats.client_port + int(name.removeprefix("nats-n")) - 1)
        elif name == "mosquitto":
            try:
                stack.wait_for_port(mqtt_port, 0.5)
                answers = True
            except TimeoutError:
                answers = False
        else:
            answers = open_influx(settings).ping()
        ok &= answers
        print(f"{name:10s} pid={pid or '-'} running={alive} answers={answers}")
    path = sqlite_file(settings.database_url)
    print(f"database   {database_location(settings.database_url)}"
          + (" (missing: `lorong stack up` creates it)" if path is not None and not path.exists() else ""))
    raise typer.Exit(0 if ok else 1)
