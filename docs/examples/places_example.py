"""Show what each carbon source calls a few places: zone keys, cloud regions, coordinates.

Pure: nothing is fetched. A place marked "lookup" is resolved at run time through the
source's own location endpoint (Electricity Maps' lat/lon query, WattTime's
/v3/region-from-loc); "-" means the source cannot name it (the task would fail with the fix).
"""

from __future__ import annotations

from airflow_carbon_provider.core.places import PlaceError, parse_place, resolve_place

PLACES = ["aws:eu-central-1", "gcp:europe-west4", "azure:uksouth", "aws:us-west-1", "52.37,4.90", "DE"]
SOURCES = ["electricitymaps", "watttime", "ukcarbonintensity", "carbontrace"]


def cell(place: str, source: str) -> str:
    """Return the key, 'lookup' or '-' for ``place`` on ``source``."""
    try:
        resolution = resolve_place(parse_place(place, "zone"), source, "zone")
    except PlaceError:
        return "-"
    return resolution.key or "lookup"


print(f"{'place':18}" + "".join(f"{s:19}" for s in SOURCES).rstrip())
for place in PLACES:
    print(f"{place:18}" + "".join(f"{cell(place, s):19}" for s in SOURCES).rstrip())
