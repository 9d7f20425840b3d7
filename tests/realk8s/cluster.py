"""Real Kubernetes control planes on loopback: etcd, kube-apiserver, kube-scheduler and kwok.

One :class:`RealCluster` is one independent cluster: its own etcd, an apiserver with static
token authentication and ``--authorization-mode=Node,RBAC``, the real scheduler and a kwok
controller that simulates the nodes and moves pods Pending -> Running -> Succeeded with the
stages in ``stages.yaml`` (kwok cannot run containers, so there are no pod logs: the log path is
tested on the emulator). Every process is our child, started in its own session and stopped by
its PID (SIGTERM, then SIGKILL); the data directory is removed afterwards.

The binaries come from ``build.sh`` (cached per version under ``~/.cache``); nothing here
downloads anything. Traffic goes to 127.0.0.1 only: nodes advertise 127.0.0.1 and pod IPs
come from 127.1.0.0/16 (kwok's default pod range is private and not ours to use).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
STAGES = HERE / "stages.yaml"
K8S_VERSION = "v1.36.3"  # keep in step with build.sh
BINARIES = ("etcd", "kube-apiserver", "kube-scheduler", "kwok")
#: The user the Airflow connections authenticate as; RBAC grants it pods in our namespaces only.
AIRFLOW_USER = "airflow"
#: Pod annotation read by the kwok stages: how long the pod's containers "run" (a Go duration).
RUN_FOR = "realk8s.airflow-carbon/run-for"
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
#: What the airflow user may do in its namespaces (what KubernetesPodOperator needs).
POD_VERBS = ["create", "get", "list", "watch", "delete", "patch", "update"]


def cache_root() -> Path:
    """Return the folder the binaries are cached in, keyed by Kubernetes version (as build.sh does)."""
    base = os.environ.get("AIRFLOW_CARBON_K8S_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "airflow-carbon-provider" / "k8s"
    )
    return Path(base) / K8S_VERSION


def bin_dir() -> Path:
    """Return the folder holding the four binaries."""
    return cache_root() / "bin"


def missing_binaries() -> list[str]:
    """Return the binaries not built yet."""
    return [name for name in BINARIES if not os.access(bin_dir() / name, os.X_OK)]


def build_binaries(timeout: float = 3600) -> None:
    """Run ``build.sh`` (tens of minutes the first time on two cores; instant once cached)."""
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], timeout=timeout, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class NodeSpec:
    """A kwok node: its name, labels and what the scheduler may place on it."""

    name: str
    labels: dict[str, str]
    allocatable: dict[str, str] = field(
        default_factory=lambda: {"cpu": "32", "memory": "128Gi", "pods": "110", "nvidia.com/gpu": "4"}
    )


@dataclass
class RealCluster:
    """One real control plane on loopback. Use :meth:`start` and :meth:`stop`, or ``with``.

    :param name: the cluster's name and its Airflow connection id (such as ``k8s_gb``).
    :param zone: the grid zone its connection's extra ``carbon_zone`` names.
    :param nodes: kwok nodes to create.
    :param namespaces: namespaces to create, each with a ``default`` service account and a Role
        for the airflow user (there is no controller-manager to create service accounts).
    """

    name: str
    zone: str
    nodes: list[NodeSpec]
    namespaces: tuple[str, ...] = ("default", "ml")
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="realk8s-")))
    startup_seconds: float | None = None
    kubeconfig_path: Path | None = None
    admin_token: str = field(default_factory=lambda: base64.urlsafe_b64encode(os.urandom(18)).decode())
    user_token: str = field(default_factory=lambda: base64.urlsafe_b64encode(os.urandom(18)).decode())
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _ports: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 120) -> RealCluster:
        """Start etcd, the apiserver, the scheduler and kwok; create namespaces, RBAC and nodes."""
        started = time.monotonic()
        try:
            self._prepare_files()
            self._start_etcd()
            self._wait(lambda: self._http_ok(f"http://127.0.0.1:{self._ports['etcd']}/health"), "etcd", timeout)
            self.start_apiserver(timeout)
            self._spawn("kube-scheduler", [
                "--kubeconfig", str(self._write_kubeconfig("admin")), "--leader-elect=false",
                "--secure-port=0", "-v=1",
            ])
            self._spawn("kwok", [
                "--kubeconfig", str(self._write_kubeconfig("admin")), "--config", str(STAGES),
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={'='.join(KWOK_NODE_ANNOTATION)}",
                "--node-ip=127.0.0.1", "--cidr=127.1.0.0/16",
            ])
            self._bootstrap(timeout)
            self.kubeconfig_path = self._write_kubeconfig(AIRFLOW_USER)  # what the connection holds
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def start_apiserver(self, timeout: float = 120) -> None:
        """Start (or restart) kube-apiserver on this cluster's port and wait until it is ready."""
        port = self._ports.setdefault("apiserver", free_port())
        certs = self.workdir / "certs"
        self._spawn("kube-apiserver", [
            f"--etcd-servers=http://127.0.0.1:{self._ports['etcd']}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
            "--tls-cert-file=" + str(certs / "apiserver.crt"),
            "--tls-private-key-file=" + str(certs / "apiserver.key"),
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={self.workdir / 'sa.pub'}",
            f"--service-account-signing-key-file={self.workdir / 'sa.key'}",
            "--service-cluster-ip-range=10.254.0.0/24",  # allocation only: no Service is ever dialled
            "--enable-priority-and-fairness=false", "--profiling=false", "--allow-privileged=true",
            "--endpoint-reconciler-type=none", "-v=1",
        ])
        self._wait(lambda: self._http_ok(f"{self.server}/readyz", token=self.admin_token), "kube-apiserver", timeout)

    def kill_apiserver(self) -> None:
        """Kill kube-apiserver at once (SIGKILL): the cluster goes away mid-run."""
        self._stop_process("kube-apiserver", grace=0)

    def stop(self) -> None:
        """Stop every process by PID (SIGTERM, then SIGKILL after 10 s) and remove the data."""
        for name in ("kwok", "kube-scheduler", "kube-apiserver", "etcd"):
            self._stop_process(name, grace=10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RealCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _stop_process(self, name: str, grace: float) -> None:
        proc = self._procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        if grace:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
                return
            except subprocess.TimeoutExpired:
                pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def _spawn(self, name: str, args: list[str]) -> None:
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        with open(logs / f"{name}.log", "ab") as out:
            self._procs[name] = subprocess.Popen(
                [str(bin_dir() / name), *args], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, start_new_session=True,  # Ctrl-C on pytest must not reach them first
            )

    def log_tail(self, name: str, chars: int = 3000) -> str:
        """Return the end of one process's log (for failure messages)."""
        path = self.workdir / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def _wait(self, ready: Any, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self._procs.get(what)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{self.name}: {what} exited with {proc.returncode}:\n{self.log_tail(what)}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: {what} not ready after {timeout:.0f} s:\n{self.log_tail(what)}")

    # ------------------------------------------------------------------ files

    def _prepare_files(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.workdir.mkdir(parents=True, exist_ok=True)
        self._ports["etcd"], self._ports["etcd-peer"] = free_port(), free_port()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.workdir / "sa.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
        (self.workdir / "sa.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        self._write_serving_cert()
        (self.workdir / "tokens.csv").write_text(
            f'{self.admin_token},admin,admin,"system:masters"\n{self.user_token},{AIRFLOW_USER},{AIRFLOW_USER}\n')
        os.chmod(self.workdir / "tokens.csv", 0o600)

    def _write_serving_cert(self) -> None:
        """Write a CA and a serving certificate for 127.0.0.1, so clients verify TLS for real."""
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"realk8s-ca-{self.name}")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        certs = self.workdir / "certs"
        certs.mkdir(exist_ok=True)
        (certs / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        (certs / "apiserver.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (certs / "apiserver.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def _start_etcd(self) -> None:
        client, peer = self._ports["etcd"], self._ports["etcd-peer"]
        self._spawn("etcd", [
            "--name=default", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{client}", f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync",  # test data: durability buys nothing and costs the shared disk
            "--log-level=warn",
        ])

    # ------------------------------------------------------------------ access

    @property
    def server(self) -> str:
        """Return the apiserver's URL."""
        return f"https://127.0.0.1:{self._ports['apiserver']}"

    @property
    def ca_file(self) -> Path:
        """Return the CA certificate the apiserver's serving certificate chains to."""
        return self.workdir / "certs" / "ca.crt"

    def kube_config(self, user: str = AIRFLOW_USER, namespace: str = "default") -> dict[str, Any]:
        """Return a kubeconfig for ``user`` (``airflow`` or ``admin``) with the CA inline."""
        token = self.admin_token if user == "admin" else self.user_token
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": self.name, "preferences": {},
            "clusters": [{"name": self.name, "cluster": {"server": self.server, "certificate-authority-data": ca}}],
            "users": [{"name": f"{self.name}-{user}", "user": {"token": token}}],
            "contexts": [{"name": self.name, "context": {
                "cluster": self.name, "user": f"{self.name}-{user}", "namespace": namespace}}],
        }

    def _write_kubeconfig(self, user: str) -> Path:
        path = self.workdir / f"kubeconfig-{user}.json"
        path.write_text(json.dumps(self.kube_config(user)))
        os.chmod(path, 0o600)
        return path

    def connection_env(self, conn_id: str | None = None, **extra: Any) -> dict[str, str]:
        """Return ``{"AIRFLOW_CONN_<ID>": json}``: a ``kubernetes`` connection as the airflow user."""
        extras = {"kube_config": self.kube_config(), "in_cluster": False, "carbon_zone": self.zone, **extra}
        conn = {"conn_type": "kubernetes", "description": f"real kube-apiserver {K8S_VERSION} {self.name!r}",
                "extra": extras}
        return {f"AIRFLOW_CONN_{(conn_id or self.name).upper()}": json.dumps(conn)}

    def admin_api(self, retries: int | None = None) -> Any:
        """Return a ``kubernetes`` CoreV1Api authenticated as the cluster admin.

        :param retries: urllib3's connection retries (its default when ``None``); the watcher
            uses 0, so an apiserver a test killed costs one refused connection, not a retry storm.
        """
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config_from_dict(self.kube_config("admin"), client_configuration=configuration)
        configuration.retries = retries
        return client.CoreV1Api(client.ApiClient(configuration))

    def rbac_api(self) -> Any:
        """Return a ``kubernetes`` RbacAuthorizationV1Api as the cluster admin."""
        from kubernetes import client, config

        return client.RbacAuthorizationV1Api(config.new_client_from_config_dict(self.kube_config("admin")))

    def _http_ok(self, url: str, token: str | None = None) -> bool:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        context = ssl.create_default_context(cafile=str(self.ca_file)) if url.startswith("https") else None
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    # ------------------------------------------------------------------ objects

    def _bootstrap(self, timeout: float) -> None:
        api = self.admin_api()
        for namespace in self.namespaces:
            self.add_namespace(namespace, api=api)
        for node in self.nodes:
            api.create_node({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": node.name, "labels": {"kubernetes.io/hostname": node.name, **node.labels},
                             "annotations": dict([KWOK_NODE_ANNOTATION])},
                "status": {"allocatable": node.allocatable, "capacity": node.allocatable},
            })
        self._wait(lambda: self._nodes_ready(api), "kwok", timeout)
        # The TaintNodesByCondition admission plugin creates every node with the
        # node.kubernetes.io/not-ready:NoSchedule taint; the node lifecycle controller of
        # kube-controller-manager lifts it once the node is Ready. There is no
        # controller-manager here, so the fixture does that one job.
        for node in self.nodes:
            api.patch_node(node.name, {"spec": {"taints": None}})

    def add_namespace(self, namespace: str, api: Any = None) -> None:
        """Create a namespace, its default service account and the airflow user's Role there."""
        from kubernetes.client.exceptions import ApiException

        api = api or self.admin_api()
        with contextlib.suppress(ApiException):
            api.create_namespace({"metadata": {"name": namespace}})
        with contextlib.suppress(ApiException):
            api.create_namespaced_service_account(namespace, {"metadata": {"name": "default"}})
        rbac = self.rbac_api()
        rbac.create_namespaced_role(namespace, {
            "metadata": {"name": "airflow-pods"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": POD_VERBS},
                {"apiGroups": [""], "resources": ["pods/log", "pods/status"], "verbs": ["get", "list"]},
                {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
            ],
        })
        rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": "airflow-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "airflow-pods"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": AIRFLOW_USER}],
        })

    @contextlib.contextmanager
    def forbid_pod_creation(self, namespace: str) -> Iterator[None]:
        """Drop ``create`` on pods from the airflow user's Role in ``namespace``, then restore it."""
        rbac = self.rbac_api()
        role = rbac.read_namespaced_role("airflow-pods", namespace)
        original = copy.deepcopy(role.rules)
        role.rules[0].verbs = [v for v in POD_VERBS if v != "create"]
        rbac.replace_namespaced_role("airflow-pods", namespace, role)
        try:
            yield
        finally:
            role = rbac.read_namespaced_role("airflow-pods", namespace)
            role.rules = original
            rbac.replace_namespaced_role("airflow-pods", namespace, role)

    def _nodes_ready(self, api: Any) -> bool:
        ready = 0
        for node in api.list_node().items:
            conditions = {c.type: c.status for c in (node.status.conditions or [])}
            ready += conditions.get("Ready") == "True"
        return ready == len(self.nodes)

    def pods(self, namespace: str | None = None) -> list[Any]:
        """Return the pods that exist now (as the admin sees them)."""
        api = self.admin_api()
        items = api.list_namespaced_pod(namespace).items if namespace else api.list_pod_for_all_namespaces().items
        return list(items)

    def delete_all_pods(self) -> None:
        """Delete every pod in our namespaces now (between tests)."""
        api = self.admin_api()
        for namespace in self.namespaces:
            api.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)


def start_clusters(specs: Mapping[str, tuple[str, list[NodeSpec]]], **kwargs: Any) -> dict[str, RealCluster]:
    """Start one :class:`RealCluster` per ``{name: (zone, nodes)}`` in parallel; stop all if one fails."""
    clusters = {name: RealCluster(name, zone, nodes, **kwargs) for name, (zone, nodes) in specs.items()}
    errors: list[BaseException] = []

    def start(cluster: RealCluster) -> None:
        try:
            cluster.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(c,), daemon=True) for c in clusters.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        for cluster in clusters.values():
            cluster.stop()
        raise errors[0]
    return clusters
