"""Gateway configuration: one TOML file per gateway, read with `tomllib` and checked with pydantic.

Every table refuses unknown keys, so a misspelt option is an error naming it rather than a default silently used.

>>> cfg = load_modbus_config_text('''
... [nats]
... tenant = "acme"
... [[device]]
... equipment_id = "PJ-1"
... host = "127.0.0.1"
... port = 5020
... [[device.register]]
... sensor = "tubing_psi"
... address = 0
... type = "float32"
... scale = 0.1
... ''')
>>> cfg.device[0].registers[0].words, cfg.device[0].unit_id, cfg.device[0].registers[0].table
(2, 1, 'holding')
"""

from __future__ import annotations

import tomllib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from schema.ids import EquipmentId, SensorName, TenantId

__all__ = [
    "ConfigError",
    "DeviceConfig",
    "EdgeConfig",
    "ModbusConfig",
    "NatsConfig",
    "OpcUaConfig",
    "OpcUaItem",
    "RegisterConfig",
    "SecurityConfig",
    "load_modbus_config",
    "load_modbus_config_text",
    "load_opcua_config",
    "load_opcua_config_text",
]

RegisterType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64"]
WORDS: dict[str, int] = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}
MAX_REGISTERS_PER_READ = 125  # the Modbus limit for function codes 3 and 4
Finite = Annotated[float, Field(allow_inf_nan=False)]
Seconds = Annotated[float, Field(gt=0, le=24 * 3600, allow_inf_nan=False)]
M = TypeVar("M", bound=BaseModel)


def _repeated(names: Iterable[str]) -> list[str]:
    return sorted(n for n, count in Counter(names).items() if count > 1)


class ConfigError(ValueError):
    """A gateway configuration that cannot be read or is invalid; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EdgeConfig(_Strict):
    """Store-and-forward (`gateway.edge`): a local NATS JetStream under ``data_dir`` buffers every reading until
    the hub acknowledged it. ``max_bytes`` bounds the outage it covers (the oldest are dropped past it). A reading
    forwarded more than ``late_after_s`` after the buffer stored it is marked ``historical`` (`gateway.edge`)."""

    data_dir: Path
    port: Annotated[int, Field(ge=0, le=65535)] = 0  # 0: a free port
    max_bytes: Annotated[int, Field(ge=1 << 20)] = 1 << 30
    drain_timeout_s: Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)] = 5.0
    late_after_s: Annotated[float, Field(ge=0, le=24 * 3600, allow_inf_nan=False)] = 10.0


class NatsConfig(_Strict):
    """Where readings go: ``url`` (a tenant's feed credentials, ``wellpulse nats feed-credentials T``; default
    ``$WELLPULSE_NATS_URL``) and the tenant they belong to."""

    tenant: TenantId
    url: SecretStr | None = None
    ack_timeout_s: Seconds = 5.0
    edge: EdgeConfig | None = None


class RegisterConfig(_Strict):
    """One sensor read from ``words`` consecutive registers at ``address``: ``value = raw * scale + offset``."""

    sensor: SensorName
    address: Annotated[int, Field(ge=0, le=65535)]
    table: Literal["holding", "input"] = "holding"
    type: RegisterType = "uint16"
    word_order: Literal["big", "little"] = "big"
    scale: Finite = 1.0
    offset: Finite = 0.0

    @property
    def words(self) -> int:
        return WORDS[self.type]

    @model_validator(mode="after")
    def _fits(self) -> Self:
        if self.address + self.words > 65536:
            raise ValueError(f"register {self.sensor}: {self.type} at {self.address} runs past address 65535")
        return self


class DeviceConfig(_Strict):
    """One Modbus TCP server (an RTU, a PLC or a gateway in front of serial devices) polled as one equipment."""

    equipment_id: EquipmentId
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    unit_id: Annotated[int, Field(ge=0, le=255)] = 1
    poll_interval_s: Seconds = 1.0
    timeout_s: Seconds = 1.0
    comms_loss_after: Annotated[int, Field(ge=1, le=1000)] = 3  # failed polls in a row
    backoff_max_s: Seconds = 30.0
    registers: Annotated[list[RegisterConfig], Field(min_length=1, max_length=256, alias="register")]

    @model_validator(mode="after")
    def _unique_sensors(self) -> Self:
        dupes = _repeated(r.sensor for r in self.registers)
        if dupes:
            raise ValueError(f"device {self.equipment_id}: sensor(s) mapped twice: {', '.join(dupes)}")
        return self


class ModbusConfig(_Strict):
    nats: NatsConfig
    device: Annotated[list[DeviceConfig], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_equipment(self) -> Self:
        dupes = _repeated(d.equipment_id for d in self.device)
        if dupes:
            raise ValueError(f"equipment polled by two devices: {', '.join(dupes)}")
        return self


class SecurityConfig(_Strict):
    """OPC UA message security. ``None`` for a test server; otherwise a policy and mode with the client's
    certificate and private key (PEM or DER; ``private_key_password`` when the key is encrypted) and, better, the
    server's certificate: pinned, a server presenting another one is refused (without it the gateway takes the
    certificate the server's endpoint list offers). ``application_uri`` defaults to the URI in the client
    certificate's subjectAltName, which is what servers check it against."""

    policy: Literal["None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = None
    private_key: Path | None = None
    private_key_password: SecretStr | None = None
    server_certificate: Path | None = None
    application_uri: Annotated[str, Field(min_length=1, max_length=1024)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError("security: policy and mode must both be None or both be set")
        if self.policy != "None" and (self.certificate is None or self.private_key is None):
            raise ValueError(f"security: policy {self.policy} needs certificate and private_key")
        return self


class OpcUaItem(_Strict):
    """One monitored item: node ``node_id`` (``ns=2;s=PJ-1.tubing_psi``, ``ns=2;i=1001``) is ``sensor`` of
    ``equipment_id``. ``deadband`` is an absolute deadband in the value's units (0: every change)."""

    node_id: Annotated[str, Field(min_length=1, max_length=512)]
    equipment_id: EquipmentId
    sensor: SensorName
    sampling_interval_ms: Annotated[float, Field(ge=0, le=3_600_000)] | None = None
    deadband: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    scale: Finite = 1.0
    offset: Finite = 0.0


class OpcUaConfig(_Strict):
    nats: NatsConfig
    endpoint: Annotated[str, Field(pattern=r"^opc\.tcp://")]
    username: str | None = None
    password: SecretStr | None = None
    security: SecurityConfig = SecurityConfig()
    publishing_interval_ms: Annotated[float, Field(gt=0, le=3_600_000)] = 500.0
    sampling_interval_ms: Annotated[float, Field(ge=0, le=3_600_000)] = 250.0
    timeout_s: Seconds = 4.0
    backoff_max_s: Seconds = 30.0
    item: Annotated[list[OpcUaItem], Field(min_length=1, max_length=10_000)]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        dupes = _repeated(f"{i.equipment_id}/{i.sensor}" for i in self.item)
        if dupes:
            raise ValueError(f"sensor(s) mapped from two nodes: {', '.join(dupes)}")
        return self


def _load_text(model: type[M], text: str, source: str) -> M:
    from pydantic import ValidationError

    from schema.telemetry import validation_reason

    try:
        return model.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"{source}: {validation_reason(exc)}") from None


def _load_file(model: type[M], path: str | Path) -> M:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    return _load_text(model, text, str(path))


def load_modbus_config_text(text: str, source: str = "<config>") -> ModbusConfig:
    return _load_text(ModbusConfig, text, source)


def load_modbus_config(path: str | Path) -> ModbusConfig:
    return _load_file(ModbusConfig, path)


def load_opcua_config_text(text: str, source: str = "<config>") -> OpcUaConfig:
    return _load_text(OpcUaConfig, text, source)


def load_opcua_config(path: str | Path) -> OpcUaConfig:
    return _load_file(OpcUaConfig, path)
