"""Issue 8: one pod per task instance across clusters and tries; on time whatever the carbon API does."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from kubernetes import client, config

from airflow_carbon_provider.operators.carbon_aware_pod import ARRIVAL_KEY, CarbonAwareKubernetesPodOperator
from airflow_carbon_provider.testing.kube_emulator import RUN_SECONDS_KEY
from tests.integration.operator.conftest import FakeStore, FakeTI, context_for, pod_args

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred

pytestmark = pytest.mark.integration
UTC = timezone.utc


def _api(emulator) -> client.CoreV1Api:
    configuration = client.Configuration()
    config.load_kube_config_from_dict(emulator.kube_config(), client_configuration=configuration)
    return client.CoreV1Api(client.ApiClient(configuration))


def _start_try_one_pod(emulator, ti: FakeTI, *, namespace: str = "default", **extra_labels: str) -> str:
    """Create, as try 1's worker did before it died, a long-running pod with KPO's labels."""
    labels = {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id, "kubernetes_pod_operator": "True",
              "try_number": "1", **extra_labels}
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "train-try1", "labels": labels, "annotations": {RUN_SECONDS_KEY: "600"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "base", "image": "busybox"}]}}
    _api(emulator).create_namespaced_pod(namespace, body)
    deadline = time.monotonic() + 10
    while emulator.pod(namespace, "train-try1")["status"].get("phase") != "Running":
        assert time.monotonic() < deadline, "try 1's pod never ran"
        time.sleep(0.05)
    return "train-try1"


def _finish_once_watched(emulator, name: str) -> None:
    """Finish the pod once KPO reads it by name (it has reattached and waits for it)."""
    deadline = time.monotonic() + 30
    while emulator.request_count("GET", f"/pods/{name}") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    emulator.finish_pod("default", name)


def _live(clusters):
    return {(name, p.name) for name, em in clusters.items() for p in em.pods() if p.deleted_at is None
            and p.phase not in ("Succeeded", "Failed")}


def test_a_retry_reattaches_to_the_live_pod_of_try_one_on_another_cluster(clusters):
    """Try 1's pod runs on k8s_us; try 2 would plan k8s_gb. It must not start a second pod."""
    ti = FakeTI(try_number=2)
    name = _start_try_one_pod(clusters["k8s_us"], ti)
    op = CarbonAwareKubernetesPodOperator(**pod_args())
    finisher = threading.Thread(target=_finish_once_watched, args=(clusters["k8s_us"], name), daemon=True)
    finisher.start()
    op.execute(context_for(ti))
    finisher.join()
    decision = ti.xcom["carbon_decision"]
    assert decision["cluster"] == "k8s_us" and decision["reattached_pod"] == name
    assert not clusters["k8s_gb"].pods() and not clusters["k8s_de"].pods()
    assert [p.name for p in clusters["k8s_us"].pods()] == [name]


def test_without_reattach_a_retry_deletes_the_earlier_pod_before_starting_elsewhere(clusters):
    ti = FakeTI(try_number=2)
    name = _start_try_one_pod(clusters["k8s_us"], ti)
    op = CarbonAwareKubernetesPodOperator(**pod_args(reattach_on_restart=False))
    op.execute(context_for(ti))
    assert ti.xcom["carbon_decision"]["cluster"] == "k8s_gb"
    (old,) = clusters["k8s_us"].pods()
    assert old.name == name and old.deleted_at is not None
    assert _live(clusters) == set()  # the earlier pod is gone and the new one finished


def test_a_retry_deletes_a_pod_its_try_gave_up_that_still_runs(clusters):
    """Try 1 timed out and KPO's clean-up labelled its still-running pod already_checked (it keeps
    unsucceeded pods with delete_succeeded_pod): KPO would never reattach and would start a second
    pod. Found by tests/realk8s through the real task runner."""
    ti = FakeTI(try_number=2)
    name = _start_try_one_pod(clusters["k8s_us"], ti, already_checked="True")
    op = CarbonAwareKubernetesPodOperator(**pod_args(on_finish_action="delete_succeeded_pod"))
    op.execute(context_for(ti))
    decision = ti.xcom["carbon_decision"]
    assert decision["cluster"] == "k8s_gb" and "reattached_pod" not in decision
    (old,) = clusters["k8s_us"].pods()
    assert old.name == name and old.deleted_at is not None
    (new,) = clusters["k8s_gb"].pods()
    assert old.deleted_at <= new.created_at  # never two live pods at once
    assert _live(clusters) == set()


def test_the_first_try_does_not_search_the_other_clusters(clusters):
    op = CarbonAwareKubernetesPodOperator(**pod_args())
    op.execute(context_for(FakeTI()))
    # planning reads every candidate's inventory (cluster-wide /api/v1/pods); the search for
    # an earlier try's pod is namespaced, and only the chosen cluster gets it
    assert clusters["k8s_us"].request_count("GET", "/api/v1/pods") == 1
    assert clusters["k8s_us"].request_count("GET", "/namespaces/") == 0
    assert clusters["k8s_de"].request_count("GET", "/namespaces/") == 0


def test_max_delay_counts_from_the_first_try_not_each_retry(clusters):
    """A retry an hour later plans with the latest start of try 1 (anchored in the task state store)."""
    store = FakeStore()
    first = datetime.now(UTC) - timedelta(hours=1)
    op = CarbonAwareKubernetesPodOperator(**pod_args(max_delay="2h"))
    assert op._arrival(context_for(FakeTI(start_date=first), store), first) == first
    assert store.values[ARRIVAL_KEY].startswith(first.isoformat()[:19])
    retry_start = datetime.now(UTC)
    assert op._arrival(context_for(FakeTI(try_number=2, start_date=retry_start), store), retry_start) == first
    # without a store (Airflow before 3.3) each try counts from its own start
    assert op._arrival(context_for(FakeTI(try_number=2, start_date=retry_start)), retry_start) == retry_start


def test_kpo_deferrable_execution_timeout_counts_from_the_pod_start_not_the_carbon_wait(clusters):
    """The task started 3 h ago and waited for its window; the pod gets its whole execution_timeout."""
    ti = FakeTI(start_date=datetime.now(UTC) - timedelta(hours=3))
    op = CarbonAwareKubernetesPodOperator(**pod_args(deferrable=True, execution_timeout=timedelta(hours=1)))
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context_for(ti))
    if not _kpo_hands_its_trigger_an_execution_deadline():
        # cncf-kubernetes 10.13.0 (Airflow 3.1's constraints) defers with no timeout at all:
        # nothing counts the carbon wait against the pod there either.
        assert deferred.value.timeout is None
        return
    assert deferred.value.timeout > timedelta(minutes=59)
    deadline = deferred.value.trigger.trigger_kwargs["_execution_deadline"]
    assert before + 3600 - 5 <= deadline <= time.time() + 3600


def _kpo_hands_its_trigger_an_execution_deadline() -> bool:
    import inspect

    from airflow.providers.cncf.kubernetes.operators import pod

    return "_execution_deadline" in inspect.getsource(pod)


def _hanging_carbon_env(monkeypatch, url: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CARBONTRACE_DEFAULT", json.dumps({
        "conn_type": "electricitymaps", "host": url, "password": "hang-key-123"}))


def test_a_hanging_carbon_api_at_planning_costs_the_budget_not_minutes(clusters, monkeypatch, silent_server):
    """Default settings, API hanging from the start: the pod is created well within 60 s of task start."""
    _hanging_carbon_env(monkeypatch, silent_server)
    ti = FakeTI()
    started = datetime.now(UTC)
    op = CarbonAwareKubernetesPodOperator(**pod_args(max_delay="6h"))
    op.execute(context_for(ti))
    decision = ti.xcom["carbon_decision"]
    assert decision["fail_open"] is True and decision["cluster"] == "k8s_de"
    assert "planning budget" in decision["reason"]
    (pod,) = clusters["k8s_de"].pods()
    assert (pod.created_at - started).total_seconds() < 60
    assert "hang-key-123" not in json.dumps(decision)


def test_a_hanging_carbon_api_after_the_trigger_fires_delays_the_pod_by_the_budget_at_most(clusters, monkeypatch,
                                                                                         silent_server):
    """The trigger fired at the latest start; the re-check and the post-run fetch must not wait minutes."""
    op = CarbonAwareKubernetesPodOperator(**pod_args(max_delay="6h"))
    ti = FakeTI()
    planned = op.carbon_schedule.plan(datetime.now(UTC), datetime.now(UTC)).to_xcom()
    _hanging_carbon_env(monkeypatch, silent_server)  # the API hangs from here on
    fired = datetime.now(UTC)
    event = {"status": "start", "cluster": planned["chosen_key"], "planned_start": fired.isoformat(),
             "fired_at": fired.isoformat(), "replans": 3, "api_errors": 0}
    op.execute_complete(context_for(ti), event=event, decision={**planned, "phase": "waiting"})
    (pod,) = clusters["k8s_gb"].pods()
    assert (pod.created_at - fired).total_seconds() < 15
    assert (datetime.now(UTC) - fired).total_seconds() < 30  # the realised-intensity fetch is bounded too


def test_planning_timeout_is_validated_at_parse_time():
    from airflow_carbon_provider.scheduling import ScheduleConfigError

    with pytest.raises(ScheduleConfigError, match="planning_timeout must be seconds between"):
        CarbonAwareKubernetesPodOperator(**pod_args(planning_timeout=1e9))
