"""Keep credentials out of the ledger: drop secret-looking keys, redact secret-looking values."""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["is_secret_key", "redact_text", "sanitize"]

log = logging.getLogger(__name__)

_SECRET_KEY = re.compile(
    r"password|passwd|passphrase|token|api[_-]?key|secret|authori[sz]ation|private[_-]?key|credential|cookie"
    r"|keyfile|service[_-]?account",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")
_ASSIGNED = re.compile(
    r"(?i)((?:access_token|token|api[_-]?key|apikey|password|passwd|secret|auth)[\"']?\s*[=:]\s*[\"']?)"
    r"[^\s&\"',;}]+"
)
# to the last '@' of the word: an unencoded '@' in a password is hidden whole
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)\S*(@)")


def is_secret_key(key: str) -> bool:
    """Return whether a mapping key names something that may hold a credential."""
    return bool(_SECRET_KEY.search(key))


def redact_text(text: str) -> str:
    """Return ``text`` with bearer tokens, ``token=...`` assignments and URL passwords masked."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
    text = _ASSIGNED.sub(lambda m: f"{m.group(1)}***", text)
    return _URL_PASSWORD.sub(r"\1***\2", text)


def _clean(value: Any, path: str, dropped: list[str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = str(key)
            if is_secret_key(name):
                dropped.append(f"{path}{name}")
                continue
            out[name] = _clean(item, f"{path}{name}.", dropped)
        return out
    if isinstance(value, (list, tuple)):
        return [_clean(item, f"{path}[{i}].", dropped) for i, item in enumerate(value)]
    if isinstance(value, str):
        return redact_text(value)
    return value


def sanitize(record: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``record`` without secret-looking keys and with secret-looking values masked.

    The names of the dropped keys are logged (never their values).
    """
    dropped: list[str] = []
    clean = _clean(record, "", dropped)
    if dropped:
        log.warning("Carbon ledger: dropped %d secret-looking key(s) before storing: %s", len(dropped),
                    ", ".join(dropped))
    return clean
