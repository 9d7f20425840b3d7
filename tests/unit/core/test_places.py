"""Naming places: zone keys, cloud regions and coordinates, read once and resolved per source."""

from __future__ import annotations

import pytest

from airflow_carbon_provider.core.places import (
    CLOUD_PROVIDERS,
    SOURCES,
    Place,
    PlaceError,
    cloud_regions,
    parse_place,
    resolve_place,
)
from tests.unit.sources.conftest import sample

W = "cluster_conn_ids['k8s_de']"


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("DE", Place("DE", "zone")),
        ("CAISO_NORTH", Place("CAISO_NORTH", "zone")),
        ("GB-RG10", Place("GB-RG10", "zone")),
        ("aws:eu-central-1", Place("aws:eu-central-1", "region")),
        (" AWS:EU-Central-1 ", Place("aws:eu-central-1", "region")),
        ("52.37,4.90", Place("52.37,4.9", "coordinates", 52.37, 4.9)),
        ("-33.87, 151.21", Place("-33.87,151.21", "coordinates", -33.87, 151.21)),
        ({"lat": 52.37, "lon": 4.9}, Place("52.37,4.9", "coordinates", 52.37, 4.9)),
    ],
)
def test_a_place_is_read_into_one_written_form(written, expected):
    assert parse_place(written, W) == expected


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("aws:eu-centrl-1", r"not in the bundled table; did you mean 'aws:eu-central-1'"),
        ("gcp:europe-west44", r"did you mean 'gcp:europe-west4'"),
        ("oracle:eu-frankfurt-1", r"provider one of aws, gcp, azure \(got 'oracle'\)"),
        ("eu-central-1", r"names a cloud region without its provider; write 'aws:eu-central-1'"),
        ("westeurope", r"write 'azure:westeurope'"),
        ("de", r"lower case.*use 'DE'"),
        ("91,3", r"latitude 91.0 .* outside -90..90; write latitude first"),
        ("3,181", r"longitude 181.0 .* outside -180..180"),
        ({"lat": 1}, r"needs exactly 'lat' and 'lon'"),
        ({"lat": "x", "lon": 2}, r"latitude in .* is not a number"),
        ("Germany!", r"is not a zone key; .*cloud region \('aws:eu-central-1'\) or coordinates"),
        (3, r"is not a place"),
    ],
)
def test_every_wrong_place_is_one_line_naming_the_parameter_and_the_fix(written, message):
    with pytest.raises(PlaceError, match=message) as info:
        parse_place(written, W)
    assert str(info.value).startswith(W) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("written", "source", "key"),
    [
        ("aws:eu-central-1", "electricitymaps", "DE"),
        ("aws:eu-central-1", "carbontrace", "DE"),
        ("gcp:europe-west4", "electricitymaps", "NL"),
        ("azure:westeurope", "electricitymaps", "NL"),
        ("aws:us-west-1", "electricitymaps", "US-CAL-CISO"),
        ("aws:us-west-1", "watttime", "CAISO_NORTH"),
        ("aws:eu-west-2", "ukcarbonintensity", "GB-13"),
        ("azure:ukwest", "ukcarbonintensity", "GB-7"),
        ("DE", "watttime", "DE"),  # a zone key is the user's word: passed through unchanged
    ],
)
def test_a_region_resolves_to_each_sources_own_key(written, source, key):
    resolution = resolve_place(parse_place(written, W), source, W)
    assert resolution.key == key and resolution.lookup is None


def test_coordinates_and_regions_without_a_key_go_to_the_sources_location_lookup():
    at = resolve_place(parse_place("52.37,4.90", W), "electricitymaps", W)
    assert at.key is None and at.lookup == (52.37, 4.9) and "lat=&lon=" in at.how
    frankfurt = resolve_place(parse_place("aws:eu-central-1", W), "watttime", W)
    assert frankfurt.key is None and frankfurt.lookup == (50.11, 8.68)
    assert "Frankfurt" in frankfurt.how and "/v3/region-from-loc" in frankfurt.how


@pytest.mark.parametrize(
    ("written", "source", "message"),
    [
        ("aws:eu-central-1", "ukcarbonintensity", r"outside Great Britain.*use an electricitymaps or watttime"),
        ("52.37,4.90", "ukcarbonintensity", r"has no location lookup; give a UK Carbon Intensity region \(e.g. 'GB-13'\)"),
        ("52.37,4.90", "carbontrace", r"trace replay \(carbontrace\) has no location lookup"),
        ("gcp:us-west2", "carbontrace", r"no trace zone .* for 'gcp:us-west2' .*give the zone key"),
    ],
)
def test_a_place_a_source_cannot_name_is_refused_with_the_fix(written, source, message):
    with pytest.raises(PlaceError, match=message) as info:
        resolve_place(parse_place(written, W), source, W)
    assert "\n" not in str(info.value)


def test_the_bundled_table_covers_the_major_regions_with_valid_keys():
    table = cloud_regions()
    for provider in CLOUD_PROVIDERS:
        assert sum(name.startswith(f"{provider}:") for name in table) >= 15, provider
    known_zones = set(sample("electricitymaps", "zones.real.unauthenticated.2024.json"))
    for region in table.values():
        assert -90 <= region.latitude <= 90 and -180 <= region.longitude <= 180
        em = region.keys.get("electricitymaps")
        assert em is None or em in known_zones, f"{region.name}: {em} is not an Electricity Maps zone"
        uk = region.keys.get("ukcarbonintensity")
        assert uk is None or (1 <= int(uk) <= 17 and em == "GB"), region.name
    # Europe, North America and Asia/Oceania, for each provider
    for name in ("aws:eu-central-1", "aws:us-east-1", "aws:ap-southeast-2", "gcp:europe-west4", "gcp:us-central1",
                 "gcp:asia-northeast1", "azure:westeurope", "azure:eastus", "azure:japaneast"):
        assert name in table
    assert set(SOURCES) == {"electricitymaps", "watttime", "ukcarbonintensity", "carbontrace"}
