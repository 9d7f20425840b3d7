"""Every hook implements the protocol and builds its connection form from its declared fields.

What ``get_provider_info()`` declares is tested in ``tests/unit/test_get_provider_info.py``.
"""

from __future__ import annotations

import sys
import types

import pytest

from airflow_carbon_provider.hooks import HOOK_CLASSES
from airflow_carbon_provider.hooks.base import CarbonIntensitySource
from airflow_carbon_provider.hooks.carbontrace import CarbonTraceHook
from airflow_carbon_provider.hooks.electricitymaps import ElectricityMapsHook
from airflow_carbon_provider.hooks.ukcarbonintensity import UKCarbonIntensityHook
from airflow_carbon_provider.hooks.watttime import WattTimeHook

HOOKS = [ElectricityMapsHook, WattTimeHook, UKCarbonIntensityHook, CarbonTraceHook]


@pytest.mark.parametrize("hook_class", HOOKS)
def test_every_hook_implements_the_protocol(hook_class):
    hook = hook_class()
    assert isinstance(hook, CarbonIntensitySource)
    assert hook.default_conn_name == f"{hook.conn_type}_default"
    assert hook.conn_name_attr == f"{hook.conn_type}_conn_id"
    assert "_" not in hook.conn_type  # RFC 3986 schemes
    assert HOOK_CLASSES[hook.conn_type] == f"{hook_class.__module__}.{hook_class.__qualname__}"


def test_each_hook_shows_the_common_fields_it_uses():
    names = {hook.conn_type: [f.name for f in hook.conn_fields()] for hook in HOOKS}
    assert names["electricitymaps"][-4:] == ["timeout", "max_retries", "max_staleness", "cache_ttl"]
    assert "timeout" not in names["carbontrace"] and "max_retries" not in names["carbontrace"]
    assert names["carbontrace"][-2:] == ["max_staleness", "cache_ttl"]


def test_a_common_extra_the_form_does_not_show_is_not_read(add_connection):
    add_connection("trace_timeout", "carbontrace", extra={"timeout": "not a number", "max_retries": 99})
    config = CarbonTraceHook("trace_timeout", cache=None).get_config()
    assert config.policy.timeout == 30.0 and config.policy.max_attempts == 4  # the defaults, unread


def test_secret_fields_are_never_plain_extras():
    for hook_class in HOOKS:
        for spec in hook_class.conn_fields():
            if any(word in spec.name for word in ("key", "token", "secret", "password")):
                pytest.fail(f"{hook_class.conn_type}.{spec.name} holds a secret outside the password field")


class _Recorder:
    """Stands in for a wtforms field or widget class and records how it was built."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


@pytest.fixture
def fake_form_libraries(monkeypatch):
    """Provide minimal flask_appbuilder/flask_babel/wtforms modules (Airflow 3.3 ships none)."""
    modules = {
        "flask_appbuilder": {},
        "flask_appbuilder.fieldwidgets": {"BS3PasswordFieldWidget": type("PW", (_Recorder,), {}),
                                          "BS3TextFieldWidget": type("TW", (_Recorder,), {})},
        "flask_babel": {"lazy_gettext": lambda text: text},
        "wtforms": {name: type(name, (_Recorder,), {}) for name in
                    ("BooleanField", "IntegerField", "PasswordField", "StringField")},
        "wtforms.validators": {"Optional": _Recorder, "any_of": lambda values: ("any_of", tuple(values))},
    }  # fmt: skip
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.parametrize("hook_class", HOOKS)
def test_form_widgets_match_the_declared_fields(hook_class, fake_form_libraries):
    widgets = hook_class.get_connection_form_widgets()
    fields = {f.name: f for f in hook_class.conn_fields()}
    assert set(widgets) == set(fields)
    kinds = {"boolean": "BooleanField", "integer": "IntegerField", "password": "PasswordField"}
    for name, widget in widgets.items():
        spec = fields[name]
        assert type(widget).__name__ == kinds.get(spec.kind, "StringField")
        assert widget.args[0] == spec.label
        assert widget.kwargs.get("default") == spec.default
