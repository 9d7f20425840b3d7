"""How long a carbon API that hangs delays a carbon-aware pod (issue 8, item 6).

Runs the real operator in this process against emulated clusters, with the carbon
connection pointing at a loopback server that accepts connections and never answers:

1. hanging from the start: how long after the task starts the pod is created;
2. hanging after the window trigger fired at the latest start: how long after firing.

Run from the repository root: ``PYTHONPATH=. python benchmarks/bench_hanging_api.py``.
Default settings (``planning_timeout`` 5 s). Before 0.2.0 the same runs took over 6 minutes.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
from datetime import datetime, timedelta, timezone


def main() -> None:
    """Measure both cases once and print one line each."""
    from airflow_carbon_provider.operators.carbon_aware_pod import CarbonAwareKubernetesPodOperator
    from airflow_carbon_provider.testing.kube_emulator import connections_env, start_clusters
    from airflow_carbon_provider.testing.replay import DEMO_CLUSTERS, replay_connection_env
    from tests.integration.operator.conftest import FAST, NOW_IN_TRACE, FakeTI, context_for, pod_args

    utc = timezone.utc
    home = tempfile.mkdtemp()
    os.environ["AIRFLOW_CARBON_LEDGER_URL"] = f"sqlite:///{home}/ledger.db"
    os.environ["AIRFLOW_CARBON_LEDGER_SPOOL"] = f"{home}/spool.jsonl"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        for _ in range(1000):  # bounded: a few connections per run
            held.append(sock.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    silent = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with start_clusters(DEMO_CLUSTERS, timing=FAST) as clusters:
        os.environ.update(connections_env(clusters))
        os.environ.update(replay_connection_env(moment=NOW_IN_TRACE, lead=timedelta(0)))
        planned = CarbonAwareKubernetesPodOperator(**pod_args(max_delay="6h")).carbon_schedule.plan(
            datetime.now(utc), datetime.now(utc)).to_xcom()
        os.environ["AIRFLOW_CONN_CARBONTRACE_DEFAULT"] = json.dumps(
            {"conn_type": "electricitymaps", "host": silent, "password": "bench-key-1"})

        started = datetime.now(utc)
        CarbonAwareKubernetesPodOperator(**pod_args(max_delay="6h")).execute(context_for(FakeTI(start_date=started)))
        (pod,) = clusters["k8s_de"].pods()
        print(f"API hanging from the start: pod created {(pod.created_at - started).total_seconds():.1f} s after "
              f"task start; task done after {(datetime.now(utc) - started).total_seconds():.1f} s")

        for emulator in clusters.values():
            emulator.reset()
        fired = datetime.now(utc)
        CarbonAwareKubernetesPodOperator(**pod_args(max_delay="6h")).execute_complete(
            context_for(FakeTI()), event={"status": "start", "cluster": planned["chosen_key"]},
            decision={**planned, "phase": "waiting"})
        (pod,) = clusters[planned["chosen_cluster"]].pods()
        print(f"API hanging after the trigger fired: pod created {(pod.created_at - fired).total_seconds():.1f} s "
              f"after firing; task done after {(datetime.now(utc) - fired).total_seconds():.1f} s")
    sock.close()


if __name__ == "__main__":
    main()
