"""The city dashboards, as a compact spec. Edit here, then ``python -m urbanbrain.dashboards.build``.

Every query names only measurements and fields that urbanbrain writes (see streams/README.md,
ingest/bridge.py ``_report_loop``, rules/formatters.py ``influx_line`` and
dashboards/registry_points.py); tests/test_dashboards_data.py runs each of them against a real
InfluxDB fed by the real pipeline, so a typo here fails a test, not a control room.

Conventions: ``$timeFilter`` and ``$__interval`` are Grafana's; ``$district``, ``$sensor`` and
``$standard`` are template variables (``All`` = ``.*``, so regex matches are used).

Every measurement is named with its retention policy (urbanbrain/retention.py). Panels over
time pick their data from the dashboard's time range through the hidden resolution variables
of urbanbrain/resolution.py (``$rp_s``, ``$m_<domain>``, ``$sfx``, ``$rp_w``, ``$w1``,
``$w5``, ``$rp_r``, ``$r``): raw points up to a day, 5-min windows up to 14 days, hourly
beyond. Panels that show a value *now* read the 1-min/5-min windows at every range.
"""

from __future__ import annotations

from urbanbrain.dashboards.model import Dashboard, Panel, query_variable, thresholds
from urbanbrain.resolution import VARIABLES, variable_query
from urbanbrain.retention import policy_of
from urbanbrain.streams.indices.aqi_cn import COLORS as CN_COLORS
from urbanbrain.streams.indices.aqi_us import COLORS as US_COLORS

D = '"district" =~ /^$district$/'
S = '"sensor" =~ /^$sensor$/'
TS = "GROUP BY time($__interval)"

#: AQI levels shared by US EPA and both editions of HJ 633 (0–50, 51–100, 101–150, 151–200,
#: 201–300, > 300); only the fifth colour differs between the two standards.
AQI_STEPS = (None, 51, 101, 151, 201, 301)


def aqi_thresholds(colors: tuple[str, ...]) -> dict:
    return thresholds(*zip(AQI_STEPS, colors))


def district_var() -> dict:
    return query_variable("district", "District",
                          'SHOW TAG VALUES FROM "windows"."district_1m" WITH KEY = "district"')


def sensor_var(domain: str) -> dict:
    return query_variable(
        "sensor", "Sensor",
        f'SHOW TAG VALUES FROM "raw"."{domain}" WITH KEY = "sensor" WHERE {D}')


def standard_var() -> dict:
    var = query_variable("standard", "AQI standard",
                         'SHOW TAG VALUES FROM "windows"."aqi" WITH KEY = "standard"',
                         multi=False, include_all=False)
    var["current"] = {"selected": True, "text": "us", "value": "us"}
    return var


def resolution_vars(*names: str) -> list[dict]:
    """Hidden variables that follow the time range (urbanbrain/resolution.py)."""
    out = []
    for name in names:
        var = query_variable(name, VARIABLES[name], variable_query(name), multi=False,
                             include_all=False)
        var["hide"] = 2  # not a choice for the user: the time range decides
        out.append(var)
    return out


#: the resolution variables of a dashboard with sensor panels of ``domain``
def sensor_resolution(domain: str) -> list[dict]:
    return resolution_vars("rp_s", f"m_{domain}", "sfx", "rp_w", "w1", "w5", "rp_r", "r")


def district_series(title: str, domain: str, field: str, unit: str = "", *,
                    agg: str = "mean", w: int = 12, **kw: object) -> Panel:
    """A district roll-up field over time, one line per district (1-min or hourly)."""
    return Panel("timeseries", title, [
        f'SELECT {agg}("{field}") AS "{field}" FROM "$rp_r"."district_${{r}}" WHERE $timeFilter '
        f"AND \"domain\" = '{domain}' AND {D} {TS}, \"district\" fill(none)"],
        w=w, unit=unit, aliases=["$tag_district"], **kw)  # type: ignore[arg-type]


def city_stat(title: str, domain: str, field: str, unit: str = "", **kw: object) -> Panel:
    """The latest city-wide roll-up value of one field (1-min: "now" at any range)."""
    return Panel("stat", title, [
        f'SELECT last("{field}") AS "{field}" FROM "windows"."city_1m" WHERE $timeFilter '
        f"AND \"domain\" = '{domain}'"],
        w=4, h=4, unit=unit, options=_stat_options(), **kw)  # type: ignore[arg-type]


def sensor_series(title: str, domain: str, field: str, unit: str = "", *,
                  w: int = 12, **kw: object) -> Panel:
    """A raw metric per selected sensor over time: raw points, then the ``_mean`` of the
    5-min and hourly windows as the range grows."""
    return Panel("timeseries", title, [
        f'SELECT mean("{field}${{sfx}}") AS "{field}" FROM "$rp_s"."${{m_{domain}}}" '
        f"WHERE $timeFilter AND {D} AND {S} {TS}, \"sensor\" fill(none)"],
        w=w, unit=unit, aliases=["$tag_sensor"], **kw)  # type: ignore[arg-type]


def index_series(title: str, measurement: str, field: str, unit: str = "", *,
                 window: str = "w1", w: int = 12, **kw: object) -> Panel:
    """An index per selected sensor over time, from its 1-min (``w1``) or 5-min (``w5``)
    windows, then 5-min and hourly as the range grows."""
    return Panel("timeseries", title, [
        f'SELECT mean("{field}") AS "{field}" FROM "$rp_w"."{measurement}" WHERE $timeFilter '
        f"AND \"window\" = '${{{window}}}' AND {D} AND {S} {TS}, \"sensor\" fill(none)"],
        w=w, unit=unit, aliases=["$tag_sensor"], **kw)  # type: ignore[arg-type]


def rate(measurement: str, field: str, alias: str, where: str = "",
         by: tuple[str, ...] = ()) -> str:
    """Per-second rate of a counter (per-process ``*_total``), averaged per interval.

    The derivative runs on the raw points (one every report interval) in a subquery and
    ``non_negative_`` drops counter resets at restarts; so a rate exists as soon as two
    reports do, whatever ``$__interval`` is.
    """
    extra = f" AND {where}" if where else ""
    tags = "".join(f', "{t}"' for t in by)
    inner_by = f' GROUP BY {", ".join(chr(34) + t + chr(34) for t in by)}' if by else ""
    return (f'SELECT mean("{alias}") AS "{alias}" FROM (SELECT non_negative_derivative('
            f'"{field}", 1s) AS "{alias}" FROM "{policy_of(measurement)}"."{measurement}" '
            f"WHERE $timeFilter{extra}"
            f"{inner_by}) WHERE $timeFilter {TS}{tags} fill(none)")


def _stat_options() -> dict:
    return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value", "graphMode": "none", "textMode": "auto"}


def _table(sort_by: str | None = None, desc: bool = True) -> list[dict]:
    tr: list[dict] = [{"id": "merge", "options": {}}]
    if sort_by:
        tr.append({"id": "sortBy", "options": {"sort": [{"field": sort_by, "desc": desc}]}})
    return tr


# --- City overview ---------------------------------------------------------------------------

def city_overview() -> Dashboard:
    geomap = Panel(
        "geomap", "Sensors", [
            'SELECT last("lat") AS "lat", last("lon") AS "lon" FROM "longterm"."sensors" '
            f'WHERE {D} GROUP BY "sensor", "district", "domain", "kind"'],
        w=14, h=14, fmt="table", transformations=_table(),
        description="Sensor positions from the device registry (measurement `sensors`, "
                    "written at startup by dashboards/registry_points.py).",
        options={
            "view": {"id": "fit", "lat": 0, "lon": 0, "zoom": 12},
            "controls": {"showZoom": True, "mouseWheelZoom": True},
            "basemap": {"type": "default", "name": "Basemap"},
            "layers": [{
                "type": "markers", "name": "Sensors",
                "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
                "config": {"showLegend": True,
                           "style": {"size": {"fixed": 5}, "color": {"field": "domain"},
                                     "opacity": 0.8}},
                "tooltip": True,
            }],
        })
    active = Panel(
        "bargauge", "Active alerts by district", [
            'SELECT sum("active") AS "active" FROM (SELECT last("active") AS "active" '
            f'FROM "alerts"."alerts" WHERE $timeFilter AND {D} GROUP BY "rule", "district", '
            '"sensor") '
            'GROUP BY "district"'],
        w=10, h=14, fmt="table", transformations=_table("active"),
        thresholds=thresholds((None, "green"), (1, "orange"), (5, "red")),
        options={"orientation": "horizontal", "displayMode": "gradient",
                 "reduceOptions": {"calcs": ["lastNotNull"], "values": True, "fields": ""}})
    readings = Panel("stat", "Readings/s", [
        'SELECT sum("readings_per_s") AS "readings_per_s" FROM (SELECT last("readings_per_s") '
        "AS \"readings_per_s\" FROM \"pipeline\".\"pipeline\" WHERE $timeFilter AND \"stage\" = 'streams' "
        'GROUP BY "worker")'], w=4, h=4, unit="ops", options=_stat_options())
    sensors = Panel("stat", "Sensors reporting", [
        'SELECT sum("sensors") AS "sensors" FROM (SELECT last("sensors") AS "sensors" '
        'FROM "windows"."city_1m" WHERE $timeFilter GROUP BY "domain")'],
        w=4, h=4, options=_stat_options())
    deadletter_rate = Panel("timeseries", "Dead letters/s by reason", [
        rate("deadletters", "count_total", "per_s", by=("stage", "reason"))],
        w=8, h=8, unit="ops", interval="10s", aliases=["$tag_stage $tag_reason"])
    return Dashboard(
        "urbanbrain-city", "City overview", [
            readings, sensors,
            city_stat("Mean AQI (US EPA)", "environment", "aqi_us_mean",
                      thresholds=aqi_thresholds(US_COLORS),
                      description=f"Mean over sensors of the {AQI_STANDARDS['us']}."),
            city_stat("Congestion index", "traffic", "congestion_index_mean", "percentunit",
                      thresholds=thresholds((None, "green"), (0.3, "orange"), (0.6, "red"))),
            city_stat("Power load", "power", "load_mw_total", "MW"),
            city_stat("Water flow", "water", "flow_ls_total", "L/s"),
            geomap, active,
            deadletter_rate,
            district_series("Congestion by district", "traffic", "congestion_index_mean",
                            "percentunit", w=8),
            district_series("AQI (US EPA) by district", "environment", "aqi_us_mean", w=8,
                            thresholds=aqi_thresholds(US_COLORS),
                            description=f"{AQI_STANDARDS['us']}; mean over each district's "
                                        "sensors, 1-min windows.",
                            custom={"thresholdsStyle": {"mode": "line+area"}}),
        ],
        [district_var(), *resolution_vars("rp_r", "r")], ["overview"],
        description="The city at a glance.")


# --- Traffic ---------------------------------------------------------------------------------

def unit_override(column: str, unit: str) -> dict:
    """A table column in its own unit (a table's default unit fits one column at most)."""
    return {"matcher": {"id": "byName", "options": column},
            "properties": [{"id": "unit", "value": unit}]}


def los_mapping() -> dict:
    """``los_code`` 1–6 shown as the HCM letters A–F (streams/derive.py LOS_CODE)."""
    return {"type": "value", "options": {
        str(i): {"text": letter, "index": i - 1} for i, letter in enumerate("ABCDEF", start=1)}}


def traffic() -> Dashboard:
    los = Panel("table", "Level of service now (5 min)", [
        'SELECT last("los") AS "los", last("congestion_index") AS "congestion_index", '
        'last("speed_kmh") AS "speed_kmh", last("flow_vph") AS "flow_vph" '
        'FROM "windows"."traffic_index" '
        f"WHERE $timeFilter AND \"window\" = '5m' AND {D} GROUP BY \"district\", \"sensor\""],
        w=12, h=10, fmt="table", transformations=_table("congestion_index"),
        overrides=[unit_override("congestion_index", "percentunit"),
                   unit_override("speed_kmh", "velocitykmh"),
                   unit_override("flow_vph", "veh/h")])
    return Dashboard("urbanbrain-traffic", "Traffic", [
        city_stat("City congestion", "traffic", "congestion_index_mean", "percentunit"),
        city_stat("City flow", "traffic", "flow_vph_total", "veh/h"),
        city_stat("City mean speed", "traffic", "speed_kmh_mean", "velocitykmh"),
        city_stat("Loops reporting", "traffic", "sensors"),
        Panel("stat", "Worst level of service", [
            # each loop's latest 5-min window, then the worst: windows close on event time
            # (end + allowed lateness), so "the last 10 minutes" of wall time may hold none
            'SELECT max("los_code") AS "los_code" FROM (SELECT last("los_code") AS "los_code" '
            f"FROM \"windows\".\"traffic_index\" WHERE $timeFilter AND \"window\" = '5m' AND {D} "
            'GROUP BY "sensor")'], w=8, h=4,
            options=_stat_options(), mappings=[los_mapping()],
            description="Worst HCM level of service (A best, F worst) over the loops' latest "
                        "5-minute windows.",
            thresholds=thresholds((None, "green"), (4, "orange"), (5, "red"))),
        district_series("Congestion index by district", "traffic", "congestion_index_mean",
                        "percentunit"),
        district_series("Flow by district", "traffic", "flow_vph_total", "veh/h"),
        district_series("Mean speed by district", "traffic", "speed_kmh_mean", "velocitykmh"),
        los,
        index_series("Speed by sensor (windows)", "traffic_index", "speed_kmh",
                     "velocitykmh"),
        sensor_series("Occupancy by sensor", "traffic", "occupancy_pct", "percent"),
    ], [district_var(), sensor_var("traffic"), *sensor_resolution("traffic")], ["traffic"])


# --- Environment -----------------------------------------------------------------------------

#: What each ``aqi`` standard is, for panel descriptions (the ``edition`` tag says which
#: edition a point was computed by: ``epa-2024``, ``hj633-2012``, ``hj633-2026``).
AQI_STANDARDS = {
    "us": "US EPA AQI, Technical Assistance Document EPA-454/B-24-002 (May 2024)",
    "cn": "China AQI, HJ 633-2026 for data from 2026-03-01 00:00 UTC+8 and HJ 633-2012 "
          "before (or the edition URBANBRAIN_STREAMS_AQI_CN_EDITION pins)",
}


def _aqi_series(title: str, standard: str, colors: tuple[str, ...]) -> Panel:
    return Panel("timeseries", title, [
        'SELECT mean("aqi") AS "aqi" FROM "$rp_w"."aqi" WHERE $timeFilter '
        f"AND \"standard\" = '{standard}' AND \"window\" = '${{w5}}' AND {D} "
        f'{TS}, "district", "edition" fill(none)'],
        w=12, aliases=["$tag_district ($tag_edition)"], thresholds=aqi_thresholds(colors),
        description=f"{AQI_STANDARDS[standard]}; the legend names each line's edition. "
                    "5-min window means per sensor (hourly beyond 14 days), averaged per "
                    "district.",
        custom={"thresholdsStyle": {"mode": "line+area"}})


def environment() -> Dashboard:
    aqi_now = Panel("table", "AQI now by sensor ($standard, 5 min)", [
        'SELECT last("aqi") AS "aqi", last("category") AS "category", '
        'last("primary") AS "primary", last("color") AS "color" FROM "windows"."aqi" '
        f"WHERE $timeFilter AND \"standard\" = '$standard' AND \"window\" = '5m' AND {D} "
        'GROUP BY "district", "sensor", "edition"'],
        w=24, h=9, fmt="table", transformations=_table("aqi"),
        description="Latest 5-min AQI per sensor; the edition column names the standard "
                    "(epa-2024: US EPA TAD May 2024; hj633-2026 / hj633-2012: China HJ 633).",
        thresholds=aqi_thresholds(US_COLORS),
        overrides=[{"matcher": {"id": "byName", "options": "aqi"},
                    "properties": [{"id": "custom.cellOptions",
                                    "value": {"type": "color-background"}}]}])
    advice = Panel("table", "Public health advice now (China HJ 633, 5 min)", [
        'SELECT last("aqi") AS "aqi", last("category") AS "category", '
        'last("advice") AS "advice", last("sensitive_groups") AS "sensitive_groups", '
        'last("advice_en") AS "advice_en", last("sensitive_groups_en") AS '
        "\"sensitive_groups_en\" FROM \"windows\".\"aqi\" WHERE $timeFilter "
        "AND \"standard\" = 'cn' "
        f"AND \"window\" = '5m' AND {D} "
        'GROUP BY "district", "sensor", "edition"'],
        w=24, h=9, fmt="table", transformations=_table("aqi"),
        thresholds=aqi_thresholds(CN_COLORS),
        description="The message for the public per sensor: 建议采取的措施 of the AQI level "
                    "(HJ 633-2026 Table 1; HJ 633-2012 Table 2 for older data) and, from "
                    "HJ 633-2026 Table 2, the sensitive groups of each pollutant whose IAQI "
                    "is above 100. Chinese as in the standard; the English columns are our "
                    "rendering.",
        overrides=[{"matcher": {"id": "byName", "options": "aqi"},
                    "properties": [{"id": "custom.cellOptions",
                                    "value": {"type": "color-background"}}]}])
    return Dashboard("urbanbrain-environment", "Environment", [
        city_stat("City AQI (US EPA)", "environment", "aqi_us_max",
                  thresholds=aqi_thresholds(US_COLORS),
                  description=f"Worst sensor's {AQI_STANDARDS['us']}; 1-min window means."),
        city_stat("City AQI (China HJ 633)", "environment", "aqi_cn_max",
                  thresholds=aqi_thresholds(CN_COLORS),
                  description=f"Worst sensor's {AQI_STANDARDS['cn']}; 1-min window means."),
        city_stat("City PM2.5", "environment", "pm25_ugm3_mean", "conμgm3"),
        city_stat("City noise", "environment", "noise_dba_mean", "dB"),
        city_stat("Temperature", "environment", "temperature_c_mean", "celsius"),
        city_stat("Humidity", "environment", "humidity_pct_mean", "percent"),
        _aqi_series("AQI (US EPA) by district", "us", US_COLORS),
        _aqi_series("AQI (China HJ 633) by district", "cn", CN_COLORS),
        aqi_now,
        advice,
        district_series("PM2.5 by district", "environment", "pm25_ugm3_mean", "conμgm3"),
        district_series("NO2 by district", "environment", "no2_ugm3_mean", "conμgm3"),
        district_series("O3 by district", "environment", "o3_ugm3_mean", "conμgm3"),
        district_series("Noise by district", "environment", "noise_dba_mean", "dB"),
        sensor_series("PM2.5 by sensor", "environment", "pm25_ugm3", "conμgm3"),
        sensor_series("PM10 by sensor", "environment", "pm10_ugm3", "conμgm3"),
    ], [district_var(), sensor_var("environment"), standard_var(),
        *sensor_resolution("environment")], ["environment"])


# --- Water -----------------------------------------------------------------------------------

def water() -> Dashboard:
    return Dashboard("urbanbrain-water", "Water", [
        city_stat("City flow", "water", "flow_ls_total", "L/s"),
        city_stat("Mean pressure", "water", "pressure_kpa_mean", "pressurekpa"),
        city_stat("Lowest pressure", "water", "pressure_kpa_min", "pressurekpa",
                  thresholds=thresholds((None, "red"), (150, "orange"), (250, "green"))),
        city_stat("Mean chlorine", "water", "chlorine_mgl_mean", "mg/L",
                  thresholds=thresholds((None, "red"), (0.2, "green"), (2, "orange"))),
        city_stat("Max turbidity", "water", "turbidity_ntu_max", "NTU",
                  thresholds=thresholds((None, "green"), (1, "orange"), (4, "red"))),
        city_stat("Meters reporting", "water", "sensors"),
        district_series("Mean pressure by district", "water", "pressure_kpa_mean",
                        "pressurekpa"),
        district_series("Flow by district", "water", "flow_ls_total", "L/s"),
        Panel("timeseries", "Volume through meters by district", [
            'SELECT sum("volume_m3") AS "volume_m3" FROM "$rp_w"."water_index" '
            f"WHERE $timeFilter AND \"window\" = '${{w1}}' AND {D} {TS}, \"district\" "
            "fill(none)"],
            w=12, unit="m3", aliases=["$tag_district"]),
        index_series("Minimum pressure by sensor (windows)", "water_index", "pressure_min_kpa",
                     "pressurekpa"),
        sensor_series("Chlorine by sensor", "water", "chlorine_mgl", "mg/L"),
        sensor_series("Turbidity by sensor", "water", "turbidity_ntu", "NTU"),
    ], [district_var(), sensor_var("water"), *sensor_resolution("water")], ["water", "utilities"])


# --- Power -----------------------------------------------------------------------------------

def power() -> Dashboard:
    return Dashboard("urbanbrain-power", "Power", [
        city_stat("City load", "power", "load_mw_total", "MW"),
        city_stat("Voltage deviation", "power", "voltage_deviation_pct_max", "percent",
                  thresholds=thresholds((None, "green"), (5, "orange"), (10, "red"))),
        city_stat("Frequency deviation", "power", "frequency_deviation_hz_max", "hertz",
                  thresholds=thresholds((None, "green"), (0.2, "orange"), (0.5, "red"))),
        city_stat("Mean frequency", "power", "frequency_hz_mean", "hertz"),
        city_stat("Substations reporting", "power", "sensors"),
        Panel("stat", "Peak load factor", [
            'SELECT max("load_factor") AS "load_factor" FROM "$rp_w"."power_index" '
            f"WHERE $timeFilter AND \"window\" = '${{w5}}' AND {D}"], w=4, h=4,
            unit="percentunit",
            options=_stat_options()),
        district_series("Load by district", "power", "load_mw_total", "MW"),
        district_series("Voltage deviation by district", "power",
                        "voltage_deviation_pct_mean", "percent"),
        district_series("Frequency deviation by district", "power",
                        "frequency_deviation_hz_mean", "hertz"),
        index_series("Load factor by sensor (5-min windows)", "power_index", "load_factor",
                     "percentunit", window="w5"),
        sensor_series("Frequency by sensor", "power", "frequency_hz", "hertz"),
        sensor_series("Voltage by sensor", "power", "voltage_kv", "kvolt"),
    ], [district_var(), sensor_var("power"), *sensor_resolution("power")], ["power", "utilities"])


# --- Alerts ----------------------------------------------------------------------------------

A = f'"alerts"."alerts" WHERE $timeFilter AND {D} AND "severity" =~ /^$severity$/'


def alerts() -> Dashboard:
    firing_now = Panel("table", "Firing now", [
        'SELECT last("active") AS "active", last("summary") AS "summary", '
        'last("value") AS "value", last("starts_at_ms") AS "since" '
        f'FROM {A} GROUP BY "rule", "severity", "district", "sensor"'],
        w=24, h=9, fmt="table",
        transformations=[
            {"id": "merge", "options": {}},
            {"id": "filterByValue", "options": {
                "type": "include", "match": "all",
                "filters": [{"fieldName": "active",
                             "config": {"id": "equal", "options": {"value": 1}}}]}},
            {"id": "organize", "options": {"excludeByName": {"Time": True, "active": True}}},
            {"id": "sortBy", "options": {"sort": [{"field": "since", "desc": True}]}},
        ],
        overrides=[{"matcher": {"id": "byName", "options": "since"},
                    "properties": [{"id": "unit", "value": "dateTimeAsIso"}]}])
    return Dashboard("urbanbrain-alerts", "Alerts", [
        Panel("stat", "Firing now", [
            'SELECT sum("active") AS "active" FROM (SELECT last("active") AS "active" '
            f'FROM {A} GROUP BY "rule", "district", "sensor")'],
            w=6, h=4, options=_stat_options(),
            thresholds=thresholds((None, "green"), (1, "orange"), (10, "red"))),
        Panel("stat", "Resolved in range", [
            f'SELECT count("duration_s") AS "resolved" FROM {A} AND "status" = \'resolved\''],
            w=6, h=4, options=_stat_options()),
        Panel("stat", "Median time to resolve", [
            f'SELECT median("duration_s") AS "duration_s" FROM {A} AND "status" = \'resolved\''],
            w=6, h=4, unit="s", options=_stat_options()),
        Panel("stat", "Firings in range", [
            f'SELECT count("active") AS "firings" FROM {A} AND "status" = \'firing\''],
            w=6, h=4, options=_stat_options()),
        firing_now,
        Panel("timeseries", "Transitions by status", [
            f'SELECT count("active") AS "transitions" FROM {A} {TS}, "status" fill(0)'],
            w=12, aliases=["$tag_status"], custom={"drawStyle": "bars", "fillOpacity": 60}),
        Panel("bargauge", "Top noisy rules", [
            f'SELECT count("active") AS "firings" FROM {A} AND "status" = \'firing\' '
            'GROUP BY "rule"'],
            w=12, fmt="table", transformations=[
                *_table("firings"), {"id": "limit", "options": {"limitField": 10}}],
            options={"orientation": "horizontal", "displayMode": "gradient",
                     "reduceOptions": {"calcs": ["lastNotNull"], "values": True,
                                       "fields": ""}}),
        Panel("table", "Time to resolve by rule", [
            'SELECT mean("duration_s") AS "mean", max("duration_s") AS "max", '
            f'count("duration_s") AS "resolved" FROM {A} AND "status" = \'resolved\' '
            'GROUP BY "rule"'],
            w=12, fmt="table", unit="s", transformations=_table("mean"),
            overrides=[unit_override("resolved", "none")]),  # a count, not seconds
        Panel("table", "History", [
            'SELECT "status", "rule", "severity", "district", "sensor", "summary", "value" '
            f"FROM {A} ORDER BY time DESC LIMIT 500"],
            w=12, fmt="table"),
    ], [district_var(),
        query_variable("severity", "Severity",
                       'SHOW TAG VALUES FROM "alerts"."alerts" WITH KEY = "severity"')],
        ["alerts"], time_from="now-24h")


# --- Pipeline health -------------------------------------------------------------------------

P = '"pipeline"."pipeline" WHERE $timeFilter'
STREAMS = "\"stage\" = 'streams'"
#: who stores raw points: the worker (stage streams) or the raw store (stage raw,
#: URBANBRAIN_STREAMS_RAW_POINTS=own-group); freshness and lag read whichever reports
STORING = "(\"stage\" = 'streams' OR \"stage\" = 'raw')"
INGEST = "\"stage\" = 'ingest'"


def pipeline() -> Dashboard:
    def ts(title: str, queries: list[str], aliases: list[str], unit: str = "",
           w: int = 12) -> Panel:
        return Panel("timeseries", title, queries, w=w, unit=unit, aliases=aliases,
                     interval="10s")

    return Dashboard("urbanbrain-pipeline", "Pipeline health", [
        ts("Readings/s per stage", [
            rate("pipeline", "readings_total", "readings_per_s", INGEST, ("client",)),
            f'SELECT mean("readings_per_s") AS "readings_per_s" FROM {P} AND {STREAMS} '
            f'{TS}, "worker" fill(none)'],
            ["ingest $tag_client", "streams $tag_worker"], "ops"),
        ts("MQTT messages/s and Kafka records/s (ingest)", [
            f'SELECT mean("messages_per_s") AS "messages_per_s" FROM {P} AND {INGEST} '
            f'{TS}, "client" fill(none)',
            rate("pipeline", "kafka_records_total", "records_per_s", INGEST, ("client",))],
            ["messages $tag_client", "kafka records $tag_client"], "ops"),
        ts("Dead letters/s by reason", [
            rate("deadletters", "count_total", "per_s", by=("stage", "reason"))],
            ["$tag_stage $tag_reason"], "ops"),
        Panel("table", "Dead letters by reason (since start)", [
            'SELECT last("count_total") AS "count_total" FROM "deadletters"."deadletters" '
            'WHERE $timeFilter GROUP BY "stage", "reason"'],
            w=12, fmt="table", transformations=_table("count_total")),
        ts("Sink write latency (InfluxDB batch)", [
            f'SELECT mean("write_batch_ms") AS "mean", max("write_batch_ms") AS "max" '
            f'FROM {P} AND {STREAMS} {TS} fill(none)'], ["", ""], "ms"),
        ts("Sink retries and refused points", [
            f'SELECT max("write_retries_total") AS "write_retries", '
            f'max("refused_total") AS "refused" FROM {P} AND {STREAMS} {TS} fill(none)'],
            [""], ""),
        ts("Late readings/s (closed windows)", [
            rate("pipeline", "late_total", "late_per_s", STREAMS, ("worker",))],
            ["$tag_worker"], "ops"),
        ts("Consumer lag (records)", [
            f'SELECT max("lag_records") AS "lag_records" FROM {P} AND {STORING} '
            f'{TS}, "stage", "worker" fill(none)'], ["$tag_stage $tag_worker"]),
        ts("Freshness: event time → raw point stored", [
            f'SELECT max("lat_p50_ms") AS "p50", max("lat_p95_ms") AS "p95", '
            f'max("lat_p99_ms") AS "p99" FROM {P} AND {STORING} {TS} fill(none)'],
            ["", "", ""], "ms"),
        ts("Alerts handed to Kafka/s", [
            rate("pipeline", "sent_kafka_total", "alerts_per_s", "\"stage\" = 'alerts'",
                 ("worker",))],
            ["$tag_worker"], "ops"),
        ts("Agent batch time", [
            f'SELECT mean("agent_batch_ms") AS "agent_batch_ms" FROM {P} AND {STREAMS} '
            f'{TS}, "worker" fill(none)'], ["$tag_worker"], "ms"),
        ts("Ingest in-flight messages", [
            f'SELECT max("inflight") AS "inflight" FROM {P} AND {INGEST} '
            f'{TS}, "client" fill(none)'], ["$tag_client"]),
        ts("Points written/s (InfluxDB)", [
            f'SELECT mean("points_per_s") AS "points_per_s" FROM {P} AND {STREAMS} '
            f'{TS}, "worker" fill(none)'], ["$tag_worker"], "ops"),
        ts("Windows and roll-ups", [
            rate("pipeline", "windows_emitted_total", "windows_per_s", STREAMS, ("worker",)),
            rate("pipeline", "rollups_emitted_total", "rollups_per_s", STREAMS, ("worker",)),
            f'SELECT max("open_panes") AS "open_panes" FROM {P} AND {STREAMS} {TS} fill(none)'],
            ["windows/s $tag_worker", "roll-ups/s $tag_worker", "open panes"], ""),
    ], [], ["pipeline", "ops"], time_from="now-1h", refresh="10s")


def dashboards() -> list[Dashboard]:
    """All dashboards, in the order the folder lists them."""
    return [city_overview(), traffic(), environment(), water(), power(), alerts(), pipeline()]
