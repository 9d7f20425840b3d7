"""Request/response values, the retry policy, error classification and redaction: all pure.

Everything that decides *what* to do (which status is retried, how long to wait, which
error type to raise) lives here and is shared; the drivers in
:mod:`~airflow_carbon_provider.sources._drivers` (requests and aiohttp) only move bytes. Retried: timeouts, transport errors and 5xx,
with exponential backoff and jitter, up to ``max_attempts``; 429 (and any rate-limit the
provider's classifier recognises) waits ``Retry-After`` when it is short enough, otherwise
the typed :class:`~airflow_carbon_provider.exceptions.CarbonRateLimitError` is raised at
once so that a deferrable caller can sleep without holding anything. Never retried: auth,
access, not-found and other 4xx errors.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from airflow_carbon_provider.exceptions import (
    CarbonAPIError,
    CarbonAuthError,
    CarbonDataError,
    CarbonNoAccessError,
    CarbonNotFoundError,
    CarbonParseError,
    CarbonRateLimitError,
    CarbonRequestError,
    CarbonServerError,
    CarbonTransportError,
)

__all__ = [
    "ApiRequest",
    "ApiResponse",
    "ErrorClassifier",
    "MAX_RETRY_AFTER",
    "RetryPolicy",
    "default_error",
    "error_message",
    "parse_retry_after",
    "retry_delay",
    "strip_userinfo",
    "transport_detail",
]


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP request, relative to the API's base URL; secrets are kept out of ``repr``.

    :param path: the path below the base URL, starting with ``/``; segments already quoted.
    :param params: query parameters.
    :param headers: request headers (may hold a token, hence ``repr=False``).
    :param basic_auth: ``(username, password)`` for HTTP Basic auth, if any.
    :param method: the HTTP method.
    :param zone: the zone or region the request is about, named by its errors.
    """

    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    method: str = "GET"
    zone: str | None = None


@dataclass(frozen=True)
class ApiResponse:
    """One HTTP response: status, lower-cased headers and the raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        """Return the body decoded as UTF-8, with undecodable bytes replaced."""
        return self.body.decode("utf-8", errors="replace")

    def json(self, *, provider: str, zone: str | None = None) -> Any:
        """Return the decoded JSON body; raise :class:`CarbonParseError` if it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            snippet = self.text[:120].replace("\n", " ")
            raise CarbonParseError(
                f"response body is not valid JSON ({exc.__class__.__name__}): {snippet!r}",
                field="<body>",
                provider=provider,
                status=self.status,
                zone=zone,
            ) from None


def path_segment(value: str) -> str:
    """Quote ``value`` for use as one URL path segment (``/`` included)."""
    return quote(str(value), safe="")


MAX_RETRY_AFTER = 86400.0
"""The longest wait a ``Retry-After`` header is taken to ask for (a day); longer ones are capped."""

# An error classifier turns an error response into the typed exception to raise.
ErrorClassifier = Callable[[ApiResponse, "str | None"], CarbonAPIError]


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` header asks to wait (delta or HTTP date), or None.

    The wait is capped at :data:`MAX_RETRY_AFTER` (a day), so that a caller can always turn
    it into a datetime.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = (moment - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds or seconds == float("-inf"):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def error_message(response: ApiResponse) -> str:
    """Return the human message from an error body in any of the shapes the APIs use."""
    try:
        body = json.loads(response.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        body = None
    if isinstance(body, dict):
        parts: list[str] = []
        error = body.get("error")
        if isinstance(error, dict):  # UK: {"error": {"code": ..., "message": ...}}
            parts.extend(str(error[k]) for k in ("code", "message") if error.get(k))
        elif error:
            parts.append(str(error))
        for key in ("message", "msg"):
            if body.get(key):
                parts.append(str(body[key]))
        detail = body.get("detail")  # FastAPI validation errors
        if isinstance(detail, list):
            for item in detail[:3]:
                if isinstance(item, dict):
                    loc = ".".join(str(p) for p in item.get("loc", []) if isinstance(p, (str, int)))
                    parts.append(f"{loc}: {item.get('msg', '')}".strip(": "))
        elif detail:
            parts.append(str(detail))
        if parts:
            return " - ".join(" ".join(p.split()) for p in parts)[:300]
    text = " ".join(response.text.split())
    if "<" in text and ">" in text:  # an HTML error page from a gateway: keep only the title
        start, end = text.find("<title>"), text.find("</title>")
        text = text[start + 7 : end] if 0 <= start < end else "HTML error page"
    return text[:300] or "empty body"


def default_error(provider: str, response: ApiResponse, zone: str | None) -> CarbonAPIError:
    """Map an error status to the typed exception every provider shares."""
    status = response.status
    message = error_message(response)
    kwargs: dict[str, Any] = {"provider": provider, "status": status, "zone": zone}
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return CarbonRateLimitError(f"rate limited: {message}", retry_after=retry_after, **kwargs)
    if status == 401:
        return CarbonAuthError(f"credentials rejected: {message}", **kwargs)
    if status == 403:
        return CarbonNoAccessError(f"no access (check the plan covers it): {message}", **kwargs)
    if status == 404:
        return CarbonNotFoundError(f"not found: {message}", **kwargs)
    if status >= 500:
        return CarbonServerError(f"server error: {message}", **kwargs)
    return CarbonRequestError(f"request rejected: {message}", **kwargs)


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait for an answer, and when and how to try again.

    :param timeout: seconds for a whole request (the async driver) or for each socket read
        (requests, whose read timeout is per read).
    :param connect_timeout: seconds to establish the connection.
    :param max_attempts: attempts in all, the first included (1 disables retries).
    :param backoff_base: the first retry waits about this many seconds; doubling each time.
    :param backoff_max: no wait between attempts is longer than this.
    :param max_retry_after: a ``Retry-After`` longer than this is not slept through; the
        :class:`CarbonRateLimitError` is raised with ``retry_after`` for the caller to honour.
    :param sleep: the blocking sleep (injectable, so tests need not wait).
    :param async_sleep: the asynchronous sleep.
    :param rng: source of jitter.
    """

    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    async_sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False, compare=False)
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.timeout <= 0 or self.connect_timeout <= 0:
            raise ValueError("timeouts must be positive: every request needs one")

    def backoff(self, attempt: int) -> float:
        """Return the wait before retry number ``attempt + 1``: exponential, half of it jittered."""
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)


def retry_delay(policy: RetryPolicy, attempt: int, error: CarbonDataError) -> float | None:
    """Return seconds to wait before retrying after ``error`` on ``attempt`` (0-based), or None.

    None means: give up and raise ``error``.
    """
    if attempt + 1 >= policy.max_attempts:
        return None
    if isinstance(error, CarbonRateLimitError):
        if error.retry_after is None:
            return policy.backoff(attempt)
        if error.retry_after > policy.max_retry_after:
            return None
        return error.retry_after
    if isinstance(error, (CarbonServerError, CarbonTransportError)):
        return policy.backoff(attempt)
    return None


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in ``text`` with ``***``, and drop the userinfo of every URL in it."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return strip_userinfo(text)


# ``scheme://user:password@`` (the password may itself hold an ``@``): up to the last ``@``
# before the host's end.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)[^\s/?#'\"<>]*@")


def strip_userinfo(text: str) -> str:
    """Remove ``user:password@`` from every URL in ``text``."""
    return _USERINFO.sub(lambda match: match.group("scheme"), text)


def url_credentials(url: str) -> tuple[str, ...]:
    """Return the user name and password in ``url``'s userinfo, as written and percent-decoded."""
    try:
        parts = urlsplit(url)
        found = (parts.username, parts.password)
    except ValueError:
        return ()
    values = {v for raw in found if raw for v in (raw, unquote(raw))}
    return tuple(sorted(values))


# What a transport error is shortened to: the request's scheme, host and path are kept
# whole; the cause keeps its innermost exception, without object reprs, connection-pool
# prefixes and query strings, and is cut at a word boundary beyond DETAIL_LIMIT characters.
DETAIL_LIMIT = 240
PATH_LIMIT = 100
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>:?\s*")
_POOL_PREFIX = re.compile(r"\b\w*Connection(?:Pool)?\(host='[^']*', port=\d+\):\s*")
_QUERY = re.compile(r"\?[^\s'\")\]]*")


def _root_cause(exc: BaseException) -> BaseException:
    """Return the innermost exception requests/urllib3 wrapped (``reason``, or one in ``args``)."""
    seen = {id(exc)}
    for _ in range(8):
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        exc = inner
    return exc


def shorten(text: str, limit: int) -> str:
    """Return ``text`` cut to at most ``limit`` characters at a word boundary, marked with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:(") + "…"


def transport_detail(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """Return the readable cause of a transport error: innermost type and message, no secret."""
    root = _root_cause(exc)
    text = str(root)
    text = _OBJECT_REPR.sub("", text)
    text = _POOL_PREFIX.sub("", text)
    text = _QUERY.sub("", redact(text, secrets))
    text = " ".join(text.split())
    detail = f"{root.__class__.__name__}: {text}" if text else root.__class__.__name__
    return shorten(detail, DETAIL_LIMIT)
