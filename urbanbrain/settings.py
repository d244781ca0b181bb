"""One typed settings object for every urbanbrain process.

Everything comes from environment variables with the ``URBANBRAIN_`` prefix (or an
``.env`` file), so the same image runs in compose, in CI and on a laptop. Secrets are
``SecretStr`` so they never end up in a log line or a ``repr``; none has a default.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DOMAINS: tuple[str, ...] = ("traffic", "environment", "water", "power")
#: An InfluxQL retention duration: INF, or whole hours, days or weeks (at least 1h).
_RETENTION = r"^(INF|[1-9][0-9]*[hdw])$"



def comma_list(value: Any) -> Any:
    """A comma-separated setting (``URBANBRAIN_ALERT_WEBHOOK_URLS=a,b``) as a list, blanks
    dropped; anything else unchanged (for ``field_validator(mode="before")``)."""
    if isinstance(value, str):
        return [u.strip() for u in value.split(",") if u.strip()]
    return value

class Settings(BaseSettings):
    """Runtime configuration, read from ``URBANBRAIN_*`` environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="URBANBRAIN_", env_file=".env", extra="ignore", frozen=True
    )

    # --- local data -------------------------------------------------------------------
    data_dir: Path = Field(Path("var"), description="Where the embedded stack keeps its state.")
    registry_path: Path | None = Field(
        None, description="Device registry (CSV); the simulator writes one."
    )

    # --- MQTT -------------------------------------------------------------------------
    mqtt_url: str = Field(
        "mqtt://127.0.0.1:1883", description="mqtt://host:port, or mqtts://host:port for TLS"
    )
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_ca_file: Path | None = Field(None, description="CA bundle for mqtts:// (default: system)")
    mqtt_cert_file: Path | None = Field(None, description="client certificate for mutual TLS")
    mqtt_key_file: Path | None = None
    mqtt_topic_prefix: str = "city"
    mqtt_client_id: str = Field(
        "urbanbrain-ingest", description="fixed, so the broker keeps our persistent session"
    )
    mqtt_shared_group: str | None = Field(
        None, description="subscribe as $share/<group>/... so replicas split the load"
    )
    mqtt_publish_queue: int = Field(
        100_000, ge=1, description="publishers (simulator, replay): messages kept until the "
        "broker confirms them, resent after a reconnect; publishing blocks while it is full",
    )
    mqtt_publish_give_up_s: float = Field(
        120.0, gt=0, description="publishers give up (one error line, non-zero exit) after "
        "the broker has been unreachable this long",
    )

    # --- Kafka ------------------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ca_file: Path | None = None
    kafka_partitions: int = Field(4, ge=1, description="partitions of each readings.* topic")
    kafka_replication: int = Field(1, ge=1)
    # tansu holds a group's first JoinGroup for half the session timeout: keep these small
    # locally, Kafka-sized in production.
    kafka_session_timeout_s: float = 60.0
    kafka_heartbeat_interval_s: float = 3.0
    kafka_fetch_max_wait_ms: int = Field(
        50, ge=1, le=30_000, description="longest a consumer's fetch waits at the broker "
        "when it has no new records (the streams worker and the raw store). Apache Kafka "
        "answers as soon as a record arrives, so this only paces idle polling there; a "
        "broker that answers only when the wait is over (tansu, the local stack's) adds up "
        "to this much latency to every record (docs/PERFORMANCE.md, Latency)")

    # --- InfluxDB ---------------------------------------------------------------------
    influx_url: str = "http://127.0.0.1:8086"
    influx_db: str = "urbanbrain"
    influx_api: Literal["auto", "v1", "v2"] = Field(
        "auto", description="v1 /write, v2 /api/v2/write, or pick from /ping's version"
    )
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_token: SecretStr | None = None
    influx_org: str = "-"
    influx_batch_points: int = Field(5000, ge=1)
    influx_write_concurrency: int = Field(2, ge=1, description="requests in flight per write")
    influx_timeout_s: float = 10.0
    # Retention policies (urbanbrain/retention.py): created by `urbanbrain influx init` with
    # the admin below, which only that command (compose: the influx-init service) gets.
    influx_admin_username: str | None = Field(
        None, description="InfluxDB admin for `urbanbrain influx init` only")
    influx_admin_password: SecretStr | None = None
    influx_raw_retention: str = Field(
        "30d", pattern=_RETENTION, description="raw readings (policy raw, DEFAULT)")
    influx_windows_retention: str = Field(
        "395d", pattern=_RETENTION, description="1-min/5-min windows, indices, 1-min "
        "roll-ups (policy windows; 395d = 13 months)")
    influx_longterm_retention: str = Field(
        "INF", pattern=_RETENTION, description="hourly roll-ups, sensor positions (longterm)")
    influx_alerts_retention: str = Field("730d", pattern=_RETENTION, description="alerts")
    influx_deadletters_retention: str = Field(
        "90d", pattern=_RETENTION, description="dead-letter counters (deadletters)")
    influx_pipeline_retention: str = Field(
        "30d", pattern=_RETENTION, description="self-monitoring (pipeline)")

    # --- ingest -----------------------------------------------------------------------
    ingest_batch_max: int = Field(500, ge=1, description="readings per Kafka record at most")
    ingest_linger_ms: int = Field(100, ge=0, description="wait this long to fill a batch")
    ingest_drain_bytes: int = Field(
        1 << 20, ge=1, description="payload bytes normalised per step (a backlog flows in steps)"
    )
    ingest_max_inflight: int = Field(
        20_000, ge=1, description="MQTT messages received but not yet acked (backpressure)"
    )
    ingest_max_payload_bytes: int = 256 * 1024
    ingest_max_future_s: float = 300.0
    ingest_max_past_s: float = 7 * 24 * 3600.0
    ingest_unknown_sensors: Literal["reject", "accept"] = "accept"
    ingest_partial: Literal["accept", "reject"] = Field(
        "accept", description="one implausible field of a reading: store the good fields and "
        "dead-letter that one (accept), or refuse the whole reading (reject)"
    )
    ingest_profiles_path: Path | None = Field(
        None, description="device profiles (YAML file, directory or glob), hot reloaded"
    )

    # --- health and metrics (never through InfluxDB: see urbanbrain/health.py) ----------
    metrics_host: str = Field(
        "127.0.0.1", description="address of /livez, /readyz, /healthz, /metrics (0.0.0.0: "
        "reachable from other containers, e.g. a Prometheus on the compose network)")
    metrics_port: int | None = Field(
        None, description="port of the health and metrics endpoints; None: not served")

    # --- streams ----------------------------------------------------------------------
    streams_app_id: str = "urbanbrain-streams"
    streams_web_port: int | None = Field(
        None, description="Faust web port on 127.0.0.1; None disables the web server"
    )

    @property
    def mqtt_host(self) -> str:
        return urlsplit(self.mqtt_url).hostname or "127.0.0.1"

    @property
    def mqtt_port(self) -> int:
        parts = urlsplit(self.mqtt_url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def mqtt_tls(self) -> bool:
        return urlsplit(self.mqtt_url).scheme == "mqtts"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read once from the environment."""
    return Settings()
