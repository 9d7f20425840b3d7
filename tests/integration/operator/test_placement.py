"""Issue 8, placement: the pod runs where the decision says, with that candidate's placement only."""

from __future__ import annotations

import json

import pytest

from airflow_carbon_provider.operators.carbon_aware_pod import CarbonAwareKubernetesPodOperator
from airflow_carbon_provider.scheduling import ScheduleConfigError
from tests.integration.operator.conftest import FakeTI, context_for, pod_args

pytestmark = pytest.mark.integration


def _pods(clusters):
    return {name: em.pods() for name, em in clusters.items() if em.pods()}


@pytest.mark.parametrize("override", [{"config_file": "/etc/kube/config"}, {"cluster_context": "prod"},
                                      {"in_cluster": True}])
def test_operator_level_cluster_overrides_with_several_candidates_are_refused(override):
    """KubernetesHook lets these win over the chosen connection: refuse, one line, naming the fix."""
    with pytest.raises(ScheduleConfigError, match="give them per candidate in cluster_conn_ids") as info:
        CarbonAwareKubernetesPodOperator(**pod_args(**override))
    assert next(iter(override)) in str(info.value) and "\n" not in str(info.value)


def test_a_lone_candidate_keeps_the_operators_cluster_context():
    op = CarbonAwareKubernetesPodOperator(**pod_args(cluster_conn_ids=["k8s_de"], cluster_context="prod"))
    cand = op.carbon_schedule.candidates[0]
    op._place(cand)
    assert op.cluster_context == "prod"


def test_kubernetes_conn_id_outside_the_candidates_is_refused():
    with pytest.raises(ScheduleConfigError, match="kubernetes_conn_id 'k8s_other' is not among cluster_conn_ids"):
        CarbonAwareKubernetesPodOperator(**pod_args(kubernetes_conn_id="k8s_other"))


def test_each_candidate_may_carry_its_own_kubeconfig_context(clusters, monkeypatch, tmp_path):
    """One kubeconfig file, one context per cluster; the candidate's context decides where the pod goes."""
    de, gb = clusters["k8s_de"].kube_config(), clusters["k8s_gb"].kube_config()
    merged = {**de, "clusters": de["clusters"] + gb["clusters"], "users": de["users"] + gb["users"],
              "contexts": de["contexts"] + gb["contexts"], "current-context": "k8s_de"}
    path = tmp_path / "kubeconfig.json"
    path.write_text(json.dumps(merged))
    monkeypatch.setenv("AIRFLOW_CONN_K8S_FLEET", json.dumps({"conn_type": "kubernetes", "extra": {}}))
    op = CarbonAwareKubernetesPodOperator(**pod_args(cluster_conn_ids={
        "de": {"conn_id": "k8s_fleet", "zone": "DE", "config_file": str(path), "cluster_context": "k8s_de"},
        "gb": {"conn_id": "k8s_fleet", "zone": "GB", "config_file": str(path), "cluster_context": "k8s_gb"},
    }))
    ti = FakeTI()
    op.execute(context_for(ti))
    decision = ti.xcom["carbon_decision"]
    assert decision["zone"] == "GB"
    assert list(_pods(clusters)) == ["k8s_gb"]  # the decision's cluster, not the kubeconfig's current one


def test_kubeconfig_from_the_environment_does_not_follow_every_candidate_into_kpos_trigger(clusters, monkeypatch,
                                                                                           tmp_path):
    """KPO hands $KUBECONFIG to its trigger, where it beats the connection: not with several candidates."""
    from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger

    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # Airflow 3.1
        from airflow.exceptions import TaskDeferred

    path = tmp_path / "home-kubeconfig.json"
    path.write_text(json.dumps(clusters["k8s_de"].kube_config()))
    monkeypatch.setenv("KUBECONFIG", str(path))
    op = CarbonAwareKubernetesPodOperator(**pod_args(deferrable=True))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context_for(FakeTI()))
    trigger = deferred.value.trigger
    assert isinstance(trigger, KubernetesPodTrigger)
    assert trigger.kubernetes_conn_id == "k8s_gb" and trigger.config_dict is None
    assert list(_pods(clusters)) == ["k8s_gb"]


def test_a_refused_candidates_placement_does_not_follow_the_pod_to_the_next(clusters):
    """GB refuses (403); the pod on US carries the operator's placement plus US's, nothing of GB's."""
    clusters["k8s_gb"].refuse_pod_creation = 403
    gb_affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "region", "operator": "In", "values": ["uk-south"]}]}]}}}
    op = CarbonAwareKubernetesPodOperator(**pod_args(
        namespace="ml", node_selector={"team": "ml"},
        cluster_conn_ids={
            "k8s_de": "DE",
            "k8s_gb": {"zone": "GB", "namespace": "ml-gb", "node_selector": {"gb-pool": "yes"},
                       "affinity": gb_affinity},
            "k8s_us": {"zone": "US-CAL-CISO", "node_selector": {"us-pool": "yes"}},
        }))
    ti = FakeTI()
    op.execute(context_for(ti))
    decision = ti.xcom["carbon_decision"]
    assert decision["fallbacks"][0]["cluster"] == "k8s_gb" and decision["cluster"] == "k8s_us"
    (pod,) = clusters["k8s_us"].pods()
    assert pod.namespace == "ml"
    assert pod.node_selector == {"team": "ml", "us-pool": "yes"}
    assert pod.affinity in (None, {})
    assert pod.phase == "Succeeded"  # schedulable: nothing of GB's placement came along
    assert decision["zone"] == "US-CAL-CISO"
    # charged the cluster it ran on (US ~205 g/kWh at this moment), every figure derived from that
    us_row = next(r for r in decision["candidates"] if r["cluster"] == "k8s_us")
    assert decision["expected_intensity"] == pytest.approx(us_row["forecast_mean"], rel=0.05)
    assert 150 < decision["expected_intensity"] < 260
    base, exp = decision["baseline_intensity"], decision["expected_intensity"]
    assert decision["expected_saving_pct"] == pytest.approx(100 * (base - exp) / base, abs=0.01)
    assert decision["expected_saving_g"] == pytest.approx(
        decision["baseline_emissions_g"] - decision["expected_emissions_g"])


def test_the_recorded_carbon_source_is_the_one_named_by_the_kubernetes_connection(clusters, monkeypatch):
    """A Kubernetes connection's extra carbon_conn_id plans, and the decision records that source."""
    from airflow_carbon_provider.testing.replay import replay_connection_env
    from tests.integration.operator.conftest import NOW_IN_TRACE

    for name, value in replay_connection_env("trace_gb_own", moment=NOW_IN_TRACE).items():
        monkeypatch.setenv(name, value)
    for name, value in clusters["k8s_gb"].connection_env("k8s_gb", carbon_conn_id="trace_gb_own").items():
        monkeypatch.setenv(name, value)
    op = CarbonAwareKubernetesPodOperator(**pod_args())
    ti = FakeTI()
    op.execute(context_for(ti))
    decision = ti.xcom["carbon_decision"]
    assert decision["cluster"] == "k8s_gb"
    assert decision["carbon_conn_id"] == "trace_gb_own"
    row = next(r for r in decision["candidates"] if r["cluster"] == "k8s_gb")
    assert row["carbon_conn_id"] == "trace_gb_own"
