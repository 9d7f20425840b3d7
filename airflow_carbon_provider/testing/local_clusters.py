"""``airflow-carbon emulator``: emulated clusters on loopback for trying your own DAG locally.

Starts one Kubernetes API emulator per ``conn_id=ZONE`` pair and prints (or writes) the
Airflow connections that reach them, each with its ``carbon_zone`` extra, plus a
``carbontrace_default`` connection that replays the bundled real trace, so that a DAG using
``CarbonAwareKubernetesPodOperator`` runs unchanged with ``airflow dags test``. The emulators
run until Ctrl-C (or SIGTERM). They are emulators, not clusters: pods "run" for a couple of
seconds and succeed; see :doc:`/howto/kubernetes-emulator` for what they verify.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from airflow_carbon_provider.scheduling.candidates import ScheduleConfigError, check_zone

__all__ = ["EmulatorSpecError", "add_emulator_parser", "connections", "parse_clusters", "serve"]

#: What ``--clusters`` defaults to: the demo's three clusters, home first.
DEFAULT_CLUSTERS = "k8s_de=DE,k8s_gb=GB,k8s_us=US-CAL-CISO"
_CONN_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
FORMATS = ("env", "json")


class EmulatorSpecError(ValueError):
    """Raised for a ``--clusters`` value or option that cannot work; the message names the fix."""


def parse_clusters(text: str) -> dict[str, str]:
    """Read ``conn_id=ZONE,conn_id=ZONE`` into ``{conn_id: zone}`` (order kept: the first is home)."""
    clusters: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        conn_id, sep, zone = item.partition("=")
        conn_id, zone = conn_id.strip(), zone.strip()
        if not sep or not conn_id or not zone:
            raise EmulatorSpecError(f"--clusters item {item!r} is not conn_id=ZONE; write e.g. k8s_de=DE,k8s_gb=GB")
        if not _CONN_ID.match(conn_id):
            raise EmulatorSpecError(f"--clusters: {conn_id!r} is not a connection id; use letters, digits, _ . -")
        if conn_id in clusters:
            raise EmulatorSpecError(f"--clusters names {conn_id!r} twice; give each connection id once")
        try:
            clusters[conn_id] = check_zone(zone, f"--clusters {conn_id}")
        except ScheduleConfigError as exc:
            raise EmulatorSpecError(str(exc)) from None
    if not clusters:
        raise EmulatorSpecError("--clusters is empty; write e.g. k8s_de=DE,k8s_gb=GB (the first is home)")
    return clusters


def connections(emulators: Mapping[str, Any], *, carbontrace: bool = True) -> dict[str, dict[str, Any]]:
    """Return ``{conn_id: connection}`` in the shape ``airflow connections import`` reads."""
    conns = {conn_id: json.loads(emu.connection_json()) for conn_id, emu in emulators.items()}
    if carbontrace:
        conns["carbontrace_default"] = {
            "conn_type": "carbontrace",
            "description": "the bundled real trace (Electricity Maps, ODbL), replayed on the wall clock",
            "extra": {},
        }
    return conns


def render(conns: Mapping[str, Mapping[str, Any]], fmt: str) -> str:
    """Format the connections as shell ``export`` lines (``env``) or an import file (``json``)."""
    if fmt == "json":
        # the shape ``airflow connections export`` writes: ``extra`` as a JSON string (an empty
        # dict would reach the database as a dict and fail the import)
        exported = {conn_id: {**conn, "extra": json.dumps(conn.get("extra") or {})} for conn_id, conn in conns.items()}
        return json.dumps(exported, indent=2) + "\n"
    return "".join(f"export AIRFLOW_CONN_{conn_id.upper().replace('.', '_').replace('-', '_')}="
                   f"{shlex.quote(json.dumps(conn))}\n" for conn_id, conn in conns.items())


def serve(spec: str, *, out: TextIO, err: TextIO, fmt: str = "env", write: Path | None = None,
          port: int = 0, carbontrace: bool = True, stop: threading.Event | None = None) -> int:
    """Start the emulators, print or write their connections, and block until stopped.

    :param port: the first emulator's port (the others follow it); 0 picks free ports, which
        change at every start, so connections stored in Airflow's database must then be
        imported again.
    :param stop: set it to stop (tests); Ctrl-C and SIGTERM stop it too.
    """
    from airflow_carbon_provider.testing.kube_emulator import KubeEmulator

    clusters = parse_clusters(spec)
    if fmt not in FORMATS:
        raise EmulatorSpecError(f"--format {fmt!r} is unknown; use env or json")
    if port and not 1024 <= port <= 65535 - len(clusters):
        raise EmulatorSpecError(f"--port {port} is outside 1024-{65535 - len(clusters)}; give a free port, or 0")
    stop = stop or threading.Event()
    started: dict[str, Any] = {}
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():  # before anything is printed: Ctrl-C stops cleanly
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        for i, (conn_id, zone) in enumerate(clusters.items()):
            emulator = KubeEmulator(conn_id, carbon_zone=zone, port=port + i if port else 0)
            try:
                emulator.start()
            except RuntimeError as exc:
                cause = exc.__cause__ or exc
                raise EmulatorSpecError(f"cannot start the emulator for {conn_id} on port {port + i if port else 'any'} "
                                        f"({type(cause).__name__}: {cause}); choose another --port") from None
            started[conn_id] = emulator
        text = render(connections(started, carbontrace=carbontrace), fmt)
        if write is not None:
            write.write_text(text)
            use = (f"source {shlex.quote(str(write))}" if fmt == "env"
                   else f"airflow connections import --overwrite {shlex.quote(str(write))}")
            err.write(f"wrote {len(started) + int(carbontrace)} connections to {write}; use them with: {use}\n")
        else:
            out.write(text)
        home = next(iter(clusters))
        err.write("emulating " + ", ".join(f"{c} ({z}{', home' if c == home else ''}) at {started[c].url}"
                                           for c, z in clusters.items())
                  + " - Kubernetes API emulators, not real clusters; press Ctrl-C to stop\n")
        err.flush()
        out.flush()
        while not stop.wait(0.5):
            pass
        err.write("stopped the emulators\n")
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for emulator in started.values():
            emulator.stop()


def add_emulator_parser(sub: Any) -> None:
    """Add the ``airflow-carbon emulator`` command to the CLI's subparsers."""
    emu = sub.add_parser(
        "emulator",
        help="emulated Kubernetes clusters on loopback, with their Airflow connections, to try your own DAG",
        description=(
            "Start one Kubernetes API emulator per --clusters item and print the Airflow connections that reach "
            "them (each with its carbon_zone extra), plus carbontrace_default replaying the bundled real trace. "
            "Source the output (or --write a file) before `airflow dags test` of your own DAG; the emulators run "
            "until Ctrl-C. They are emulators, not clusters: pods run for a few seconds and succeed."
        ),
    )
    emu.add_argument("--clusters", default=DEFAULT_CLUSTERS, metavar="ID=ZONE,...",
                     help=f"connection ids and the grid zones they draw from, home first (default {DEFAULT_CLUSTERS})")
    emu.add_argument("--format", choices=FORMATS, default="env",
                     help="env (default): shell export lines of AIRFLOW_CONN_*; json: a file for "
                          "`airflow connections import`")
    emu.add_argument("--write", type=Path, metavar="FILE", help="write the connections to FILE instead of stdout")
    emu.add_argument("--port", type=int, default=0,
                     help="the first emulator's port, the others follow (default 0: free ports, new at every start)")
    emu.add_argument("--no-carbontrace", action="store_true", help="leave out the carbontrace_default connection")
    emu.set_defaults(handler=_run)


def _run(args: argparse.Namespace, out: TextIO) -> int:
    return serve(args.clusters, out=out, err=sys.stderr, fmt=args.format, write=args.write, port=args.port,
                 carbontrace=not args.no_carbontrace)
