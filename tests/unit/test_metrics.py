"""Metrics reach a real StatsD receiver (a UDP socket) through Airflow's own Stats."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    from airflow_carbon_provider import metrics
    from tests.unit.ledger.conftest import sample_decision
    from airflow_carbon_provider.ledger.realised import realised_outcome
    from datetime import datetime, timezone

    decision = sample_decision(errors={"k8s_fr": "CarbonServerError 503"}, fail_open=True, signal="marginal",
                               fallbacks=[{"cluster": "k8s_fr", "error": "ApiException 403"}])
    metrics.emit_decision(decision, dag_id="train", task_id="fine.tune")
    def offline(_):
        raise RuntimeError("offline")
    outcome = realised_outcome(decision, datetime(2026, 11, 27, 4, tzinfo=timezone.utc), hook_for=offline)
    metrics.emit_outcome(outcome, dag_id="train", task_id="fine.tune")
    metrics.emit_reservations_held("k8s_gb", 3)
    metrics.emit_reservation_refused("k8s@ctx[pool=a]", "nvidia.com/gpu")
    print("emitted")
""")


def test_metric_lines_arrive_at_a_statsd_receiver(tmp_path):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(20)
    env = {
        **os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(receiver.getsockname()[1]),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow", "PYTHONPATH": str(ROOT),
    }
    try:
        done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0 and "emitted" in done.stdout, done.stderr[-2000:]
        lines = set()
        receiver.settimeout(0.5)  # everything was sent before the child exited
        try:
            while True:
                lines.update(receiver.recv(65536).decode().splitlines())
        except TimeoutError:
            pass
    finally:
        receiver.close()
    expected = {
        "airflow.carbon.intensity.GB:100.0|g",
        "airflow.carbon.intensity.DE:400.0|g",
        "airflow.carbon.decision.expected_saving_pct.marginal.forecast.train.fine_tune:75.0|g",
        "airflow.carbon.api_errors.train.fine_tune:1|c",
        "airflow.carbon.fail_open.train.fine_tune:1|c",
        # kind and basis in the name: a StatsD dashboard cannot add marginal to average grams by accident
        "airflow.carbon.task.emissions_g.marginal.forecast.train.fine_tune:40.0|g",
        "airflow.carbon.task.baseline_emissions_g.marginal.forecast.train.fine_tune:160.0|g",
        "airflow.carbon.task.saving_g.marginal.forecast.train.fine_tune:120.0|g",
        "airflow.carbon.cluster.runs.k8s_gb:1|c",
        "airflow.carbon.fallbacks.k8s_fr:1|c",
        "airflow.carbon.reservations.held.k8s_gb:3|g",
        "airflow.carbon.reservations.refused.k8s_ctx_pool_a_.nvidia_com_gpu:1|c",
    }
    assert expected <= lines, sorted(lines)
    delay = [line for line in lines if line.startswith("airflow.carbon.task.delay.train.fine_tune:")]
    assert len(delay) == 1 and delay[0].endswith("|ms") and float(delay[0].split(":")[1][:-3]) == 7_200_000


def test_metrics_without_a_backend_are_silent():
    from airflow_carbon_provider import metrics

    metrics.emit_outcome({"emissions_g": "not a number"}, dag_id="d", task_id="t")  # never raises
    metrics.emit_reservations_held("k8s_gb", "not a number")  # type: ignore[arg-type]
    metrics.emit_reservation_refused("k8s@ctx[pool=a]", "nvidia.com/gpu")


class _Recorder:
    def __init__(self):
        self.calls = []

    def gauge(self, name, value, tags=None):
        self.calls.append((name, value, tags))

    def incr(self, name, *args, tags=None):
        self.calls.append((name, args, tags))

    def timing(self, name, value, tags=None):
        self.calls.append((name, value, tags))


def test_saving_and_emission_metrics_carry_kind_and_basis_in_name_and_tags(monkeypatch):
    from airflow_carbon_provider import metrics

    recorder = _Recorder()
    monkeypatch.setattr(metrics, "stats", lambda: recorder)
    metrics.emit_outcome({"emissions_g": 1.0, "baseline_emissions_g": 3.0, "saving_g": 2.0, "cluster": "c",
                          "signal_kind": "average", "basis": "realised"}, dag_id="d", task_id="t")
    metrics.emit_outcome({"saving_g": 5.0, "cluster": "c"}, dag_id="d", task_id="t")  # recorded before 0.2.0
    metrics.emit_decision({"expected_saving_pct": 50.0, "signal": "marginal"}, dag_id="d", task_id="t")
    gauges = {name: tags for name, _value, tags in recorder.calls if ".task." in name or "expected" in name}
    assert set(gauges) == {
        "carbon.task.emissions_g.average.realised.d.t", "carbon.task.baseline_emissions_g.average.realised.d.t",
        "carbon.task.saving_g.average.realised.d.t", "carbon.task.saving_g.unknown.unknown.d.t",
        "carbon.decision.expected_saving_pct.marginal.forecast.d.t"}
    assert gauges["carbon.task.saving_g.average.realised.d.t"]["signal_kind"] == "average"
    assert gauges["carbon.task.saving_g.average.realised.d.t"]["basis"] == "realised"
    assert gauges["carbon.task.saving_g.unknown.unknown.d.t"]["signal_kind"] == "unknown"
    assert gauges["carbon.decision.expected_saving_pct.marginal.forecast.d.t"]["basis"] == "forecast"
