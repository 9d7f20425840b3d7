"""The fields of a carbon connection's form, and the readers of its extras.

Each hook declares its provider-specific :class:`ConnField` values and picks which of the
:data:`COMMON_FIELDS` its form shows; the same declarations drive the Airflow form methods
and the generated ``get_provider_info()``. The ``extra_*`` readers turn a raw extra into a
bounded value or a one-line :class:`~airflow_carbon_provider.exceptions.CarbonConfigError`
that names the key and what it accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from airflow_carbon_provider.core.durations import format_duration, parse_duration
from airflow_carbon_provider.exceptions import CarbonConfigError

__all__ = [
    "CACHE_TTL_LIMIT",
    "COMMON_FIELDS",
    "MAX_STALENESS_LIMIT",
    "RETRIES_RANGE",
    "TIMEOUT_RANGE",
    "ConnField",
    "extra_bool",
    "extra_choice",
    "extra_duration",
    "extra_number",
    "form_widgets",
]


@dataclass(frozen=True)
class ConnField:
    """One extra field of a connection form, described once for both Airflow form APIs.

    :param name: the key in the connection's extra.
    :param label: the label shown in the form.
    :param kind: ``string``, ``password``, ``integer``, ``number`` or ``boolean``.
    :param default: the value used when the extra is absent.
    :param description: help text under the field.
    :param enum: the allowed values, for string fields that have a fixed set.
    """

    name: str
    label: str
    kind: str = "string"
    default: Any = None
    description: str | None = None
    enum: tuple[str, ...] | None = None

    def provider_info(self) -> dict[str, Any]:
        """Return this field as a ``conn-fields`` entry for ``get_provider_info()`` (Airflow 3.2+)."""
        json_type = {"password": "string"}.get(self.kind, self.kind)
        schema: dict[str, Any] = {"type": [json_type, "null"]}
        if self.kind == "password":
            schema["format"] = "password"
        if self.default is not None:
            schema["default"] = self.default
        if self.enum:
            schema["enum"] = list(self.enum)
        entry: dict[str, Any] = {"label": self.label, "schema": schema}
        if self.description:
            entry["description"] = self.description
        return entry


COMMON_FIELDS: tuple[ConnField, ...] = (
    ConnField(
        "timeout",
        "Request timeout (seconds)",
        "number",
        30,
        "Seconds to wait for one HTTP answer before it counts as a timeout.",
    ),
    ConnField(
        "max_retries",
        "Retries",
        "integer",
        3,
        "Retries after a timeout, a 5xx or a short Retry-After, with exponential backoff.",
    ),
    ConnField(
        "max_staleness",
        "Maximum data age",
        "string",
        None,
        "Oldest current data or forecast accepted, e.g. '2h'. Older data raises StaleDataError.",
    ),
    ConnField(
        "cache_ttl",
        "Cache lifetime",
        "string",
        None,
        "Override how long answers are cached, e.g. '5m'; '0s' turns caching off.",
    ),
)
"""The fields every carbon connection may show, by name; a hook lists those it shows."""


def form_widgets(fields: Iterable[ConnField]) -> dict[str, Any]:
    """Return the wtforms widgets of ``fields`` for the connection form (Airflow before 3.2)."""
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, IntegerField, PasswordField, StringField
    from wtforms.validators import Optional, any_of

    widgets: dict[str, Any] = {}
    for spec in fields:
        kwargs: dict[str, Any] = {"description": spec.description or ""}
        if spec.default is not None:
            kwargs["default"] = spec.default
        if spec.kind == "password":
            widgets[spec.name] = PasswordField(
                lazy_gettext(spec.label), widget=BS3PasswordFieldWidget(), **kwargs
            )
        elif spec.kind == "boolean":
            widgets[spec.name] = BooleanField(lazy_gettext(spec.label), **kwargs)
        elif spec.kind == "integer":
            widgets[spec.name] = IntegerField(
                lazy_gettext(spec.label), widget=BS3TextFieldWidget(), validators=[Optional()], **kwargs
            )
        else:
            validators = [Optional(), any_of(list(spec.enum))] if spec.enum else [Optional()]
            widgets[spec.name] = StringField(
                lazy_gettext(spec.label), widget=BS3TextFieldWidget(), validators=validators, **kwargs
            )
    return widgets


# Ranges of the shared extras: wide enough for any real use, narrow enough that every value
# converts to a datetime, a timedelta and a socket timeout without overflowing.
TIMEOUT_RANGE = (0.001, 600.0)
RETRIES_RANGE = (0, 10)
MAX_STALENESS_LIMIT = timedelta(days=30)
CACHE_TTL_LIMIT = timedelta(days=1)


def _shown(raw: Any) -> str:
    """Return a short repr of an extra's value for an error message (never hundreds of digits)."""
    if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) >= 10**30:
        return "an integer of more than 30 digits"
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def extra_number(
    extras: Mapping[str, Any],
    name: str,
    default: float,
    provider: str,
    *,
    minimum: float,
    maximum: float,
    integer: bool = False,
) -> float:
    """Return a finite numeric extra in ``[minimum, maximum]`` (a whole number if ``integer``).

    Anything else (a string that is not a number, ``inf``, ``nan``, ``1e20``, a boolean) is a
    one-line :class:`CarbonConfigError` that names the key and the accepted range.
    """
    raw = extras.get(name)
    if raw is None or raw == "":
        return float(default)
    what = "a whole number" if integer else "a number"
    fix = f"set it to {what} from {minimum:g} to {maximum:g}, or remove it for the default {default:g}"
    try:
        if isinstance(raw, bool):
            raise TypeError
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise CarbonConfigError(f"extra {name!r} = {_shown(raw)} is not {what}; {fix}", provider=provider) from None
    if not minimum <= value <= maximum or (integer and value != int(value)):  # NaN fails too
        raise CarbonConfigError(f"extra {name!r} = {_shown(raw)} is out of range; {fix}", provider=provider)
    return value


def extra_duration(
    extras: Mapping[str, Any],
    name: str,
    default: timedelta,
    provider: str,
    *,
    maximum: timedelta,
    minimum: timedelta = timedelta(0),
) -> timedelta:
    """Return a duration extra (``'48h'``, or a number of seconds) in ``[minimum, maximum]``."""
    raw = extras.get(name)
    if raw is None or raw == "":
        return default
    fix = (
        f"write a duration from {format_duration(minimum) if minimum else '0s'} to {format_duration(maximum)} "
        "as a number and a unit s, m, h or d (e.g. '2h'), or a number of seconds"
    )
    try:
        if isinstance(raw, bool):
            raise TypeError
        if isinstance(raw, (int, float)):
            value = timedelta(seconds=float(raw))
        else:
            value = parse_duration(str(raw), f"extra {name!r}")
    except (TypeError, ValueError, OverflowError):  # DurationError is a ValueError
        raise CarbonConfigError(
            f"extra {name!r} = {_shown(raw)} is not a duration; {fix}", provider=provider
        ) from None
    if not minimum <= value <= maximum:
        raise CarbonConfigError(f"extra {name!r} = {_shown(raw)} is out of range; {fix}", provider=provider)
    return value


def extra_bool(extras: Mapping[str, Any], name: str, default: bool, provider: str) -> bool:
    """Return a boolean extra, accepting JSON booleans and ``true``/``false`` strings."""
    raw = extras.get(name)
    if raw in (None, ""):
        return default
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return raw.strip().lower() in ("true", "1", "yes")
    raise CarbonConfigError(f"extra {name!r} = {raw!r} is not true or false", provider=provider)


def extra_choice(extras: Mapping[str, Any], name: str, choices: tuple[str, ...], provider: str) -> str:
    """Return a string extra that must be one of ``choices`` (the first is the default)."""
    raw = extras.get(name)
    if raw in (None, ""):
        return choices[0]
    if raw not in choices:
        raise CarbonConfigError(f"extra {name!r} = {raw!r} is not one of {choices}", provider=provider)
    return str(raw)
