"""Issue 9 item 16: plan from a carbon connection whose secret is known; the secret goes nowhere.

The Electricity Maps connection below really serves the plan (the loopback server answers
only requests that carry its key, and the decision's figures are the served values), so the
test proves what it claims: the key is read at run time and is absent from the trigger's
kwargs, XCom, the ledger (database and spool) and the logs.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from werkzeug import Response

from airflow_carbon_provider.operators.carbon_aware_pod import CarbonAwareKubernetesPodOperator
from tests.integration.operator.conftest import FakeTI, context_for, pod_args

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred

pytestmark = pytest.mark.integration
UTC = timezone.utc
SECRET = "em-key-THIS-MUST-NOT-LEAK-9731"
SAMPLE = Path(__file__).parents[2] / "data" / "api-samples" / "electricitymaps" / \
    "carbon-intensity_forecast.reconstructed-24h.DE.json"


def _forecast(zone: str, scale: float, dip_at: int) -> dict:
    """Return the recorded 24-hour DE forecast re-dated to start this hour, with a dip at ``dip_at`` hours."""
    recorded = json.loads(SAMPLE.read_text())["forecast"]
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    points = []
    for i, point in enumerate(recorded):
        value = point["carbonIntensity"] * scale * (0.3 if i == dip_at else 1.0)
        points.append({"carbonIntensity": round(value), "datetime": (hour + timedelta(hours=i)).isoformat()
                       .replace("+00:00", ".000Z")})
    return {"zone": zone, "forecast": points, "updatedAt": hour.isoformat().replace("+00:00", ".000Z")}


def test_a_secret_bearing_carbon_connection_plans_and_its_key_leaks_nowhere(clusters, httpserver, monkeypatch,
                                                                          tmp_path, caplog, capfd):
    seen_keys = []

    def forecast(request):
        seen_keys.append(request.headers.get("auth-token"))
        if request.headers.get("auth-token") != SECRET:
            return Response(json.dumps({"message": "invalid auth-token"}), status=401)
        zone = request.args["zone"]
        body = _forecast(zone, 1.0, 3) if zone == "DE" else _forecast(zone, 1.5, 99)
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request("/v3/carbon-intensity/forecast").respond_with_handler(forecast)
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_EM", json.dumps({
        "conn_type": "electricitymaps", "host": httpserver.url_for("/").rstrip("/"), "password": SECRET,
        "extra": {"max_retries": 0, "timeout": 2}}))
    caplog.set_level(logging.DEBUG)
    op = CarbonAwareKubernetesPodOperator(**pod_args(cluster_conn_ids=["k8s_de", "k8s_gb"], carbon_conn_id="carbon_em",
                                                     max_delay="6h"))
    ti = FakeTI()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context_for(ti))
    decision = ti.xcom["carbon_decision"]
    # the plan came from the secret-bearing connection: its key was sent, its values were used
    assert SECRET in seen_keys and {r["carbon_conn_id"] for r in decision["candidates"]} == {"carbon_em"}
    assert decision["chosen_cluster"] == "k8s_de" and decision["waited"] is True
    dip = _forecast("DE", 1.0, 3)["forecast"][3]["carbonIntensity"]
    assert decision["expected_intensity"] == pytest.approx(dip, rel=0.2)
    # start it, as the trigger would at the window, so the outcome reaches the ledger too
    kwargs = deferred.value.trigger.serialize()[1]
    op.execute_complete(context_for(ti), event={"status": "start", "cluster": decision["chosen_key"]},
                        decision=deferred.value.kwargs["decision"])
    assert [p.phase for p in clusters["k8s_de"].pods()] == ["Succeeded"]
    places = {
        "trigger kwargs": json.dumps(kwargs, default=str),
        "defer kwargs": json.dumps(deferred.value.kwargs, default=str),
        "XCom": json.dumps(ti.xcom, default=str),
        "ledger": b"".join(p.read_bytes() for p in tmp_path.glob("ledger.db*")).decode("latin-1"),
        "spool": "".join(p.read_text() for p in tmp_path.glob("spool.jsonl*")),
        "logs": caplog.text + "".join(capfd.readouterr()),
    }
    assert places["ledger"], "the ledger recorded nothing"
    assert "carbon_em" in places["ledger"]
    assert {where: SECRET in text for where, text in places.items()} == dict.fromkeys(places, False)
