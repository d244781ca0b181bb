"""Recordings: readings on disk (JSON lines, Parquet, CSV) and back, exactly.

Two shapes of the same data:
- a *reading* dict ``{"sensor_id", "ts", "domain", "kind", "district", "metrics": {...}}``
  (one JSON line each; what MQTT carries);
- a *long table* (pandas) with one row per (reading, metric): ``ts`` int64 ms, categorical
  ``sensor_id, domain, kind, district, metric``, ``value`` float64. Columnar, compact in
  Parquet, and what backtests and the streams side want.

Timestamps are integers and values float64 everywhere, and JSON floats are written with
their shortest exact repr (orjson), so file → readings → file is lossless.

Live recording (:class:`MqttRecorder`) subscribes with paho and decodes the three formats
the simulator emits (plain JSON, SenML packs, FIWARE key-values) into readings.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from urbanbrain.errors import BadValue
from urbanbrain.mqtt import apply_security
from urbanbrain.simulators.city import KIND_ORDER, KINDS, City
from urbanbrain.simulators.engine import Frame

Reading = dict  # {"sensor_id", "ts", "domain", "kind", "district", "metrics"}

COLUMNS = ("ts", "sensor_id", "domain", "kind", "district", "metric", "value")
ALL_METRICS: tuple[str, ...] = tuple(m for k in KIND_ORDER for m in KINDS[k][2])


class FrameTable:
    """Accumulates frames into the long table, vectorised (no per-reading Python)."""

    def __init__(self, city: City) -> None:
        self.city = city
        self._codes = {k: np.array([ALL_METRICS.index(m) for m in KINDS[k][2]], dtype=np.int16)
                       for k in KIND_ORDER}
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.readings = 0

    def add(self, frame: Frame) -> None:
        for kind in KIND_ORDER:
            sl = self.city.kind_slices[kind]
            vals = frame.values[kind]
            idx = np.flatnonzero(frame.present[sl])
            if not len(idx):
                continue
            m = vals.shape[1]
            self._parts.append((
                np.repeat(frame.ts[sl][idx], m),
                np.repeat((sl.start + idx).astype(np.int32), m),
                np.tile(self._codes[kind], len(idx)),
                vals[idx].ravel().copy(),
            ))
            self.readings += len(idx)

    def to_frame(self) -> pd.DataFrame:
        city = self.city
        if self._parts:
            ts, sens, met, val = (np.concatenate(x) for x in zip(*self._parts))
        else:
            ts, sens, met, val = (np.empty(0, np.int64), np.empty(0, np.int32),
                                  np.empty(0, np.int16), np.empty(0))
        ids = [s.sensor_id for s in city.sensors]

        def cat(codes: np.ndarray, cats: list[str]) -> pd.Categorical:
            return pd.Categorical.from_codes(codes, categories=cats)

        domains = sorted({s.domain for s in city.sensors})
        kinds = list(KIND_ORDER)
        dcode = np.array([domains.index(s.domain) for s in city.sensors], dtype=np.int16)
        kcode = np.array([kinds.index(s.kind) for s in city.sensors], dtype=np.int16)
        return pd.DataFrame({
            "ts": ts.astype(np.int64),
            "sensor_id": cat(sens, ids),
            "domain": cat(dcode[sens], domains),
            "kind": cat(kcode[sens], kinds),
            "district": cat(city.district_of[sens], city.district_ids),
            "metric": cat(met.astype(np.int16), list(ALL_METRICS)),
            "value": val.astype(np.float64),
        })


def frames_to_table(city: City, frames: Iterable[Frame]) -> pd.DataFrame:
    t = FrameTable(city)
    for f in frames:
        t.add(f)
    return t.to_frame()


def frame_readings(city: City, frame: Frame) -> Iterator[Reading]:
    for sid, ts, metrics in frame.readings(city):
        s = city.by_id[sid]
        yield {"sensor_id": sid, "ts": ts, "domain": s.domain, "kind": s.kind,
               "district": s.district, "metrics": metrics}


# -- table <-> readings -------------------------------------------------------------------

def readings_to_table(readings: Iterable[Reading]) -> pd.DataFrame:
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    for r in readings:
        for name, value in r["metrics"].items():
            cols["ts"].append(int(r["ts"]))
            cols["sensor_id"].append(r["sensor_id"])
            cols["domain"].append(r.get("domain") or "")
            cols["kind"].append(r.get("kind") or "")
            cols["district"].append(r.get("district") or "")
            cols["metric"].append(name)
            cols["value"].append(float(value))
    df = pd.DataFrame({
        "ts": np.array(cols["ts"], dtype=np.int64),
        **{c: pd.Categorical(cols[c]) for c in ("sensor_id", "domain", "kind", "district",
                                                 "metric")},
        "value": np.array(cols["value"], dtype=np.float64),
    })
    return df


def table_to_readings(df: pd.DataFrame) -> list[Reading]:
    """Rows of one reading are contiguous (same ts and sensor); group them back."""
    if df.empty:
        return []
    ts = df["ts"].to_numpy(np.int64)
    sid = df["sensor_id"].astype(str).to_numpy()
    change = np.ones(len(df), dtype=bool)
    change[1:] = (ts[1:] != ts[:-1]) | (sid[1:] != sid[:-1])
    starts = np.flatnonzero(change).tolist() + [len(df)]
    dom = df["domain"].astype(str).tolist()
    kind = df["kind"].astype(str).tolist()
    dist = df["district"].astype(str).tolist()
    met = df["metric"].astype(str).tolist()
    val = df["value"].to_numpy(np.float64).tolist()
    tsl = ts.tolist()
    out = []
    for a, b in zip(starts, starts[1:]):
        out.append({"sensor_id": str(sid[a]), "ts": tsl[a], "domain": dom[a], "kind": kind[a],
                    "district": dist[a], "metrics": dict(zip(met[a:b], val[a:b]))})
    return out


# -- files ----------------------------------------------------------------------------------

def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Parquet (.parquet), CSV (.csv) or JSON lines (.jsonl/.json, one reading per line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        df.to_parquet(path, index=False)
    elif suffix == ".csv":
        df.to_csv(path, index=False, float_format=None)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        write_jsonl(table_to_readings(df), path)
    else:
        raise BadValue(f"unknown recording format {suffix!r}: use .parquet, .csv or .jsonl")
    return path


def write_jsonl(readings: Iterable[Reading], path: str | Path) -> int:
    n = 0
    with Path(path).open("wb") as fh:
        for r in readings:
            fh.write(orjson.dumps(r) + b"\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> list[Reading]:
    with Path(path).open("rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".csv":
        df = pd.read_csv(path, dtype={"ts": np.int64, "value": np.float64},
                         keep_default_na=False)
        for c in ("sensor_id", "domain", "kind", "district", "metric"):
            df[c] = pd.Categorical(df[c].astype(str))
        return df
    if suffix in (".jsonl", ".json", ".ndjson"):
        return readings_to_table(read_jsonl(path))
    raise ValueError(f"unknown recording format {suffix!r}")


def read_readings(path: str | Path) -> list[Reading]:
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return read_jsonl(path)
    return table_to_readings(read_table(path))


# -- decoding our own MQTT payloads (for live recording) ------------------------------------

_FIWARE_BACK = {
    "intensity": ("vehicle_count", 1.0), "occupancy": ("occupancy_pct", 100.0),
    "averageVehicleSpeed": ("speed_kmh", 1.0), "pm25": ("pm25_ugm3", 1.0),
    "pm10": ("pm10_ugm3", 1.0), "no2": ("no2_ugm3", 1.0), "o3": ("o3_ugm3", 1.0),
    "co": ("co_mgm3", 1.0), "LAeq": ("noise_dba", 1.0), "temperature": ("temperature_c", 1.0),
    "relativeHumidity": ("humidity_pct", 100.0), "windSpeed": ("wind_speed_ms", 1.0),
    "precipitation": ("rain_mmh", 1.0), "pressure": ("pressure_kpa", 1.0),
    "flow": ("flow_ls", 1.0), "freeChlorine": ("chlorine_mgl", 1.0),
    "turbidity": ("turbidity_ntu", 1.0), "totalActivePower": ("load_mw", 1e-6),
    "frequency": ("frequency_hz", 1.0),
}


def _iso_to_ms(s: str) -> int:
    dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return int(round(dt.timestamp() * 1000))


def decode_payload(topic: str, payload: bytes) -> list[Reading]:
    """Readings in one of our payloads (raises ValueError on anything else)."""
    parts = topic.split("/")
    if len(parts) != 5:
        raise ValueError(f"unexpected topic {topic!r}")
    _, district, domain, kind, last = parts
    doc = orjson.loads(payload)
    if isinstance(doc, list):  # SenML pack
        out: dict[tuple[str, int], Reading] = {}
        bn, bt = "", 0.0
        for rec in doc:
            bn = rec.get("bn", bn)
            bt = rec.get("bt", bt)
            name = bn + rec["n"]
            sid, _, metric = name.rpartition(":")
            ts = int(round((bt + rec.get("t", 0.0)) * 1000))
            r = out.get((sid, ts))
            if r is None:
                r = out[(sid, ts)] = {"sensor_id": sid, "ts": ts, "domain": domain, "kind": "",
                                      "district": district, "metrics": {}}
            r["metrics"][metric] = float(rec["v"])
        kinds = {m: k for k in KIND_ORDER for m in KINDS[k][2]}
        for r in out.values():
            r["kind"] = kinds.get(next(iter(r["metrics"])), "")
        return list(out.values())
    if "metrics" in doc:  # plain JSON
        ts = doc["ts"] if isinstance(doc["ts"], int) else _iso_to_ms(doc["ts"])
        return [{"sensor_id": doc.get("sensor_id", last), "ts": ts, "domain": domain, "kind": kind,
                 "district": district, "metrics": {k: float(v) for k, v in doc["metrics"].items()}}]
    if "type" in doc:  # FIWARE key-values
        ref = doc.get("refDevice", "")
        sid = ref.removeprefix("urn:ngsi-ld:Device:") if ref else last
        metrics: dict[str, float] = {}
        for attr, (name, scale) in _FIWARE_BACK.items():
            if attr in doc and isinstance(doc[attr], (int, float)):
                metrics[name] = round(float(doc[attr]) * scale, 9)
        if "phaseToPhaseVoltage" in doc:
            metrics["voltage_kv"] = round(float(doc["phaseToPhaseVoltage"]["L12"]) / 1000.0, 9)
        if doc["type"] == "TrafficFlowObserved" and "dateObservedFrom" in doc:
            period_ms = _iso_to_ms(doc["dateObservedTo"]) - _iso_to_ms(doc["dateObservedFrom"])
            period_s = period_ms / 1e3
            metrics["flow_vph"] = round(metrics["vehicle_count"] * 3600.0 / period_s, 9)
        order = KINDS[kind][2] if kind in KINDS else tuple(metrics)
        metrics = {m: metrics[m] for m in order if m in metrics}
        return [{"sensor_id": sid, "ts": _iso_to_ms(doc["dateObserved"]), "domain": domain,
                 "kind": kind, "district": district, "metrics": metrics}]
    raise ValueError("not a payload of ours")


class MqttRecorder:
    """Subscribes to ``<prefix>/#`` with paho and collects decoded readings.

    Undecodable payloads (e.g. injected malformed ones) are counted, not recorded.
    """

    def __init__(self, settings, topic: str | None = None, qos: int = 1) -> None:  # noqa: ANN001
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.readings: list[Reading] = []
        self.messages = 0
        self.undecodable = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.topic = topic or f"{settings.mqtt_topic_prefix}/#"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"urbanbrain-recorder-{time.monotonic_ns() % 10**8}")
        apply_security(self.client, settings)
        qos_ = qos

        def on_connect(c, userdata, flags, rc, props):  # noqa: ANN001
            c.subscribe(self.topic, qos=qos_)

        def on_subscribe(c, userdata, mid, rcs, props):  # noqa: ANN001
            self._subscribed.set()

        def on_message(c, userdata, msg):  # noqa: ANN001
            try:
                rs = decode_payload(msg.topic, msg.payload)
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
                with self._lock:
                    self.undecodable += 1
                return
            with self._lock:
                self.messages += 1
                self.readings.extend(rs)

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.stop()
            raise RuntimeError(f"could not subscribe to {self.topic} on {settings.mqtt_url}")

    def wait_for(self, n_readings: int, timeout_s: float = 30.0, idle_s: float = 2.0) -> int:
        """Wait until ``n_readings`` arrived, or nothing arrived for ``idle_s``."""
        deadline = time.monotonic() + timeout_s
        last_n, last_t = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = len(self.readings)
            if n >= n_readings:
                return n
            if n != last_n:
                last_n, last_t = n, time.monotonic()
            elif time.monotonic() - last_t > idle_s:
                return n
            time.sleep(0.05)
        return len(self.readings)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with self._lock:
            readings = sorted(self.readings, key=lambda r: (r["ts"], r["sensor_id"]))
        if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            write_jsonl(readings, path)
            return path
        return write_table(readings_to_table(readings), path)
