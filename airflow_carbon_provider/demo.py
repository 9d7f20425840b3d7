"""``airflow-carbon demo``: the example training DAG, end to end, on the embedded default.

No account and no cluster of yours: carbon data is the real Electricity Maps trace bundled
with the package, replayed so that the coming minute is 2023-03-15 22:59-23:00 UTC (the
hour when Great Britain's grid got much cleaner while Germany's stayed dirty); the three
"clusters" are Kubernetes API emulators on loopback; Airflow runs the DAG with ``dag.test()``
through its real task runner, with SQLite in a temporary ``AIRFLOW_HOME`` unless one is set.
Time is compressed: the job is declared one minute long, so the whole demo takes about one.

``dag.test()`` runs the trigger in line, in the process that runs the task, so here the wait
frees nothing; under a real triggerer the same wait holds no worker slot. The baseline
("running now at home") is priced from the moment the task plans. The replayed 23:00 comes
``LEAD`` after the DAG run is launched, and the run takes a while to reach the task (start
``dag.test()``, parse the DAG, start the task): the longer that takes, the later the plan,
so the baseline, the saving and the wait vary a little from run to run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

__all__ = ["DEMO_DAG_ID", "run_demo"]

UTC = timezone.utc
DEMO_DAG_ID = "example_carbon_aware_training"
DEMO_TASK_ID = "fine_tune"
LEAD = timedelta(seconds=40)  # the run reaches the task in ~10-15 s when idle, so it waits ~25-30 s


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def run_demo(fmt: str = "table", out: TextIO | None = None, err: TextIO | None = None,
             lead: timedelta = LEAD, ledger_url: str | None = None) -> int:
    """Run the demo; print a summary (or one JSON object as the last line); return the exit status.

    :param lead: how long after the launch the replayed moment comes (``--lead``); on a slow
        machine the run may reach its task only after it, and then starts without waiting.
    :param ledger_url: where the demo records its run (``--ledger-url``); default
        :func:`demo_ledger_url`, never the ledger real tasks use.
    """
    from airflow_carbon_provider.testing.kube_emulator import KubeletTiming, connections_env, start_clusters
    from airflow_carbon_provider.testing.replay import DEMO_CLUSTERS, DEMO_MOMENT, replay_connection_env
    from airflow_carbon_provider.testing.sandbox import AirflowSandbox, example_dags_folder

    out = out or sys.stdout
    err = err or sys.stderr
    started = time.monotonic()
    home_env = os.environ.get("AIRFLOW_HOME")
    sandbox = AirflowSandbox(Path(home_env) if home_env else None)
    say = (lambda text: err.write(text + "\n")) if fmt == "json" else (lambda text: out.write(text + "\n"))
    try:
        sandbox.add_dag_file(example_dags_folder() / f"{DEMO_DAG_ID}.py")
        say(f"airflow-carbon demo: DAG {DEMO_DAG_ID}, end to end, on the embedded default")
        say(f"  Airflow home : {sandbox.home} (SQLite; dag.test() through the Airflow 3 task runner)")
        say("  clusters     : " + ", ".join(f"{c} ({z}{', home' if i == 0 else ''})"
                                            for i, (c, z) in enumerate(DEMO_CLUSTERS.items()))
            + " - Kubernetes API emulators on loopback, not real clusters")
        say(f"  carbon data  : real Electricity Maps data (ODbL) replayed from {_iso(DEMO_MOMENT - lead)}: at "
            f"{DEMO_MOMENT:%H:%M} UTC on {DEMO_MOMENT:%Y-%m-%d} Great Britain's grid fell from 139 to 101 "
            "gCO2eq/kWh while Germany stayed near 500, so waiting and moving both pay")
        # The demo's runs go to a ledger of their own, never the one real tasks record into
        # (the default one, $AIRFLOW_CARBON_LEDGER_URL or a ledger connection), so a report of
        # production runs never mixes in demo runs. It persists, so it can be read afterwards.
        ledger_url = ledger_url or demo_ledger_url()
        say(f"  ledger       : {_masked(ledger_url)}, the demo's own (read it afterwards with: "
            f"airflow-carbon report --ledger-url {_masked(ledger_url)})")
        say("  preparing the Airflow database ...")
        sandbox.migrate()
        timing = KubeletTiming(schedule_delay=0.1, start_delay=0.3, run_duration=2.0)
        with start_clusters(DEMO_CLUSTERS, timing=timing) as clusters:
            now = datetime.now(UTC).replace(microsecond=0)  # the replay's anchor: DEMO_MOMENT is now + lead
            conf = {"expected_duration": "1m", "finish_by": _iso(now + timedelta(minutes=4))}
            env = {**connections_env(clusters), **replay_connection_env(lead=lead, now=now),
                   "AIRFLOW_CARBON_LEDGER_URL": ledger_url}
            say(f"  running the DAG with conf {json.dumps(conf)}; the window opens in {lead.total_seconds():.0f} s ...")
            result = sandbox.run_dag(DEMO_DAG_ID, conf, env=env)
            pods = {name: [p.name for p in emulator.pods()] for name, emulator in clusters.items()}
        report = _report(result.data, pods)
        if fmt == "json":
            out.write(json.dumps(report) + "\n")
        else:
            for line in _summary(report, time.monotonic() - started, launched=now, lead=lead):
                out.write(line + "\n")
        if report["state"] != "success":
            err.write(f"the demo DAG run ended {report['state']}; Airflow's output ends with:\n{result.output[-3000:]}\n")
            return 1
        return 0
    finally:
        sandbox.close()


def demo_ledger_url() -> str:
    """Return the demo's own ledger, ``$AIRFLOW_HOME/carbon_demo_ledger.db``, creating its folder.

    ``$AIRFLOW_HOME`` defaults to ``~/airflow``, as for Airflow itself; the name differs from
    the default ledger's (``carbon_ledger.db``) so demo runs never mix with real ones.
    """
    home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'carbon_demo_ledger.db'}"


def _masked(url: str) -> str:
    from airflow_carbon_provider.ledger.config import mask_url

    return mask_url(url)


def _report(data: dict[str, Any], pods: dict[str, list[str]]) -> dict[str, Any]:
    tasks = []
    for task in data.get("tasks", []):
        xcom = data.get("xcom", {}).get(task["task_id"], {})
        tasks.append({"task_id": task["task_id"], "state": task["state"],
                      "carbon_decision": xcom.get("carbon_decision"), "pod_name": xcom.get("pod_name")})
    report: dict[str, Any] = {"dag_id": data.get("dag_id", DEMO_DAG_ID), "state": data.get("state"),
                              "run_id": data.get("run_id"), "tasks": tasks, "pods_by_cluster": pods}
    if "error" in data or "errors" in data:
        report["error"] = data.get("error") or data.get("errors")
    return report


def _summary(report: dict[str, Any], elapsed: float, *, launched: datetime | None = None,
             lead: timedelta = LEAD) -> list[str]:
    """Return the table output; ``launched``, when the run started (the replay's anchor), explains the baseline."""
    from airflow_carbon_provider.testing.replay import DEMO_MOMENT

    lines = [""]
    for task in report["tasks"]:
        d = task.get("carbon_decision") or {}
        lines.append(f"{task['task_id']}: {task['state']}")
        if not d:
            continue
        lines.append(f"  decision : {d.get('reason')}")
        decided = datetime.fromisoformat(d["decided_at"].replace("Z", "+00:00"))
        actual = datetime.fromisoformat(d["actual_start"].replace("Z", "+00:00")) if d.get("actual_start") else None
        if d.get("waited") and actual is not None:
            waited = (actual - decided).total_seconds()
            lines.append(f"  deferred : {waited:.0f} s in CarbonWindowTrigger, then started at {d['actual_start']} "
                         "(dag.test() runs the trigger in line in this process; under a real triggerer the "
                         "wait holds no worker slot)")
        lines.append(f"  ran on   : {d.get('cluster')} ({d.get('zone')}); home was {d.get('home_cluster')} "
                     f"({d.get('home_zone')}); pod {task.get('pod_name')}")
        if d.get("expected_saving_pct") is not None:
            lines.append(
                f"  saving   : {d['expected_saving_pct']:.1f} % against running now at home: "
                f"{_grams(d.get('expected_intensity'), '', '.4g')} vs {_grams(d.get('baseline_intensity'), '', '.4g')} "
                "gCO2eq/kWh; "
                f"{_grams(d.get('expected_emissions_g'))} instead of {_grams(d.get('baseline_emissions_g'))} for this "
                f"{d.get('expected_duration_s', 0) / 60:g}-minute, {_grams(d.get('power_watts'), ' W', '.6g')} job")
            if launched is not None:
                reached = (decided - launched).total_seconds()
                before = (launched + lead - decided).total_seconds()
                when = (f"{before:.0f} s before {DEMO_MOMENT:%H:%M} UTC replayed" if before > 0
                        else f"{-before:.0f} s after {DEMO_MOMENT:%H:%M} UTC replayed")
                lines.append(f"  baseline : running now on {d.get('home_cluster')} ({d.get('home_zone')}) as the task "
                             f"planned, {when}, {reached:.0f} s after the run was launched; a slower start "
                             "plans later and changes the baseline, the saving and the wait")
                if before <= 0:
                    lines.append(f"  note     : the run reached its task after the replayed moment, so there was "
                                 f"nothing left to wait for; on a slow machine rerun with --lead "
                                 f"{int(lead.total_seconds()) * 2}s")
        if d.get("fallbacks"):
            lines.append(f"  fallbacks: {d['fallbacks']}")
    lines.append(f"DAG run {report['run_id']}: {report['state']} in {elapsed:.0f} s")
    return lines


def _grams(value: object, unit: str = " g", spec: str = ".3g") -> str:
    """Round a figure for display only (the decision keeps it unrounded): three significant digits."""
    return f"{value:{spec}}{unit}" if isinstance(value, (int, float)) else f"{value}{unit}"
