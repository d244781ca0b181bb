"""Domain indices as pure, vectorised functions over numpy arrays of window aggregates.

The Faust agents call these on batches; nothing here knows about Faust, Kafka or InfluxDB.
See README.md in this folder for each index, its source and its known caveats.
"""

from ._common import AqiReport
from .aqi_cn import (
    aqi_category_cn,
    aqi_cn,
    aqi_cn_report,
    aqi_color_cn,
    aqi_level_cn,
    exceeding_pollutants_cn,
    iaqi_cn,
    iaqi_cn_all,
    primary_pollutants_cn,
)
from .aqi_us import (
    aqi_category_us,
    aqi_color_us,
    aqi_us,
    aqi_us_report,
    mgm3_to_ppm,
    primary_pollutant_us,
    sub_index_us,
    sub_index_us_o3,
    sub_index_us_so2,
    sub_indices_us,
    sub_indices_us_from_mass,
    truncate_us,
    ugm3_to_ppb,
    ugm3_to_ppm,
)
from .traffic import (
    DEFAULT_FREE_FLOW_KMH,
    congestion_index,
    density_vpkm,
    flow_vph,
    free_flow_speed,
    harmonic_mean_speed,
    level_of_service,
    occupancy_pct,
    space_mean_speed,
)
from .utilities import (
    daily_mean_flow,
    frequency_deviation_hz,
    load_factor,
    minimum_night_flow,
    night_flow_ratio,
    pressure_stats,
    voltage_deviation_pct,
)

__all__ = [
    "AqiReport",
    # US EPA AQI
    "ugm3_to_ppb",
    "ugm3_to_ppm",
    "mgm3_to_ppm",
    "truncate_us",
    "sub_index_us",
    "sub_index_us_o3",
    "sub_index_us_so2",
    "sub_indices_us",
    "sub_indices_us_from_mass",
    "aqi_us",
    "primary_pollutant_us",
    "aqi_category_us",
    "aqi_color_us",
    "aqi_us_report",
    # China HJ 633-2012
    "iaqi_cn",
    "iaqi_cn_all",
    "aqi_cn",
    "primary_pollutants_cn",
    "exceeding_pollutants_cn",
    "aqi_level_cn",
    "aqi_category_cn",
    "aqi_color_cn",
    "aqi_cn_report",
    # traffic
    "DEFAULT_FREE_FLOW_KMH",
    "flow_vph",
    "harmonic_mean_speed",
    "space_mean_speed",
    "occupancy_pct",
    "density_vpkm",
    "free_flow_speed",
    "congestion_index",
    "level_of_service",
    # utilities
    "pressure_stats",
    "minimum_night_flow",
    "daily_mean_flow",
    "night_flow_ratio",
    "voltage_deviation_pct",
    "frequency_deviation_hz",
    "load_factor",
]
