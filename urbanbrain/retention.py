"""InfluxDB lifecycle: one retention policy per storage tier, created by an admin, checked by
every writer, and the table that tells dashboards which tier answers which time range.

Why tiers: a city of 100,000 sensors reporting every 10 s writes 864 M raw points a day.
Raw points are worth keeping for weeks, 1-min/5-min windows for a year, hourly roll-ups
for ever; one policy per tier lets InfluxDB drop whole shards when they age out instead of
deleting points, and lets a long-range panel read a small series instead of raw data.

=============  ==========================================================  ===========
policy         holds                                                       default
=============  ==========================================================  ===========
``raw``        raw readings ``traffic``, ``environment``, ``water``,        30 d,
               ``power``                                                   DEFAULT
``windows``    ``agg_sensor_1m``/``_5m``, indices (``traffic_index``,       395 d
               ``aqi``, ``water_index``, ``power_index``, window 1m/5m),   (13 months)
               ``district_1m``, ``city_1m``
``longterm``   hourly: ``agg_sensor_1h``, indices with window ``1h``,      INF
               ``district_1h``, ``city_1h``; sensor positions ``sensors``;
               the dashboards' ``resolution`` table
``alerts``     alert transitions ``alerts``                                730 d
``deadletters`` dead-letter counters ``deadletters``                       90 d
``pipeline``   self-monitoring ``pipeline``                                30 d
=============  ==========================================================  ===========

``raw`` is the database's DEFAULT policy, so a query or a write that names no policy meets
the short tier: nothing grows for ever by accident.

Who does what (InfluxDB 1.x: CREATE/ALTER RETENTION POLICY needs admin):

* :func:`init` (``urbanbrain influx init``, ``urbanbrain up``, compose's ``influx-init``)
  runs with the admin credentials (``URBANBRAIN_INFLUX_ADMIN_USERNAME``/``_PASSWORD``),
  creates what is missing, alters a duration that differs from the settings, and is
  idempotent: a second run changes nothing.
* :func:`check` (ingest and streams at start, as the non-admin writer) only reads ``SHOW
  RETENTION POLICIES`` and says which policies are missing and how to create them: a write
  to a missing policy would fail on every batch.

InfluxDB 2.x/3.x have buckets instead: docs/DEPLOYMENT.md maps each policy to a bucket and a
DBRP mapping; the writer's v2 transport writes to bucket ``<db>/<policy>``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from urbanbrain.influx import InfluxAuthError, InfluxError, InfluxSetupError, InfluxWriter
from urbanbrain.resolution import resolution_lines
from urbanbrain.settings import DOMAINS, Settings

log = logging.getLogger(__name__)

RAW = "raw"
WINDOWS = "windows"
LONGTERM = "longterm"
ALERTS = "alerts"
DEADLETTERS = "deadletters"
PIPELINE = "pipeline"
#: Every policy, in the order ``init`` creates them.
POLICY_NAMES: tuple[str, ...] = (RAW, WINDOWS, LONGTERM, ALERTS, DEADLETTERS, PIPELINE)

#: Where each measurement with a single home is stored. The index measurements live in
#: ``windows`` (window 1m/5m) *and* in ``longterm`` (window 1h): their writers name the
#: policy, :func:`policy_of` gives the ``windows`` one.
MEASUREMENT_POLICY: dict[str, str] = {
    **{d: RAW for d in DOMAINS},
    "agg_sensor_1m": WINDOWS, "agg_sensor_5m": WINDOWS,
    "traffic_index": WINDOWS, "aqi": WINDOWS, "water_index": WINDOWS, "power_index": WINDOWS,
    "district_1m": WINDOWS, "city_1m": WINDOWS,
    "agg_sensor_1h": LONGTERM, "district_1h": LONGTERM, "city_1h": LONGTERM,
    "sensors": LONGTERM, "resolution": LONGTERM,
    "alerts": ALERTS, "deadletters": DEADLETTERS, "pipeline": PIPELINE,
}

#: Every tier kept for ever: a stack that replays old recordings (rules livescore, tests of
#: scenario history), whose event times would be "beyond retention policy" otherwise.
KEEP_EVERYTHING: dict[str, str] = {p: "INF" for p in POLICY_NAMES}

_DURATION = re.compile(r"^(INF|[1-9]\d*[hdw])$")
_UNIT_S = {"h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Policy:
    name: str
    duration: str  # InfluxQL duration literal (``30d``) or ``INF``
    default: bool = False

    @property
    def seconds(self) -> int:
        """0 for INF, as ``SHOW RETENTION POLICIES`` says ``0s``."""
        return duration_seconds(self.duration)


def duration_seconds(duration: str) -> int:
    """``30d`` → 2592000, ``INF`` → 0; raises ValueError on anything else (below 1 h, which
    InfluxDB refuses, included)."""
    if not _DURATION.match(duration):
        raise ValueError(f"not a retention duration: {duration!r} (INF, or <n>h/<n>d/<n>w, "
                         "at least 1h)")
    if duration == "INF":
        return 0
    return int(duration[:-1]) * _UNIT_S[duration[-1]]


def shown_seconds(shown: str) -> int:
    """Seconds of a duration as ``SHOW RETENTION POLICIES`` prints it (``720h0m0s``)."""
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)", shown):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6,
                               "µs": 1e-6, "ns": 1e-9}[unit]
    return int(round(total))


def policies(settings: Settings) -> list[Policy]:
    """The policies the settings ask for (``URBANBRAIN_INFLUX_<TIER>_RETENTION``)."""
    s = settings
    wanted = [Policy(RAW, s.influx_raw_retention, default=True),
              Policy(WINDOWS, s.influx_windows_retention),
              Policy(LONGTERM, s.influx_longterm_retention),
              Policy(ALERTS, s.influx_alerts_retention),
              Policy(DEADLETTERS, s.influx_deadletters_retention),
              Policy(PIPELINE, s.influx_pipeline_retention)]
    for p in wanted:
        duration_seconds(p.duration)  # validate
    return wanted


def policy_of(measurement: str) -> str:
    """The policy a measurement is written to; ``raw`` (the DEFAULT) for unknown ones."""
    return MEASUREMENT_POLICY.get(measurement, RAW)


def _measurement(line: str) -> str:
    """A line protocol line's measurement (escaped ``\\,`` and ``\\ `` are kept as such)."""
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c in ", ":
            return line[:i]
        i += 1
    return line


def route(lines: Iterable[str]) -> dict[str, list[str]]:
    """Lines grouped by the policy of their measurement (:data:`MEASUREMENT_POLICY`)."""
    out: dict[str, list[str]] = {}
    for text in lines:
        out.setdefault(policy_of(_measurement(text)), []).append(text)
    return out


async def write_routed(writer: InfluxWriter, lines: Sequence[str]) -> list[tuple[str, str]]:
    """Write lines of mixed measurements (a process's pipeline and dead-letter counters, the
    roll-ups of two sizes), each to its policy; returns the refused lines with why."""
    refused: list[tuple[str, str]] = []
    for rp, group in route(lines).items():
        refused += await writer.write(group, rp=rp)
    return refused


# -- what init does ------------------------------------------------------------------------

@dataclass(frozen=True)
class Existing:
    """A policy as ``SHOW RETENTION POLICIES`` reports it."""

    name: str
    seconds: int
    default: bool


def parse_show(results: list[dict]) -> dict[str, Existing]:
    out: dict[str, Existing] = {}
    for s in (results[0].get("series", []) if results else []):
        cols = s["columns"]
        for row in s.get("values", []):
            r = dict(zip(cols, row))
            out[r["name"]] = Existing(r["name"], shown_seconds(str(r["duration"])),
                                      bool(r["default"]))
    return out


def plan(db: str, existing: Mapping[str, Existing], wanted: Sequence[Policy]) -> list[str]:
    """InfluxQL statements that turn ``existing`` into ``wanted`` (empty when they agree).

    Pure, so the decision is unit-tested without a server. Durations are only ever set to
    what the settings say: shortening ``raw`` from 30 d to 7 d makes InfluxDB drop the
    older shards at its next retention check, which is what the operator asked for."""
    out: list[str] = []
    for p in wanted:
        cur = existing.get(p.name)
        default = " DEFAULT" if p.default else ""
        if cur is None:
            out.append(f'CREATE RETENTION POLICY "{p.name}" ON "{db}" DURATION {p.duration} '
                       f"REPLICATION 1{default}")
            continue
        changes = []
        if cur.seconds != p.seconds:
            changes.append(f"DURATION {p.duration}")
        if p.default and not cur.default:
            changes.append("DEFAULT")
        if changes:
            out.append(f'ALTER RETENTION POLICY "{p.name}" ON "{db}" {" ".join(changes)}')
    return out


@dataclass
class InitReport:
    db: str
    created_db: bool = False
    statements: list[str] = field(default_factory=list)
    policies: dict[str, Existing] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.created_db or bool(self.statements)


def admin_settings(settings: Settings) -> Settings:
    """``settings`` logging in as the admin (``URBANBRAIN_INFLUX_ADMIN_*``), v1 API."""
    if not settings.influx_admin_username or settings.influx_admin_password is None:
        raise InfluxSetupError(
            "`urbanbrain influx init` needs InfluxDB admin credentials: set "
            "URBANBRAIN_INFLUX_ADMIN_USERNAME and URBANBRAIN_INFLUX_ADMIN_PASSWORD (only for "
            "this command; ingest and streams run as the non-admin writer)")
    return settings.model_copy(update={
        "influx_username": settings.influx_admin_username,
        "influx_password": settings.influx_admin_password, "influx_token": None,
        "influx_api": "v1"})


async def init(settings: Settings) -> InitReport:
    """Create the database if missing, create or alter the policies, write the resolution
    table; idempotent. Runs as the admin (:func:`admin_settings`)."""
    admin = admin_settings(settings)
    db = admin.influx_db
    report = InitReport(db)
    async with InfluxWriter(admin) as w:
        await w.ping()
        if db not in await w.databases():
            await w.query(f'CREATE DATABASE "{db}"', method="POST")
            report.created_db = True
        existing = parse_show(await w.query(f'SHOW RETENTION POLICIES ON "{db}"'))
        report.statements = plan(db, existing, policies(admin))
        for q in report.statements:
            try:
                await w.query(q, method="POST")
            except InfluxAuthError as exc:
                raise InfluxAuthError(
                    f"InfluxDB refused {q!r} to '{admin.influx_username}': retention policies "
                    "need an InfluxDB admin in URBANBRAIN_INFLUX_ADMIN_USERNAME/_PASSWORD"
                ) from exc
        report.policies = parse_show(await w.query(f'SHOW RETENTION POLICIES ON "{db}"'))
        refused = await w.write(resolution_lines(), rp=LONGTERM)
        if refused:
            raise InfluxError(f"resolution table refused: {refused[0][1]}")
    return report


def missing_advice(db: str, missing: Sequence[str]) -> str:
    return (f"InfluxDB database '{db}' lacks the retention policies {', '.join(missing)}: "
            "run `urbanbrain influx init` once with admin credentials "
            "(URBANBRAIN_INFLUX_ADMIN_USERNAME/_PASSWORD; compose runs it as the influx-init "
            "service), or create them by hand (docs/DEPLOYMENT.md)")


async def missing_policies(settings: Settings,
                           needed: Iterable[str] = POLICY_NAMES) -> list[str]:
    """Policies in ``needed`` that the database lacks, as the writer sees them (``SHOW
    RETENTION POLICIES`` needs no admin)."""
    async with InfluxWriter(settings) as w:
        have = parse_show(await w.query(f'SHOW RETENTION POLICIES ON "{settings.influx_db}"'))
    return [p for p in needed if p not in have]


async def check(settings: Settings, needed: Iterable[str] = POLICY_NAMES) -> None:
    """Raise :class:`InfluxSetupError` naming the missing policies (start check of writers).

    An InfluxDB that does not answer ``SHOW RETENTION POLICIES`` (InfluxDB 3 without DBRP
    listing) is let through with a warning: a write to a missing bucket fails clearly
    then."""
    import aiohttp

    try:
        missing = await missing_policies(settings, needed)
    except InfluxAuthError:
        raise
    except (InfluxError, aiohttp.ClientError, OSError) as exc:
        log.warning("retention policies not checked (%s): writes will tell",
                    exc or type(exc).__name__)
        return
    if missing:
        raise InfluxSetupError(missing_advice(settings.influx_db, missing))


def preflight(settings: Settings, *, timeout_s: float = 10.0) -> str | None:
    """:func:`urbanbrain.influx.preflight`, then :func:`check` when the server answered."""
    from urbanbrain.influx import preflight as writer_preflight

    version = writer_preflight(settings, timeout_s=timeout_s)
    if version is None:
        return None
    try:
        asyncio.run(asyncio.wait_for(check(settings), timeout_s))
    except asyncio.TimeoutError:
        log.warning("retention policies not checked (timeout): writes will tell")
    return version


# -- the commands --------------------------------------------------------------------------

#: sysexits.h EX_CONFIG, as the other start checks exit
EX_CONFIG = 78
EX_UNAVAILABLE = 69


def _days(seconds: int) -> str:
    if seconds == 0:
        return "INF"
    return f"{seconds // 86400}d" if seconds % 86400 == 0 else f"{seconds // 3600}h"


def run_init(settings: Settings, console: object) -> int:
    """``urbanbrain influx init``: one line per change, one line of errors; the exit code."""
    import aiohttp

    def say(text: str) -> None:  # one line each, however narrow the terminal
        console.print(text, soft_wrap=True)  # type: ignore[attr-defined]

    try:
        report = asyncio.run(init(settings))
    except (InfluxAuthError, InfluxSetupError) as exc:
        say(f"[red]error:[/] {exc}")
        return EX_CONFIG
    except (InfluxError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        say(f"[red]error:[/] InfluxDB at {settings.influx_url}: {exc or type(exc).__name__}")
        return EX_UNAVAILABLE
    if report.created_db:
        say(f"created database {report.db}")
    for q in report.statements:
        say(q)
    pols = ", ".join(f"{p.name}={_days(p.seconds)}{' (default)' if p.default else ''}"
                     for p in report.policies.values() if p.name in POLICY_NAMES)
    say(f"{report.db}: {pols}" + ("" if report.changed else " (unchanged)"))
    return 0


def run_check(settings: Settings, console: object) -> int:
    """``urbanbrain influx check``: the writer's start check, alone."""
    import aiohttp

    def say(text: str) -> None:
        console.print(text, soft_wrap=True)  # type: ignore[attr-defined]

    try:
        missing = asyncio.run(missing_policies(settings))
    except InfluxError as exc:
        say(f"[red]error:[/] {exc}")
        return EX_CONFIG
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        say(f"[red]error:[/] InfluxDB at {settings.influx_url}: {exc}")
        return EX_UNAVAILABLE
    if missing:
        say(f"[red]error:[/] {missing_advice(settings.influx_db, missing)}")
        return EX_CONFIG
    say(f"{settings.influx_db}: every retention policy present ({', '.join(POLICY_NAMES)})")
    return 0
