"""Vectorised generation of "normal" readings for every sensor at a tick.

One call computes a whole kind at once with numpy (a 5,000-sensor tick takes a few ms), so
the simulator can offer far more load than the pipeline ingests. The shapes of the curves
are what operators expect to see: morning and evening rush hours and quieter weekends on
the roads, NO2/CO that follow the traffic of their district and fall with wind, ozone that
peaks in the afternoon and is titrated by NO2, a water demand curve with its night minimum
between 02:00 and 04:00, and a power load curve with its evening peak.

Values are rounded to the resolution a real device reports (0.1 km/h, 0.01 µg/m³, ...),
so textual encodings are short and every value survives a JSON round trip exactly.
"""

from __future__ import annotations

import math

import numpy as np

from urbanbrain.simulators.city import KINDS, City

# decimals each metric is reported with
DECIMALS: dict[str, int] = {
    "vehicle_count": 0, "occupancy_pct": 1, "speed_kmh": 1, "flow_vph": 0,
    "pm25_ugm3": 1, "pm10_ugm3": 1, "no2_ugm3": 1, "o3_ugm3": 1, "co_mgm3": 2,
    "noise_dba": 1, "temperature_c": 1, "humidity_pct": 1, "wind_speed_ms": 1,
    "rain_mmh": 1, "pressure_kpa": 1, "flow_ls": 2, "chlorine_mgl": 2, "turbidity_ntu": 2,
    "load_mw": 2, "voltage_kv": 3, "frequency_hz": 3,
}

VEHICLE_LENGTH_KM = 0.0065  # effective vehicle + loop length for occupancy


def _g(h: float, mu: float, sigma: float) -> float:
    """Gaussian bump on the 24-hour circle."""
    d = (h - mu + 12.0) % 24.0 - 12.0
    return math.exp(-0.5 * (d / sigma) ** 2)


def local_time(t_ms: int, utc_offset_h: float) -> tuple[float, int]:
    """(hour of day as float, day of week with Monday = 0) in the city's local time."""
    hours = t_ms / 3_600_000.0 + utc_offset_h
    days = math.floor(hours / 24.0)
    return hours - 24.0 * days, (days + 3) % 7  # 1970-01-01 was a Thursday


def traffic_profile(h: float, dow: int) -> float:
    """Relative demand (≈1 at the morning peak of a weekday), minimum around 03:00."""
    if dow < 5:
        p = 0.06 + 1.0 * _g(h, 8.0, 1.0) + 0.9 * _g(h, 17.5, 1.4) + 0.45 * _g(h, 13.0, 3.0)
        if dow == 4:  # Friday: earlier, longer evening
            p += 0.1 * _g(h, 16.0, 2.0)
        return p
    scale = 0.65 if dow == 5 else 0.45
    return 0.06 + scale * (0.9 * _g(h, 14.0, 3.5) + 0.2 * _g(h, 20.0, 2.0))


def water_profile(h: float, dow: int) -> float:
    """Relative water demand: night minimum 02:00–04:00, morning and evening peaks."""
    morning = 8.0 if dow < 5 else 9.5
    return 0.3 + 0.9 * _g(h, morning - 0.5, 1.3) + 0.45 * _g(h, 12.5, 2.0) + 0.7 * _g(h, 19.5, 1.8)


def power_profile(h: float, dow: int) -> float:
    """Relative electrical load: night trough, daytime plateau, evening peak."""
    p = 0.5 + 0.22 * _g(h, 8.5, 1.5) + 0.25 * _g(h, 13.0, 3.0) + 0.4 * _g(h, 19.0, 2.0)
    return p * (1.0 if dow < 5 else 0.85)


class SignalModel:
    """Normal behaviour of every sensor; stateful (random walks), deterministic from seed."""

    def __init__(self, city: City, seed: int, interval_s: float = 60.0) -> None:
        self.city = city
        self.interval_s = interval_s
        self.rng = np.random.default_rng([seed, 101])
        rng = self.rng
        loops = city.of_kind("loop")
        self.cap = np.array([s.capacity_vph for s in loops])
        self.lanes = np.where(self.cap > 2000, 2.0, 1.0)
        self.ff = np.array([s.free_flow_kmh for s in loops])
        self.demand = np.array([s.params.get("demand", 1.0) for s in loops])
        self.loop_district = city.district_of[city.kind_slices["loop"]]
        n_d = len(city.districts)
        self.n_districts = n_d
        self.loops_per_district = np.maximum(np.bincount(self.loop_district, minlength=n_d), 1)
        self.loop_ar = np.zeros(len(loops))

        aq = city.of_kind("air_quality")
        self.aq_district = city.district_of[city.kind_slices["air_quality"]]
        self.aq_exposure = np.array([s.params.get("exposure", 1.0) for s in aq])
        self.aq_ar = np.zeros((len(aq), 2))
        nz = city.of_kind("noise")
        self.nz_district = city.district_of[city.kind_slices["noise"]]
        self.nz_exposure = np.array([s.params.get("exposure", 1.0) for s in nz])
        wx = city.of_kind("weather")
        self.wx_offset = rng.normal(0, 0.4, (len(wx), 4)) * np.array([1.0, 3.0, 0.5, 0.0])
        wm = city.of_kind("water_main")
        self.wm_static = np.array([s.params["static_kpa"] for s in wm])
        self.wm_base = np.array([s.params["base_flow_ls"] for s in wm])
        self.wm_cl = np.array([s.params["chlorine"] for s in wm])
        self.wm_ar = np.zeros(len(wm))
        ps = city.of_kind("substation")
        self.ps_rating = np.array([s.params["rating_mw"] for s in ps])
        self.ps_kv = np.array([s.params["nominal_kv"] for s in ps])
        self.ps_ar = np.zeros(len(ps))

        # city-wide weather state
        self.temp_anom = 0.0
        self.hum_anom = 0.0
        self.wind = 3.0
        self.raining = False
        self.rain_level = 0.0
        self.freq_dev = 0.0
        self.pm_bg = 0.0

    # ------------------------------------------------------------------------------------
    def _ar(self, state: np.ndarray | float, sigma: float, tau_s: float) -> np.ndarray | float:
        """One step of an Ornstein-Uhlenbeck process with stationary std ``sigma``."""
        a = math.exp(-self.interval_s / tau_s)
        b = sigma * math.sqrt(1 - a * a)
        if isinstance(state, np.ndarray):
            return a * state + b * self.rng.standard_normal(state.shape)
        return a * state + b * float(self.rng.standard_normal())

    def weather_step(self, h: float) -> None:
        self.temp_anom = self._ar(self.temp_anom, 2.5, 12 * 3600)
        self.hum_anom = self._ar(self.hum_anom, 6.0, 6 * 3600)
        self.wind = float(np.clip(self._ar(self.wind - 3.5, 1.8, 3 * 3600) + 3.5, 0.2, 25.0))
        self.freq_dev = self._ar(self.freq_dev, 0.02, 120)
        self.pm_bg = self._ar(self.pm_bg, 3.0, 8 * 3600)
        p_hour = (0.3 if self.raining else 0.035) * self.interval_s / 3600
        if self.rng.random() < p_hour:
            self.raining = not self.raining
        if self.raining:
            self.rain_level = float(np.clip(
                0.8 * self.rain_level + 0.2 * self.rng.lognormal(0.3, 0.7), 0.1, 40.0))
        else:
            self.rain_level = 0.0

    def temperature(self, h: float) -> float:
        return 9.0 + 5.0 * math.sin(2 * math.pi * (h - 9.0) / 24.0) + self.temp_anom

    # ------------------------------------------------------------------------------------
    def traffic(self, t_ms: int, effects: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                ) -> np.ndarray:
        """[n_loops, 4] vehicle_count, occupancy_pct, speed_kmh, flow_vph.

        ``effects`` = (flow factor, speed factor, occupancy floor) per loop, from incidents.
        """
        h, dow = local_time(t_ms, self.city.utc_offset_h)
        self.weather_step(h)
        self.loop_ar = self._ar(self.loop_ar, 0.1, 1800)
        prof = traffic_profile(h, dow)
        rain_f = 1.0 - 0.08 * min(self.rain_level / 5.0, 1.0)
        q = self.cap * 0.8 * prof * self.demand * np.exp(self.loop_ar) * rain_f
        if effects is None:
            return self.traffic_from_flow(q, rain_f)
        flow_f, speed_f, occ_floor = effects
        return self.traffic_from_flow(q * flow_f, rain_f, speed_f, occ_floor)

    def traffic_from_flow(self, q: np.ndarray, rain_f: float = 1.0,
                          speed_factor: np.ndarray | float = 1.0,
                          occ_floor: np.ndarray | float = 0.0) -> np.ndarray:
        """Counts, occupancy and speed consistent with a demand flow ``q`` (veh/h)."""
        x = np.clip(q / self.cap, 0.0, 1.2)
        speed = self.ff * (1.0 - 0.55 * x ** 2.5) * (0.95 + 0.05 * rain_f)
        speed = speed * speed_factor * (1.0 + 0.03 * self.rng.standard_normal(q.shape))
        speed = np.clip(speed, 2.0, 140.0)
        # Poisson-like counts from a fixed number of normal draws: numpy's poisson consumes a
        # variable amount of randomness, so an incident at one loop would change the noise of
        # every other loop; with this, incidents change only the sensors they affect.
        lam = np.maximum(q, 0.0) * self.interval_s / 3600.0
        count = np.maximum(np.round(lam + np.sqrt(lam) * self.rng.standard_normal(q.shape)), 0.0)
        flow = count * 3600.0 / self.interval_s
        occ = (flow / self.lanes) * VEHICLE_LENGTH_KM / speed * 100.0
        occ = np.clip(np.maximum(occ, occ_floor), 0.0, 98.0)
        out = np.empty((q.shape[0], 4))
        out[:, 0] = count
        out[:, 1] = np.round(occ, 1)
        out[:, 2] = np.round(speed, 1)
        out[:, 3] = np.round(flow, 0)
        return out

    def district_traffic_index(self, traffic: np.ndarray) -> np.ndarray:
        """Mean flow/capacity of the loops of each district (what drives NO2, CO, noise)."""
        x = traffic[:, 3] / self.cap
        return np.bincount(self.loop_district, weights=x, minlength=self.n_districts) / (
            self.loops_per_district)

    def environment(self, t_ms: int, traffic: np.ndarray) -> dict[str, np.ndarray]:
        h, _ = local_time(t_ms, self.city.utc_offset_h)
        rng = self.rng
        ti = self.district_traffic_index(traffic)
        temp = self.temperature(h)
        hum = float(np.clip(72.0 - 2.0 * (temp - 9.0) + self.hum_anom
                            + (15.0 if self.raining else 0.0), 15.0, 100.0))
        dil = 1.0 / (1.0 + self.wind / 4.0)
        sun = max(0.0, math.sin(math.pi * (h - 7.0) / 14.0)) if 7.0 <= h <= 21.0 else 0.0

        n = len(self.aq_district)
        self.aq_ar = self._ar(self.aq_ar, 0.08, 3600)
        local = ti[self.aq_district] * self.aq_exposure * dil
        no2 = 12.0 + 95.0 * local * np.exp(self.aq_ar[:, 0]) + rng.normal(0, 1.5, n)
        co = 0.2 + 1.4 * local * np.exp(self.aq_ar[:, 1]) + rng.normal(0, 0.02, n)
        washout = 1.0 - 0.35 * min(self.rain_level / 3.0, 1.0)
        pm25 = (6.0 + max(self.pm_bg, -4.0) + 20.0 * local + 0.1 * max(0.0, hum - 70.0)) * washout
        pm25 = pm25 + rng.normal(0, 0.8, n)
        pm10 = pm25 * 1.5 + 4.0 + rng.normal(0, 1.0, n)
        o3 = 25.0 + 70.0 * sun * (0.6 + max(temp, 0.0) / 25.0) - 0.45 * (no2 - 12.0)
        o3 = o3 + rng.normal(0, 2.0, n)
        aq = np.column_stack([pm25, pm10, no2, o3, co])
        aq = np.maximum(aq, [0.5, 1.0, 1.0, 1.0, 0.05])

        m = len(self.nz_district)
        noise = 42.0 + 14.0 * np.log10(1.0 + 30.0 * ti[self.nz_district]) * self.nz_exposure
        noise = (noise + rng.normal(0, 1.2, m) + (2.0 if self.raining else 0.0)).reshape(-1, 1)

        base = np.array([temp, hum, self.wind, self.rain_level])
        wx = base + self.wx_offset + rng.normal(0, 1, self.wx_offset.shape) * [0.15, 1.0, 0.4, 0.0]
        wx[:, 1] = np.clip(wx[:, 1], 5.0, 100.0)
        wx[:, 2] = np.maximum(wx[:, 2], 0.0)
        wx[:, 3] = self.rain_level * (1.0 + 0.1 * rng.standard_normal(len(wx))) if self.raining \
            else 0.0
        wx[:, 3] = np.maximum(wx[:, 3], 0.0)
        return {"air_quality": aq, "noise": noise, "weather": wx}

    def water(self, t_ms: int) -> np.ndarray:
        h, dow = local_time(t_ms, self.city.utc_offset_h)
        rng = self.rng
        w = water_profile(h, dow)
        self.wm_ar = self._ar(self.wm_ar, 0.06, 3600)
        n = len(self.wm_base)
        flow = self.wm_base * w * np.exp(self.wm_ar) + rng.normal(0, 0.3, n)
        pressure = self.wm_static - 130.0 * w ** 2 * np.exp(self.wm_ar) + rng.normal(0, 2.5, n)
        chlorine = self.wm_cl * (1.0 - 0.1 * w) + rng.normal(0, 0.015, n)
        turbidity = 0.25 + 0.1 * w + np.abs(rng.normal(0, 0.04, n))
        return np.column_stack([np.maximum(pressure, 0.0), np.maximum(flow, 0.0),
                                np.maximum(chlorine, 0.0), turbidity])

    def power(self, t_ms: int) -> np.ndarray:
        h, dow = local_time(t_ms, self.city.utc_offset_h)
        rng = self.rng
        temp = self.temperature(h)
        p = power_profile(h, dow) * (1.0 + 0.012 * max(0.0, 15.0 - temp))
        self.ps_ar = self._ar(self.ps_ar, 0.04, 1800)
        n = len(self.ps_rating)
        load = self.ps_rating * p * np.exp(self.ps_ar) + rng.normal(0, 0.1, n)
        frac = load / self.ps_rating
        volt = self.ps_kv * (1.035 - 0.045 * frac) + rng.normal(0, 0.002, n) * self.ps_kv
        freq = 50.0 + self.freq_dev + rng.normal(0, 0.002, n)
        return np.column_stack([np.maximum(load, 0.0), volt, freq])

    def tick(self, t_ms: int) -> dict[str, np.ndarray]:
        """All kinds for one tick (no incidents): kind -> [n, len(metrics)] rounded values."""
        traffic = self.traffic(t_ms)
        out = {"loop": traffic}
        out.update(self.environment(t_ms, traffic))
        out["water_main"] = self.water(t_ms)
        out["substation"] = self.power(t_ms)
        return round_values(out)


def round_values(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Round each metric column to its reporting resolution (in place), return ``values``."""
    for kind, arr in values.items():
        for j, name in enumerate(KINDS[kind][2]):
            arr[:, j] = np.round(arr[:, j], DECIMALS[name])
    return values
