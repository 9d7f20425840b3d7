"""The two drivers that run any flow: :class:`SyncDriver` over requests, :class:`AsyncDriver` over aiohttp.

What to do with each effect a flow yields is decided once, in the pure generator
:meth:`_Driver._lower`: a request becomes attempts under the retry policy (sleeps between
them, a typed error when the policy gives up), a :class:`~airflow_carbon_provider.sources._flow.Secret`
joins the values redacted from every error, and a
:class:`~airflow_carbon_provider.sources._flow.Shared` sub-flow is handed to
:data:`~airflow_carbon_provider.sources._flow.shared_flights`. It yields four primitive steps
(send one attempt, sleep, mask a secret, run a shared sub-flow); a driver performs each step
with its own library and feeds the outcome back. Every error leaving a driver has had every
secret it knows redacted from its message.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_carbon_provider.exceptions import (
    CarbonDataError,
    CarbonTimeoutError,
    CarbonTransportError,
)
from airflow_carbon_provider.sources._flow import Flow, Secret, Shared, shared_flights
from airflow_carbon_provider.sources._http import (
    PATH_LIMIT,
    ApiRequest,
    ApiResponse,
    ErrorClassifier,
    RetryPolicy,
    default_error,
    redact,
    retry_delay,
    strip_userinfo,
    transport_detail,
    url_credentials,
)

if TYPE_CHECKING:
    import aiohttp
    import requests

__all__ = ["AsyncDriver", "SyncDriver", "join_url"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def join_url(base_url: str, path: str) -> str:
    """Join the base URL (scheme, host, optional prefix) and an absolute API path."""
    return base_url.rstrip("/") + path


def _where(url: str) -> str:
    """Return ``url`` without userinfo, its path shortened in the middle if very long (never the host)."""
    url = strip_userinfo(url)
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if len(path) > PATH_LIMIT:
        half = PATH_LIMIT // 2
        path = f"{path[:half]}…{path[-half:]}"
    return f"{scheme}{sep}{authority}{slash}{path}"


def _headers(request: ApiRequest) -> dict[str, str]:
    headers = {"Accept": "application/json", **request.headers}
    if request.basic_auth is not None:
        user, password = request.basic_auth
        credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {credentials}"
    return headers


# The primitive steps a lowered flow asks its driver to perform.
@dataclass(frozen=True)
class _Send:
    request: ApiRequest


@dataclass(frozen=True)
class _Sleep:
    seconds: float


@dataclass(frozen=True)
class _Mask:
    value: str = field(repr=False)


@dataclass(frozen=True)
class _Join:
    shared: Shared[Any]


_Step = _Send | _Sleep | _Mask | _Join


@dataclass(frozen=True)
class _Failed:
    """The outcome of a step that raised: thrown into the flow where it yielded."""

    error: Exception


class _Run:
    """Step a lowered flow: :attr:`step` is what the driver does next, while :attr:`pending`."""

    def __init__(self, steps: Generator[_Step, Any, Any]) -> None:
        self._steps = steps
        self.pending = True
        self.result: Any = None
        self.step: _Step | None = None
        self.resume(None)

    def resume(self, outcome: Any) -> None:
        """Feed the outcome of the last step in and move on to the next one (or the result)."""
        try:
            self.step = self._steps.send(outcome)
        except StopIteration as done:
            self.pending, self.result = False, done.value


class _Driver:
    """What both drivers share: the retry loop, redaction, classification, as pure generators.

    :param provider: the provider named in errors.
    :param base_url: where requests go (its userinfo, if any, is redacted from errors).
    :param policy: timeouts and retries.
    :param classify: turns an error response into a typed error (default: by status).
    :param secrets: values to redact from every error message.
    :param on_secret: called with each :class:`~airflow_carbon_provider.sources._flow.Secret`
        whose ``mask`` is set, before the flow goes on (the hooks pass Airflow's masker).
    """

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        policy: RetryPolicy | None = None,
        classify: ErrorClassifier | None = None,
        secrets: Iterable[str] = (),
        on_secret: Callable[[str], Any] | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url
        self.policy = policy or RetryPolicy()
        self.on_secret = on_secret
        self._classify = classify or (lambda response, zone: default_error(provider, response, zone))
        self._secrets = tuple(dict.fromkeys(s for s in (*secrets, *url_credentials(base_url)) if s))

    def add_secret(self, secret: str) -> None:
        """Redact ``secret`` from every error message from now on."""
        if secret and secret not in self._secrets:
            self._secrets = (*self._secrets, secret)

    def _transport_error(
        self, exc: BaseException, request: ApiRequest, timeout: bool
    ) -> CarbonTransportError:
        detail = transport_detail(exc, self._secrets)
        where = _where(redact(join_url(self.base_url, request.path), self._secrets))
        cls = CarbonTimeoutError if timeout else CarbonTransportError
        what = "timed out" if timeout else "failed"
        return cls(f"request to {where} {what} ({detail})", provider=self.provider, zone=request.zone)

    def _redacted(self, error: CarbonDataError) -> CarbonDataError:
        error.message = redact(error.message, self._secrets)
        error.args = (error.message,)
        return error

    def _exchange(self, request: ApiRequest) -> Generator[_Step, Any, ApiResponse]:
        """Send ``request`` until it succeeds or the policy gives up (then raise the typed error)."""
        attempt = 0
        while True:
            outcome = yield _Send(request)
            if isinstance(outcome, _Failed):
                if not isinstance(outcome.error, CarbonTransportError):
                    raise outcome.error
                error: CarbonDataError = outcome.error
            elif outcome.status < 400:
                return outcome
            else:
                error = self._redacted(self._classify(outcome, request.zone))
            delay = retry_delay(self.policy, attempt, error)
            if delay is None:
                raise error
            log.warning(
                "%s; retrying in %.2f s (attempt %d of %d)", error, delay, attempt + 2, self.policy.max_attempts
            )
            yield _Sleep(delay)
            attempt += 1

    def _effect(self, effect: Any) -> Generator[_Step, Any, Any]:
        """Perform one effect of a flow through primitive steps; return what the flow receives."""
        if isinstance(effect, ApiRequest):
            return (yield from self._exchange(effect))
        if isinstance(effect, Secret):
            self.add_secret(effect.value)
            if effect.mask:
                yield _Mask(effect.value)
            return None
        if isinstance(effect, Shared):
            outcome = yield _Join(effect)
            if isinstance(outcome, _Failed):
                raise outcome.error
            return outcome
        raise TypeError(f"a flow yielded {effect!r}; a flow yields ApiRequest, Secret or Shared")

    def _lower(self, flow: Flow[T]) -> Generator[_Step, Any, T]:
        """Run ``flow`` as primitive steps: errors of a step are thrown into it where it yielded."""
        reply: Any = None
        error: Exception | None = None
        while True:
            try:
                effect = flow.send(reply) if error is None else flow.throw(error)
            except StopIteration as done:
                return done.value
            except CarbonDataError as exc:
                raise self._redacted(exc) from exc.__cause__
            reply, error = None, None
            try:
                reply = yield from self._effect(effect)
            except Exception as exc:  # the flow may handle it (WattTime renews on a 401)
                error = exc


class SyncDriver(_Driver):
    """Run flows with ``requests``, blocking the calling thread.

    :param session: a ``requests.Session`` to reuse; one is created on first use otherwise.
    """

    def __init__(self, *, session: requests.Session | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._session = session

    def run(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its end and return its result (or raise its typed error)."""
        run = _Run(self._lower(flow))
        while run.pending:
            run.resume(self._perform(run.step))
        return run.result

    def _perform(self, step: _Step | None) -> Any:
        if isinstance(step, _Sleep):
            return self.policy.sleep(step.seconds)
        if isinstance(step, _Mask):
            return self.on_secret(step.value) if self.on_secret is not None else None
        try:
            if isinstance(step, _Send):
                return self._send_once(step.request)
            assert isinstance(step, _Join)
            shared = step.shared
            return shared_flights.call(shared.key, lambda: self.run(shared.flow))
        except Exception as exc:
            return _Failed(exc)

    def _send_once(self, request: ApiRequest) -> ApiResponse:
        import requests

        if self._session is None:
            self._session = requests.Session()
        try:
            raw = self._session.request(
                request.method,
                join_url(self.base_url, request.path),
                params=dict(request.params),
                headers=_headers(request),
                timeout=(self.policy.connect_timeout, self.policy.timeout),
            )
            body = raw.content
        except requests.Timeout as exc:
            raise self._transport_error(exc, request, timeout=True) from None
        except requests.RequestException as exc:
            raise self._transport_error(exc, request, timeout=False) from None
        return ApiResponse(raw.status_code, {k.lower(): v for k, v in raw.headers.items()}, body)

    def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            self._session.close()
            self._session = None


class AsyncDriver(_Driver):
    """Run flows with ``aiohttp``, without blocking the event loop.

    :param session: an ``aiohttp.ClientSession`` owned by the caller; when omitted a session
        is opened and closed around each attempt.
    """

    def __init__(self, *, session: aiohttp.ClientSession | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._session = session

    async def run(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its end and return its result (or raise its typed error)."""
        run = _Run(self._lower(flow))
        while run.pending:
            run.resume(await self._perform(run.step))
        return run.result

    async def _perform(self, step: _Step | None) -> Any:
        if isinstance(step, _Sleep):
            return await self.policy.async_sleep(step.seconds)
        if isinstance(step, _Mask):
            masked = self.on_secret(step.value) if self.on_secret is not None else None
            return await masked if inspect.isawaitable(masked) else masked
        try:
            if isinstance(step, _Send):
                return await self._send(step.request)
            assert isinstance(step, _Join)
            shared = step.shared
            return await shared_flights.acall(shared.key, lambda: self.run(shared.flow))
        except Exception as exc:
            return _Failed(exc)

    async def _send(self, request: ApiRequest) -> ApiResponse:
        if self._session is not None:
            return await self._send_once(self._session, request)
        import aiohttp

        async with aiohttp.ClientSession() as session:
            return await self._send_once(session, request)

    async def _send_once(self, session: aiohttp.ClientSession, request: ApiRequest) -> ApiResponse:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.policy.timeout, connect=self.policy.connect_timeout)
        try:
            async with session.request(
                request.method,
                join_url(self.base_url, request.path),
                params=dict(request.params),
                headers=_headers(request),
                timeout=timeout,
            ) as raw:
                body = await raw.read()
                return ApiResponse(raw.status, {k.lower(): v for k, v in raw.headers.items()}, body)
        except asyncio.TimeoutError as exc:
            raise self._transport_error(exc, request, timeout=True) from None
        except aiohttp.ClientError as exc:
            raise self._transport_error(exc, request, timeout=False) from None
