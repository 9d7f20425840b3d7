"""What a hook reads from its connection: the settings every carbon source shares.

:func:`resolve_config` turns a connection's fields and extras into a :class:`HookConfig`
(base URL, timeouts and retries, staleness, cache lifetimes, the secrets to mask); each hook
then fills its own options from the extras (``BaseCarbonHook._configure``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from airflow_carbon_provider.hooks._fields import (
    CACHE_TTL_LIMIT,
    MAX_STALENESS_LIMIT,
    RETRIES_RANGE,
    TIMEOUT_RANGE,
    extra_duration,
    extra_number,
)
from airflow_carbon_provider.sources._http import RetryPolicy, strip_userinfo, url_credentials

__all__ = ["HookConfig", "base_url_from", "resolve_config"]


@dataclass
class HookConfig:
    """What a hook read from its connection, resolved and validated.

    :param connection_key: the cache's ``connection`` component (conn id and base URL).
    :param signal: the cache's ``signal`` component.
    :param options: provider-specific settings.
    """

    conn_id: str
    base_url: str = field(repr=False)  # may hold user:password@
    policy: RetryPolicy
    max_staleness: timedelta | None
    ttl: dict[str, float]
    signal: str
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def connection_key(self) -> str:
        """Return the connection component of cache keys (no credentials in it)."""
        return f"{self.conn_id}@{strip_userinfo(self.base_url)}"


def base_url_from(host: str | None, port: int | None, default: str) -> str:
    """Return the API's base URL from the connection's host and port (``https://`` unless given)."""
    if not host:
        return default
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = f"https://{host}"
    if port:
        authority = host.split("://", 1)[1].split("/", 1)[0]
        if ":" not in authority.rsplit("]", 1)[-1]:
            scheme, rest = host.split("://", 1)
            netloc, _, path = rest.partition("/")
            host = f"{scheme}://{netloc}:{port}" + (f"/{path}" if path else "")
    return host


def resolve_config(
    conn_id: str,
    provider: str,
    *,
    base_url: str,
    login: str | None,
    password: str | None,
    extras: Mapping[str, Any],
    retry_policy: RetryPolicy | None,
    max_staleness: timedelta | None,
    default_max_staleness: timedelta | None,
    default_ttl: Mapping[str, float],
) -> HookConfig:
    """Resolve the settings every source shares; ``retry_policy`` and ``max_staleness`` override the extras.

    :raises CarbonConfigError: an extra is out of range or unreadable (named, with the fix).
    """
    low, high = TIMEOUT_RANGE
    timeout = extra_number(extras, "timeout", 30.0, provider, minimum=low, maximum=high)
    low, high = RETRIES_RANGE
    retries = int(extra_number(extras, "max_retries", 3, provider, minimum=low, maximum=high, integer=True))
    policy = retry_policy or RetryPolicy(
        timeout=timeout, connect_timeout=min(timeout, 10.0), max_attempts=retries + 1
    )
    if max_staleness is None:
        if extras.get("max_staleness") not in (None, ""):
            max_staleness = extra_duration(
                extras, "max_staleness", timedelta(0), provider, maximum=MAX_STALENESS_LIMIT
            )
        else:
            max_staleness = default_max_staleness
    ttl = dict(default_ttl)
    if extras.get("cache_ttl") not in (None, ""):
        seconds = extra_duration(
            extras, "cache_ttl", timedelta(0), provider, maximum=CACHE_TTL_LIMIT
        ).total_seconds()
        ttl = dict.fromkeys(ttl, seconds)
    api_key = extras.get("api_key")
    return HookConfig(
        conn_id=conn_id,
        base_url=base_url,
        policy=policy,
        max_staleness=max_staleness,
        ttl=ttl,
        signal="",
        login=login or None,
        password=password or None,
        secrets=tuple(
            s
            for s in (password, api_key if isinstance(api_key, str) else None, *url_credentials(base_url))
            if s
        ),
    )
