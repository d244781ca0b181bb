"""Schedules ("at night", "on working days") and the template-reference check.

A schedule is judged at event time in the city's local time, so the tests use dates whose
UTC offset matters (Paris: UTC+2 in summer, UTC+1 in winter) and replay the same data in
two arrival shapes.
"""

from __future__ import annotations

import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from urbanbrain.rules import Evaluator
from urbanbrain.rules.loader import check_text, loads
from urbanbrain.rules.schedule import ScheduleError, parse_schedule

PARIS = ZoneInfo("Europe/Paris")
MIN = 60_000


def paris_ms(y: int, mo: int, d: int, h: int, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=PARIS).timestamp() * 1000)


# -- the schedule itself ----------------------------------------------------------------
def test_night_range_crosses_midnight_and_belongs_to_the_day_it_starts() -> None:
    s = parse_schedule({"times": [{"start_time": "22:00", "end_time": "06:00"}],
                        "weekdays": ["friday"], "location": "Europe/Paris"})
    # 2026-07-03 is a Friday
    assert not s.contains(paris_ms(2026, 7, 3, 21, 59))
    assert s.contains(paris_ms(2026, 7, 3, 22, 0))
    assert s.contains(paris_ms(2026, 7, 4, 5, 59))  # Saturday morning: Friday's night
    assert not s.contains(paris_ms(2026, 7, 4, 6, 0))
    assert not s.contains(paris_ms(2026, 7, 4, 23, 0))  # Saturday night is not Friday's
    assert not s.contains(paris_ms(2026, 7, 3, 3, 0))  # Friday 03:00 is Thursday's night


def test_local_time_follows_daylight_saving() -> None:
    s = parse_schedule({"times": [{"start_time": "07:00", "end_time": "09:30"}]}, "Europe/Paris")
    summer = int(datetime(2026, 7, 1, 5, 0, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)
    winter = int(datetime(2026, 1, 7, 5, 0, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)
    assert s.contains(summer)  # 07:00 in Paris (UTC+2)
    assert not s.contains(winter)  # 06:00 in Paris (UTC+1)
    assert s.contains(winter + 60 * MIN)


def test_weekday_ranges_and_whole_days() -> None:
    s = parse_schedule({"weekdays": ["monday:friday"]}, "Europe/Paris")
    assert s.contains(paris_ms(2026, 7, 6, 0, 0))  # Monday
    assert s.contains(paris_ms(2026, 7, 10, 23, 59))  # Friday
    assert not s.contains(paris_ms(2026, 7, 11, 12))  # Saturday
    assert s.next_start(paris_ms(2026, 7, 11, 12)) == paris_ms(2026, 7, 13, 0, 0)


def test_next_start_is_the_next_opening() -> None:
    s = parse_schedule([{"times": [{"start_time": "22:00", "end_time": "06:00"}]},
                        {"times": [{"start_time": "12:00", "end_time": "13:00"}],
                         "weekdays": ["sunday"]}], "Europe/Paris")
    t = paris_ms(2026, 7, 5, 9, 0)  # Sunday morning
    assert s.next_start(t) == paris_ms(2026, 7, 5, 12, 0)
    assert s.next_start(paris_ms(2026, 7, 5, 13, 0)) == paris_ms(2026, 7, 5, 22, 0)
    inside = paris_ms(2026, 7, 5, 23, 30)
    assert s.next_start(inside) == inside


def test_days_of_month_count_from_either_end_and_follow_the_night() -> None:
    """The first working week and the last day of each month, Alertmanager's words; the
    night of the 31st belongs to the 31st."""
    s = parse_schedule({"days_of_month": ["1:7", "-1"],
                        "times": [{"start_time": "22:00", "end_time": "06:00"}]},
                       "Europe/Paris")
    assert s.contains(paris_ms(2026, 7, 7, 23))
    assert s.contains(paris_ms(2026, 7, 8, 5))  # the 7th's night
    assert not s.contains(paris_ms(2026, 7, 8, 23))
    assert s.contains(paris_ms(2026, 2, 28, 23))  # -1 in February 2026 is the 28th
    assert not s.contains(paris_ms(2026, 7, 30, 23))
    assert s.contains(paris_ms(2026, 7, 31, 23)) and s.contains(paris_ms(2026, 8, 1, 5))
    assert s.next_start(paris_ms(2026, 7, 9, 12)) == paris_ms(2026, 7, 31, 22)
    assert s.next_end(paris_ms(2026, 7, 31, 23)) == paris_ms(2026, 8, 1, 6)


def test_months_and_years_bound_a_season() -> None:
    s = parse_schedule({"months": ["march:june", "10"], "years": ["2026:2027"]}, "Europe/Paris")
    assert not s.contains(paris_ms(2026, 2, 28, 23, 59))
    assert s.contains(paris_ms(2026, 3, 1, 0, 0)) and s.contains(paris_ms(2026, 10, 15, 12))
    assert not s.contains(paris_ms(2028, 4, 1, 12))  # the years are over
    # closes at the end of June, opens again in October, never after 2027
    assert s.next_end(paris_ms(2026, 6, 20, 12)) == paris_ms(2026, 7, 1, 0)
    assert s.next_start(paris_ms(2026, 7, 1, 0)) == paris_ms(2026, 10, 1, 0)
    assert s.next_start(paris_ms(2027, 11, 1, 0)) is None
    assert s.next_start(paris_ms(2029, 1, 1, 0)) is None


@pytest.mark.parametrize("bad, words", [
    ({"days_of_month": ["0"]}, "not 0"),
    ({"days_of_month": [67]}, "quote ranges"),  # what YAML makes of an unquoted 1:7
    ({"days_of_month": ["7:1"]}, "runs forward"),
    ({"days_of_month": ["40"]}, "day of month is"),
    ({"months": ["june:march"]}, "runs forward"),
    ({"months": ["juin"]}, "unknown month"),
    ({"years": ["26"]}, "year is"),
    ({"times": [{"start_time": "25:00", "end_time": "06:00"}]}, "not a time of day"),
    ({"times": [{"start_time": "08:00", "end_time": "08:00"}]}, "end_time != start_time"),
    ({"weekdays": ["friday:monday"]}, "runs forward"),
    ({"weekdays": ["fri"]}, "unknown weekday"),
    ({"weekdays": ["monday"], "location": "Mars/Olympus"}, "unknown time zone"),
    ([{"weekdays": ["monday"], "location": "Europe/Paris"},
      {"weekdays": ["friday"], "location": "UTC"}], "one location"),
])
def test_bad_schedules_say_what_is_wrong(bad: object, words: str) -> None:
    with pytest.raises(ScheduleError, match=words):
        parse_schedule(bad)


# -- in the engine ------------------------------------------------------------------------
NOISE_RULES = """
groups:
  - name: noise
    timezone: Europe/Paris
    rules:
      - alert: NightNoise
        kind: threshold
        metric: noise_dba
        window: 15m
        aggregate: mean
        condition: {op: '>', value: 55}
        schedule:
          times: [{start_time: '22:00', end_time: '06:00'}]
        labels: {severity: warning}
        annotations:
          summary: 'Night noise {{ $value }} dB at {{ $labels.sensor }} in {{ $labels.district }}'
      - alert: WorkdaySilent
        kind: absence
        condition: {silent_for: 30m}
        schedule: {weekdays: ['monday:friday']}
        labels: {severity: warning}
"""
REG = {"nz-1": {"domain": "environment", "kind": "noise", "district": "d1"},
       "nz-2": {"domain": "environment", "kind": "noise", "district": "d1"}}


def noise_day() -> list[dict]:
    """nz-1 is loud (62 dB) all day Friday 2026-07-03 from 12:00 to Saturday 12:00; nz-2
    is quiet and stops reporting Friday 20:00 until Monday 08:00."""
    out = []
    t, end = paris_ms(2026, 7, 3, 12), paris_ms(2026, 7, 6, 12)
    while t < end:
        if t < paris_ms(2026, 7, 4, 12):
            out.append({"sensor_id": "nz-1", "ts": t, "domain": "environment", "kind": "noise",
                        "district": "d1", "metrics": {"noise_dba": 62.0}})
        if not paris_ms(2026, 7, 3, 20) <= t < paris_ms(2026, 7, 6, 8):
            out.append({"sensor_id": "nz-2", "ts": t, "domain": "environment", "kind": "noise",
                        "district": "d1", "metrics": {"noise_dba": 40.0}})
        t += MIN
    return out


def evaluate(batches: list[list[dict]]) -> list[tuple]:
    ev = Evaluator(loads(NOISE_RULES), REG, scope="sensor")
    events, hi = [], None
    for b in batches:
        for r in b:
            hi = r["ts"] if hi is None else max(hi, r["ts"])
        events += ev.process(b, watermark=hi)
    return sorted((e.labels["alertname"], e.labels.get("sensor"), e.status, e.starts_at,
                   e.ends_at, e.annotations.get("summary", "")) for e in events)


def test_threshold_fires_only_inside_its_schedule() -> None:
    got = evaluate([noise_day()])
    night = [g for g in got if g[0] == "NightNoise"]
    assert [(g[1], g[2]) for g in night] == [("nz-1", "firing"), ("nz-1", "resolved")]
    firing = next(g for g in night if g[2] == "firing")
    resolved = next(g for g in night if g[2] == "resolved")
    assert firing[3] == paris_ms(2026, 7, 3, 22, 0)  # loud since noon: fires as night starts
    assert resolved[4] == paris_ms(2026, 7, 4, 6, 0)  # the first reading after 06:00 ends it
    assert firing[5] == "Night noise 62 dB at nz-1 in d1"


def test_absence_follows_the_schedule_across_a_weekend() -> None:
    """nz-2 goes quiet on Friday evening: reported then; the alert ends when the weekend
    starts (the rule does not hold on Saturday), comes back when Monday opens the
    schedule with the sensor still silent, and resolves when it reports again."""
    got = evaluate([noise_day()])
    silent = [(g[2], g[3], g[4]) for g in got if g[0] == "WorkdaySilent" and g[1] == "nz-2"]
    last_friday = paris_ms(2026, 7, 3, 19, 59)
    fri, mon = last_friday + 30 * MIN, paris_ms(2026, 7, 6, 0, 0)
    assert sorted(silent) == sorted([
        ("firing", fri, None), ("resolved", fri, paris_ms(2026, 7, 4, 0, 0)),
        ("firing", mon, None), ("resolved", mon, paris_ms(2026, 7, 6, 8, 0)),
    ]), silent
    assert not [g for g in got if g[0] == "WorkdaySilent" and g[1] == "nz-1"
                and g[3] < paris_ms(2026, 7, 4, 12)]


def test_absence_over_the_weekend_starts_monday() -> None:
    """A sensor that goes quiet on Saturday is reported when the schedule opens on
    Monday 00:00, not on Saturday, and not never."""
    rows = [r for r in noise_day() if r["sensor_id"] == "nz-2"]
    # nz-2 reports again Saturday 10:00-11:00, then nothing until Monday 08:00
    extra = [{"sensor_id": "nz-2", "ts": paris_ms(2026, 7, 4, 10) + k * MIN,
              "domain": "environment", "kind": "noise", "district": "d1",
              "metrics": {"noise_dba": 40.0}} for k in range(60)]
    got = evaluate([sorted(rows + extra, key=lambda r: r["ts"])])
    firings = [g for g in got if g[0] == "WorkdaySilent" and g[2] == "firing"]
    assert paris_ms(2026, 7, 6, 0, 0) in [g[3] for g in firings]
    assert not any(paris_ms(2026, 7, 4, 11) <= g[3] < paris_ms(2026, 7, 6, 0) for g in firings)


def test_arrival_shape_does_not_change_scheduled_alerts() -> None:
    rows = noise_day()
    whole = evaluate([rows])
    rng = random.Random(5)
    batches, i = [], 0
    while i < len(rows):
        n = rng.choice([1, 7, 60, 500])
        batches.append(rows[i:i + n])
        i += n
    assert evaluate(batches) == whole


# -- the checker --------------------------------------------------------------------------
def _problems(text: str) -> list[str]:
    _, problems = check_text(text, "f.yaml")
    return [f"{p.line}:{p.severity}:{p.message}" for p in problems]


def test_check_flags_a_label_no_alert_carries() -> None:
    text = NOISE_RULES.replace("$labels.district", "$labels.distrct")
    probs = _problems(text)
    assert any("distrct" in p and "did you mean district" in p and ":error:" in p
               for p in probs), probs
    line = next(p for p in probs if "distrct" in p).split(":")[0]
    assert text.splitlines()[int(line) - 1].strip().startswith("summary:")


def test_check_accepts_carried_labels_and_flags_unknown_variables() -> None:
    assert not [p for p in _problems(NOISE_RULES) if ":error:" in p]
    district_only = NOISE_RULES.replace("$labels.sensor", "$valeu")
    assert any("unknown template variable $valeu" in p and "$value" in p
               for p in _problems(district_only))
    # `sensor` is not a label of a district-scope alert
    district_rule = """
groups:
  - name: g
    rules:
      - alert: Loud
        kind: threshold
        scope: district
        selector: {domain: environment}
        metric: noise_dba
        condition: {op: '>', value: 70}
        labels: {severity: info, team: noise}
        annotations: {summary: '{{ $labels.sensor }} {{ $labels.team }} {{ .Labels.district }}'}
"""
    probs = _problems(district_rule)
    assert len(probs) == 1 and "'sensor'" in probs[0] and ":error:" in probs[0], probs


def test_check_reports_bad_schedules_at_their_line() -> None:
    text = NOISE_RULES.replace("monday:friday", "friday:monday")
    probs = _problems(text)
    hit = next(p for p in probs if "runs forward" in p)
    assert "schedule" in text.splitlines()[int(hit.split(":")[0]) - 1]
    assert any("HH:MM" in p for p in _problems(NOISE_RULES.replace("'22:00'", "'10pm'")))
    assert any("unknown time zone" in p
               for p in _problems(NOISE_RULES.replace("Europe/Paris", "Europe/Pariss")))
