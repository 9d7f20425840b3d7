"""Where a task runs, the way users name it: a grid zone key, a cloud region, or coordinates.

A place is written one of three ways:

* a zone key of the carbon source, as before (``DE``, ``US-CAL-CISO``, ``CAISO_NORTH``, ``GB-13``);
* a cloud region, ``<provider>:<region>`` with provider ``aws``, ``gcp`` or ``azure``
  (``aws:eu-central-1``, ``gcp:europe-west4``, ``azure:westeurope``);
* coordinates, ``"<lat>,<lon>"`` (``"52.37,4.90"``) or ``{"lat": 52.37, "lon": 4.90}``.

The same place has a different key in each source (California is ``US-CAL-CISO`` for
Electricity Maps and ``CAISO_NORTH`` for WattTime), so a place is resolved per source type
by :func:`resolve_place`: a zone key passes through; a cloud region is looked up in the
bundled table ``data/cloud_regions.csv`` (its provenance is in ``data/README.md``), and where
the table has no key for that source but the source can look locations up, the region's
coordinates go to the source's own location endpoint; coordinates always go to that endpoint.
Sources without one (the UK API takes postcodes, a trace replay has none) refuse
coordinates with the fix. Pure: values in, values out; the lookup itself is the hooks' job.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CLOUD_PROVIDERS",
    "SOURCES",
    "CloudRegion",
    "Place",
    "PlaceError",
    "Resolution",
    "SourcePlaces",
    "cloud_regions",
    "parse_place",
    "resolve_place",
]

CLOUD_PROVIDERS = ("aws", "gcp", "azure")
_ZONE = re.compile(r"^[A-Z0-9][A-Z0-9_.\-]*$")
_REGION = re.compile(r"^([a-z]+):([a-z0-9][a-z0-9\-]*)$")
_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_COORDINATES = re.compile(rf"^\s*({_NUMBER})\s*,\s*({_NUMBER})\s*$")
TABLE = Path(__file__).resolve().parent.parent / "data" / "cloud_regions.csv"


class PlaceError(ValueError):
    """Raised for a place that cannot be read, or that a source cannot resolve."""


@dataclass(frozen=True)
class SourcePlaces:
    """How one source type names places.

    :param column: the column of the bundled table that holds this source's keys.
    :param what: what the source calls a key (for messages).
    :param lookup: the source's location endpoint, or None if it has none.
    :param example: an example key, for messages.
    """

    column: str
    what: str
    lookup: str | None
    example: str


SOURCES: dict[str, SourcePlaces] = {
    "electricitymaps": SourcePlaces("electricitymaps", "Electricity Maps zone",
                                    "/v3/carbon-intensity/latest?lat=&lon=", "DE"),
    "watttime": SourcePlaces("watttime", "WattTime region", "/v3/region-from-loc", "CAISO_NORTH"),
    "ukcarbonintensity": SourcePlaces("ukcarbonintensity", "UK Carbon Intensity region", None, "GB-13"),
    # A replayed trace names its zones as the Electricity Maps datasets do.
    "carbontrace": SourcePlaces("electricitymaps", "trace zone (Electricity Maps key)", None, "DE"),
}


@dataclass(frozen=True)
class Place:
    """A place as written, read: ``kind`` is ``zone``, ``region`` or ``coordinates``.

    :param text: the place in its one written form (``aws:eu-central-1``, ``52.37,4.9``, ``DE``).
    """

    text: str
    kind: str
    latitude: float | None = None
    longitude: float | None = None

    @property
    def coordinates(self) -> tuple[float, float] | None:
        """Return ``(lat, lon)`` for coordinates, else None."""
        if self.latitude is None or self.longitude is None:
            return None
        return self.latitude, self.longitude


@dataclass(frozen=True)
class CloudRegion:
    """One row of the bundled table: a cloud region, where it is, and each source's key for it."""

    name: str
    location: str
    latitude: float
    longitude: float
    keys: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Resolution:
    """What a place is for one source: its key, or the coordinates to ask the source about.

    :param key: the source's key; None when ``lookup`` must be asked.
    :param lookup: ``(lat, lon)`` for the source's location endpoint.
    :param how: how the key was (or is to be) found, for the decision's reason.
    """

    key: str | None
    lookup: tuple[float, float] | None = None
    how: str = ""


def _format_number(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _coordinates(lat: Any, lon: Any, where: str, written: Any) -> Place:
    for name, value, bound in (("latitude", lat, 90.0), ("longitude", lon, 180.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PlaceError(f"{where}: {name} in {written!r} is not a number; write e.g. '52.37,4.90' "
                             "or {'lat': 52.37, 'lon': 4.90}")
        if abs(value) > bound:
            raise PlaceError(f"{where}: {name} {value} in {written!r} is outside -{bound:g}..{bound:g}; "
                             "write latitude first, e.g. '52.37,4.90' (Amsterdam)")
    text = f"{_format_number(float(lat))},{_format_number(float(lon))}"
    return Place(text, "coordinates", float(lat), float(lon))


def parse_place(value: Any, where: str) -> Place:
    """Read a place as written (zone key, ``provider:region``, ``"lat,lon"`` or a lat/lon dict).

    :param where: names the parameter in error messages (``cluster_conn_ids['k8s_de']``).
    :raises PlaceError: one line naming the parameter and the fix.
    """
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"lat", "lon"})
        if unknown or not {"lat", "lon"} <= set(value):
            raise PlaceError(f"{where}: a place given as a dict needs exactly 'lat' and 'lon', got keys "
                             f"{sorted(value)}; e.g. {{'lat': 52.37, 'lon': 4.90}}")
        return _coordinates(value["lat"], value["lon"], where, dict(value))
    if not isinstance(value, str) or not value.strip():
        raise PlaceError(f"{where}: zone {value!r} is not a place; give a zone key ('DE'), a cloud region "
                         "('aws:eu-central-1') or coordinates ('52.37,4.90')")
    text = value.strip()
    match = _COORDINATES.match(text)
    if match:
        return _coordinates(float(match.group(1)), float(match.group(2)), where, text)
    if ":" in text:
        return _region(text, where)
    if _ZONE.match(text):
        return Place(text, "zone")
    if text != text.upper() and _ZONE.match(text.upper()):
        bare = [name for name in cloud_regions() if name.split(":", 1)[1] == text.lower()]
        if bare:
            raise PlaceError(f"{where}: zone {text!r} names a cloud region without its provider; "
                             f"write {' or '.join(repr(b) for b in bare)}")
        raise PlaceError(f"{where}: zone {text!r} is lower case; carbon sources name zones in upper case: "
                         f"use {text.upper()!r}")
    raise PlaceError(f"{where}: zone {text!r} is not a zone key; use the key your carbon source names "
                     "(e.g. 'DE', 'SE-SE1', 'US-CAL-CISO' or 'CAISO_NORTH'), a cloud region "
                     "('aws:eu-central-1') or coordinates ('52.37,4.90')")


def _region(text: str, where: str) -> Place:
    lowered = text.lower()
    match = _REGION.match(lowered)
    if not match or match.group(1) not in CLOUD_PROVIDERS:
        provider = lowered.split(":", 1)[0]
        raise PlaceError(f"{where}: {text!r} is not a cloud region: write <provider>:<region> with provider "
                         f"one of {', '.join(CLOUD_PROVIDERS)} (got {provider!r}), e.g. 'aws:eu-central-1'")
    table = cloud_regions()
    if lowered not in table:
        same = [name for name in table if name.startswith(match.group(1) + ":")]
        close = difflib.get_close_matches(lowered, same, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else (
            f"the bundled table knows {len(same)} {match.group(1)} regions (see the docs' 'Naming places')")
        raise PlaceError(f"{where}: cloud region {text!r} is not in the bundled table; {hint} Otherwise give "
                         "the zone key or the data centre's coordinates ('lat,lon')")
    return Place(lowered, "region")


@functools.lru_cache(maxsize=1)
def cloud_regions() -> dict[str, CloudRegion]:
    """Return the bundled table of cloud regions, by name (``aws:eu-central-1``)."""
    return _read_table(TABLE.read_text(encoding="utf-8"))


def _read_table(text: str) -> dict[str, CloudRegion]:
    regions = {}
    key_columns = {s.column for s in SOURCES.values()}
    for row in csv.DictReader(io.StringIO(text)):
        keys = {column: row[column].strip() for column in key_columns if (row.get(column) or "").strip()}
        regions[row["region"]] = CloudRegion(row["region"], row["location"], float(row["latitude"]),
                                             float(row["longitude"]), keys)
    return regions


def resolve_place(place: Place, source: str, where: str) -> Resolution:
    """Return what ``place`` is for sources of type ``source`` (its key, or coordinates to look up).

    :raises PlaceError: the source cannot name this place (a region outside its coverage,
        coordinates for a source without a location endpoint), with the fix.
    """
    if place.kind == "zone":
        return Resolution(place.text, how="zone key")
    spec = SOURCES.get(source)
    if spec is None:
        raise PlaceError(f"{where}: {place.text!r} cannot be resolved for a {source!r} connection; give the "
                         "zone key that source uses")
    if place.kind == "coordinates":
        if spec.lookup is None:
            raise PlaceError(f"{where}: {place.text!r} is coordinates, but {_source_name(source)} has no "
                             f"location lookup; give a {spec.what} (e.g. {spec.example!r}) or a cloud region "
                             "('aws:eu-west-2')")
        return Resolution(None, place.coordinates, how=f"looked up by location ({spec.lookup})")
    region = cloud_regions()[place.text]
    key = region.keys.get(spec.column)
    if key is not None:
        if source == "ukcarbonintensity":
            key = f"GB-{key}"
        return Resolution(key, how=f"bundled table ({region.location})")
    if spec.lookup is not None:
        return Resolution(None, (region.latitude, region.longitude),
                          how=f"looked up by the location of {region.location} ({spec.lookup})")
    if source == "ukcarbonintensity":
        raise PlaceError(f"{where}: {place.text!r} is in {region.location}, outside Great Britain, which is all "
                         "the UK Carbon Intensity API covers; use an electricitymaps or watttime connection for "
                         "this candidate (carbon_conn_id)")
    raise PlaceError(f"{where}: the bundled table has no {spec.what} for {place.text!r} ({region.location}) and "
                     f"{_source_name(source)} has no location lookup; give the zone key instead")


def _source_name(source: str) -> str:
    return {"ukcarbonintensity": "the UK Carbon Intensity API", "carbontrace": "a trace replay (carbontrace)",
            "electricitymaps": "Electricity Maps", "watttime": "WattTime"}.get(source, source)
