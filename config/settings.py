"""Settings from ``WELLPULSE_*`` environment variables (and an optional TOML file).

Defaults run on a laptop: no URLs means ``wellpulse up`` starts embedded servers.
"""

import os
from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WELLPULSE_", extra="ignore")

    database_url: str | None = Field(None, description="PostgreSQL/TimescaleDB URL; unset: embedded server")
    nats_url: str | None = Field(None, description="NATS URL (JetStream on); unset: embedded server")
    data_dir: Path = Field(Path(".wellpulse"), description="where embedded servers keep their data")
    host: str = "127.0.0.1"
    port: int = 8000
    jwt_secret: SecretStr = Field(
        SecretStr("dev-only-change-me-0123456789abcdef"), description="HMAC secret for access tokens"
    )
    jwt_issuer: str = "wellpulse"
    access_token_minutes: int = Field(15, ge=1, le=24 * 60)

    equipment_actor_budget: int = Field(
        2, ge=1, description="EquipmentActors per tenant at most (each is a process; ~2 per 2 cores measured best)"
    )
    fetch_batch: int = Field(1000, ge=1, le=10_000, description="JetStream messages per pull")
    max_ack_pending: int = Field(4000, ge=1)
    max_future_skew_seconds: float = 300.0
    checkpoint_every_readings: int = 5000
    checkpoint_every_seconds: float = 30.0
    escalate_after_seconds: float = 900.0
    retention_days: int = 365
    ws_queue_size: int = Field(1000, ge=10, description="events buffered per WebSocket client before 1013")
    serve_replicas: int = 1
    model_seed: int = 0
    db_pool_size: int = 4

    @property
    def max_future_skew(self) -> timedelta:
        return timedelta(seconds=self.max_future_skew_seconds)

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
    return Settings(**overrides)  # type: ignore[arg-type]
