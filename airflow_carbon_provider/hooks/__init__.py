"""Airflow hooks for the carbon-intensity sources, one module per connection type.

Import the hook you need from its module (``airflow_carbon_provider.hooks.electricitymaps``
and so on); this package stays light so that importing it does not import Airflow.
"""

from __future__ import annotations

from airflow_carbon_provider.get_provider_info import get_provider_info

HOOK_CLASSES = {
    entry["connection-type"]: entry["hook-class-name"] for entry in get_provider_info()["connection-types"]
}
"""Connection type to hook class path, as the (generated) provider info declares them."""
