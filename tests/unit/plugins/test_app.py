"""The Carbon FastAPI app refuses anonymous requests on every route it has, documentation included."""

from __future__ import annotations

import httpx
import pytest

from airflow_carbon_provider.plugins.app import create_app

DOCS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


@pytest.fixture(scope="module")
def app():
    return create_app()


def _requests(app) -> list[tuple[str, str]]:
    """Return (method, path) for every route of the app, with its query parameters left out."""
    found = []
    for route in app.routes:
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                found.append((method, route.path))
    return found


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://airflow")


async def test_every_route_refuses_an_anonymous_request(app):
    requests = _requests(app)
    assert ("GET", "/api/summary") in requests and ("GET", "/ui/") in requests
    answered = {}
    async with _client(app) as client:
        for method, path in requests:
            response = await client.request(method, path)
            answered[f"{method} {path}"] = response.status_code
            assert "openapi" not in response.text.lower() and "carbon-totals" not in response.text, path
    assert all(status in (401, 403, 404) for status in answered.values()), answered


@pytest.mark.parametrize("path", DOCS)
async def test_documentation_routes_are_off(app, path):
    """FastAPI's /docs, /redoc and /openapi.json once answered anyone, without authentication."""
    assert path not in {route.path for route in app.routes}
    async with _client(app) as client:
        response = await client.get(path)
    assert response.status_code in (401, 403, 404), response.text
