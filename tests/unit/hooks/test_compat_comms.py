"""Which task-SDK comms can answer an asynchronous connection read: the one rule in hooks._compat."""

from __future__ import annotations

import pytest
from airflow.sdk.execution_time import task_runner

from airflow_carbon_provider.hooks import _compat


class _NoAsend:  # dag.test()'s in-process comms
    def send(self, msg):
        return None


class _PlaceholderAsend(_NoAsend):  # a worker's comms on Airflow 3.1 (task SDK 1.1)
    async def asend(self, msg):
        """Send without blocking."""
        raise NotImplementedError


class _RealAsend(_NoAsend):  # a worker on 3.2+, any triggerer
    async def asend(self, msg):
        return self.send(msg)


@pytest.mark.parametrize(
    ("comms", "only_sync"),
    [(None, False), (_NoAsend(), True), (_PlaceholderAsend(), True), (_RealAsend(), False)],
    ids=["no comms", "no asend", "placeholder asend", "real asend"],
)
def test_comms_without_a_working_asend_answer_only_synchronously(monkeypatch, comms, only_sync):
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    assert _compat._comms_answer_only_synchronously() is only_sync


def test_the_installed_triggerer_comms_answer_asynchronously():
    from airflow.jobs.triggerer_job_runner import TriggerCommsDecoder

    assert not _compat._only_raises_not_implemented(TriggerCommsDecoder.asend)


async def test_a_placeholder_asend_reads_the_connection_synchronously(monkeypatch):
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", _PlaceholderAsend(), raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_SOME_API", '{"conn_type": "http", "extra": {"zone": "DE"}}')

    class Hook:
        def get_connection(self, conn_id):
            from airflow.sdk import BaseHook

            return BaseHook.get_connection(conn_id)

    conn, extras = await _compat.aget_connection_and_extras(Hook(), "some_api")  # type: ignore[arg-type]
    assert conn.conn_id == "some_api" and extras == {"zone": "DE"}
