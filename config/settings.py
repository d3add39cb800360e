"""Settings from ``WELLPULSE_*`` environment variables (and an optional TOML file).

Defaults run on a laptop: no URLs means ``wellpulse up`` starts embedded servers.
"""

import os
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WELLPULSE_", extra="ignore")

    # URLs carry passwords: kept out of repr (logs, tracebacks, test output).
    database_url: str | None = Field(None, repr=False, description="PostgreSQL/TimescaleDB URL; unset: embedded")
    nats_url: str | None = Field(None, repr=False, description="NATS URL (JetStream on); unset: embedded server")
    nats_feed_secret: SecretStr | None = Field(
        None, description="HMAC key from which each tenant's NATS feed password is derived; unset: one made"
        " once in <data_dir>/nats/feed.secret")
    mqtt_port: int = Field(1883, ge=1, le=65535, description="MQTT port: the embedded NATS's MQTT listener (a free"
                           " one when this is taken), or the one your own NATS's mqtt block listens on")
    data_dir: Path = Field(Path(".wellpulse"), description="where embedded servers keep their data")
    host: str = "127.0.0.1"
    port: int = 8000
    # Secrets have no default: unset ones are generated once into <data_dir>/secrets (config/secrets.py).
    jwt_secret: SecretStr | None = Field(None, description="HMAC key that signs access tokens (>= 32 bytes)")
    jwt_previous_secret: SecretStr | None = Field(
        None, description="the key before the last rotation: tokens it signed stay valid until they expire")
    data_key: SecretStr | None = Field(None, description="key that encrypts secrets at rest (TOTP seeds)")
    data_previous_key: SecretStr | None = Field(None, description="the data key before the last rotation")
    model_signing_key: SecretStr | None = Field(None, description="HMAC key that signs stored model checkpoints")
    metrics_token: SecretStr | None = Field(None, description="bearer token that /metrics asks for")
    ack_link_key: SecretStr | None = Field(None, description="HMAC key that signs the acknowledge links of"
                                           " notifications (notify/acklinks.py)")
    trusted_proxies: str = Field(
        "", description="comma-separated CIDRs of reverse proxies whose X-Forwarded-For / Forwarded is believed")
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS; empty: CORS off")
    jwt_issuer: str = "wellpulse"
    access_token_minutes: int = Field(15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(30, ge=1, le=365)
    app_database_url: str | None = Field(
        None, repr=False, description="URL the app connects with (a role without BYPASSRLS); unset: database_url"
        " with the user replaced by app_db_user and app_db_password")
    app_db_user: str = Field("wellpulse_app", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    app_db_password: SecretStr | None = Field(None, description="password of the app's database role")
    # argon2id cost: RFC 9106's second recommended option scaled to a 2-core server (~40 ms a hash).
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_kib: int = Field(64 * 1024, ge=8)
    argon2_parallelism: int = Field(1, ge=1)
    login_slowdown_after: int = Field(3, ge=1, description="failures before each further try must wait")
    login_lock_after: int = Field(10, ge=2, description="failures before the account (or address) locks")
    login_lock_seconds: int = Field(900, ge=1)
    password_reset_minutes: int = Field(60, ge=5, le=24 * 60)
    invitation_days: int = Field(7, ge=1, le=60)
    message_sender: str = Field("log", description="'log', or 'file:/path/outbox.jsonl' (one JSON line per message)")
    public_url: str = Field("http://localhost:8000", description="base of links in invitation and reset messages")
    auth_cache_seconds: float = Field(30.0, ge=0, description="replica cache of user/session/key state;"
                                      " changes are pushed over NATS at once, this bounds a missed push")

    equipment_actor_budget: int = Field(
        2, ge=1, description="EquipmentActors per tenant at most (each is a process; ~2 per 2 cores measured best)"
    )
    fetch_batch: int = Field(1000, ge=1, le=10_000, description="JetStream messages per pull")
    max_ack_pending: int = Field(4000, ge=1)
    max_future_skew_seconds: float = 300.0
    telemetry_stream_max_bytes: int = Field(4 * 1024**3, ge=1024**2, description="disk the TELEMETRY stream may use")
    dlq_stream_max_bytes: int = Field(256 * 1024**2, ge=1024**2, description="disk the dead-letter stream may use")
    stream_max_msgs_per_subject: int = Field(
        1_000_000, ge=1000, description="messages kept per subject (one equipment's feed) in TELEMETRY and DLQ")
    checkpoint_every_readings: int = 5000
    checkpoint_every_seconds: float = 30.0
    escalate_after_seconds: float = 900.0
    retention_days: int = 365
    ws_queue_size: int = Field(1000, ge=10, description="events buffered per WebSocket client before 1013")
    ws_max_per_principal: int = Field(5, ge=1, description="open alert sockets per user or API key (per replica)")
    ws_max_per_tenant: int = Field(100, ge=1, description="open alert sockets per tenant (per replica)")
    ws_replay_max_events: int = Field(
        1000, ge=1, description="events a reconnect with since= replays at most (older ones: list /v1/alerts)")
    # Notifications (actors/notifier.py): a failing channel is retried with exponential backoff and jitter.
    notification_retry_seconds: float = Field(
        3600.0, ge=0, description="how long a delivery is retried before it is marked failed")
    notification_backoff_seconds: float = Field(2.0, gt=0, description="the first retry's delay (then doubling)")
    notification_backoff_max_seconds: float = Field(300.0, gt=0, description="the longest delay between retries")
    notification_timeout_seconds: float = Field(10.0, gt=0, le=120, description="one attempt's time limit")
    ack_link_hours: float = Field(24.0, gt=0, le=24 * 30, description="how long a notification's acknowledge"
                                  " link stays valid")
    notify_allow_private_networks: bool = Field(
        False, description="let webhook, Slack, Teams and SMS channels reach loopback, private, link-local and"
        " cloud-metadata addresses (off: a tenant's channel cannot probe the servers' own network)")
    notify_failing_after: int = Field(3, ge=1, le=100, description="/health counts a channel as failing when its"
                                      " last this many finished deliveries all failed")
    serve_replicas: int = Field(1, ge=1, description="API replicas; each serves HTTP on `port` (the kernel spreads"
                                " connections over a machine's replicas)")
    http_max_in_flight: int = Field(100, ge=1, description="HTTP requests a replica works on at once; one more is"
                                    " answered 503 with Retry-After at once")
    # A Ray head that other machines join (`wellpulse node --address HOST:PORT`) listens beyond loopback.
    ray_head_host: str = Field("127.0.0.1", description="address of the Ray head `wellpulse up` starts; another"
                               " machine joins it with `wellpulse node` (not loopback: Ray token auth must be on)")
    ray_head_port: int = Field(0, ge=0, le=65535, description="port of that head; 0: a free one")
    model_seed: int = 0
    db_pool_size: int = 4
    # Rate limits (serve/ratelimit.py): sliding windows shared by all replicas, in PostgreSQL.
    rate_limit_enabled: bool = True
    rate_limit_user_per_minute: int = Field(100, ge=1, description="requests per user per minute")
    rate_limit_tenant_per_hour: int = Field(1000, ge=1, description="requests per tenant per hour, all users")
    rate_limit_principal_share: float = Field(
        0.25, gt=0, le=1, description="the share of the tenant's hour one user or key may take (acknowledging and"
        " resolving alerts count against neither)")
    rate_limit_batch_burst: int = Field(
        400, ge=0, description="extra requests per user per minute that batch endpoints (ingest, sync) may make"
        " on top of rate_limit_user_per_minute; the tenant's hourly limit still applies")
    rate_limit_storage_url: str | None = Field(
        None, description="a `limits` async storage (e.g. async+redis://host:6379); unset: PostgreSQL")
    # Offline sync (serve/routers/sync.py): a chunk is applied in one transaction, so it is bounded.
    sync_max_changes_per_chunk: int = Field(5000, ge=1, le=100_000, description="changes + events per chunk")
    sync_max_chunk_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="body size of one chunk")
    sync_pull_limit: int = Field(1000, ge=1, le=10_000, description="server changes sent back per sync at most")
    attachment_storage: str = Field(
        "local", description="'local' (files under attachment_dir), or 'module:factory' called with the settings")
    attachment_dir: Path | None = Field(None, description="local attachment storage; unset: <data_dir>/attachments")
    attachment_max_bytes: int = Field(8 * 1024 * 1024, ge=1, description="content of one attachment")
    production_import_max_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="body of one production CSV import")

    def secret(self, field: str) -> str:
        """A resolved secret's value (`config.secrets.resolve_secrets` fills the unset ones at start-up)."""
        value = getattr(self, field)
        if value is None:
            raise RuntimeError(f"{field} is not resolved yet (config.secrets.resolve_secrets)")
        return str(value.get_secret_value())

    @property
    def trusted_proxy_networks(self) -> list[IPv4Network | IPv6Network]:
        return [ip_network(c.strip(), strict=False) for c in self.trusted_proxies.split(",") if c.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def max_future_skew(self) -> timedelta:
        return timedelta(seconds=self.max_future_skew_seconds)

    @property
    def max_reading_age(self) -> timedelta:
        """The oldest reading ingest accepts: the retention (older would be dropped, and on TimescaleDB each
        old week costs a chunk)."""
        return timedelta(days=self.retention_days)

    def resolved_app_database_url(self) -> str:
        """The URL of the app's own role: it cannot bypass row-level security."""
        if self.app_database_url:
            return self.app_database_url
        if not self.database_url:
            raise RuntimeError("database_url is not resolved yet")
        parts = urlsplit(self.database_url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{quote(self.app_db_user)}:{quote(self.secret('app_db_password'), safe='')}@{host}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = os.environ.get("WELLPULSE_CONFIG")
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]  # pydantic validates each override
