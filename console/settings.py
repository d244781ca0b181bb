"""Settings of the console room (``URBANBRAIN_CONSOLE_*``), on top of the shared ones."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from urbanbrain.settings import Settings


class ConsoleSettings(Settings):
    """Where the console listens, who may log in, and where its map comes from."""

    console_host: str = Field("127.0.0.1", description="listen address (0.0.0.0 in a container)")
    console_port: int = Field(8090, ge=1, le=65535)
    console_users_file: Path | None = Field(
        None, description="users file (JSON, `urbanbrain console user add` writes it): name, "
        "role and argon2 password hash per user")
    console_users: SecretStr | None = Field(
        None, description="users from the environment instead: `name:role:argon2hash` entries "
        "separated by `;` (a hash contains no `;`)")
    console_proxy_user_header: str | None = Field(
        None, description="trust this header (e.g. X-Forwarded-User) for the user name when "
        "the request comes from a trusted proxy: the proxy authenticated them")
    console_trusted_proxies: str = Field(
        "127.0.0.1/32,::1/128", description="comma-separated networks whose requests may carry "
        "the proxy user header; a request from elsewhere carrying it is refused")
    console_proxy_default_role: Literal["none", "viewer", "operator", "admin"] = Field(
        "none", description="role of a proxy-authenticated user missing from the users file "
        "(none: refused)")
    console_session_ttl_s: float = Field(12 * 3600.0, gt=0, description="login lifetime")
    console_secure_cookies: bool = Field(
        False, description="mark cookies Secure (set when the console is reached over HTTPS)")
    console_districts_path: Path | None = Field(
        None, description="district polygons (GeoJSON FeatureCollection, property `district`); "
        "default: convex hulls of each district's sensors from the registry")
    console_kpi_interval_s: float = Field(10.0, gt=0, description="KPI refresh from InfluxDB")
    console_series_range: str = Field("1h", pattern=r"^\d+[smhd]$",
                                      description="drill-down: how much of a sensor's series")

    @classmethod
    def from_base(cls, base: Settings) -> ConsoleSettings:
        if isinstance(base, cls):
            return base
        return cls(**{k: getattr(base, k) for k in Settings.model_fields})
