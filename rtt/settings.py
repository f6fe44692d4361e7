"""Every secret, limit and timeout in one place, loaded from TOML and `RTT_*` variables.

Apps and settings are validated once at start-up (pydantic, pydantic-settings), so the request
path can trust them, and a bad value stops the node with a message naming what to fix.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Features(_Strict):
    """Per-app switches; an operation of a disabled feature answers 40601."""

    messaging: bool = True
    events: bool = True
    rtt: bool = True
    push: bool = True
    # brainCloud's piggybacked `events` array on /dispatcherv2 responses (needs `events` too)
    piggyback_events: bool = False


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


class PushConfig(_Strict):
    """Where an app's notifications go (API.md §11, `[apps.X.push]`). An app without this
    section is not drained: its outbox is only read through `push/SYS_GET_PENDING`. Base URLs
    are here so a test (or a proxy) can stand in for the real services."""

    webhook_url: str | None = None
    webhook_secret: str | None = Field(None, min_length=1)
    fcm_project_id: str | None = None
    fcm_service_account_file: Path | None = None
    fcm_base_url: str = "https://fcm.googleapis.com"
    fcm_token_url: str | None = Field(
        None, description="OAuth2 token endpoint; default: the service account's token_uri"
    )
    apns_topic: str | None = None
    apns_team_id: str | None = None
    apns_key_id: str | None = None
    apns_key_file: Path | None = None
    apns_base_url: str = "https://api.push.apple.com"
    max_attempts: int = Field(8, ge=1, le=100)
    collapse_seconds: float = Field(
        10.0,
        ge=0,
        le=86400,
        description="per-profile rate: at most one notification per profile this often; what"
        " arrives in between is collapsed into the next one, with a count",
    )

    @model_validator(mode="after")
    def _complete(self) -> PushConfig:
        if self.webhook_url is not None and self.webhook_secret is None:
            raise ValueError("webhook_url needs webhook_secret (requests are signed)")
        if self.fcm_project_id is not None and self.fcm_service_account_file is None:
            raise ValueError("fcm_project_id needs fcm_service_account_file")
        apns = (self.apns_team_id, self.apns_key_id, self.apns_key_file)
        if self.apns_topic is not None and None in apns:
            raise ValueError("apns_topic needs apns_team_id, apns_key_id and apns_key_file")
        return self


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
    push: PushConfig | None = None


class AppsFile(_Strict):
    apps: dict[str, AppConfig]


class SettingsError(ValueError):
    """A setting is malformed or out of range; the message names the `RTT_*` variable."""


class Settings(BaseSettings):
    """How one node runs: one declaration per setting, read from `RTT_<NAME>` (or given on the
    command line, which wins). Defaults suit a single developer machine; tests shrink the
    timers. A malformed or out-of-range value stops the node at start-up, naming the variable."""

    model_config = SettingsConfigDict(env_prefix="RTT_", extra="forbid", validate_default=True)

    apps: dict[str, AppConfig] = Field(default_factory=dict, exclude=True)
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    engine: Literal["local", "redis"] = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    database: Path = Path("rtt.db")
    public_host: str | None = None
    public_port: int | None = Field(None, ge=1, le=65535)
    heartbeat_seconds: float = Field(30.0, gt=0, le=3600)
    s2s_session_seconds: float = Field(1200.0, gt=0)
    idempotency_seconds: float = Field(600.0, gt=0)
    idempotency_wait_seconds: float = Field(
        10.0,
        gt=0,
        le=600,
        description="a duplicate waits this long for the first attempt's answer, then 503",
    )
    idempotency_claim_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="a running claim's lifetime, renewed every third of it by its holder",
    )
    stream_max_items: int = Field(10000, gt=0)
    stream_max_seconds: float = Field(7 * 24 * 3600.0, ge=0)
    sweep_interval_seconds: float = Field(60.0, gt=0)
    event_max_seconds: float = Field(
        30 * 24 * 3600.0, gt=0, description="the sweep deletes events older than this"
    )
    outbox_max_entries: int = Field(
        100_000, gt=0, description="push entries kept per app; the sweep drops the oldest"
    )
    outbox_max_seconds: float = Field(
        7 * 24 * 3600.0, gt=0, description="the sweep drops push entries older than this"
    )
    redis_timeout_seconds: float = Field(2.0, gt=0, le=60)
    probe_interval_seconds: float = Field(1.0, gt=0, le=60)
    presence_ttl_seconds: float = Field(10.0, gt=0)
    sys_scan_max: int = Field(
        10_000,
        ge=100,
        description="messages one redis Sys page examines when its index cannot answer a filter",
    )
    redis_pool_size: int = Field(
        64, ge=2, le=10000, description="connections the store may hold to Redis; more wait"
    )
    # --- the edge: every per-connection and per-node resource is bounded ---------------------
    socket_buffer_bytes: int = Field(
        1024 * 1024,
        ge=64 * 1024,
        description="unread bytes a socket may hold (pushes, replies, pongs); more closes 4003",
    )
    socket_backlog: int = Field(
        64, ge=1, le=4096, description="requests queued behind a busy socket; then reading pauses"
    )
    close_timeout_seconds: float = Field(
        3.0, gt=0, le=60, description="how long a closing socket waits for the peer's close"
    )
    shutdown_seconds: float = Field(
        10.0, gt=0, le=600, description="on SIGTERM, how long in-flight requests may finish"
    )
    max_connections: int = Field(
        10000, ge=1, description="open HTTP and WebSocket connections per node; more get 503"
    )
    http_header_timeout_seconds: float = Field(
        10.0, gt=0, le=600, description="a request head must arrive whole within this"
    )
    http_max_head_bytes: int = Field(
        64 * 1024, ge=4096, le=1024 * 1024, description="larger request heads answer 431"
    )
    http_body_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="a request body must arrive whole within this"
    )
    http_keepalive_seconds: float = Field(
        5.0, gt=0, le=3600, description="an idle keep-alive connection is closed after this"
    )
    max_body_bytes: int = Field(
        2 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="larger bodies answer 413"
    )
    max_json_depth: int = Field(
        64, ge=8, le=200, description="deeper JSON answers 400/40001 where it is parsed"
    )
    reply_max_bytes: int = Field(
        256 * 1024,
        ge=16 * 1024,
        description="a page reply stops at this many bytes of items and says moreAfter",
    )
    reads_in_flight: int = Field(
        2, ge=1, le=1024, description="client page reads the node runs at once; others wait"
    )
    session_pending_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="live frames a socket holds while it reads the store; past it they are"
        " dropped and read back from the store",
    )
    heals_in_flight: int = Field(
        32, ge=1, le=1024, description="store reads the node's healing sockets run at once"
    )
    heal_retry_seconds: float = Field(
        10.0,
        gt=0,
        le=600,
        description="a socket whose store reads keep failing retries (jittered backoff) this"
        " long, then closes 1013",
    )
    config_path: Path | None = Field(None, exclude=True)
    generated_secrets: dict[str, str] = Field(default_factory=dict, exclude=True)
    # --- system channel (RongCloud dialect) -------------------------------------------------
    rongcloud_window_seconds: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="a signed request's Timestamp may be this far from the node's clock;"
        " its nonce is remembered until the Timestamp leaves the window",
    )
    rongcloud_max_nonces: int = Field(
        100_000, ge=1, description="live nonces remembered per app; past it requests answer 1008"
    )
    rongcloud_max_senders: int = Field(
        10_000,
        ge=1,
        description="distinct fromUserIds recorded per app as system identities; a new one"
        " past it answers 1002",
    )
    # --- the Nexudus door (API.md §9) ---------------------------------------------------------
    nexudus_token_seconds: int = Field(
        3600, ge=60, le=30 * 24 * 3600, description="lifetime of a POST /api/token bearer token"
    )
    nexudus_reply_max_bytes: int = Field(
        16 * 1024 * 1024,
        ge=256 * 1024,
        le=1024 * 1024 * 1024,
        description="a GET /api/sys/chatusermessages page stops at this many bytes of records",
    )
    # --- brainCloud client API (/dispatcherv2, issue 10) -----------------------------------
    client_session_seconds: float = Field(
        1200.0, gt=0, description="a client session ends this long after its last packet"
    )
    rtt_secret_seconds: float = Field(
        60.0, gt=0, le=3600, description="an X-RTT-SECRET must open its socket within this"
    )
    dispatcher_max_messages: int = Field(
        50, ge=1, le=1000, description="messages in one client packet; more answers 400/40001"
    )
    dispatcher_max_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="one client packet, after gzip is undone; larger answers 413/40600",
    )
    accounts_max_per_app: int = Field(
        1_000_000, ge=1, description="profiles the client API may create per app; then 40001"
    )
    # --- piggybacked events (/dispatcherv2 `events`, apps with features.piggyback_events) ---
    piggyback_max_events: int = Field(
        20, ge=1, le=1000, description="events one client response carries; the rest follow"
    )
    piggyback_max_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="bytes of events one client response carries (at least one event)",
    )
    # --- metrics and the admin page (issue 13) -----------------------------------------------
    metrics: bool = Field(
        True, description="count what the node does and serve /metrics; false: /metrics is 404"
    )
    metrics_cache_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="values read from the engine at scrape time (outbox depth) are kept this long",
    )
    # --- push notifications (API.md §11) ---------------------------------------------------
    push_dispatcher: bool = Field(
        True, description="drain the push outbox inside this node (off: run `rtt push-worker`)"
    )
    push_batch: int = Field(
        256, ge=1, le=10_000, description="outbox entries a dispatcher claims at a time"
    )
    push_concurrency: int = Field(
        32, ge=1, le=4096, description="provider requests a dispatcher has in flight at once"
    )
    push_lease_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="a claimed entry is held this long (renewed while it runs); a dead"
        " dispatcher's entries are claimed again after it",
    )
    push_poll_seconds: float = Field(
        1.0, gt=0, le=60, description="an idle dispatcher looks for new entries this often"
    )
    push_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="one provider request (connect to answer)"
    )
    push_backoff_seconds: float = Field(
        1.0, gt=0, le=3600, description="first retry delay; doubles each attempt, with jitter"
    )
    push_backoff_max_seconds: float = Field(
        300.0, gt=0, le=86400, description="the longest retry delay"
    )
    push_dedupe_seconds: float = Field(
        86400.0,
        gt=0,
        description="how long a delivered (item, destination) is remembered, so a retry of"
        " the item does not notify it again",
    )
    push_dead_letters_max: int = Field(
        10_000, ge=1, description="dead letters kept per app; the oldest go first"
    )
    push_devices_max: int = Field(
        10, ge=1, le=1000, description="devices per profile; registering one more drops the oldest"
    )

    # --- worker processes (`rtt serve --workers`, issue 14) ------------------------------------
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="node processes sharing the port (SO_REUSEPORT); more than 1 needs redis",
    )
    worker_restarts_max: int = Field(
        5,
        ge=0,
        le=1000,
        description="worker deaths tolerated within the window; one more and the supervisor"
        " stops everything and exits 1",
    )
    worker_restart_window_seconds: float = Field(
        60.0, gt=0, le=86400, description="the window worker deaths are counted in"
    )

    # --- Redis Cluster (issue 14, item 4) ------------------------------------------------------
    redis_cluster: bool = Field(
        False,
        description="RTT_REDIS_URL is a seed node of a Redis Cluster: writes are split per slot"
        " and fan-out goes over sharded pub/sub (SPUBLISH)",
    )
    redis_wait_replicas: int = Field(
        0,
        ge=0,
        le=16,
        description="on a cluster, replicas of each master written to that must hold a write"
        " (WAIT) before it is acknowledged: 1 keeps acknowledged sends across a failover",
    )
    redis_wait_seconds: float = Field(
        1.0, gt=0, le=60, description="how long a write waits for its replicas; then 503"
    )

    @field_validator("workers")
    @classmethod
    def _workers_need_redis(cls, workers: int, info: ValidationInfo) -> int:
        if workers > 1 and info.data.get("engine") != "redis":
            raise ValueError(
                "more than 1 worker needs RTT_ENGINE=redis: the local engine's SQLite file"
                " has one writer and its in-process fan-out does not reach other processes"
            )
        return workers

    @model_validator(mode="after")
    def _reply_fits_buffer(self) -> Settings:
        if self.reply_max_bytes * 2 > self.socket_buffer_bytes:
            raise ValueError("reply_max_bytes must be at most half of socket_buffer_bytes")
        return self

    @property
    def endpoint_host(self) -> str:
        """Host clients are told to dial; a wildcard bind address is no address to dial."""
        if self.public_host:
            return self.public_host
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def endpoint_port(self) -> int:
        return self.public_port or self.port


def _explain(error: ValidationError) -> SettingsError:
    """pydantic's complaint, with each field named as the variable that set it."""
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        name = f"RTT_{field.upper()}" if field else "settings"
        value = problem.get("input")
        shown = f" (got {value!r})" if isinstance(value, str | int | float) else ""
        lines.append(f"{name}: {problem['msg']}{shown}")
    return SettingsError("invalid settings:\n  " + "\n  ".join(lines))


def build_settings(**values: object) -> Settings:
    """Settings from `values` (which win), then `RTT_*` variables, then defaults; raises
    SettingsError naming the variable of any value it refuses."""
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as e:
        raise _explain(e) from None


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


def settings_from(config: str | None = None, **options: object) -> Settings:
    """Command-line values (None: not given) win over `RTT_*` variables, which win over
    defaults. Apps come from the TOML file `config` (else RTT_CONFIG), or a demo app."""
    config = config or os.environ.get("RTT_CONFIG")
    generated: dict[str, str] = {}
    if config:
        apps = load_apps(Path(config))
    else:
        apps, generated = demo_apps()
    given = {name: value for name, value in options.items() if value is not None}
    return build_settings(
        apps=apps,
        config_path=Path(config) if config else None,
        generated_secrets=generated,
        **given,
    )
