"""Outputs (Alertmanager webhook, InfluxDB line, MQTT), annotation templates, and promtool's
series notation."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pytest
from urbanbrain.rules import (
    AlertEvent,
    Evaluator,
    Silence,
    expand_values,
    group_key,
    influx_line,
    loads,
    mqtt_message,
    parse_series,
    rfc3339,
    webhook_payloads,
)
from urbanbrain.rules.promtool import SeriesError
from urbanbrain.rules.templating import (
    Template,
    TemplateError,
    go_float,
    go_printf,
    humanize,
    humanize_duration,
)

SCHEMA = json.loads(
    (
        Path(__file__).resolve().parents[1]
        / "rules"
        / "schema"
        / "alertmanager-webhook.schema.json"
    ).read_text()
)
M = 60_000
RULES = """
groups:
  - name: g
    rules:
      - alert: Slow
        kind: threshold
        metric: speed_kmh
        condition: {op: '<', value: 20}
        labels: {severity: warning}
        annotations:
          summary: 'Speed {{ $value | printf "%.1f" }} km/h at {{ $labels.sensor }}'
          runbook_url: https://runbooks.example/slow
"""
REG = {
    "tl-1": {"domain": "traffic", "kind": "loop", "district": "centre"},
    "tl-2": {"domain": "traffic", "kind": "loop", "district": "centre"},
    "tl-3": {"domain": "traffic", "kind": "loop", "district": "north"},
}


def events_at(ev: Evaluator, t: int, speeds: dict[str, float]) -> list[AlertEvent]:
    ev.observe([{"sensor_id": s, "ts": t, "metrics": {"speed_kmh": v}} for s, v in speeds.items()])
    return ev.tick(t)


@pytest.fixture
def firing_then_resolved():
    ev = Evaluator(loads(RULES), REG)
    t0 = 1_714_550_400_000  # 2024-05-01T08:00:00Z
    fired = events_at(ev, t0, {"tl-1": 10, "tl-2": 12.25, "tl-3": 5})
    resolved = events_at(ev, t0 + 5 * M, {"tl-1": 50, "tl-2": 50, "tl-3": 5})
    return fired, resolved


def test_webhook_payload_validates_against_alertmanager_schema(firing_then_resolved):
    fired, resolved = firing_then_resolved
    validator = jsonschema.Draft202012Validator(SCHEMA)
    payloads = webhook_payloads(fired, receiver="ops", external_url="http://am.example:9093")
    assert len(payloads) == 2  # grouped by district
    for p in payloads + webhook_payloads(resolved):
        validator.validate(p)
        json.dumps(p)
    centre = next(p for p in payloads if p["groupLabels"] == {"district": "centre"})
    assert centre["version"] == "4" and centre["status"] == "firing" and centre["receiver"] == "ops"
    assert centre["groupKey"] == '{}:{district="centre"}'
    assert centre["commonLabels"] == {
        "alertname": "Slow",
        "severity": "warning",
        "district": "centre",
    }
    assert centre["commonAnnotations"] == {"runbook_url": "https://runbooks.example/slow"}
    assert centre["truncatedAlerts"] == 0 and centre["externalURL"] == "http://am.example:9093"
    a = centre["alerts"][0]
    assert a["startsAt"] == "2024-05-01T08:00:00.000Z" and a["endsAt"] == "0001-01-01T00:00:00Z"
    assert a["annotations"]["summary"] == "Speed 10.0 km/h at tl-1"
    assert a["generatorURL"].startswith("http") and len(a["fingerprint"]) == 16
    (res,) = webhook_payloads(resolved)
    assert res["status"] == "resolved" and len(res["alerts"]) == 2
    assert {x["endsAt"] for x in res["alerts"]} == {"2024-05-01T08:05:00.000Z"}
    assert {x["fingerprint"] for x in res["alerts"]} == {x["fingerprint"] for x in centre["alerts"]}


def test_webhook_schema_rejects_broken_payloads(firing_then_resolved):
    fired, _ = firing_then_resolved
    (p,) = webhook_payloads(fired[:1])
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for breakage in (
        lambda d: d.pop("groupKey"),
        lambda d: d.update(version=4),
        lambda d: d["alerts"][0].update(startsAt="2024-05-01 08:00"),
        lambda d: d["alerts"][0]["labels"].pop("alertname"),
        lambda d: d["alerts"][0].update(status="pending"),
    ):
        bad = json.loads(json.dumps(p))
        breakage(bad)
        assert not validator.is_valid(bad)


def test_webhook_leaves_out_silenced_and_truncates(firing_then_resolved):
    ev = Evaluator(loads(RULES), REG)
    ev.add_silence(Silence.create(['sensor="tl-2"'], 0, 10**13))
    evs = events_at(ev, 0, {"tl-1": 1, "tl-2": 1})
    assert [e.silenced for e in evs] == [False, True]
    (p,) = webhook_payloads(evs)
    assert [a["labels"]["sensor"] for a in p["alerts"]] == ["tl-1"]
    (p,) = webhook_payloads(evs, include_silenced=True, max_alerts=1)
    assert len(p["alerts"]) == 1 and p["truncatedAlerts"] == 1
    assert webhook_payloads([e for e in evs if e.silenced]) == []


def test_influx_line_and_mqtt(firing_then_resolved):
    fired, resolved = firing_then_resolved
    ln = influx_line(fired[0])
    assert ln.startswith(
        "alerts,district=centre,rule=Slow,sensor=tl-1,severity=warning,status=firing "
    )
    assert (
        "active=1.0" in ln and "value=10.0" in ln and f'fingerprint="{fired[0].fingerprint}"' in ln
    )
    assert 'summary="Speed 10.0 km/h at tl-1"' in ln and ln.endswith(" 1714550400000")
    ln = influx_line(resolved[0])
    assert "status=resolved" in ln and "active=0.0" in ln and "duration_s=300.0" in ln
    topic, payload = mqtt_message(fired[0])
    assert topic == "city/alerts/centre/warning/Slow"
    doc = orjson.loads(payload)
    assert doc["status"] == "firing" and doc["labels"]["sensor"] == "tl-1" and doc["value"] == 10.0
    assert group_key(fired[0]) == '{}:{district="centre"}'


def test_hostile_label_values_are_escaped_not_injected():
    ev = AlertEvent(
        "firing",
        "g/X",
        {"alertname": "X", "district": "a/b+#", "sensor": "s 1,x=y"},
        {"summary": 'say "hi"\nnext'},
        1.0,
        0,
        None,
        "0" * 16,
        at=0,
    )
    assert mqtt_message(ev)[0] == "city/alerts/a_b__/none/X"
    ln = influx_line(ev)
    assert "\n" not in ln and r"sensor=s\ 1\,x\=y" in ln and r'summary="say \"hi\" next"' in ln


def test_rfc3339():
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_714_550_400_123) == "2024-05-01T08:00:00.123Z"
    assert rfc3339(None) == "0001-01-01T00:00:00Z"


def test_templates():
    t = Template(
        'Speed {{ $value | printf "%.1f" }} km/h at {{ $labels.sensor }} ({{ .Labels.district }})'
    )
    assert (
        t.render(47.25, {"sensor": "tl-1", "district": "centre"})
        == "Speed 47.2 km/h at tl-1 (centre)"
    )
    assert Template('{{ printf "%.0f%%" $value }}').render(99.6) == "100%"
    assert Template("{{ $value }} {{ .Value }}").render(1e6) == "1e+06 1e+06"
    assert Template("{{ humanize $value }}").render(12345.0) == "12.35k"
    assert Template("{{ $value | humanizeDuration }}").render(3725) == "1h 2m 5s"
    assert Template("{{ $value | humanizePercentage }}").render(0.0454545) == "4.545%"
    assert Template('{{ $labels.missing }}|{{- " x " -}}|').render(1, {}) == "<no value>| x |"
    assert Template("{{ $labels.sensor | toUpper }}").render(1, {"sensor": "tl-1"}) == "TL-1"
    assert Template("{{ $sensors }}").render(3, {}, {"sensors": "a,b"}) == "a,b"
    for bad in ("{{ if $value }}", "{{ $value | nope }}", "{{ $value", "{{ }}"):
        with pytest.raises(TemplateError):
            Template(bad)
    assert (
        go_float(47.2) == "47.2" and go_float(123456.0) == "123456" and go_float(0.00001) == "1e-05"
    )
    assert go_printf("%d items, %s, %5.2f, %v", 3.0, "x", 2.5, 1.5) == "3 items, x,  2.50, 1.5"
    assert go_printf("%d") == "%!d(MISSING)"
    assert humanize(0.0012) == "1.2m" and humanize_duration(0) == "0s"


@pytest.mark.parametrize(
    ("notation", "expected"),
    [
        ("1 2 3", [1, 2, 3]),
        ("-2+4x3", [-2, 2, 6, 10]),
        (" 1-2x4", [1, -1, -3, -5, -7]),
        ("1x4", [1, 1, 1, 1, 1]),
        ("1 _x3 stale", [1, None, None, None, None]),
        ("_ 5", [None, 5]),
        ("0.5+0.25x2 1e3", [0.5, 0.75, 1.0, 1000.0]),
        ("50 50 10x5 50", [50, 50, 10, 10, 10, 10, 10, 10, 50]),
        (7, [7]),
    ],
)
def test_promtool_series_notation(notation, expected):
    assert expand_values(notation) == expected


def test_promtool_series_notation_errors_and_specials():
    vals = expand_values("Inf -Inf NaN")
    assert vals[0] == float("inf") and vals[1] == float("-inf") and vals[2] != vals[2]
    for bad in ("1x", "abc", "_xq", "1+x3"):
        with pytest.raises(SeriesError):
            expand_values(bad)


def test_parse_series():
    assert parse_series('speed_kmh{sensor="tl-0001",district="centre"}') == (
        "speed_kmh",
        {"sensor": "tl-0001", "district": "centre"},
    )
    assert parse_series("flow_ls") == ("flow_ls", {})
    assert parse_series('{__name__="flow_ls", sensor="a\\"b"}') == ("flow_ls", {"sensor": 'a"b'})
    with pytest.raises(SeriesError):
        parse_series("speed_kmh{sensor=tl-1}")
