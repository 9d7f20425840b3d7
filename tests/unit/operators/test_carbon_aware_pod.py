"""CarbonAwareKubernetesPodOperator at parse time: KPO's interface kept, bad input refused."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

from airflow_carbon_provider.core.emissions import PowerModel
from airflow_carbon_provider.operators.carbon_aware_pod import CarbonAwareKubernetesPodOperator
from airflow_carbon_provider.scheduling import CandidateRow, ClusterCandidate, Decision, ScheduleConfigError

T0 = datetime(2026, 11, 27, tzinfo=timezone.utc)


def _op(**kw):
    args = {"task_id": "train", "image": "busybox", "cluster_conn_ids": ["k8s_de", "k8s_se"],
            "expected_duration": "4h", "max_delay": "12h"}
    args.update(kw)
    return CarbonAwareKubernetesPodOperator(**args)


def test_it_is_a_kubernetes_pod_operator_with_all_its_parameters():
    op = _op(namespace="ml", cmds=["python"], arguments=["train.py"], labels={"team": "ml"},
             deferrable=True, get_logs=False, on_finish_action="keep_pod")
    assert isinstance(op, KubernetesPodOperator)
    assert (op.namespace, op.cmds, op.arguments, op.labels, op.deferrable) == (
        "ml", ["python"], ["train.py"], {"team": "ml"}, True)
    assert set(KubernetesPodOperator.template_fields) < set(op.template_fields)
    assert "deadline" in op.template_fields


def test_without_cluster_conn_ids_it_time_shifts_on_kubernetes_conn_id():
    op = CarbonAwareKubernetesPodOperator(task_id="t", image="busybox", kubernetes_conn_id="k8s_home",
                                          expected_duration="1h", max_delay="6h")
    assert [c.conn_id for c in op.carbon_schedule.candidates] == ["k8s_home"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cluster_conn_ids": []}, "'train': cluster_conn_ids is empty"),
        ({"cluster_conn_ids": {"k8s_de": "not a zone"}}, "is not a zone key"),
        ({"cluster_conn_ids": {"a": {"zone": "DE", "signal": "average"},
                               "b": {"zone": "CAISO_NORTH", "signal": "marginal"}}}, "mixes average and marginal"),
        ({"expected_duration": "-4h"}, "is negative"),
        ({"max_delay": None}, "give max_delay"),
        ({"deadline": "2026-01-01T08:00:00Z"}, "not both"),
        ({"power_watts": -3}, "power_watts must be a number >= 0"),
        ({"policy": "cheapest"}, "policy 'cheapest' is unknown"),
    ],
)
def test_parse_time_errors(kwargs, message):
    with pytest.raises(ScheduleConfigError, match=message) as info:
        _op(**kwargs)
    assert "\n" not in str(info.value)


def test_power_from_resources_gpus_included():
    """2 cores x 2.12 + 8 GiB x 0.392 + 1 GPU x 250 = 257.376 W."""
    op = _op(container_resources=k8s.V1ResourceRequirements(
        requests={"cpu": "2", "memory": "8Gi"}, limits={"nvidia.com/gpu": "1"}))
    watts, source = op.estimated_power_watts()
    assert watts == pytest.approx(257.376) and source == "container_resources"
    assert _op(power_watts=400).estimated_power_watts() == (400.0, "power_watts")
    custom = _op(power_model=PowerModel(watts_per_gpu=700), container_resources=k8s.V1ResourceRequirements(
        limits={"nvidia.com/gpu": "2"}))
    assert custom.estimated_power_watts()[0] == pytest.approx(1400)
    watts, source = _op().estimated_power_watts()
    assert source.startswith("default") and watts == pytest.approx(2.12 + 0.392)


def _decision(chosen: str = "k8s_se", **kw) -> Decision:
    """Return a plan made at T0 to start k8s_se at T0 + 2 h: 100 g/kWh against 400 at home (k8s_de) now."""
    rows = (CandidateRow(ClusterCandidate("k8s_de", "DE", carbon_conn_id="em")),
            CandidateRow(ClusterCandidate("k8s_se", "SE", carbon_conn_id="em")))
    args = {"expected_intensity": 100.0, "baseline_intensity": 400.0, "reason": "SE is cleaner in 2 h", **kw}
    return Decision("carbon-aware", rows, "k8s_de", chosen, T0 + timedelta(hours=2), None, T0 + timedelta(hours=12),
                    T0, T0, **args)


def test_emissions_are_derived_from_the_decision():
    record = _op(power_watts=500)._with_power(_decision()).to_xcom()
    # 500 W for 4 h = 2 kWh: 200 g expected, 800 g at home now, 600 g saved
    assert (record["expected_emissions_g"], record["baseline_emissions_g"], record["expected_saving_g"]) == (
        200.0, 800.0, 600.0)
    assert record["expected_duration_s"] == timedelta(hours=4).total_seconds()


def test_a_failed_or_timed_out_window_trigger_still_starts_the_pod(monkeypatch):
    """__fail__ from the scheduler (trigger timeout) while waiting: start on the planned cluster."""
    op = _op()
    waiting = _decision(phase="waiting").to_xcom()
    ti = SimpleNamespace(map_index=-1, xcom_pull=lambda **kw: dict(waiting))
    started = []
    monkeypatch.setattr(op, "_start_pod", lambda context, record: started.append(record) or "ran")
    assert op.resume_execution("__fail__", {"error": "Trigger timeout"}, {"ti": ti}) == "ran"
    record = started[0].to_xcom()
    assert record["trigger"] == {"status": "trigger_failed", "error": "Trigger timeout"}
    assert record["chosen_cluster"] == "k8s_se"


def test_a_failure_that_is_not_the_window_trigger_fails_as_kpo_would():
    try:
        from airflow.sdk.exceptions import TaskDeferralError
    except ImportError:  # Airflow 3.1
        from airflow.exceptions import TaskDeferralError

    op = _op()
    running = _decision(phase="running").to_xcom()
    ti = SimpleNamespace(map_index=-1, xcom_pull=lambda **kw: dict(running))
    with pytest.raises(TaskDeferralError):
        op.resume_execution("__fail__", {"error": "pod trigger crashed"}, {"ti": ti})


def test_an_undefined_kubernetes_connection_is_a_config_error_not_a_data_error(monkeypatch):
    op = _op(cluster_conn_ids=["k8s_nowhere"])
    monkeypatch.delenv("AIRFLOW_CONN_K8S_NOWHERE", raising=False)
    with pytest.raises(ScheduleConfigError, match="Kubernetes connection 'k8s_nowhere' is not defined"):
        op.carbon_schedule.resolve()


def test_the_carbon_decision_link_sits_beside_kpos_own_links():
    names = [link.name for link in _op().operator_extra_links]
    assert "Carbon decision" in names
    assert all(link.name in names for link in KubernetesPodOperator.operator_extra_links)


def test_the_carbon_decision_link_opens_the_task_page(monkeypatch):
    from airflow_carbon_provider.links.carbon import CarbonDecisionLink, carbon_task_url

    key = SimpleNamespace(dag_id="nightly", run_id="manual__2026-11-27T20:00:00+00:00", task_id="train",
                          map_index=3)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.org/")
    url = CarbonDecisionLink().get_link(_op(), ti_key=key)
    assert url.startswith("https://airflow.example.org/carbon/ui/task?")
    assert "dag_id=nightly" in url and "task_id=train" in url and "map_index=3" in url
    assert "run_id=manual__2026-11-27T20%3A00%3A00%2B00%3A00" in url
    assert carbon_task_url("d", "r", "t", None, base_url="").startswith("/carbon/ui/task?")


def test_a_replan_that_changes_the_expected_intensity_refreshes_every_saving_figure():
    """The trigger's re-plan found 50 g/kWh where the plan said 100: no figure keeps the old value."""
    op = _op(power_watts=500)
    decision = op._with_power(_decision())
    assert decision.to_xcom()["expected_saving_pct"] == 75.0
    record = decision.after_trigger({"cluster": "k8s_se", "expected_intensity": 50.0}).to_xcom()
    # 500 W for 4 h = 2 kWh: 100 g expected, 800 g at home now
    assert record["expected_saving_pct"] == 87.5
    assert (record["expected_emissions_g"], record["baseline_emissions_g"], record["expected_saving_g"]) == (
        pytest.approx(100.0), pytest.approx(800.0), pytest.approx(700.0))
