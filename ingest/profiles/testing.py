"""Unit tests for device profiles (``urbanbrain devices test``), in the spirit of promtool.

A test file names profile files and gives payloads with the readings and dead letters they
must produce, run through the very :class:`~urbanbrain.ingest.normalise.Normaliser` the
bridge runs::

    profile_files: [profile.yaml]
    tests:
      - name: a flat reading in milli-units
        topic: vendor/acme/centrum/A-17
        received: 2026-01-05T08:00:30Z      # ISO 8601 or ms; default: now
        payload: {dev: A-17, cnt: 12, spd_mms: 13890, t: 1767596400}
        # or payload_file: payload.json (relative to the test file)
        expect:
          readings:
            - sensor_id: acme-A-17
              ts: 2026-01-05T07:00:00Z
              metrics: {vehicle_count: 12, speed_kmh: 50.004}
          dead_letters:
            - {reason: out_of_range, metric: occupancy_pct}

Readings must match exactly: the same number, and for each its ``sensor_id``, ``ts`` and
metrics (same names; values equal to 1e-9 relative), plus ``domain``/``kind``/``district``
when given. Dead letters match on the keys given (``reason``, ``metric``, ``field``,
``sensor_id``, ``profile``, or a ``message`` substring), and their number must be equal.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from urbanbrain.ingest.normalise import Normaliser
from urbanbrain.ingest.profiles.loader import check_files
from urbanbrain.ingest.rejects import Reject
from urbanbrain.ingest.timestamps import ms_from_iso
from urbanbrain.rules.loader import Problem, expand_paths
from urbanbrain.rules.yamlpos import YamlSyntaxError, load_located

from urbanbrain.settings import Settings

TEST_KEYS = ("name", "topic", "received", "payload", "payload_file", "expect")


@dataclass
class TestResult:
    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class FileResult:
    file: str
    tests: list[TestResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(t.ok for t in self.tests)


def _ms(v: Any) -> int:
    """ISO 8601 text, a YAML timestamp (PyYAML parses unquoted ones) or ms since the epoch."""
    if isinstance(v, datetime):
        if v.tzinfo is None:  # written without a zone: ambiguous, as in payloads
            raise ValueError(f"time {v.isoformat()} has no time zone")
        return int(v.timestamp() * 1000)
    if isinstance(v, str):
        return ms_from_iso(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"not a time: {v!r}")
    return int(v)


def _close(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


def _reading_diff(exp: dict, got: dict) -> list[str]:
    out = []
    if set(exp.get("metrics", {})) != set(got["metrics"]):
        out.append(f"metrics {sorted(got['metrics'])}, expected {sorted(exp.get('metrics', {}))}")
    for k, v in exp.get("metrics", {}).items():
        if k in got["metrics"] and not _close(v, got["metrics"][k]):
            out.append(f"{k} = {got['metrics'][k]!r}, expected {v!r}")
    for k in ("domain", "kind", "district"):
        if k in exp and exp[k] != got.get(k):
            out.append(f"{k} = {got.get(k)!r}, expected {exp[k]!r}")
    return out


def _letter_matches(exp: dict, got: dict) -> bool:
    for k, v in exp.items():
        if k == "message":
            if str(v) not in (got.get("message") or ""):
                return False
        elif got.get(k) != v:
            return False
    return True


def run_case(norm: Normaliser, case: dict, base: Path) -> TestResult:
    res = TestResult(str(case.get("name") or "(unnamed)"))
    unknown = [k for k in case if k not in TEST_KEYS]
    if unknown:
        res.failures.append(f"unknown key(s) {unknown}")
        return res
    if "payload_file" in case:
        try:
            payload = (base / str(case["payload_file"])).read_bytes()
        except OSError as exc:
            res.failures.append(f"payload_file: {exc.strerror or exc}: {case['payload_file']}")
            return res
    elif isinstance(case.get("payload"), str):
        payload = case["payload"].encode()
    else:
        payload = orjson.dumps(case.get("payload"))
    try:
        received = _ms(case["received"]) if "received" in case else int(time.time() * 1000)
    except (Reject, ValueError, TypeError):
        res.failures.append(f"bad received time {case.get('received')!r}")
        return res
    readings, dead = norm.process(str(case.get("topic", "")), payload, received)
    expect = case.get("expect") or {}
    exp_r = list(expect.get("readings") or [])
    if len(exp_r) != len(readings):
        res.failures.append(f"{len(readings)} reading(s), expected {len(exp_r)}: "
                            f"{orjson.dumps(readings).decode()[:600]}")
    left = list(readings)
    for exp in exp_r:
        try:
            ts = _ms(exp["ts"]) if "ts" in exp else None
        except (Reject, ValueError, TypeError):
            res.failures.append(f"bad expected ts {exp.get('ts')!r}")
            continue
        match = [r for r in left if r["sensor_id"] == exp.get("sensor_id")
                 and (ts is None or r["ts"] == ts)]
        if not match:
            res.failures.append(f"no reading of {exp.get('sensor_id')!r} at {exp.get('ts')!r}; "
                                f"got {[(r['sensor_id'], r['ts']) for r in left]}")
            continue
        got = match[0]
        left.remove(got)
        res.failures += [f"{exp.get('sensor_id')}: {d}" for d in _reading_diff(exp, got)]
    exp_d = list(expect.get("dead_letters") or [])
    if len(exp_d) != len(dead):
        res.failures.append(f"{len(dead)} dead letter(s), expected {len(exp_d)}: "
                            f"{[(d['reason'], d.get('metric'), d['message']) for d in dead]}")
    pool = list(dead)
    for exp in exp_d:
        hit = next((d for d in pool if _letter_matches(exp, d)), None)
        if hit is None:
            res.failures.append(f"no dead letter like {exp}; got "
                                f"{[(d['reason'], d.get('metric'), d['message']) for d in pool]}")
        else:
            pool.remove(hit)
    return res


def run_file(path: str, settings: Settings | None = None) -> FileResult:
    out = FileResult(path)
    try:
        loc = load_located(Path(path).read_text(encoding="utf-8"))
    except (OSError, YamlSyntaxError) as exc:
        line, col = (exc.line, exc.col) if isinstance(exc, YamlSyntaxError) else (0, 0)
        out.problems.append(Problem(path, line, col, str(exc)))
        return out
    doc = loc.data
    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
        out.problems.append(Problem(path, 1, 1, "a test file is a mapping with 'profile_files' "
                                                "and a 'tests' list"))
        return out
    base = Path(path).parent
    files = [str(base / f) for f in doc.get("profile_files") or []]
    profiles, problems = check_files(files)
    if profiles is None:
        out.problems += problems
        return out
    settings = settings or Settings()
    for case in doc["tests"]:  # a fresh normaliser each: no case is another's duplicate
        norm = Normaliser(settings, profiles=profiles)
        out.tests.append(run_case(norm, case if isinstance(case, dict) else {}, base))
    return out


def run_tests(paths: list[str], settings: Settings | None = None) -> list[FileResult]:
    """Every test file under ``paths`` (files, directories, globs)."""
    explicit = {str(p) for p in paths if Path(p).is_file()}
    return [run_file(f, settings) for f in expand_paths(paths)
            if f in explicit or f.endswith(("test.yaml", "test.yml"))]
