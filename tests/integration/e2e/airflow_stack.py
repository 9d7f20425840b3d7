"""Run real Airflow 3 services (api-server, scheduler, dag-processor, triggerer) for a test.

Each service is a separate process group with its output in a file, so one of them can be
killed and restarted while the others keep running, and every assertion message can carry
the tail of every log. Nothing here is a pytest fixture: the test module builds the fixtures.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

#: Every Airflow setting the test process may carry is dropped from the children's environment.
_SCRUBBED_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")


def free_port() -> int:
    """Return a TCP port on loopback that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_command(*args: str) -> list[str]:
    """Return the command line of the venv's ``airflow`` console script with ``args``."""
    script = Path(sys.executable).with_name("airflow")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "airflow", *args]


def base_env(home: Path, *, api_port: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment of every Airflow process of a throwaway ``AIRFLOW_HOME``.

    LocalExecutor on SQLite with two worker slots keeps memory modest on two shared cores;
    the log servers get free ports so parallel test sessions cannot collide. ``PYTHONPATH`` is
    dropped, so the services import this provider from the installed distribution only.
    """
    from cryptography.fernet import Fernet

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_SCRUBBED_PREFIXES) and key not in ("AIRFLOW_HOME", "PYTHONPATH")
    }
    api = f"http://127.0.0.1:{api_port}"
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def migrate(home: Path, env: Mapping[str, str], timeout: float = 240) -> None:
    """Run ``airflow db migrate`` for ``home``; fail with its output if it fails."""
    proc = subprocess.run(
        airflow_command("db", "migrate"), env=dict(env), cwd=home, capture_output=True, text=True,
        timeout=timeout, check=False,
    )
    assert proc.returncode == 0, f"airflow db migrate failed:\n{(proc.stdout + proc.stderr)[-6000:]}"


@dataclass
class Service:
    """One running Airflow command in its own process group, output in ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def running(self) -> bool:
        """Return whether the process is still alive."""
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        """Return the end of the service's output."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"<no output: {exc}>"
        return text[-chars:]

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 20.0) -> None:
        """Send ``sig`` to the service's whole process group and wait for the leader to exit."""
        if self.running:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=timeout)
        # Children of the group (task runners, trigger runners) must not outlive it.
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate gracefully; kill the process group if it does not exit in ``timeout``."""
        self.kill(signal.SIGTERM, timeout=timeout)


@dataclass
class AirflowStack:
    """The Airflow services of one ``AIRFLOW_HOME``, plus a REST client for its API server."""

    home: Path
    env: dict[str, str]
    api_port: int
    services: list[Service] = field(default_factory=list)
    #: The REST API's bearer token, once it asked for one (Airflow 3.1).
    token: str | None = None

    @property
    def api_url(self) -> str:
        """Return the API server's base URL."""
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, name: str, *args: str) -> Service:
        """Start ``airflow <args>`` as a new process group; output goes to ``<home>/services``."""
        logs = self.home / "services"
        logs.mkdir(exist_ok=True)
        index = sum(1 for s in self.services if s.name.split("#")[0] == name) + 1
        label = f"{name}#{index}"
        path = logs / f"{name}-{index}.log"
        with path.open("wb") as out:
            popen = subprocess.Popen(
                airflow_command(*args), env=self.env, cwd=self.home, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        service = Service(label, popen, path)
        self.services.append(service)
        return service

    def close(self) -> None:
        """Stop every service, newest first; never raises."""
        for service in reversed(self.services):
            try:
                service.stop()
            except Exception as exc:  # cleanup must reach every service
                print(f"could not stop {service.name}: {exc!r}", file=sys.stderr)

    def diagnostics(self, chars: int = 2500) -> str:
        """Return the tail of every service's output and task log, for assertion messages."""
        parts = []
        for service in self.services:
            state = "running" if service.running else f"exited {service.popen.returncode}"
            parts.append(f"----- {service.name} ({state}), {service.log} -----\n{service.tail(chars)}")
        for task_log in iter_files(self.home / "logs", "attempt=*.log*"):
            text = task_log.read_text(errors="replace")[-chars:]
            parts.append(f"----- {task_log.relative_to(self.home)} -----\n{text}")
        return "\n".join(parts)

    # -- REST -------------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the public REST API, with a bearer token once the API server asks for one.

        On Airflow 3.2+ the all-admins simple auth manager needs no token; on 3.1 it answers
        401 without one, and hands one out, without credentials, at ``GET /auth/token``. A
        401 with a token (expired) fetches a new one.
        """
        url = f"{self.api_url}/api/v2{path}"
        response = httpx.request(method, url, timeout=30, headers=self._auth_headers(), **kwargs)
        if response.status_code == 401:
            self.token = None
            response = httpx.request(method, url, timeout=30, headers=self._auth_headers(fetch=True), **kwargs)
        return response

    def _auth_headers(self, fetch: bool = False) -> dict[str, str]:
        if fetch and self.token is None:
            got = httpx.get(f"{self.api_url}/auth/token", timeout=30)
            if got.is_success:  # 201 Created on 3.1
                self.token = got.json()["access_token"]
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def api_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API and return the JSON body; fail with the body on an error status."""
        response = self.api(method, path, **kwargs)
        assert response.status_code < 400, (
            f"{method} {path} -> {response.status_code}: {response.text[:2000]}\n{self.diagnostics()}"
        )
        return response.json()

    def health(self) -> dict[str, Any] | None:
        """Return the API server's health document, or ``None`` while it is not answering."""
        try:
            response = self.api("GET", "/monitor/health")
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    # -- waiting ----------------------------------------------------------------------------

    def wait_for(
        self, what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1.0,
        must_run: tuple[Service, ...] | None = None,
    ) -> T:
        """Poll ``probe`` until it returns a truthy value; fail with every log on timeout.

        Fails early if a service that must keep running (default: all started ones that are
        still meant to run) has exited.
        """
        deadline = time.monotonic() + timeout
        watched = must_run if must_run is not None else tuple(s for s in self.services if s.running)
        last: Any = None
        while True:
            last = probe()
            if last:
                return last
            dead = [s for s in watched if not s.running]
            assert not dead, (
                f"while waiting for {what}: {', '.join(s.name for s in dead)} exited\n{self.diagnostics()}"
            )
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.diagnostics()}")
            time.sleep(interval)


def json_value(value: Any) -> Any:
    """Return an XCom value from the REST API as Python data (it may arrive as a JSON string)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def iter_files(folder: Path, pattern: str) -> Iterator[Path]:
    """Yield the files under ``folder`` matching ``pattern``, sorted."""
    yield from sorted(p for p in folder.rglob(pattern) if p.is_file())
