"""The ``[slack]`` section of `config.toml`, owned by the Slack adapter.

It lives beside the adapter (not in ``bot``) because adapters may not import
the application; ``bot.config.schema`` imports it from here. Like every section it
forbids unknown keys, and it holds no secrets: the tokens come from
``SLACK_BOT_TOKEN``, ``SLACK_APP_TOKEN`` and ``SLACK_SIGNING_SECRET``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SLACK_API_URL = "https://slack.com/api/"


class SlackChannelSettings(BaseModel):
    """Overrides for one channel, under ``[slack.channel_settings.<channel id>]``."""

    model_config = ConfigDict(extra="forbid")

    follow_threads: bool | None = Field(
        default=None, description="override [slack] follow_threads in this channel"
    )
    answer_bots: bool | None = Field(
        default=None, description="override [slack] answer_bots in this channel"
    )
    reply_all: bool = Field(
        default=False, description="answer every new message here, without a mention"
    )


class SlackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="serve Slack when its tokens are set")
    mode: Literal["auto", "socket", "http"] = Field(
        default="auto",
        description="socket (SLACK_APP_TOKEN) or http (SLACK_SIGNING_SECRET); auto picks "
        "socket when SLACK_APP_TOKEN is set",
    )
    host: str = Field(default="0.0.0.0", description="HTTP mode: listen address")
    port: int = Field(
        default=3000, ge=0, le=65535, description="HTTP mode: listen port (0 = any free port)"
    )
    path: str = Field(default="/slack/events", description="HTTP mode: the Request URL path")
    api_url: str = Field(
        default=SLACK_API_URL, description="Slack Web API base (GovSlack, corporate proxies)"
    )
    command: str = Field(default="/guardbot", description="the slash command for admin commands")
    channels: list[str] | None = Field(
        default=None, description="allow-list of channel ids (unset = every channel it is in)"
    )
    dms: bool = Field(default=True, description="answer direct messages")
    follow_threads: bool = Field(
        default=True, description="answer follow-ups in threads it started without a mention"
    )
    answer_bots: bool = Field(default=False, description="also answer other bots")
    channel_settings: dict[str, SlackChannelSettings] = Field(
        default_factory=dict, description="per-channel overrides, keyed by channel id"
    )
    placeholder: str = Field(
        default="thinking…", description="posted at once, then replaced (empty = none)"
    )
    max_message_chars: int = Field(
        default=3900,
        ge=500,
        le=40000,
        description="longer replies are split into several messages in the thread",
    )
    stream_api: Literal["off", "update", "auto"] = Field(
        default="auto",
        description="how a screened reply streams in Slack: auto: Slack's chat.startStream/"
        "appendStream/stopStream in a thread, else (a top-level DM, or Slack refusing them) "
        "chat.update of the placeholder; update: always chat.update; off: no streaming, the "
        "reply is posted whole once screened",
    )
    min_update_interval_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="a streamed reply is updated at most this often; text released "
        "meanwhile goes into the next update",
    )
    api_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="retries of a Web API call on 429 (waiting Retry-After), 5xx and "
        "connection errors",
    )
    max_in_flight: int = Field(
        default=32, ge=1, le=1000, description="messages answered at once; more wait their turn"
    )
    shutdown_timeout_s: float = Field(
        default=4,
        gt=0,
        le=600,
        description="on stop, how long in-flight replies may finish (Slack's drain, then "
        "Discord's: the defaults fit inside docker stop's 10 s grace)",
    )

    @field_validator("api_url")
    @classmethod
    def _check_api_url(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("api_url must be an http(s) URL, e.g. https://slack.com/api/")
        return v if v.endswith("/") else v + "/"

    @field_validator("path")
    @classmethod
    def _check_path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError('path must start with "/", e.g. /slack/events')
        return v

    @field_validator("command")
    @classmethod
    def _check_command(cls, v: str) -> str:
        if not v.startswith("/") or len(v) < 2 or any(c.isspace() for c in v):
            raise ValueError('command must look like "/guardbot"')
        return v

    def channel(self, channel_id: str) -> SlackChannelSettings:
        return self.channel_settings.get(channel_id) or SlackChannelSettings()

    def follows_threads(self, channel_id: str) -> bool:
        own = self.channel(channel_id).follow_threads
        return self.follow_threads if own is None else own

    def answers_bots(self, channel_id: str) -> bool:
        own = self.channel(channel_id).answer_bots
        return self.answer_bots if own is None else own

    def allows(self, channel_id: str) -> bool:
        return self.channels is None or channel_id in self.channels
