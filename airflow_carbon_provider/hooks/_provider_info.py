"""Generate ``airflow_carbon_provider/get_provider_info.py`` from the hook classes.

Airflow generates each provider's ``get_provider_info.py`` from its ``provider.yaml``; here the
hook classes are the source: every :class:`~airflow_carbon_provider.hooks.base.BaseCarbonHook`
subclass defined in a public module of :mod:`airflow_carbon_provider.hooks` becomes a
``connection-types`` entry (its form fields and field behaviour, which Airflow 3.2+ builds the
form from) and its module a ``hooks`` entry. The rest of the metadata is :data:`STATIC`.

After adding a hook or changing a form, regenerate and commit the result::

    python -m airflow_carbon_provider.hooks._provider_info

``tests/unit/test_get_provider_info.py`` fails while the committed file is not current.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from pathlib import Path
from typing import Any

__all__ = ["STATIC", "connection_type", "hook_classes", "provider_info", "render"]

INTEGRATION = "Carbon-aware scheduling"

STATIC: dict[str, Any] = {
    "package-name": "airflow-carbon-provider",
    "name": INTEGRATION,
    "description": (
        "Run Kubernetes and batch tasks on the greenest configured cluster, in the "
        "lowest-carbon window that still meets their deadline."
    ),
    "integrations": [
        {
            "integration-name": INTEGRATION,
            "external-doc-url": "https://github.com/airflow-carbon-provider/airflow-carbon-provider",
            "tags": ["software"],
        }
    ],
    "operators": [
        {"integration-name": INTEGRATION, "python-modules": ["airflow_carbon_provider.operators.carbon_aware_pod"]}
    ],
    "sensors": [{"integration-name": INTEGRATION, "python-modules": ["airflow_carbon_provider.sensors.carbon_window"]}],
    "triggers": [
        {"integration-name": INTEGRATION, "python-modules": ["airflow_carbon_provider.triggers.carbon_window"]}
    ],
    "extra-links": ["airflow_carbon_provider.links.carbon.CarbonDecisionLink"],
}
"""Everything in the provider info that the hooks do not declare (``versions`` is computed at run time)."""

TARGET = Path(__file__).resolve().parents[1] / "get_provider_info.py"


def hook_classes() -> list[type[Any]]:
    """Return every carbon hook class, by module name (imports each public hooks module)."""
    import airflow_carbon_provider.hooks as package
    from airflow_carbon_provider.hooks.base import BaseCarbonHook

    found = []
    for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_") or module_info.name in ("base", "cache"):
            continue
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseCarbonHook) and cls.__module__ == module.__name__ and "conn_type" in vars(cls):
                found.append(cls)
    return found


def connection_type(hook: type[Any]) -> dict[str, Any]:
    """Return the ``connection-types`` entry of ``hook``: its form as the hook declares it."""
    behaviour = hook.get_ui_field_behaviour()
    return {
        "hook-class-name": f"{hook.__module__}.{hook.__qualname__}",
        "hook-name": hook.hook_name,
        "connection-type": hook.conn_type,
        "conn-fields": {spec.name: spec.provider_info() for spec in hook.conn_fields()},
        "ui-field-behaviour": {
            "hidden-fields": behaviour["hidden_fields"],
            "relabeling": behaviour["relabeling"],
            "placeholders": behaviour["placeholders"],
        },
    }


def provider_info() -> dict[str, Any]:
    """Return the provider info as the hooks declare it now (without ``versions``)."""
    hooks = hook_classes()
    info = dict(STATIC)
    info["hooks"] = [
        {"integration-name": INTEGRATION, "python-modules": sorted({hook.__module__ for hook in hooks})}
    ]
    info["connection-types"] = [connection_type(hook) for hook in hooks]
    return info


class _Code(str):
    """Python source written as it is (not quoted) by :func:`_literal`."""


def _literal(value: Any, indent: int) -> str:
    pad, inner = " " * indent, " " * (indent + 4)
    if isinstance(value, _Code):
        return str(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(key)}: {_literal(item, indent + 4)},\n" for key, item in value.items()]
        return "{\n" + "".join(items) + pad + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [f"{inner}{_literal(item, indent + 4)},\n" for item in value]
        return "[\n" + "".join(items) + pad + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)  # bool, None, numbers: written as Python writes them


HEADER = '''"""Provider metadata that Airflow discovers through the ``apache_airflow_provider`` entry point.

Generated from the hook classes by ``python -m airflow_carbon_provider.hooks._provider_info``:
do not edit by hand. Airflow 3.2+ builds the connection forms from "conn-fields" and
"ui-field-behaviour" and skips the hooks' form methods; generating both from the same
declarations keeps them equal.
"""

from __future__ import annotations

from typing import Any

from airflow_carbon_provider import PREVIOUS_VERSIONS, __version__


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata in the schema Airflow's ProvidersManager reads."""
    return '''


def render() -> str:
    """Return the source of ``get_provider_info.py`` for the hooks as they are."""
    info = provider_info()
    ordered = {key: info[key] for key in ("package-name", "name", "description")}
    ordered["versions"] = _Code("[__version__, *PREVIOUS_VERSIONS]")
    ordered.update((key, value) for key, value in info.items() if key not in ordered)
    return HEADER + _literal(ordered, 4) + "\n"


def main() -> None:
    """Write ``get_provider_info.py``."""
    TARGET.write_text(render(), encoding="utf-8")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
