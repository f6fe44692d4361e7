"""Every secret, limit and timeout in one place, loaded from TOML and `RTT_*` variables.

Apps are validated once at start-up (pydantic), so the request path can trust them.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Features(_Strict):
    """Per-app switches; an operation of a disabled feature answers 40601."""

    messaging: bool = True
    events: bool = True
    rtt: bool = True
    push: bool = True


MAX_RECIPIENTS_PER_SEND = 100_000  # the local engine packs a target's place in 24 bits


class Limits(_Strict):
    """Per-app limits of API.md §7."""

    max_content_bytes: int = Field(131072, gt=0)
    # one send is one transaction and one stored frame: recipients per send stay bounded
    max_recipients_s2s: int = Field(1000, gt=0, le=MAX_RECIPIENTS_PER_SEND)
    max_recipients_user: int = Field(5, gt=0, le=MAX_RECIPIENTS_PER_SEND)
    max_recipients_rongcloud: int = Field(100, gt=0, le=MAX_RECIPIENTS_PER_SEND)
    rongcloud_rate_per_second: int = Field(100, gt=0)
    max_frame_bytes: int = Field(262144, gt=0)
    client_requests_per_second: int = Field(20, gt=0)


class ApiUser(_Strict):
    """A Nexudus-style API user."""

    password: str
    roles: list[str] = Field(default_factory=list)


class AppConfig(_Strict):
    """One tenant: its secrets, S2S servers, features and limits."""

    secret: str = Field(min_length=1)
    app_key: str | None = None
    app_secret: str | None = None
    servers: dict[str, str] = Field(default_factory=dict)
    users: dict[str, ApiUser] = Field(default_factory=dict)
    features: Features = Features()
    limits: Limits = Limits()
    system_identities: list[str] = Field(
        default_factory=lambda: ["System"],
        description="profileIds that name the app itself; clients can never send to them",
    )


class AppsFile(_Strict):
    apps: dict[str, AppConfig]


def _env(name: str, default: str) -> str:
    return os.environ.get(f"RTT_{name}", default)


@dataclass
class Settings:
    """How one node runs. Defaults suit a single developer machine; tests shrink the timers."""

    apps: dict[str, AppConfig]
    host: str = "127.0.0.1"
    port: int = 8080
    engine: str = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    database: Path = Path("rtt.db")
    public_host: str | None = None
    public_port: int | None = None
    heartbeat_seconds: float = 30.0
    s2s_session_seconds: float = 1200.0
    idempotency_seconds: float = 600.0
    stream_max_items: int = 10000
    stream_max_seconds: float = 7 * 24 * 3600.0
    sweep_interval_seconds: float = 60.0
    redis_timeout_seconds: float = 2.0
    probe_interval_seconds: float = 1.0
    presence_ttl_seconds: float = 10.0
    session_buffer_bytes: int = 1024 * 1024
    config_path: Path | None = None
    generated_secrets: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint_host(self) -> str:
        """Host clients are told to dial; a wildcard bind address is no address to dial."""
        if self.public_host:
            return self.public_host
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def endpoint_port(self) -> int:
        return self.public_port or self.port


def load_apps(path: Path) -> dict[str, AppConfig]:
    """Read and validate the apps of a TOML file (API.md §1)."""
    with path.open("rb") as f:
        return AppsFile.model_validate(tomllib.load(f)).apps


def demo_apps() -> tuple[dict[str, AppConfig], dict[str, str]]:
    """A development app `demo` with fresh random secrets, returned so they can be printed once."""
    generated = {
        "secret": secrets.token_urlsafe(24),
        "server_secret": secrets.token_urlsafe(24),
        "app_secret": secrets.token_urlsafe(24),
        "admin_password": secrets.token_urlsafe(12),
    }
    app = AppConfig(
        secret=generated["secret"],
        app_key="demo-key",
        app_secret=generated["app_secret"],
        servers={"backend": generated["server_secret"]},
        users={"admin": ApiUser(password=generated["admin_password"], roles=["admin"])},
    )
    return {"demo": app}, generated


def settings_from(
    config: str | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    engine: str | None = None,
    redis_url: str | None = None,
    database: str | None = None,
) -> Settings:
    """Command-line values win over `RTT_*` variables, which win over defaults."""
    config = config or os.environ.get("RTT_CONFIG")
    generated: dict[str, str] = {}
    if config:
        apps = load_apps(Path(config))
    else:
        apps, generated = demo_apps()
    engine = engine or _env("ENGINE", "local")
    if engine not in ("local", "redis"):
        raise ValueError(f"unknown engine {engine!r}: use local or redis")
    public_port = os.environ.get("RTT_PUBLIC_PORT")
    return Settings(
        apps=apps,
        host=host or _env("HOST", "127.0.0.1"),
        port=port if port is not None else int(_env("PORT", "8080")),
        engine=engine,
        redis_url=redis_url or _env("REDIS_URL", "redis://127.0.0.1:6379/0"),
        database=Path(database or _env("DATABASE", "rtt.db")),
        public_host=os.environ.get("RTT_PUBLIC_HOST"),
        public_port=int(public_port) if public_port else None,
        heartbeat_seconds=float(_env("HEARTBEAT_SECONDS", "30")),
        s2s_session_seconds=float(_env("S2S_SESSION_SECONDS", "1200")),
        stream_max_items=int(_env("STREAM_MAX_ITEMS", "10000")),
        stream_max_seconds=float(_env("STREAM_MAX_SECONDS", str(7 * 24 * 3600))),
        sweep_interval_seconds=float(_env("SWEEP_INTERVAL_SECONDS", "60")),
        redis_timeout_seconds=float(_env("REDIS_TIMEOUT_SECONDS", "2")),
        probe_interval_seconds=float(_env("PROBE_INTERVAL_SECONDS", "1")),
        presence_ttl_seconds=float(_env("PRESENCE_TTL_SECONDS", "10")),
        config_path=Path(config) if config else None,
        generated_secrets=generated,
    )
