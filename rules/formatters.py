"""Alert events in the shapes their consumers expect.

* Alertmanager webhook payload (version "4", as documented for ``webhook_config``), so any
  receiver written for Alertmanager (chat bridges, incident tools) takes our alerts as is;
* an InfluxDB ``alerts`` line (history panel, annotations in Grafana);
* an MQTT topic ``city/alerts/<district>/<severity>/<alertname>`` and JSON payload, so
  field devices and the operations-centre wall can subscribe by district or severity.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from urbanbrain.rules.alerts import AlertEvent, rfc3339

from urbanbrain.lineprotocol import line

DEFAULT_GROUP_BY: tuple[str, ...] = ("district",)


def _labelset(labels: Mapping[str, str]) -> str:
    """Alertmanager's LabelSet.String(): ``{a="1", b="2"}`` sorted by name."""
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def group_labels(ev: AlertEvent, group_by: Sequence[str] = DEFAULT_GROUP_BY) -> dict[str, str]:
    return {k: ev.labels[k] for k in group_by if k in ev.labels}


def group_key(ev: AlertEvent, group_by: Sequence[str] = DEFAULT_GROUP_BY, route: str = "{}") -> str:
    """Notification grouping key (Alertmanager format ``<route>:<group labels>``)."""
    return f"{route}:{_labelset(group_labels(ev, group_by))}"


def _common(dicts: list[Mapping[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    out = dict(dicts[0])
    for d in dicts[1:]:
        for k in list(out):
            if d.get(k) != out[k]:
                del out[k]
    return out


def webhook_payloads(
    events: Iterable[AlertEvent],
    *,
    receiver: str = "urbanbrain",
    external_url: str = "http://localhost:9093",
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    max_alerts: int = 0,
    include_silenced: bool = False,
) -> list[dict[str, Any]]:
    """One Alertmanager webhook body per notification group (district by default).

    Silenced events are left out unless ``include_silenced``; groups left empty produce
    no payload.
    """
    groups: dict[str, list[AlertEvent]] = {}
    for ev in events:
        if ev.silenced and not include_silenced:
            continue
        groups.setdefault(group_key(ev, group_by), []).append(ev)
    out = []
    for key, evs in groups.items():
        alerts = [e.to_alertmanager() for e in evs]
        truncated = 0
        if max_alerts and len(alerts) > max_alerts:
            truncated = len(alerts) - max_alerts
            alerts = alerts[:max_alerts]
        out.append(
            {
                "version": "4",
                "groupKey": key,
                "truncatedAlerts": truncated,
                "status": "firing" if any(e.status == "firing" for e in evs) else "resolved",
                "receiver": receiver,
                "groupLabels": group_labels(evs[0], group_by),
                "commonLabels": _common([e.labels for e in evs]),
                "commonAnnotations": _common([e.annotations for e in evs]),
                "externalURL": external_url,
                "alerts": alerts,
            }
        )
    return out


def influx_line(ev: AlertEvent, measurement: str = "alerts") -> str:
    """One point per transition: tags rule/severity/district/sensor/status, ``active`` 1/0."""
    value = ev.value if ev.value is not None and math.isfinite(ev.value) else None
    fields: dict[str, object] = {
        "active": 1.0 if ev.status == "firing" else 0.0,
        "value": value,
        "fingerprint": ev.fingerprint,
        "summary": ev.annotations.get("summary")
        or ev.annotations.get("description")
        or ev.alertname,
        "silenced": ev.silenced,
        "starts_at_ms": float(ev.starts_at),
    }
    if ev.status == "resolved" and ev.ends_at is not None:
        fields["duration_s"] = (ev.ends_at - ev.starts_at) / 1000.0
    tags = {
        "rule": ev.alertname,
        "severity": ev.severity,
        "district": ev.labels.get("district"),
        "sensor": ev.labels.get("sensor"),
        "status": ev.status,
    }
    return line(measurement, tags, fields, ev.at)


_TOPIC_BAD = re.compile(r"[/+#\x00-\x1f]")


def _level(s: str) -> str:
    return _TOPIC_BAD.sub("_", s) or "_"


def mqtt_topic(ev: AlertEvent, prefix: str = "city") -> str:
    """``city/alerts/<district>/<severity>/<alertname>``; ``_all`` when city-wide."""
    district = ev.labels.get("district") or "_all"
    return f"{prefix}/alerts/{_level(district)}/{_level(ev.severity)}/{_level(ev.alertname)}"


def mqtt_payload(ev: AlertEvent) -> bytes:
    doc = ev.to_alertmanager()
    doc["value"] = ev.value if ev.value is not None and math.isfinite(ev.value) else None
    doc["rule"] = ev.rule
    return orjson.dumps(doc)


def mqtt_message(ev: AlertEvent, prefix: str = "city") -> tuple[str, bytes]:
    return mqtt_topic(ev, prefix), mqtt_payload(ev)


__all__ = [
    "group_key",
    "group_labels",
    "influx_line",
    "mqtt_message",
    "mqtt_payload",
    "mqtt_topic",
    "rfc3339",
    "webhook_payloads",
]
