"""Issue 14 item 4: clusters named by cloud region plan on their grid zones' data, end to end through the operator."""

from __future__ import annotations

import pytest

from airflow_carbon_provider.operators.carbon_aware_pod import CarbonAwareKubernetesPodOperator
from tests.integration.operator.conftest import FakeTI, context_for, pod_args

pytestmark = pytest.mark.integration

REGIONS = {"k8s_de": "aws:eu-central-1", "k8s_gb": "azure:uksouth", "k8s_us": "aws:us-west-1"}


def test_clusters_named_by_cloud_region_plan_on_their_zones_and_the_decision_shows_both(clusters, monkeypatch):
    for conn_id, region in REGIONS.items():
        for name, value in clusters[conn_id].connection_env(conn_id, carbon_zone=region).items():
            monkeypatch.setenv(name, value)
    ti = FakeTI()
    CarbonAwareKubernetesPodOperator(**pod_args()).execute(context_for(ti))
    decision = ti.xcom["carbon_decision"]
    assert (decision["home_zone"], decision["home_where"]) == ("DE", "aws:eu-central-1")
    rows = {row["cluster"]: (row["zone"], row["where"]) for row in decision["candidates"]}
    assert rows == {"k8s_de": ("DE", "aws:eu-central-1"), "k8s_gb": ("GB", "azure:uksouth"),
                    "k8s_us": ("US-CAL-CISO", "aws:us-west-1")}
    assert not decision["fail_open"] and decision["cluster"] == "k8s_gb"  # GB is the cleanest then (see conftest)
    assert "(azure:uksouth \u2192 GB)" in decision["reason"] and "(aws:eu-central-1 \u2192 DE)" in decision["reason"]
