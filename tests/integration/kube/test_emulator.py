"""The Kubernetes API emulator, driven by real clients: the official ``kubernetes`` client,
``kubernetes_asyncio``, Airflow's Kubernetes hooks, and the real ``KubernetesPodOperator`` in
sync and deferrable mode through ``dag.test()``."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import kubernetes_asyncio.client as async_client
import kubernetes_asyncio.config as async_config
import kubernetes_asyncio.watch as async_watch
import pytest
from kubernetes import client, config, watch
from kubernetes.stream import stream

from airflow_carbon_provider.testing.kube_emulator import (
    EXIT_CODE_KEY,
    FAIL_KEY,
    LOG_KEY,
    XCOM_KEY,
    KubeEmulator,
    KubeletTiming,
    connections_env,
    start_clusters,
)
from tests.integration.kube.conftest import FAST, AirflowHome, DagRunResults

pytestmark = pytest.mark.integration


def core_api(emulator: KubeEmulator) -> client.CoreV1Api:
    """Return a sync CoreV1Api configured from the emulator's kubeconfig."""
    configuration = client.Configuration()
    config.load_kube_config_from_dict(emulator.kube_config(), client_configuration=configuration)
    return client.CoreV1Api(client.ApiClient(configuration))


def pod_body(name: str, *, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """Return a minimal pod manifest as the clients send it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}, "annotations": spec.pop("annotations", {})},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {"name": "base", "image": "busybox:1.36", "command": ["echo"], "args": ["hi", name]}
            ],
            **spec,
        },
    }


def wait_for_phase(
    api: client.CoreV1Api, name: str, phase: str, namespace: str = "default", since: str | None = None
) -> list[str]:
    """Watch one pod until it reaches ``phase``; return the phases seen on the way.

    With ``since`` (a resourceVersion) the watch replays every change after it, so the
    phases seen do not depend on how fast this test runs.
    """
    seen: list[str] = []
    stream = watch.Watch()
    for event in stream.stream(
        api.list_namespaced_pod,
        namespace,
        field_selector=f"metadata.name={name}",
        resource_version=since,
        timeout_seconds=30,
    ):
        seen.append(event["object"].status.phase)
        if event["object"].status.phase == phase:
            stream.stop()
    assert seen and seen[-1] == phase, seen
    return seen


def http_get(emulator: KubeEmulator, path: str) -> tuple[int, dict[str, Any]]:
    """GET a path with urllib and return the status and the JSON body."""
    try:
        with urllib.request.urlopen(emulator.url + path, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# --------------------------------------------------------------------------- official clients


def test_sync_client_runs_a_pod_through_its_whole_life(kube_emulator: KubeEmulator):
    api = core_api(kube_emulator)
    created = api.create_namespaced_pod("default", pod_body("p1", labels={"app": "demo"}))
    assert created.metadata.uid
    assert int(created.metadata.resource_version) > 0
    assert created.metadata.creation_timestamp is not None
    assert created.status.phase == "Pending"

    phases = wait_for_phase(api, "p1", "Succeeded", since=created.metadata.resource_version)
    assert phases[0] == "Pending"
    assert "Running" in phases

    pod = api.read_namespaced_pod("p1", "default")
    assert int(pod.metadata.resource_version) > int(created.metadata.resource_version)
    assert pod.spec.node_name == "k8s_test-node-1"
    assert pod.status.pod_ip and pod.status.host_ip and pod.status.start_time
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert {c.type for c in pod.status.conditions} >= {"PodScheduled", "Ready", "ContainersReady"}

    raw = api.read_namespaced_pod_log("p1", "default", follow=True, timestamps=True, _preload_content=False)
    lines = raw.data.decode().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "[emulator] container base started on node k8s_test-node-1 of cluster k8s_test",
        "+ echo hi p1",
        "[emulator] container base exited with code 0",
    ]
    assert lines[0].split(" ", 1)[0].endswith("Z")

    api.patch_namespaced_pod("p1", "default", {"metadata": {"labels": {"already_checked": "True"}}})
    assert api.read_namespaced_pod("p1", "default").metadata.labels == {
        "app": "demo",
        "already_checked": "True",
    }
    assert api.read_namespaced_pod_status("p1", "default").status.phase == "Succeeded"
    reasons = [
        e.reason for e in api.list_namespaced_event("default", field_selector="involvedObject.name=p1").items
    ]
    assert reasons[:2] == ["Scheduled", "Pulled"]

    api.delete_namespaced_pod("p1", "default")
    with pytest.raises(client.ApiException) as missing:
        api.read_namespaced_pod("p1", "default")
    assert missing.value.status == 404
    assert json.loads(missing.value.body)["kind"] == "Status"

    (record,) = kube_emulator.pods()
    assert record.labels == {"app": "demo", "already_checked": "True"}
    assert record.phase == "Succeeded"
    assert (
        record.created_at
        <= record.scheduled_at
        <= record.started_at
        <= record.finished_at
        <= record.deleted_at
    )
    assert kube_emulator.request_count("POST", "/pods") == 1
    assert all(r.authorized for r in kube_emulator.requests)


def test_label_and_field_selectors_are_honoured(kube_emulator: KubeEmulator):
    api = core_api(kube_emulator)
    api.create_namespaced_pod("default", pod_body("a", labels={"app": "x", "tier": "web"}))
    api.create_namespaced_pod("default", pod_body("b", labels={"app": "x", "already_checked": "True"}))
    api.create_namespaced_pod("default", pod_body("c", labels={"app": "y", "airflow-worker": "1"}))

    def names(**kwargs: str) -> list[str]:
        return [p.metadata.name for p in api.list_namespaced_pod("default", **kwargs).items]

    assert names(label_selector="app=x") == ["a", "b"]
    assert names(label_selector="app==x,already_checked!=True") == ["a"]
    assert names(label_selector="!airflow-worker") == ["a", "b"]
    assert names(label_selector="airflow-worker") == ["c"]
    assert names(label_selector="app in (y, z)") == ["c"]
    assert names(label_selector="app notin (y),tier") == ["a"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b", label_selector="app=x") == ["a"]
    with pytest.raises(client.ApiException) as bad:
        api.list_namespaced_pod("default", label_selector="app in (x")
    assert bad.value.status == 400


def test_watch_resumes_from_a_resource_version(kube_emulator: KubeEmulator):
    api = core_api(kube_emulator)
    first = api.create_namespaced_pod("default", pod_body("first"))
    wait_for_phase(api, "first", "Succeeded")
    api.create_namespaced_pod("default", pod_body("second"))
    events = [
        (event["type"], event["object"].metadata.name)
        for event in watch.Watch().stream(
            api.list_namespaced_pod,
            "default",
            resource_version=first.metadata.resource_version,
            timeout_seconds=1,
        )
    ]
    assert ("ADDED", "first") not in events
    assert ("MODIFIED", "first") in events
    assert ("ADDED", "second") in events


async def test_async_client_creates_watches_logs_and_deletes():
    async with KubeEmulator("k8s_async", timing=FAST) as emulator:
        configuration = async_client.Configuration()
        await async_config.load_kube_config_from_dict(
            emulator.kube_config(), client_configuration=configuration
        )
        async with async_client.ApiClient(configuration) as api_client:
            api = async_client.CoreV1Api(api_client)
            created = await api.create_namespaced_pod(
                "jobs", pod_body("ap", labels={"team": "ml"}, annotations={LOG_KEY: "epoch 1\nepoch 2"})
            )
            assert created.metadata.namespace == "jobs"
            listed = await api.list_namespaced_pod("jobs", label_selector="team=ml")
            assert [p.metadata.name for p in listed.items] == ["ap"]

            phases = []
            stream = async_watch.Watch()
            async for event in stream.stream(
                api.list_namespaced_pod,
                "jobs",
                label_selector="team=ml",
                resource_version=created.metadata.resource_version,
                timeout_seconds=30,
            ):
                phases.append(event["object"].status.phase)
                if phases[-1] == "Running":
                    stream.stop()
            assert phases[0] == "Pending" and phases[-1] == "Running"

            # Following the log of a running container streams until the container exits.
            response = await api.read_namespaced_pod_log(
                "ap", "jobs", container="base", follow=True, timestamps=True, _preload_content=False
            )
            text = (await response.read()).decode()
            assert [line.split(" ", 1)[1] for line in text.splitlines()][1:] == [
                "+ echo hi ap",
                "epoch 1",
                "epoch 2",
                "[emulator] container base exited with code 0",
            ]
            pod = await api.read_namespaced_pod("ap", "jobs")
            assert pod.status.phase == "Succeeded"
            await api.delete_namespaced_pod("ap", "jobs")
            assert (await api.list_namespaced_pod("jobs")).items == []
        assert emulator.request_count(path_contains="/log") == 1
        assert any(r.is_watch and r.query.get("watch") == "True" for r in emulator.requests)


def test_exec_answers_only_the_xcom_sidecar_commands(kube_emulator: KubeEmulator):
    api = core_api(kube_emulator)
    body = pod_body("side", annotations={XCOM_KEY: '{"ok": true}'})
    body["spec"]["containers"].append({"name": "airflow-xcom-sidecar", "image": "alpine"})
    created = api.create_namespaced_pod("default", body)
    wait_for_phase(api, "side", "Running", since=created.metadata.resource_version)

    def run(command: list[str]) -> tuple[int, str]:
        session = stream(
            api.connect_get_namespaced_pod_exec,
            "side",
            "default",
            container="airflow-xcom-sidecar",
            command=command,
            stdout=True,
            stderr=True,
            stdin=False,
            tty=False,
            _preload_content=False,
        )
        session.run_forever(timeout=10)
        return session.returncode, session.read_stdout()

    assert run(["sh", "-c", "cat /airflow/xcom/return.json"]) == (0, '{"ok": true}')
    assert run(["ls", "/"])[0] == 126
    # The base container exits on its timer; the sidecar keeps the pod Running until killed.
    assert kube_emulator.pods()[0].phase == "Running"


def test_discovery_and_unknown_endpoints(kube_emulator: KubeEmulator):
    assert http_get(kube_emulator, "/version")[1]["gitVersion"].endswith("-emulator+airflow-carbon")
    assert http_get(kube_emulator, "/api")[1]["versions"] == ["v1"]
    status, body = http_get(kube_emulator, "/apis/batch/v1/namespaces/default/jobs")
    assert status == 404
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "NotFound", 404)
    status, body = http_get(kube_emulator, "/api/v1/namespaces/default/pods/nope/exec")
    assert status == 404 and body["kind"] == "Status"


# --------------------------------------------------------------------------- fault switches


def test_fault_switches(kube_emulator: KubeEmulator):
    api = core_api(kube_emulator)
    api.create_namespaced_pod("default", pod_body("fails", annotations={FAIL_KEY: "true"}))
    api.create_namespaced_pod("default", pod_body("exit3", annotations={EXIT_CODE_KEY: "3"}))
    wait_for_phase(api, "fails", "Failed")
    wait_for_phase(api, "exit3", "Failed")
    terminated = api.read_namespaced_pod("exit3", "default").status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")

    kube_emulator.fail_all_pods = True
    api.create_namespaced_pod("default", pod_body("all-fail"))
    wait_for_phase(api, "all-fail", "Failed")
    kube_emulator.fail_all_pods = False

    for code in (403, 500):
        kube_emulator.refuse_pod_creation = code
        with pytest.raises(client.ApiException) as refused:
            api.create_namespaced_pod("default", pod_body(f"refused-{code}"))
        assert refused.value.status == code
    kube_emulator.refuse_pod_creation = None
    assert [r.phase for r in kube_emulator.pods()] == ["Failed", "Failed", "Failed"]

    kube_emulator.fail_all_pods = True
    kube_emulator.reset()
    assert kube_emulator.pods() == [] and not kube_emulator.fail_all_pods
    assert api.list_namespaced_pod("default").items == []


def test_manual_finish():
    # [START howto_kube_emulator_manual]
    with KubeEmulator("k8s_manual", timing=KubeletTiming(run_duration=None)) as emulator:
        api = core_api(emulator)
        api.create_namespaced_pod("default", pod_body("held"))
        wait_for_phase(api, "held", "Running")
        emulator.finish_pod("default", "held", exit_code=0)
        wait_for_phase(api, "held", "Succeeded")
    # [END howto_kube_emulator_manual]
    assert not emulator.running


def test_node_selector_matches_fake_nodes_or_stays_unschedulable():
    nodes = {"gpu-eu": {"region": "eu-north", "gpu": "true"}, "cpu-us": {"region": "us-west"}}
    with KubeEmulator("k8s_pools", timing=FAST, nodes=nodes) as emulator:
        api = core_api(emulator)
        api.create_namespaced_pod("default", pod_body("eu", nodeSelector={"region": "eu-north"}))
        affinity = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "region", "operator": "In", "values": ["us-west"]}]}
                    ]
                }
            }
        }
        api.create_namespaced_pod("default", pod_body("us", affinity=affinity))
        api.create_namespaced_pod("default", pod_body("nowhere", nodeSelector={"region": "mars"}))
        wait_for_phase(api, "eu", "Succeeded")
        wait_for_phase(api, "us", "Succeeded")
        assert api.read_namespaced_pod("eu", "default").spec.node_name == "gpu-eu"
        assert api.read_namespaced_pod("us", "default").spec.node_name == "cpu-us"
        events = api.list_namespaced_event("default", field_selector="involvedObject.name=nowhere").items
        assert [e.reason for e in events] == ["FailedScheduling"]
        condition = api.read_namespaced_pod("nowhere", "default").status.conditions[0]
        assert (condition.type, condition.status, condition.reason) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        )
        records = {r.name: r for r in emulator.pods()}
        assert records["eu"].node_selector == {"region": "eu-north"}
        assert records["us"].affinity == affinity
        assert records["nowhere"].phase == "Pending" and records["nowhere"].node_name is None


# --------------------------------------------------------------------------- Airflow connections


def test_connection_env_works_with_airflow_kubernetes_hooks(kube_emulator: KubeEmulator, monkeypatch):
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook, KubernetesHook

    # [START howto_kube_emulator_connection]
    env = kube_emulator.connection_env("k8s_se", namespace="batch")
    monkeypatch.setenv("AIRFLOW_CONN_K8S_SE", env["AIRFLOW_CONN_K8S_SE"])
    hook = KubernetesHook(conn_id="k8s_se")
    assert hook.get_namespace() == "batch"
    assert hook.conn_extras["carbon_zone"] == "SE-SE3"  # the emulator's default zone
    # [END howto_kube_emulator_connection]
    assert list(env) == ["AIRFLOW_CONN_K8S_SE"]
    conn = json.loads(env["AIRFLOW_CONN_K8S_SE"])
    assert conn["conn_type"] == "kubernetes"
    assert conn["extra"]["in_cluster"] is False
    assert conn["extra"]["kube_config"]["clusters"][0]["cluster"]["server"] == kube_emulator.url
    hook.core_v1_client.create_namespaced_pod("batch", pod_body("via-hook"))
    assert hook.get_pod("via-hook", "batch").metadata.namespace == "batch"

    async def read_async() -> str:
        return (await AsyncKubernetesHook(conn_id="k8s_se").get_pod("via-hook", "batch")).metadata.uid

    assert asyncio.run(read_async()) == kube_emulator.pods()[0].uid


def test_two_instances_are_independent_clusters():
    with start_clusters({"k8s_a": "SE-SE1", "k8s_b": "DE"}, timing=FAST) as clusters:
        a, b = clusters["k8s_a"], clusters["k8s_b"]
        assert a.port != b.port
        env = connections_env(clusters)
        assert set(env) == {"AIRFLOW_CONN_K8S_A", "AIRFLOW_CONN_K8S_B"}
        assert json.loads(env["AIRFLOW_CONN_K8S_B"])["extra"]["carbon_zone"] == "DE"
        core_api(a).create_namespaced_pod("default", pod_body("only-on-a"))
        b.refuse_pod_creation = 403
        with pytest.raises(client.ApiException):
            core_api(b).create_namespaced_pod("default", pod_body("refused-on-b"))
        assert [p.metadata.name for p in core_api(a).list_namespaced_pod("default").items] == ["only-on-a"]
        assert core_api(b).list_namespaced_pod("default").items == []
        assert [p.name for p in a.pods()] == ["only-on-a"] and b.pods() == []
        assert a.refuse_pod_creation is None


# --------------------------------------------------------------------------- the real KubernetesPodOperator

KPO_DAGS = [
    "emu_sync_xcom",
    "emu_deferrable_xcom",
    "emu_sync",
    "emu_deferrable",
    "emu_sync_fail",
    "emu_deferrable_fail",
    "emu_refused_403",
    "emu_refused_500",
]


@pytest.fixture(scope="module")
def kpo(airflow_home: AirflowHome) -> Iterator[tuple[DagRunResults, dict[str, KubeEmulator]]]:
    """Run every emulator DAG once through ``dag.test()`` against four emulated clusters."""
    # A start delay longer than KPO's first poll makes the operator see the pod Pending.
    # [START howto_kube_emulator_clusters]
    timing = KubeletTiming(schedule_delay=0.1, start_delay=0.8, run_duration=0.8)
    zones = {"k8s_a": "SE-SE1", "k8s_b": "DE", "k8s_refuse_403": "FR", "k8s_refuse_500": "GB"}
    with start_clusters(zones, timing=timing) as clusters:
        clusters["k8s_refuse_403"].refuse_pod_creation = 403
        clusters["k8s_refuse_500"].refuse_pod_creation = 500
        # AIRFLOW_CONN_K8S_A ... AIRFLOW_CONN_K8S_REFUSE_500 for the dag.test() subprocess
        results = airflow_home.run_dags(KPO_DAGS, connections_env(clusters))
        # [END howto_kube_emulator_clusters]
        yield results, clusters


def _assert_state(results: DagRunResults, dag_id: str, state: str) -> None:
    run = results.runs.get(dag_id)
    assert run and run["state"] == state and run["tasks"] == {"pod": state}, (
        f"{dag_id}: {run}\n{results.output[-6000:]}"
    )


def test_kpo_sync_mode_completes_a_pod(kpo):
    results, clusters = kpo
    _assert_state(results, "emu_sync", "success")
    (record,) = [p for p in clusters["k8s_a"].pods() if p.labels.get("dag") == "emu_sync"]
    assert record.phase == "Succeeded" and record.namespace == "batch"
    assert record.labels["kubernetes_pod_operator"] == "True"
    assert record.node_selector == {"kubernetes.io/hostname": "k8s_a-node-1"}
    assert record.deleted_at is not None  # on_finish_action="delete_pod"
    follows = [r for r in clusters["k8s_a"].requests if r.path.endswith(f"/{record.name}/log")]
    assert follows and follows[0].query.get("follow") == "True"
    assert "hello from emu_sync'" in results.output  # the pod log streamed into the task log


def test_kpo_deferrable_mode_completes_a_pod(kpo):
    results, clusters = kpo
    _assert_state(results, "emu_deferrable", "success")
    (record,) = [p for p in clusters["k8s_b"].pods() if p.labels.get("dag") == "emu_deferrable"]
    assert record.phase == "Succeeded" and record.deleted_at is not None
    assert "running trigger in line" in results.output
    assert "hello from emu_deferrable'" in results.output


@pytest.mark.parametrize(
    ("dag_id", "cluster"), [("emu_sync_fail", "k8s_a"), ("emu_deferrable_fail", "k8s_b")]
)
def test_kpo_fails_when_the_pod_fails(kpo, dag_id, cluster):
    results, clusters = kpo
    _assert_state(results, dag_id, "failed")
    (record,) = [p for p in clusters[cluster].pods() if p.labels.get("dag") == dag_id]
    assert record.phase == "Failed" and record.exit_codes == {"base": 1}
    failure = results.outcome(dag_id, "failure")
    assert failure["type"].endswith("AirflowException")
    assert "returned a failure" in failure["message"]


@pytest.mark.parametrize(
    ("dag_id", "status", "attempts"), [("emu_refused_403", 403, 1), ("emu_refused_500", 500, 2)]
)
def test_kpo_surfaces_refused_pod_creation_as_api_exception(kpo, dag_id, status, attempts):
    results, clusters = kpo
    _assert_state(results, dag_id, "failed")
    failure = results.outcome(dag_id, "failure")
    assert failure["type"].startswith("kubernetes.client.exceptions.")
    assert failure["status"] == status
    cluster = clusters[f"k8s_refuse_{status}"]
    assert cluster.pods() == []
    # KPO retries 5xx (AIRFLOW__WORKERS__API_RETRIES=2 in the test home) but not 403.
    assert cluster.request_count("POST", "/pods") == attempts


@pytest.mark.parametrize(
    ("dag_id", "cluster"), [("emu_sync_xcom", "k8s_a"), ("emu_deferrable_xcom", "k8s_b")]
)
def test_kpo_reads_xcom_through_the_sidecar(kpo, dag_id, cluster):
    results, clusters = kpo
    _assert_state(results, dag_id, "success")
    assert results.outcome(dag_id, "success")["xcom"] == {"rows": 42}
    (record,) = [p for p in clusters[cluster].pods() if p.labels.get("dag") == dag_id]
    assert record.containers == ["base", "airflow-xcom-sidecar"]
    assert record.phase == "Succeeded" and record.exit_codes == {"base": 0, "airflow-xcom-sidecar": 0}
    # One exec reads /airflow/xcom/return.json, one kills the sidecar.
    assert clusters[cluster].request_count("GET", f"/{record.name}/exec") == 2


def test_kpo_runs_reach_only_their_own_cluster(kpo):
    _, clusters = kpo
    assert {p.labels["dag"] for p in clusters["k8s_a"].pods()} == {
        "emu_sync",
        "emu_sync_fail",
        "emu_sync_xcom",
    }
    assert {p.labels["dag"] for p in clusters["k8s_b"].pods()} == {
        "emu_deferrable",
        "emu_deferrable_fail",
        "emu_deferrable_xcom",
    }
    assert {p.cluster for p in clusters["k8s_a"].pods()} == {"k8s_a"}
