"""ingest/units.py: every conversion against values worked out by hand or from references."""

from __future__ import annotations

import math

import pytest

from urbanbrain.ingest import units
from urbanbrain.ingest.rejects import Reason, Reject
from urbanbrain.ingest.units import (
    CONVERSIONS,
    MOLAR_VOLUME_25C,
    SENML_UNIT_OF,
    accepts_identity,
    convert,
    senml_unit,
    unece_unit,
)
from urbanbrain.metrics import METRICS


@pytest.mark.parametrize(
    ("metric", "unit", "value", "expected"),
    [
        # K → °C
        ("temperature_c", "K", 273.15, 0.0),
        ("temperature_c", "K", 300.0, 26.85),
        ("temperature_c", "K", 0.0, -273.15),
        # °F → °C
        ("temperature_c", "°F", 32.0, 0.0),
        ("temperature_c", "°F", 212.0, 100.0),
        ("temperature_c", "°F", -40.0, -40.0),
        ("temperature_c", "°F", 98.6, 37.0),
        # Pa / hPa / bar / mbar / head → kPa
        ("pressure_kpa", "Pa", 101_325.0, 101.325),
        ("pressure_kpa", "hPa", 1013.25, 101.325),
        ("pressure_kpa", "mbar", 1013.25, 101.325),
        ("pressure_kpa", "bar", 2.5, 250.0),
        ("pressure_kpa", "mH2O", 10.0, 98.0665),
        ("pressure_kpa", "psi", 100.0, 689.4757293168361),
        # speeds
        ("speed_kmh", "m/s", 10.0, 36.0),
        ("speed_kmh", "kn", 1.0, 1.852),
        ("speed_kmh", "mph", 60.0, 96.56064),
        ("wind_speed_ms", "km/h", 36.0, 10.0),
        # electrical
        ("load_mw", "W", 31_700.269531, 0.031700269531),
        ("load_mw", "kW", 2500.0, 2.5),
        ("voltage_kv", "V", 230.0, 0.23),
        ("voltage_kv", "V", 120.1, 0.1201),
        ("current_a", "mA", 1500.0, 1.5),
        # flow
        ("flow_ls", "m3/h", 36.0, 10.0),
        ("flow_ls", "m3/s", 1.5, 1500.0),
        ("flow_ls", "L/min", 120.0, 2.0),
        ("flow_vph", "1/min", 2.0, 120.0),
        # fraction → %
        ("occupancy_pct", "ratio", 0.76, 76.0),
        ("humidity_pct", "ratio", 0.54, 54.0),
        ("humidity_pct", "%RH", 54.0, 54.0),
        # mass concentrations
        ("pm25_ugm3", "mg/m3", 0.012, 12.0),
        ("co_mgm3", "µg/m3", 1150.0, 1.15),
        ("chlorine_mgl", "µg/L", 500.0, 0.5),
    ],
)
def test_conversions(metric: str, unit: str, value: float, expected: float) -> None:
    assert convert(metric, unit, value) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_ppb_no2_to_ugm3_at_25c() -> None:
    # 1 ppb NO2 = M / Vm µg/m³ = 46.0055 / 24.45 ≈ 1.8816 (the US EPA figure is 1.88)
    assert convert("no2_ugm3", "ppb", 1.0) == pytest.approx(46.0055 / 24.45)
    assert convert("no2_ugm3", "ppb", 100.0) == pytest.approx(188.16, abs=0.01)
    assert convert("no2_ugm3", "ppm", 0.1) == pytest.approx(188.16, abs=0.01)
    assert MOLAR_VOLUME_25C == 24.45


@pytest.mark.parametrize(
    ("metric", "unit", "expected"),
    [
        ("o3_ugm3", "ppb", 1.9631),  # 47.9982 / 24.45
        ("so2_ugm3", "ppb", 2.6203),  # 64.066 / 24.45
        ("co_mgm3", "ppm", 1.1456),  # 28.0101 / 24.45, mg/m³ per ppm
        ("co_mgm3", "ppb", 0.0011456),
    ],
)
def test_other_gases(metric: str, unit: str, expected: float) -> None:
    assert convert(metric, unit, 1.0) == pytest.approx(expected, rel=1e-4)


def test_every_catalogue_metric_has_its_identity_and_only_catalogue_metrics() -> None:
    assert set(CONVERSIONS) == set(METRICS)
    for metric, table in CONVERSIONS.items():
        assert any(c.identity for c in table.values()), metric
        assert convert(metric, None, 12.5) == 12.5


def test_unknown_unit_and_metric_are_refused() -> None:
    with pytest.raises(Reject) as exc:
        convert("temperature_c", "Pa", 1.0)
    assert exc.value.reason is Reason.UNKNOWN_METRIC
    with pytest.raises(Reject) as exc:
        convert("temperature_f", "°F", 1.0)
    assert exc.value.reason is Reason.UNKNOWN_METRIC


def test_overflow_is_not_finite() -> None:
    with pytest.raises(Reject) as exc:
        convert("flow_ls", "m3/s", 1e308)
    assert exc.value.reason is Reason.NOT_FINITE


def test_senml_spellings() -> None:
    assert senml_unit("Cel") == "°C"
    assert senml_unit("K") == "K"
    assert senml_unit("degF") == "°F"
    assert senml_unit("%RH") == "%RH"
    # RFC 8428 §12.1 note 2: "%" is the ratio, percent is "/100" (RFC 8798)
    assert senml_unit("%") == "ratio"
    assert senml_unit("/") == "ratio"
    assert senml_unit("/100") == "%"
    assert senml_unit("ug/m3") == "µg/m3"
    assert senml_unit("l/s") == "L/s"
    assert senml_unit("C") is None  # coulomb, never Celsius
    assert senml_unit("%EL") is None


def test_unece_codes() -> None:
    codes = {
        "CEL": "°C", "KEL": "K", "FAH": "°F", "GQ": "µg/m3", "GP": "mg/m3", "59": "ppm",
        "61": "ppb", "P1": "%", "C62": "ratio", "KMH": "km/h", "MTS": "m/s", "KNT": "kn",
        "PAL": "Pa", "A97": "hPa", "KPA": "kPa", "BAR": "bar", "MTR": "mH2O", "G51": "L/s",
        "MQS": "m3/s", "MQH": "m3/h", "L2": "L/min", "M1": "mg/L", "WTT": "W", "KWT": "kW",
        "MAW": "MW", "VLT": "V", "KVT": "kV", "AMP": "A", "HTZ": "Hz", "2N": "dB",
    }
    for code, symbol in codes.items():
        assert unece_unit(code) == symbol, code
    assert unece_unit("%") == "%"  # outside SenML a bare % is percent
    assert unece_unit("XYZ") is None


def test_fiware_example_values() -> None:
    # AirQualityObserved: CO 500 GP, NO2 69 GQ, relativeHumidity 0.54
    assert convert("co_mgm3", unece_unit("GP"), 500) == 500
    assert convert("no2_ugm3", unece_unit("GQ"), 69) == 69
    assert convert("humidity_pct", "ratio", 0.54) == pytest.approx(54.0)
    # EPANET Junction pressure: 20 m of head
    assert convert("pressure_kpa", unece_unit("MTR"), 20) == pytest.approx(196.133)
    # ItemFlowObserved averageSpeed 2.7 knots
    assert convert("speed_kmh", unece_unit("KNT"), 2.7) == pytest.approx(5.0004)


def test_identity_units() -> None:
    assert accepts_identity("occupancy_pct", senml_unit("/100"))
    assert not accepts_identity("occupancy_pct", senml_unit("%"))  # a ratio
    assert accepts_identity("temperature_c", senml_unit("Cel"))
    assert not accepts_identity("temperature_c", senml_unit("K"))
    assert accepts_identity("speed_kmh", None)


def test_emitted_senml_units_are_identities() -> None:
    assert set(SENML_UNIT_OF) == set(METRICS)
    for metric, u in SENML_UNIT_OF.items():
        if u is not None:
            assert accepts_identity(metric, senml_unit(u)), (metric, u)


def test_conversions_are_affine_and_finite() -> None:
    for metric, table in CONVERSIONS.items():
        for symbol, conv in table.items():
            assert math.isfinite(conv.factor) and conv.factor > 0, (metric, symbol)
            assert math.isfinite(conv.offset), (metric, symbol)
            assert conv.apply(0.0) == pytest.approx(conv.offset)
    assert units.KPA_PER_METRE_OF_WATER == 9.80665
