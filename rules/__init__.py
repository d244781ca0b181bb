"""Alert rules: Prometheus-style rule files for city sensors, and the engine that runs them.

Public API (see rules/README.md)::

    from urbanbrain.rules import RuleSet, Evaluator
    rs = RuleSet.load(["rules/city"], registry)        # raises RuleFileError (file:line:col)
    ev = Evaluator(rs, registry)
    ev.observe(readings)                               # normalised Reading dicts
    events = ev.tick(now_ms)                           # AlertEvent transitions
    changes = ev.take_changes()                        # key -> JSON dict | None, for a table
    encoded = ev.take_encoded()                        # the same as JSON bytes, no copies
"""

from urbanbrain.rules.alerts import AlertEvent, fingerprint, rfc3339
from urbanbrain.rules.evaluator import Evaluator
from urbanbrain.rules.formatters import (
    group_key,
    influx_line,
    mqtt_message,
    mqtt_topic,
    webhook_payloads,
)
from urbanbrain.rules.loader import Problem, RuleFileError, check_files, load_rules, loads
from urbanbrain.rules.model import Rule, RuleSet
from urbanbrain.rules.promtool import expand_values, parse_series, run_test_file, run_tests
from urbanbrain.rules.registry import load_registry_csv
from urbanbrain.rules.silences import Matcher, Silence
from urbanbrain.rules.watcher import RuleWatcher

__all__ = [
    "AlertEvent",
    "Evaluator",
    "Matcher",
    "Problem",
    "Rule",
    "RuleFileError",
    "RuleSet",
    "RuleWatcher",
    "Silence",
    "check_files",
    "expand_values",
    "fingerprint",
    "group_key",
    "influx_line",
    "load_registry_csv",
    "load_rules",
    "loads",
    "mqtt_message",
    "mqtt_topic",
    "parse_series",
    "rfc3339",
    "run_test_file",
    "run_tests",
    "webhook_payloads",
]
