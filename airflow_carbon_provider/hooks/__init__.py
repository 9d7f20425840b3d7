"""Airflow hooks for the carbon-intensity sources, one module per connection type.

Import the hook you need from its module (``airflow_carbon_provider.hooks.electricitymaps``
and so on); this package stays light so that importing it does not import Airflow.
"""

from __future__ import annotations

HOOK_CLASSES = {
    "electricitymaps": "airflow_carbon_provider.hooks.electricitymaps.ElectricityMapsHook",
    "watttime": "airflow_carbon_provider.hooks.watttime.WattTimeHook",
    "ukcarbonintensity": "airflow_carbon_provider.hooks.ukcarbonintensity.UKCarbonIntensityHook",
    "carbontrace": "airflow_carbon_provider.hooks.carbontrace.CarbonTraceHook",
}
"""Connection type to hook class path."""
