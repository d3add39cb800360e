"""Request and response bodies of the identity API: auth, users, API keys, audit, tenant settings."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from schema.ids import TenantId
from schema.sync import DEFAULT_STRATEGIES, SyncStrategies

RoleName = Literal["admin", "manager", "operator", "viewer"]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
TotpCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
Email = Annotated[EmailStr, StringConstraints(max_length=254), AfterValidator(str.lower)]
OpaqueToken = Annotated[str, StringConstraints(min_length=10, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(_Strict):
    tenant: TenantId
    email: Email
    password: Password
    totp: TotpCode | None = None
    client: Literal["app", "web"] = Field(
        "app", description="app: tokens in the body; web: httpOnly, Secure, SameSite=Strict cookies")


class RefreshRequest(_Strict):
    refresh_token: OpaqueToken | None = Field(None, description="apps; web clients send the wp_refresh cookie")


class TokenPair(BaseModel):
    access_token: str | None = None
    refresh_token: str | None = None
    token_type: str = "Bearer"  # noqa: S105  a name or a file name, not a secret
    expires_in: int
    mfa_setup_required: bool = False


class ForgotPasswordRequest(_Strict):
    tenant: TenantId
    email: Email


class ResetPasswordRequest(_Strict):
    token: OpaqueToken
    new_password: Password


class AcceptInvitationRequest(_Strict):
    token: OpaqueToken
    password: Password
    name: Annotated[str, StringConstraints(max_length=200)] | None = None


class ChangePasswordRequest(_Strict):
    current_password: Password
    new_password: Password


class MfaSetup(BaseModel):
    secret: str
    otpauth_uri: str


class MfaCode(_Strict):
    code: TotpCode


class PasswordConfirmation(_Strict):
    """The signed-in user's password, asked again before a sensitive change."""

    password: Password


class UserCreate(_Strict):
    email: Email
    role: RoleName
    name: Annotated[str, StringConstraints(max_length=200)] = ""
    password: Password | None = Field(None, description="set to create the account now; omit to send an invitation")


class UserUpdate(_Strict):
    name: Annotated[str, StringConstraints(max_length=200)]


class RoleChange(_Strict):
    role: RoleName


class UserPublic(BaseModel):
    id: UUID
    email: str
    name: str
    role: RoleName
    status: Literal["invited", "active", "deactivated"]
    mfa_enabled: bool
    last_login_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class Me(UserPublic):
    tenant_id: str
    permissions: list[str]
    session_id: str | None = None


class InvitationSent(BaseModel):
    user: UserPublic
    invitation_expires_at: datetime | None = None


class ApiKeyCreate(_Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    scopes: Annotated[list[str], Field(min_length=1, max_length=20)]
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class ApiKeyPublic(BaseModel):
    id: UUID
    name: str
    prefix: str
    scopes: list[str]
    created_by: UUID | None = None
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="shown once: store it now")


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor_type: str
    actor_id: str
    action: str
    entity_type: str
    entity_id: str | None = None
    old_values: dict[str, Any] | None = None
    new_values: dict[str, Any] | None = None
    ip: str | None = None
    request_id: str | None = None


def _known_zone(value: str) -> str:
    if value not in _ZONES:
        raise ValueError(f"unknown time zone {value!r} (IANA names such as America/Chicago)")
    return value


_ZONES = frozenset(available_timezones()) | {"UTC"}
TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_known_zone)]


AnomalySensitivity = Literal["low", "medium", "high"]


class TenantSettings(BaseModel):
    id: str
    name: str
    timezone: str = "UTC"
    units: Literal["imperial", "metric"] = "imperial"
    mfa_required_for_admins: bool = False
    escalate_after_minutes: int | None = Field(
        None, description="Open alerts not acknowledged for this long are escalated (severity raised once); "
                          "null: the server's default (WELLPULSE_ESCALATE_AFTER_SECONDS, 15 minutes).")
    max_shelve_minutes: int = Field(
        480, description="The longest an operator may shelve an alert (ISA-18.2): it returns unacknowledged after.")
    sync_strategies: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_STRATEGIES),
        description="How offline sync settles conflicts, per entity type (the defaults where the tenant set none).")

    anomaly_sensitivity: AnomalySensitivity = Field(
        "medium", description="Sensitivity of the default anomaly rule (high: more alerts) of equipment that set none"
                              " and whose type has none in `anomaly_sensitivity_by_type`.")
    anomaly_sensitivity_by_type: dict[str, AnomalySensitivity] = Field(
        default_factory=dict, description="Per equipment type; an equipment's own `anomaly_sensitivity` wins.")

    @field_validator("sync_strategies", mode="after")
    @classmethod
    def _over_defaults(cls, value: dict[str, str]) -> dict[str, str]:
        return {**DEFAULT_STRATEGIES, **value}


EscalateAfterMinutes = Annotated[int, Field(ge=1, le=7 * 24 * 60)]
MaxShelveMinutes = Annotated[int, Field(ge=1, le=7 * 24 * 60)]
SensitivityByType = dict[Literal["pump_jack", "compressor", "separator", "tank_battery", "meter", "other"],
                         AnomalySensitivity]


class TenantSettingsUpdate(_Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    timezone: TimeZone | None = None
    units: Literal["imperial", "metric"] | None = None
    mfa_required_for_admins: bool | None = None
    escalate_after_minutes: EscalateAfterMinutes | None = Field(None, description="1 minute to 7 days.")
    max_shelve_minutes: MaxShelveMinutes | None = Field(None, description="1 minute to 7 days (default 8 hours).")
    sync_strategies: SyncStrategies | None = Field(
        None, description="Per entity type (manual_reading, production_record, maintenance_record, inspection, note,"
        " attachment): newest_wins, highest_value, manual_review, merge or keep_both. Replaces the previous map;"
        " types left out use the defaults.")
    anomaly_sensitivity: AnomalySensitivity | None = Field(
        None, description="low, medium or high: the default anomaly rule's sensitivity (high: more alerts).")
    anomaly_sensitivity_by_type: SensitivityByType | None = Field(
        None, description="Per equipment type, e.g. {\"compressor\": \"high\"}; replaces the previous map.")
