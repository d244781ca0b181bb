"""Rule kinds as plugins: every folder of rules/kinds is a registered kind with its README
and schema fragment, each kind goes from YAML to an alert through the engine, the schema
file is the composition of the fragments, and a new kind needs only its folder."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from urbanbrain.rules import Evaluator, RuleFileError, loads
from urbanbrain.rules import kinds as kinds_pkg
from urbanbrain.rules.kinds import KINDS, kind_of, load_folder, unregister
from urbanbrain.rules.kinds.schema import SCHEMA_PATH, compose, render

KINDS_DIR = Path(kinds_pkg.__file__).parent
M = 60_000
REG = {
    "tl-1": {"domain": "traffic", "kind": "loop", "district": "centre", "neighbours": "tl-2"},
    "tl-2": {"domain": "traffic", "kind": "loop", "district": "centre", "neighbours": "tl-1"},
}


def rules(body: str) -> str:
    return "groups:\n  - name: g\n    rules:\n" + textwrap.indent(textwrap.dedent(body), "      ")


def test_every_kind_folder_is_registered_with_readme_and_schema_fragment():
    folders = sorted(p.name for p in KINDS_DIR.iterdir() if (p / "__init__.py").exists())
    assert folders == sorted(KINDS) == sorted(["threshold", "rate", "absence", "anomaly",
                                               "composite"])
    for name, kind in KINDS.items():
        assert kind.name == name
        readme = (KINDS_DIR / name / "README.md").read_text()
        example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
        (rule,) = loads(rules(example)).rules  # the README's example rule is valid
        assert rule.kind == name
        assert kind.condition_def in kind.schema_defs
    assert list(KINDS) == ["threshold", "rate", "absence", "anomaly", "composite"]  # by rank


def test_schema_file_is_the_composition_of_core_and_fragments():
    """rules.schema.json is what editors read: regenerate it with
    ``python -m urbanbrain.rules.kinds`` after changing a kind."""
    assert SCHEMA_PATH.read_text() == render()
    assert json.loads(SCHEMA_PATH.read_text()) == compose()
    assert compose()["$defs"]["rule"]["properties"]["kind"] == {"enum": list(KINDS)}


def _fires(text: str, feed: list[tuple[str, int, dict[str, float]]], until_min: int) -> list:
    """Events of one rule fed readings (sensor, minute, metrics) and ticked every minute."""
    ev = Evaluator(loads(text), REG)
    events = []
    by_min: dict[int, list[dict]] = {}
    for sid, t, metrics in feed:
        by_min.setdefault(t, []).append({"sensor_id": sid, "ts": t * M, "domain": "traffic",
                                         "kind": "loop", "district": "centre",
                                         "metrics": metrics})
    for t in range(until_min):
        ev.observe(by_min.get(t, []))
        events += [(t, e.status, e.labels.get("sensor") or e.labels["district"])
                   for e in ev.tick(t * M)]
    return events


ROUND_TRIPS = {
    "threshold": ("""\
        - alert: A
          kind: threshold
          metric: speed_kmh
          condition: {op: '<', value: 20}
        """, [("tl-1", t, {"speed_kmh": 10 if 3 <= t < 6 else 50}) for t in range(10)],
        [(3, "firing", "tl-1"), (6, "resolved", "tl-1")]),
    "rate": ("""\
        - alert: A
          kind: rate
          metric: speed_kmh
          window: 3m
          condition: {op: '<', value: -10}
        """, [("tl-1", t, {"speed_kmh": 50 if t < 4 else 10}) for t in range(10)],
        [(4, "firing", "tl-1"), (6, "resolved", "tl-1")]),
    "absence": ("""\
        - alert: A
          kind: absence
          selector: {sensors: [tl-1]}
          condition: {silent_for: 3m}
        """, [("tl-1", t, {"speed_kmh": 50}) for t in (0, 1, 2, 8)],
        [(5, "firing", "tl-1"), (8, "resolved", "tl-1")]),
    "anomaly": ("""\
        - alert: A
          kind: anomaly
          metric: speed_kmh
          selector: {sensors: [tl-1]}
          condition: {baseline: 10m, threshold: 3, min_samples: 5}
        """, [("tl-1", t, {"speed_kmh": 50 + (t % 2) if t < 12 else 10}) for t in range(14)],
        [(12, "firing", "tl-1"), (13, "resolved", "tl-1")]),  # the drop joins the baseline
    "composite": ("""\
        - alert: A
          kind: composite
          scope: district
          condition:
            min_sensors: 2
            neighbours: true
            all: [{metric: speed_kmh, op: '<', value: 20}]
        """, [(s, t, {"speed_kmh": 10 if 2 <= t < 5 else 50}) for t in range(8)
              for s in ("tl-1", "tl-2")],
        [(2, "firing", "centre"), (5, "resolved", "centre")]),
}


@pytest.mark.parametrize("kind", sorted(ROUND_TRIPS))
def test_each_kind_parses_and_evaluates(kind):
    body, feed, want = ROUND_TRIPS[kind]
    text = rules(body)
    (rule,) = loads(text).rules
    assert rule.kind == kind and rule.spec is kind_of(kind)
    assert _fires(text, feed, max(t for _, t, _ in feed) + 2) == want


TOY = '''\
"""A toy kind: a sensor's latest value is an odd integer."""
from dataclasses import dataclass

from urbanbrain.rules.kinds.base import NO_EXTRA, RuleKind
from urbanbrain.rules.model import Probe


@dataclass(frozen=True, slots=True)
class OddCond:
    probe: Probe


class Odd(RuleKind):
    name = "odd"
    condition_def = "odd_condition"
    rule_requires = ("metric",)
    schema_defs = {"odd_condition": {"type": "object", "additionalProperties": False,
                                     "properties": {"strict": {"type": "boolean"}}}}

    def parse(self, b, ctx, r, path, sel, scope):
        pr = b.probe(ctx, r, path, sel)
        return OddCond(pr) if pr else None

    def probes(self, c):
        return (c.probe,)

    def evaluate(self, ev, c, sid, st, now, active):
        v = ev.probe_value(c.probe, sid, st, now)
        return (v is not None and v % 2 == 1), v, NO_EXTRA


KIND = Odd()
'''


@pytest.fixture
def toy_kind(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "__init__.py").write_text(TOY)
    kind = load_folder(folder)
    yield kind
    unregister("odd")


def test_a_new_kind_is_one_folder(toy_kind):
    assert kind_of("odd") is toy_kind and "odd" in compose()["$defs"]["rule"]["properties"][
        "kind"]["enum"]
    text = rules("""\
        - alert: Odd
          kind: odd
          metric: speed_kmh
          condition: {}
        """)
    feed = [("tl-1", t, {"speed_kmh": 40 + t}) for t in range(4)]
    assert _fires(text, feed, 4) == [(1, "firing", "tl-1"), (2, "resolved", "tl-1"),
                                     (3, "firing", "tl-1")]
    # its schema fragment checks its condition, with the usual file:line:col
    with pytest.raises(RuleFileError) as exc:
        loads(text.replace("condition: {}", "condition: {strikt: true}"), "odd.yaml")
    assert "odd.yaml:7:" in str(exc.value) and "unknown key 'strikt'" in str(exc.value)


def test_an_unregistered_kind_is_a_schema_error():
    text = rules("""\
        - alert: Odd
          kind: odd
          metric: speed_kmh
          condition: {}
        """)
    with pytest.raises(RuleFileError, match="'odd' is not one of 'threshold'"):
        loads(text)
