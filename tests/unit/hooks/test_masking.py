"""Every credential a hook reads is registered with Airflow's secrets masker and kept out of errors.

Covered: user:password in the connection's host, the WattTime username and the Basic auth
header it builds, and an ``api_key`` extra. Each test uses its own values, because the
masker is process-wide and remembers everything it was given.
"""

from __future__ import annotations

import base64
import socket

import pytest

from airflow_carbon_provider.exceptions import CarbonAuthError, CarbonTransportError
from airflow_carbon_provider.hooks.electricitymaps import ElectricityMapsHook
from airflow_carbon_provider.hooks.watttime import WattTimeHook
from tests.unit.sources.conftest import call


def redact(text: str) -> str:
    try:
        from airflow.sdk.log import redact as airflow_redact
    except ImportError:  # pragma: no cover - Airflow before 3.3
        from airflow.sdk.execution_time.secrets_masker import redact as airflow_redact
    return str(airflow_redact(text))


@pytest.fixture(params=["sync", "async"])
def mode(request):
    return request.param


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_userinfo_in_the_host_is_masked_and_never_in_an_error(add_connection, cache, policy, mode):
    user, password = f"hostuser-{mode}-7a1", f"host-pass-{mode}-4321"
    add_connection("em_userinfo", "electricitymaps", host=f"http://{user}:{password}@127.0.0.1:{_closed_port()}",
                   password=f"em-key-{mode}-abcdef")  # fmt: skip
    hook = ElectricityMapsHook("em_userinfo", cache=cache, retry_policy=policy)
    get = hook.get_current if mode == "sync" else hook.aget_current
    with pytest.raises(CarbonTransportError) as info:
        await call(get, "DE")
    assert password not in str(info.value) and user not in str(info.value)
    assert redact(f"a {password} b {user}") == "a *** b ***"
    config = hook.get_config()
    assert password not in config.connection_key and password not in repr(config)


async def test_an_api_key_extra_is_masked(add_connection, cache, mode):
    key = f"em-extra-key-{mode}-0192837465"
    add_connection("em_extra_key", "electricitymaps", extra={"api_key": key})
    hook = ElectricityMapsHook("em_extra_key", cache=cache)
    await call(hook.get_config if mode == "sync" else hook.aget_config)
    assert redact(f"key {key}") == "key ***"


@pytest.fixture
def watttime(add_connection, httpserver, cache, policy):
    def make(user: str, password: str) -> WattTimeHook:
        add_connection("wt_masking", "watttime", host=httpserver.url_for("").rstrip("/"), login=user,
                       password=password)  # fmt: skip
        return WattTimeHook("wt_masking", cache=cache, retry_policy=policy)

    return make


async def test_watttime_username_and_basic_credentials_are_masked(watttime, httpserver, mode):
    user, password = f"wt-user-{mode}-5f4e3d", f"wt-pass-{mode}-98765"
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    # A login refusal that echoes what it was sent, as some gateways do.
    httpserver.expect_request("/login").respond_with_json(
        {"error": f"unknown user {user} (Authorization: Basic {basic})"}, status=401
    )
    hook = watttime(user, password)
    with pytest.raises(CarbonAuthError) as info:
        await call(hook.get_current if mode == "sync" else hook.aget_current, "CAISO_NORTH")
    assert user not in str(info.value) and basic not in str(info.value) and password not in str(info.value)
    assert redact(f"{user} / Basic {basic} / {password}") == "*** / Basic *** / ***"
