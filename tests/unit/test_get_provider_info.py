"""get_provider_info() is generated from the hooks, is current, and passes Airflow's schema."""

from __future__ import annotations

from pathlib import Path

import airflow_carbon_provider.get_provider_info as module
from airflow_carbon_provider.get_provider_info import get_provider_info
from airflow_carbon_provider.hooks import HOOK_CLASSES
from airflow_carbon_provider.hooks._provider_info import hook_classes, provider_info, render
from airflow_carbon_provider.hooks.carbontrace import CarbonTraceHook
from airflow_carbon_provider.hooks.electricitymaps import ElectricityMapsHook
from airflow_carbon_provider.hooks.ukcarbonintensity import UKCarbonIntensityHook
from airflow_carbon_provider.hooks.watttime import WattTimeHook

HOOKS = [ElectricityMapsHook, WattTimeHook, UKCarbonIntensityHook, CarbonTraceHook]


def test_the_committed_file_is_what_the_hooks_generate():
    committed = Path(module.__file__).read_text(encoding="utf-8")
    assert committed == render(), (
        "get_provider_info.py is not current: run python -m airflow_carbon_provider.hooks._provider_info"
    )


def test_every_hook_is_found_and_hook_classes_come_from_the_provider_info():
    assert {hook.conn_type for hook in hook_classes()} == {hook.conn_type for hook in HOOKS}
    declared = {entry["connection-type"]: entry["hook-class-name"] for entry in get_provider_info()["connection-types"]}
    assert HOOK_CLASSES == declared


def test_provider_info_declares_the_same_forms_as_the_hooks():
    info = get_provider_info()
    assert {key: value for key, value in info.items() if key != "versions"} == provider_info()
    declared = {entry["connection-type"]: entry for entry in info["connection-types"]}
    assert set(declared) == {h.conn_type for h in HOOKS}
    for hook_class in HOOKS:
        entry = declared[hook_class.conn_type]
        assert entry["hook-class-name"] == HOOK_CLASSES[hook_class.conn_type]
        assert entry["hook-name"] == hook_class.hook_name
        assert entry["conn-fields"] == {f.name: f.provider_info() for f in hook_class.conn_fields()}
        behaviour = hook_class.get_ui_field_behaviour()
        assert entry["ui-field-behaviour"] == {
            "hidden-fields": behaviour["hidden_fields"],
            "relabeling": behaviour["relabeling"],
            "placeholders": behaviour["placeholders"],
        }
    modules = info["hooks"][0]["python-modules"]
    assert sorted(modules) == sorted(path.rsplit(".", 1)[0] for path in HOOK_CLASSES.values())


def test_provider_info_passes_airflows_schema():
    import json
    from importlib.util import find_spec

    import jsonschema

    schema = json.loads((Path(find_spec("airflow").origin).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)
