"""Unit conversion to the canonical catalogue: one table, shared by every payload format.

A decoder first decides *which* canonical metric a field is (that depends on the format:
``n="temp"`` in SenML, ``"temperature"`` in a FIWARE entity), then asks this module to bring
the value from the unit it came in to the metric's own unit. Units arrive in two spellings:

* SenML units (RFC 8428 §12.1 registry, RFC 8798 secondary units, plus a few common
  non-registered ones such as ``degF``, ``bar``, ``ppb``): :func:`senml_unit`;
* UN/CEFACT Recommendation 20 common codes, which FIWARE Smart Data Models put in
  ``unitCode`` (``GQ`` = µg/m³, ``GP`` = mg/m³, ``59`` = ppm, ``61`` = ppb, ...):
  :func:`unece_unit`.

Both resolve to an internal unit symbol; the table ``CONVERSIONS[metric][symbol]`` holds the
affine map ``canonical = value * factor + offset``. Anything not in the table is refused
with ``Reject(UNKNOWN_METRIC)`` rather than guessed: a wrong unit is worse than a missing
reading, because it passes every later check.

Two spellings differ on purpose:

* SenML ``%`` is a *ratio* (RFC 8428 §12.1 note 2: "it is NOT a percentage but the absolute
  ratio"); percent is ``/100`` (RFC 8798). UN/CEFACT ``P1`` is percent.
* Gas concentrations in ppm/ppb become mass concentrations with the molar volume of an
  ideal gas at 25 °C and 1 atm, 24.45 L/mol (the US EPA / WHO convention). EU reporting uses
  20 °C (24.04 L/mol); the difference is 1.7 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from urbanbrain.ingest.rejects import Reason, Reject
from urbanbrain.metrics import METRICS

#: L/mol of an ideal gas at 25 °C, 101.325 kPa (US EPA / WHO convention for ppb → µg/m³).
MOLAR_VOLUME_25C = 24.45
#: g/mol
MOLAR_MASS = {"no2": 46.0055, "o3": 47.9982, "so2": 64.066, "co": 28.0101}
#: standard gravity × water density: 1 m of water column in kPa
KPA_PER_METRE_OF_WATER = 9.80665
KMH_PER_KNOT = 1.852
KMH_PER_MPH = 1.609344


@dataclass(frozen=True, slots=True)
class Conversion:
    """``canonical = value * factor + offset``."""

    factor: float
    offset: float = 0.0

    def apply(self, value: float) -> float:
        return value * self.factor + self.offset

    @property
    def identity(self) -> bool:
        return self.factor == 1.0 and self.offset == 0.0


_ID = Conversion(1.0)


def _gas(gas: str, per: float) -> Conversion:
    """ppm/ppb of ``gas`` → µg/m³ (per=1 for ppb, 1000 for ppm)."""
    return Conversion(per * MOLAR_MASS[gas] / MOLAR_VOLUME_25C)


# Internal unit symbols are plain readable spellings; both lookups below map onto them.
CONVERSIONS: dict[str, dict[str, Conversion]] = {
    "vehicle_count": {"count": _ID},
    "flow_vph": {"veh/h": _ID, "1/h": _ID, "1/min": Conversion(60.0), "1/s": Conversion(3600.0)},
    "occupancy_pct": {"%": _ID, "ratio": Conversion(100.0)},
    "speed_kmh": {
        "km/h": _ID,
        "m/s": Conversion(3.6),
        "kn": Conversion(KMH_PER_KNOT),
        "mph": Conversion(KMH_PER_MPH),
    },
    "pm25_ugm3": {"µg/m3": _ID, "mg/m3": Conversion(1000.0)},
    "pm10_ugm3": {"µg/m3": _ID, "mg/m3": Conversion(1000.0)},
    "no2_ugm3": {"µg/m3": _ID, "mg/m3": Conversion(1000.0), "ppb": _gas("no2", 1.0),
                 "ppm": _gas("no2", 1000.0)},
    "o3_ugm3": {"µg/m3": _ID, "mg/m3": Conversion(1000.0), "ppb": _gas("o3", 1.0),
                "ppm": _gas("o3", 1000.0)},
    "so2_ugm3": {"µg/m3": _ID, "mg/m3": Conversion(1000.0), "ppb": _gas("so2", 1.0),
                 "ppm": _gas("so2", 1000.0)},
    # CO is reported in mg/m³: ppm → mg/m³ is the same number as ppb → µg/m³.
    "co_mgm3": {"mg/m3": _ID, "µg/m3": Conversion(0.001), "ppm": _gas("co", 1.0),
                "ppb": _gas("co", 0.001)},
    "noise_dba": {"dB(A)": _ID, "dB": _ID, "bel": Conversion(10.0)},
    "temperature_c": {
        "°C": _ID,
        "K": Conversion(1.0, -273.15),
        "°F": Conversion(5.0 / 9.0, -32.0 * 5.0 / 9.0),
    },
    "humidity_pct": {"%RH": _ID, "%": _ID, "ratio": Conversion(100.0)},
    "wind_speed_ms": {
        "m/s": _ID,
        "km/h": Conversion(1.0 / 3.6),
        "kn": Conversion(KMH_PER_KNOT / 3.6),
        "mph": Conversion(KMH_PER_MPH / 3.6),
    },
    "rain_mmh": {"mm/h": _ID, "m/h": Conversion(1000.0)},
    "pressure_kpa": {
        "kPa": _ID,
        "Pa": Conversion(0.001),
        "hPa": Conversion(0.1),
        "mbar": Conversion(0.1),
        "bar": Conversion(100.0),
        "MPa": Conversion(1000.0),
        "psi": Conversion(6.894757293168361),
        "mH2O": Conversion(KPA_PER_METRE_OF_WATER),
    },
    "flow_ls": {
        "L/s": _ID,
        "m3/s": Conversion(1000.0),
        "m3/h": Conversion(1000.0 / 3600.0),
        "m3/min": Conversion(1000.0 / 60.0),
        "m3/d": Conversion(1000.0 / 86400.0),
        "L/min": Conversion(1.0 / 60.0),
        "L/h": Conversion(1.0 / 3600.0),
    },
    "chlorine_mgl": {"mg/L": _ID, "µg/L": Conversion(0.001), "g/L": Conversion(1000.0),
                     "ppm": _ID},
    "turbidity_ntu": {"NTU": _ID, "FNU": _ID},
    "ph": {"pH": _ID},
    "load_mw": {"MW": _ID, "kW": Conversion(0.001), "W": Conversion(1e-6),
                "GW": Conversion(1000.0)},
    "voltage_kv": {"kV": _ID, "V": Conversion(0.001), "mV": Conversion(1e-6),
                   "MV": Conversion(1000.0)},
    "voltage_pu": {"p.u.": _ID},
    "frequency_hz": {"Hz": _ID, "kHz": Conversion(1000.0), "1/s": _ID},
    "current_a": {"A": _ID, "mA": Conversion(0.001), "kA": Conversion(1000.0)},
}

# Spellings that mean the same in every scheme (never ambiguous between SenML and UN/CEFACT).
_COMMON: dict[str, str] = {
    "°C": "°C", "℃": "°C", "degC": "°C", "K": "K", "°F": "°F", "degF": "°F", "℉": "°F",
    "km/h": "km/h", "kmh": "km/h", "kph": "km/h", "m/s": "m/s", "kn": "kn", "kt": "kn",
    "mph": "mph",
    "µg/m3": "µg/m3", "µg/m³": "µg/m3", "μg/m3": "µg/m3", "μg/m³": "µg/m3", "ug/m3": "µg/m3",
    "ug/m³": "µg/m3", "mg/m3": "mg/m3", "mg/m³": "mg/m3", "ppm": "ppm", "ppb": "ppb",
    "dBA": "dB(A)", "dB(A)": "dB(A)", "dB": "dB",
    "mm/h": "mm/h", "m/h": "m/h",
    "Pa": "Pa", "hPa": "hPa", "kPa": "kPa", "MPa": "MPa", "bar": "bar", "mbar": "mbar",
    "psi": "psi", "mH2O": "mH2O",
    "l/s": "L/s", "L/s": "L/s", "m3/s": "m3/s", "m³/s": "m3/s", "m3/h": "m3/h", "m³/h": "m3/h",
    "m3/min": "m3/min", "m3/d": "m3/d", "l/min": "L/min", "L/min": "L/min", "l/h": "L/h",
    "L/h": "L/h",
    "mg/l": "mg/L", "mg/L": "mg/L", "ug/l": "µg/L", "µg/l": "µg/L", "µg/L": "µg/L",
    "g/l": "g/L", "g/L": "g/L", "NTU": "NTU", "FNU": "FNU", "pH": "pH",
    "W": "W", "kW": "kW", "MW": "MW", "GW": "GW", "V": "V", "mV": "mV", "kV": "kV", "MV": "MV",
    "A": "A", "mA": "mA", "kA": "kA", "Hz": "Hz", "kHz": "kHz",
    "veh/h": "veh/h", "1/h": "1/h", "count": "count", "p.u.": "p.u.", "pu": "p.u.",
}

# RFC 8428 §12.1 and RFC 8798 spellings that only SenML uses (``%`` is a ratio there!).
_SENML_ONLY: dict[str, str] = {
    "Cel": "°C",
    "%RH": "%RH",
    "/": "ratio",
    "%": "ratio",
    "/100": "%",
    "Bspl": "bel",  # bel, sound pressure level (RFC 8428; "B" is the byte in RFC 8798)
    "1/s": "1/s",
    "1/min": "1/min",
}

# UN/CEFACT Recommendation 20 common codes (checked against the Rec 20 code list).
_UNECE: dict[str, str] = {
    "CEL": "°C", "KEL": "K", "FAH": "°F",
    "P1": "%", "C62": "ratio",
    "KMH": "km/h", "MTS": "m/s", "KNT": "kn", "HM": "mph",
    "GQ": "µg/m3", "GP": "mg/m3", "59": "ppm", "61": "ppb",
    "2N": "dB",
    "H67": "mm/h",
    "PAL": "Pa", "A97": "hPa", "KPA": "kPa", "MPA": "MPa", "BAR": "bar", "MBR": "mbar",
    "MTR": "mH2O",  # a pressure given in metres is hydraulic head (EPANET models)
    "G51": "L/s", "MQS": "m3/s", "MQH": "m3/h", "G53": "m3/min", "G52": "m3/d", "L2": "L/min",
    "M1": "mg/L", "H29": "µg/L", "GL": "g/L",
    "Q30": "pH",
    "WTT": "W", "KWT": "kW", "MAW": "MW", "A90": "GW",
    "VLT": "V", "2Z": "mV", "KVT": "kV", "2G": "V", "2H": "V",
    "AMP": "A", "4K": "mA", "B22": "kA",
    "HTZ": "Hz", "KHZ": "kHz",
}


def senml_unit(u: str) -> str | None:
    """Internal symbol for a SenML ``u``/``bu`` value, None if we don't know it."""
    return _SENML_ONLY.get(u) or _COMMON.get(u)


def unece_unit(code: str) -> str | None:
    """Internal symbol for a FIWARE ``unitCode`` (UN/CEFACT code, or a plain symbol).

    Publishers sometimes put a symbol instead of a code; unambiguous symbols are accepted,
    and ``%`` here means percent (there is no ratio reading of it outside SenML).
    """
    if code == "%":
        return "%"
    return _UNECE.get(code) or _COMMON.get(code)


def conversion(metric: str, symbol: str | None) -> Conversion | None:
    """The map from ``symbol`` to ``metric``'s unit; None symbol means "already canonical"."""
    table = CONVERSIONS.get(metric)
    if table is None:
        return None
    if symbol is None:
        return _ID
    return table.get(symbol)


def convert(metric: str, symbol: str | None, value: float) -> float:
    """``value`` in unit ``symbol`` (an internal symbol) → ``metric``'s canonical unit.

    Raises ``Reject(UNKNOWN_METRIC)`` for a unit that is not a unit of this quantity and
    ``Reject(NOT_FINITE)`` when the result is not a finite number (e.g. 1e308 W·1e-6 is fine,
    1e308 kW·1000 overflows).
    """
    if metric not in METRICS:
        raise Reject(Reason.UNKNOWN_METRIC, f"metric {metric!r} is not in the catalogue")
    conv = conversion(metric, symbol)
    if conv is None:
        raise Reject(Reason.UNKNOWN_METRIC, f"unit {symbol!r} is not a unit of {metric}")
    out = conv.apply(value)
    if not math.isfinite(out):
        raise Reject(Reason.NOT_FINITE, f"{metric} = {value!r} {symbol} is not a finite number")
    return out


def accepts_identity(metric: str, symbol: str | None) -> bool:
    """True if ``symbol`` is (a spelling of) ``metric``'s own unit, or no unit at all."""
    conv = conversion(metric, symbol)
    return conv is not None and conv.identity


#: The SenML unit urbanbrain emits with each canonical metric (None: send no ``u``).
SENML_UNIT_OF: dict[str, str | None] = {
    "vehicle_count": "count",
    "flow_vph": None,
    "occupancy_pct": "/100",
    "speed_kmh": "km/h",
    "pm25_ugm3": "ug/m3",
    "pm10_ugm3": "ug/m3",
    "no2_ugm3": "ug/m3",
    "o3_ugm3": "ug/m3",
    "so2_ugm3": "ug/m3",
    "co_mgm3": None,
    "noise_dba": None,
    "temperature_c": "Cel",
    "humidity_pct": "%RH",
    "wind_speed_ms": "m/s",
    "rain_mmh": "mm/h",
    "pressure_kpa": None,
    "flow_ls": "l/s",
    "chlorine_mgl": None,
    "turbidity_ntu": None,
    "ph": "pH",
    "load_mw": None,
    "voltage_kv": None,
    "voltage_pu": None,
    "frequency_hz": "Hz",
    "current_a": "A",
}


def _self_check() -> None:
    """Import-time guard: every catalogue metric has a conversion table with its identity."""
    missing = set(METRICS) - set(CONVERSIONS)
    extra = set(CONVERSIONS) - set(METRICS)
    if missing or extra:  # pragma: no cover - a catalogue change must update this table
        raise RuntimeError(f"units table out of step with the catalogue: {missing=} {extra=}")
    for metric, u in SENML_UNIT_OF.items():
        if u is not None and not accepts_identity(metric, senml_unit(u)):  # pragma: no cover
            raise RuntimeError(f"SenML unit {u!r} is not the identity unit of {metric}")


_self_check()
