"""The operator with fleet coordination, on emulated clusters: the reservation's whole life.

A full greenest cluster sends the task to the next best, and the decision says which capacity
limited it; the pod carries the reserved label (so the inventory does not count it twice);
the reservation is released when the pod finishes, and also when every candidate refused it.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow_carbon_provider.ledger.reservations import active, reserve
from airflow_carbon_provider.ledger.store import Ledger
from airflow_carbon_provider.operators.carbon_aware_pod import CarbonAwareKubernetesPodOperator
from airflow_carbon_provider.scheduling.fleet import RESERVED_LABEL
from tests.integration.operator.conftest import FakeTI, context_for, pod_args

UTC = timezone.utc
CANDIDATES = {"k8s_de": {"zone": "DE", "capacity": 4}, "k8s_gb": {"zone": "GB", "capacity": 1},
              "k8s_us": {"zone": "US-CAL-CISO", "capacity": 4}}


def _ledger() -> Ledger:
    return Ledger(os.environ["AIRFLOW_CARBON_LEDGER_URL"])


def _held(ledger: Ledger) -> list:
    now = datetime.now(UTC)
    return active(list(CANDIDATES), now - timedelta(hours=1), now + timedelta(hours=2), now=now, ledger=ledger)


def test_a_full_greenest_cluster_sends_the_pod_to_the_next_and_the_reservation_ends_with_it(clusters):
    ledger = _ledger()
    now = datetime.now(UTC)
    assert reserve("another-task", "k8s_gb", now - timedelta(minutes=1), now + timedelta(hours=1),
                   {"pods": 1}, capacity=None, ledger=ledger).reserved
    op = CarbonAwareKubernetesPodOperator(**pod_args(cluster_conn_ids=CANDIDATES))
    ti = FakeTI()
    op.execute(context_for(ti))
    decision = ti.xcom["carbon_decision"]
    assert decision["cluster"] == "k8s_us" and not clusters["k8s_gb"].pods()
    assert decision["fleet"]["limited_by"] == [["k8s_gb", "pods"]]
    assert decision["fleet"]["reservation"] == "reserved"
    assert "k8s_gb was full (pods 1 of 1" in decision["reason"]
    assert decision["fleet"]["sources"]["k8s_us"] == "cluster+declared"  # the emulator's node was read
    (pod,) = clusters["k8s_us"].pods()
    assert pod.labels.get(RESERVED_LABEL) == "true"
    assert [b.cluster_id for b in _held(ledger)] == ["k8s_gb"]  # ours was released when the pod finished


def test_coordinate_off_neither_reserves_nor_labels(clusters):
    op = CarbonAwareKubernetesPodOperator(**pod_args(cluster_conn_ids=CANDIDATES, coordinate=False))
    ti = FakeTI()
    op.execute(context_for(ti))
    assert "fleet" not in ti.xcom["carbon_decision"]
    (pod,) = clusters["k8s_gb"].pods()
    assert RESERVED_LABEL not in pod.labels
    assert _held(_ledger()) == []


def test_when_every_cluster_refuses_the_pod_the_reservation_is_released(clusters):
    for emulator in clusters.values():
        emulator.refuse_pod_creation = 403
    op = CarbonAwareKubernetesPodOperator(**pod_args(cluster_conn_ids=CANDIDATES))
    ti = FakeTI()
    try:
        op.execute(context_for(ti))
    except Exception:
        pass
    else:
        raise AssertionError("every cluster refused the pod, yet the task succeeded")
    assert ti.xcom["carbon_decision"]["phase"] == "failed"
    assert _held(_ledger()) == []
