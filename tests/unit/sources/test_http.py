"""The shared transport: timeouts, retries, Retry-After, typed errors and redaction, over loopback."""

from __future__ import annotations

import dataclasses
import random
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug import Response

from airflow_carbon_provider.exceptions import (
    CarbonAuthError,
    CarbonNoAccessError,
    CarbonNotFoundError,
    CarbonParseError,
    CarbonRateLimitError,
    CarbonRequestError,
    CarbonServerError,
    CarbonTimeoutError,
    CarbonTransportError,
)
from airflow_carbon_provider.sources._drivers import SyncDriver
from airflow_carbon_provider.sources._flow import get_json
from airflow_carbon_provider.sources._http import (
    ApiRequest,
    ApiResponse,
    RetryPolicy,
    error_message,
    parse_retry_after,
    retry_delay,
)
from tests.unit.sources.conftest import driver_class, run

REQUEST = ApiRequest("/thing", {"zone": "DE"}, {"auth-token": "s3cr3t-key-123"})


async def fetch(driver, request: ApiRequest = REQUEST, *, zone: str | None = None):
    """Run the one-request flow with ``driver`` (either mode) and return the JSON body."""
    return await run(driver, get_json(dataclasses.replace(request, zone=zone), driver.provider))


async def test_success_sends_params_and_headers(make_driver, httpserver):
    httpserver.expect_request(
        "/thing", query_string={"zone": "DE"}, headers={"auth-token": "s3cr3t-key-123"}
    ).respond_with_json({"ok": 1})
    assert await fetch(make_driver("p"), zone="DE") == {"ok": 1}
    assert httpserver.log[0][0].headers["Accept"] == "application/json"


async def test_5xx_is_retried_with_growing_backoff_then_succeeds(make_driver, httpserver, sleeps):
    httpserver.expect_oneshot_request("/thing").respond_with_data("boom", status=502)
    httpserver.expect_oneshot_request("/thing").respond_with_data("boom", status=503)
    httpserver.expect_request("/thing").respond_with_json({"ok": 2})
    assert await fetch(make_driver("p")) == {"ok": 2}
    assert len(httpserver.log) == 3
    assert len(sleeps.delays) == 2
    assert 0.25 <= sleeps.delays[0] <= 0.5  # ceiling 0.5 s, half of it jittered
    assert 0.5 <= sleeps.delays[1] <= 1.0  # ceiling doubled


async def test_5xx_gives_up_after_max_attempts_with_typed_error(make_driver, httpserver, sleeps):
    httpserver.expect_request("/thing").respond_with_data('{"status":"error","message":"down"}', status=500)
    with pytest.raises(CarbonServerError) as info:
        await fetch(make_driver("prov"), zone="DE")
    assert len(httpserver.log) == 3  # max_attempts
    assert (info.value.provider, info.value.status, info.value.zone) == ("prov", 500, "DE")
    assert "down" in str(info.value)


async def test_429_honours_retry_after(make_driver, httpserver, sleeps):
    httpserver.expect_oneshot_request("/thing").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "7"}
    )
    httpserver.expect_request("/thing").respond_with_json({"ok": 3})
    assert await fetch(make_driver("p")) == {"ok": 3}
    assert sleeps.delays == [7.0]


async def test_429_with_long_retry_after_is_raised_for_the_caller_to_wait(make_driver, httpserver, sleeps):
    httpserver.expect_request("/thing").respond_with_data("{}", status=429, headers={"Retry-After": "3600"})
    with pytest.raises(CarbonRateLimitError) as info:
        await fetch(make_driver("p"), zone="GB")
    assert info.value.retry_after == 3600
    assert info.value.status == 429
    assert len(httpserver.log) == 1
    assert sleeps.delays == []


async def test_429_without_retry_after_backs_off(make_driver, httpserver, sleeps):
    httpserver.expect_oneshot_request("/thing").respond_with_data("{}", status=429)
    httpserver.expect_request("/thing").respond_with_json([])
    assert await fetch(make_driver("p")) == []
    assert len(sleeps.delays) == 1 and 0.25 <= sleeps.delays[0] <= 0.5


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, CarbonRequestError),
        (401, CarbonAuthError),
        (403, CarbonNoAccessError),
        (404, CarbonNotFoundError),
        (422, CarbonRequestError),
    ],
)
async def test_client_errors_are_typed_and_never_retried(make_driver, httpserver, sleeps, status, error):
    httpserver.expect_request("/thing").respond_with_json({"error": "nope"}, status=status)
    with pytest.raises(error) as info:
        await fetch(make_driver("p"), zone="DE")
    assert info.value.status == status
    assert len(httpserver.log) == 1
    assert sleeps.delays == []


async def test_timeout_is_retried_then_raised(mode, httpserver, sleeps):
    def slow(request):
        time.sleep(0.6)
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/thing").respond_with_handler(slow)
    fast = RetryPolicy(
        timeout=0.2, connect_timeout=0.2, max_attempts=2, sleep=sleeps.sleep, async_sleep=sleeps.async_sleep
    )
    cls = driver_class(mode)
    http = cls(provider="p", base_url=httpserver.url_for("").rstrip("/"), policy=fast)
    with pytest.raises(CarbonTimeoutError) as info:
        await fetch(http, zone="DE")
    assert info.value.zone == "DE" and info.value.status is None
    assert len(sleeps.delays) == 1  # one retry, then the error


async def test_connection_refused_is_a_transport_error(mode, policy, sleeps):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cls = driver_class(mode)
    http = cls(provider="p", base_url=f"http://127.0.0.1:{port}", policy=policy, secrets=["s3cr3t-key-123"])
    with pytest.raises(CarbonTransportError) as info:
        await fetch(http)
    assert not isinstance(info.value, CarbonTimeoutError)
    assert len(sleeps.delays) == 2
    assert "s3cr3t-key-123" not in str(info.value)


async def test_malformed_json_is_a_parse_error_naming_the_body(make_driver, httpserver):
    httpserver.expect_request("/thing").respond_with_data("{not json", content_type="application/json")
    with pytest.raises(CarbonParseError) as info:
        await fetch(make_driver("p"), zone="DE")
    assert info.value.field == "<body>"
    assert info.value.status == 200


async def test_secrets_echoed_by_the_server_are_redacted(make_driver, httpserver):
    httpserver.expect_request("/thing").respond_with_json({"error": "bad key s3cr3t-key-123"}, status=400)
    http = make_driver("p", secrets=["s3cr3t-key-123"])
    with pytest.raises(CarbonRequestError) as info:
        await fetch(http)
    assert "s3cr3t-key-123" not in str(info.value)
    assert "***" in str(info.value)


def test_the_request_repr_hides_headers_and_basic_auth():
    request = ApiRequest(
        "/login", headers={"Authorization": "Bearer tok-123456"}, basic_auth=("u", "pw-123456")
    )
    assert "tok-123456" not in repr(request) and "pw-123456" not in repr(request)


def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("nan") is None


def test_error_message_reads_every_shape_the_apis_use():
    def msg(body: bytes) -> str:
        return error_message(ApiResponse(500, {}, body))

    assert msg(
        b'{"error": {"code": "500 Internal Server Error", "message": "Requested resource not found."}}'
    ) == ("500 Internal Server Error - Requested resource not found.")
    assert msg(b'{"error":"INVALID","msg":"bad params"}') == "INVALID - bad params"
    assert (
        msg(b'{"detail":[{"loc":["query","region"],"msg":"field required"}]}')
        == "query.region: field required"
    )
    assert msg(b"<html><head><title>403 Forbidden</title></head></html>") == "403 Forbidden"
    assert msg(b"") == "empty body"


@given(attempt=st.integers(min_value=0, max_value=40), seed=st.integers())
def test_backoff_is_bounded_and_jittered(attempt, seed):
    policy = RetryPolicy(backoff_base=0.5, backoff_max=30.0, max_attempts=100, rng=random.Random(seed))
    ceiling = min(30.0, 0.5 * 2**attempt)
    assert ceiling / 2 <= policy.backoff(attempt) <= ceiling


def test_retry_delay_gives_up_on_the_last_attempt():
    policy = RetryPolicy(max_attempts=2)
    error = CarbonServerError("x", status=500)
    assert retry_delay(policy, 0, error) is not None
    assert retry_delay(policy, 1, error) is None
    assert retry_delay(policy, 0, CarbonAuthError("x")) is None


def test_a_policy_without_a_timeout_is_refused():
    with pytest.raises(ValueError, match="timeouts must be positive"):
        RetryPolicy(timeout=0)
    assert timedelta(seconds=RetryPolicy().timeout) == timedelta(seconds=30)


def test_sources_do_not_import_airflow():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import airflow_carbon_provider.sources.electricitymaps, airflow_carbon_provider.sources.watttime\n"
        "import airflow_carbon_provider.sources.ukcarbonintensity, airflow_carbon_provider.sources.carbontrace\n"
        "import airflow_carbon_provider.exceptions, airflow_carbon_provider.hooks\n"
        "assert 'airflow' not in sys.modules, 'sources imported airflow'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_redaction_covers_repr_and_unparseable_bodies(make_driver, httpserver):
    httpserver.expect_request("/thing").respond_with_data("oops s3cr3t-key-123 <", status=200)
    http = make_driver("p", secrets=["s3cr3t-key-123"])
    with pytest.raises(CarbonParseError) as info:
        await fetch(http)
    assert "s3cr3t-key-123" not in str(info.value) and "s3cr3t-key-123" not in repr(info.value)


async def test_retry_logs_never_contain_a_secret(make_driver, httpserver, caplog):
    httpserver.expect_request("/thing").respond_with_json(
        {"error": "token s3cr3t-key-123 broke us"}, status=503
    )
    http = make_driver("p", secrets=["s3cr3t-key-123"])
    with caplog.at_level("DEBUG"), pytest.raises(CarbonServerError) as info:
        await fetch(http)
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2
    assert all("s3cr3t-key-123" not in r.getMessage() for r in caplog.records)
    assert "s3cr3t-key-123" not in repr(info.value)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_userinfo_in_the_base_url_never_reaches_an_error(mode, policy, caplog):
    cls = driver_class(mode)
    http = cls(provider="p", base_url=f"http://proxyuser:proxy-pass-9876@127.0.0.1:{_closed_port()}", policy=policy)
    with caplog.at_level("DEBUG"), pytest.raises(CarbonTransportError) as info:
        await fetch(http)
    for text in (str(info.value), repr(info.value), *(r.getMessage() for r in caplog.records)):
        assert "proxy-pass-9876" not in text and "proxyuser" not in text
    assert "http://127.0.0.1:" in str(info.value)


LONG_HOST = "api.electricitymaps-staging-mirror.internal-network.example.invalid"


def _fail_to_resolve(monkeypatch):
    """Make one host name unresolvable at once, as DNS would (a real resolver may be slow here)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == LONG_HOST:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


async def test_a_dns_failure_keeps_the_whole_host_and_is_not_cut_mid_word(mode, policy, monkeypatch):
    _fail_to_resolve(monkeypatch)
    cls = driver_class(mode)
    http = cls(provider="electricitymaps", base_url=f"https://user:pw-123456@{LONG_HOST}", policy=policy)
    request = ApiRequest(
        "/v3/carbon-intensity/forecast",
        {"zone": "DE", "emissionFactorType": "lifecycle", "horizonHours": "72", "disableEstimations": "true"},
    )
    with pytest.raises(CarbonTransportError) as info:
        await fetch(http, request, zone="DE")
    message = info.value.message
    assert message.startswith(f"request to https://{LONG_HOST}/v3/carbon-intensity/forecast failed (")
    detail = message.split(" failed (", 1)[1]
    assert LONG_HOST in detail  # the cause names the host too, whole
    assert message.endswith(")") and len(message) <= 400
    assert "pw-123456" not in message and "user:" not in message and " object at 0x" not in message


def test_a_long_cause_is_shortened_at_a_word_boundary_keeping_the_host():
    import requests
    from urllib3.exceptions import MaxRetryError, NameResolutionError

    cause = NameResolutionError(LONG_HOST, None, socket.gaierror(-2, "Name or service not known"))  # type: ignore[arg-type]
    url = "/v3/carbon-intensity/forecast?" + "&".join(f"param{i}=value{i}" for i in range(40))
    exc = requests.ConnectionError(MaxRetryError(None, url, cause))  # type: ignore[arg-type]
    http = SyncDriver(provider="electricitymaps", base_url=f"https://{LONG_HOST}")
    error = http._transport_error(exc, ApiRequest("/v3/carbon-intensity/forecast", zone="DE"), timeout=False)
    assert f"Failed to resolve '{LONG_HOST}'" in error.message
    assert "param39" not in error.message  # the query string is what gets dropped
    assert error.message.endswith(")") and len(error.message) <= 400
