"""A throwaway PostgreSQL server for the ledger's integration tests, started from Debian's binaries."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Postgres:
    """A throwaway PostgreSQL server on loopback."""

    bindir: Path
    data: Path
    port: int
    as_user: list[str]

    @property
    def url(self) -> str:
        return f"postgresql://carbon@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        cmd = [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"pg_ctl {args[0]} failed: {done.stdout}{done.stderr}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.ctl("-o", options, "-l", str(self.data.parent / "server.log"), "start")

    def stop(self) -> None:
        self.ctl("-m", "fast", "stop")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """Start PostgreSQL in a temporary folder (as the ``postgres`` user when the tests run as root)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL server binaries are missing (/usr/lib/postgresql/*/bin/initdb): .ci/run should have "
                    "installed Debian's postgresql package; install it with: apt-get install -y postgresql")
    bindir = Path(found[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="carbon-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("tests run as root but there is no 'postgres' user to run the server as; "
                        "Debian's postgresql package creates it (.ci/run installs it)")
        os.chown(base, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    done = subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "carbon", "--auth=trust",
                           "-E", "UTF8", "--no-sync"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    server = Postgres(bindir, data, _free_port(), as_user)
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        except AssertionError:
            pass
        shutil.rmtree(base, ignore_errors=True)


