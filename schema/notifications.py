"""Notification channels and deliveries in the API.

A channel's settings split in two: what the API shows (``config``) and what it never shows (the SMTP password,
the webhook's signing secret, the Slack or Teams incoming-webhook URL, which is itself a credential). The second
part is write-only: given on create (or on update, to replace it), stored sealed, answered only as
``secret_set``. One request body per kind (discriminated on ``kind``), so OpenAPI documents each.
"""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AnyUrl, BaseModel, ConfigDict, EmailStr, Field, SecretStr, StringConstraints, field_validator

from schema.alerts import NO_NUL
from schema.severity import Severity

__all__ = [
    "CHANNEL_KINDS", "SECRET_FIELDS", "ChannelCreate", "ChannelKind", "ChannelPublic", "ChannelTestResult",
    "ChannelUpdate", "DeliveryPublic", "EmailConfig", "SlackConfig", "SmsConfig", "TeamsConfig", "WebhookConfig",
    "check_http_url",
]

CHANNEL_KINDS = ("email", "webhook", "slack", "teams", "sms")
ChannelKind = Literal["email", "webhook", "slack", "teams", "sms"]
DELIVERY_STATUSES = ("pending", "sent", "failed")
MAX_URL_LENGTH = 2048
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL)]
Host = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=253,
                                        pattern=r"^[A-Za-z0-9.:\[\]-]+$")]


def check_http_url(value: str) -> str:
    """An absolute http(s) URL with a host, at most `MAX_URL_LENGTH` characters.

    >>> check_http_url("https://hooks.example.com/T1/B2")
    'https://hooks.example.com/T1/B2'
    >>> check_http_url("ftp://example.com/x")
    Traceback (most recent call last):
    ...
    ValueError: must be an http or https URL
    """
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"at most {MAX_URL_LENGTH} characters")
    if any(not c.isprintable() or c.isspace() for c in value):
        raise ValueError("holds whitespace or control characters")
    try:
        url = AnyUrl(value)
    except ValueError:
        raise ValueError("not a URL") from None
    if url.scheme not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    if not url.host:
        raise ValueError("needs a host")
    return value


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmailConfig(_Config):
    """Mail through an SMTP server: ``security`` ``starttls`` (upgrade a plain connection, usually port 587),
    ``tls`` (TLS from the first byte, usually 465) or ``none`` (a relay on a trusted network)."""

    smtp_host: Host
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: Annotated[str, StringConstraints(min_length=1, max_length=320, pattern=NO_NUL)] | None = None
    password: SecretStr | None = Field(None, description="Write-only; needed with `username`.")
    from_address: EmailStr
    to: Annotated[list[EmailStr], Field(min_length=1, max_length=50)]


class WebhookConfig(_Config):
    """A JSON POST to ``url``, signed: ``X-WellPulse-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>"
    under secret>`` and ``X-WellPulse-Timestamp: <unix seconds>``, so the receiver can verify it and refuse
    replays; ``X-WellPulse-Delivery`` is the same for every retry of one delivery."""

    url: str
    secret: SecretStr | None = Field(None, description="Write-only HMAC key, 16 to 256 characters; required on "
                                     "create.")

    _url = field_validator("url")(check_http_url)

    @field_validator("secret")
    @classmethod
    def _secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not 16 <= len(value.get_secret_value()) <= 256:
            raise ValueError("must be 16 to 256 characters")
        return value


class _IncomingWebhookConfig(_Config):
    url: SecretStr | None = Field(None, description="Write-only (the URL is the credential); required on create.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_http_url(value.get_secret_value())
        return value


class SlackConfig(_IncomingWebhookConfig):
    """A Slack incoming webhook (``https://hooks.slack.com/services/...``): ``text`` and ``blocks``."""


class TeamsConfig(_IncomingWebhookConfig):
    """A Microsoft Teams incoming webhook (a Workflows or connector URL): an Adaptive Card message."""


class SmsConfig(_Config):
    """Text messages through an SMS provider (``provider``; the default, ``http``, POSTs ``{"to", "from",
    "text"}`` as JSON to the provider's ``url`` with ``Authorization: Bearer <token>``, one request per number).
    ``to``: the numbers a route's messages go to (E.164); a person's own number comes from their preferences."""

    provider: Literal["http"] = "http"
    url: str
    from_number: Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=NO_NUL)] | None = None
    to: Annotated[list[Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]],
                  Field(max_length=50)] = Field(default_factory=list)
    token: SecretStr | None = Field(None, description="Write-only provider credential (sent as a Bearer token).")

    _url = field_validator("url")(check_http_url)


CONFIG_MODELS: dict[str, type[_Config]] = {
    "email": EmailConfig, "webhook": WebhookConfig, "slack": SlackConfig, "teams": TeamsConfig, "sms": SmsConfig}
# The write-only fields of each kind: sealed at rest, never answered.
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("password",), "webhook": ("secret",), "slack": ("url",), "teams": ("url",), "sms": ("token",)}
# Those without which a channel of the kind cannot send.
REQUIRED_SECRETS: dict[str, tuple[str, ...]] = {"email": (), "webhook": ("secret",), "slack": ("url",),
                                                "teams": ("url",), "sms": ()}


class _ChannelBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    enabled: bool = True
    min_severity: Severity = Field("warning", description="The least severity of the alerts it hears of.")


class EmailChannelCreate(_ChannelBase):
    kind: Literal["email"]
    config: EmailConfig


class WebhookChannelCreate(_ChannelBase):
    kind: Literal["webhook"]
    config: WebhookConfig


class SlackChannelCreate(_ChannelBase):
    kind: Literal["slack"]
    config: SlackConfig


class TeamsChannelCreate(_ChannelBase):
    kind: Literal["teams"]
    config: TeamsConfig


class SmsChannelCreate(_ChannelBase):
    kind: Literal["sms"]
    config: SmsConfig


ChannelCreate = Annotated[EmailChannelCreate | WebhookChannelCreate | SlackChannelCreate | TeamsChannelCreate
                          | SmsChannelCreate,
                          Field(discriminator="kind")]


class ChannelUpdate(BaseModel):
    """Partial update. ``config`` replaces the settings as a whole (of the channel's kind, which does not
    change); a write-only field left out keeps its stored value."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    enabled: bool | None = None
    min_severity: Severity | None = None
    config: dict[str, Any] | None = None


class ChannelPublic(BaseModel):
    id: UUID
    name: str
    kind: ChannelKind
    enabled: bool
    min_severity: Severity
    config: dict[str, Any] = Field(description="The settings without the write-only fields.")
    secret_set: bool = Field(description="Whether the write-only settings are stored.")
    created_by: str
    created_at: datetime
    updated_at: datetime


class ChannelTestResult(BaseModel):
    ok: bool
    error: str | None = None
    response_code: int | None = Field(None, description="The HTTP status or SMTP reply code, when one came.")
    latency_ms: float


class DeliveryPublic(BaseModel):
    """One alert event sent (or being sent) to one channel; retried with backoff until sent or out of time."""

    id: UUID
    alert_id: int
    event_seq: int
    event_kind: str
    channel_id: UUID
    channel_name: str
    channel_kind: ChannelKind
    status: Literal["pending", "sent", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    response_code: int | None
    latency_ms: float | None
    created_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None
    recipient: str | None = Field(None, description="The person's address or number, for a delivery an escalation"
                                  " step addressed to one user (None: the channel's own recipients).")
    recipient_user: UUID | None = None
    escalation_step: int | None = Field(None, description="The escalation chain's step (0-based) that sent it.")
