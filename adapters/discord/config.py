"""The ``[discord]`` section of `config.toml`, owned by the Discord adapter.

It lives beside the adapter (not in ``bot``) because adapters must not import
the application; ``bot.config.schema`` imports it to build the whole ``Config``.
Unknown keys are errors. Ids may be written as strings or integers (Discord
snowflakes fit TOML integers) and are kept as strings. The token is never
here: only the name of the environment variable that holds it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def _ids(value: Any) -> Any:
    if isinstance(value, list):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


class DiscordConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="serve Discord when DISCORD_TOKEN is set")
    token_env: str = Field(
        default="DISCORD_TOKEN", description="environment variable that holds the bot token"
    )
    shards: int | Literal["auto"] | None = Field(
        default=None, description='"auto" or a count selects AutoShardedClient'
    )
    shard_ids: list[int] | None = Field(
        default=None,
        description="the shards this instance runs, when several instances share the bot "
        "(each its own ids, together every id below shard_count once)",
    )
    shard_count: int | None = Field(
        default=None, ge=1, le=1024, description="the bot's total shards, with shard_ids"
    )
    channels: list[str] | None = Field(
        default=None,
        description="allow-list of channel ids (threads follow their parent); unset = all",
    )
    dms: bool = Field(default=True, description="answer direct messages")
    reply_all_channels: list[str] = Field(
        default_factory=list, description="channels where every message is answered"
    )
    follow_threads: bool = Field(
        default=True, description="answer follow-ups in threads it started without a mention"
    )
    start_threads: bool = Field(
        default=False,
        description="answer a mention in a text channel by starting a thread on that message",
    )
    sync_commands: bool = Field(
        default=True, description="register the /guardbot command with Discord at start"
    )
    command_guilds: list[str] = Field(
        default_factory=list,
        description="register /guardbot in these guild ids only (instant) instead of globally",
    )
    max_in_flight: int = Field(
        default=32, ge=1, le=1000, description="messages answered at once; more wait their turn"
    )
    shutdown_timeout_s: float = Field(
        default=4.0,
        gt=0,
        le=600,
        description="on shutdown, wait this long for replies in flight (after Slack's drain: "
        "the defaults fit inside docker stop's 10 s grace)",
    )
    min_edit_interval_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="a streamed reply is edited at most this often (Discord allows 5 edits "
        "per 5 s per channel); text released meanwhile goes into the next edit",
    )

    @field_validator("shards", mode="before")
    @classmethod
    def _positive_shards(cls, v: Any) -> Any:
        if isinstance(v, bool) or (isinstance(v, int) and not 1 <= v <= 1024):
            raise ValueError('shards must be between 1 and 1024, or "auto"')
        return v

    @model_validator(mode="after")
    def _shard_range(self) -> DiscordConfig:
        # Checked here, not at the gateway: a wrong range there means shards that
        # nobody runs (guilds never answered) or run twice (every answer doubled).
        ids, count = self.shard_ids, self.shard_count
        if ids is None and count is None:
            return self
        if ids is None or count is None:
            raise ValueError(
                "shard_ids and shard_count go together (one process running every shard: "
                "shards = N)"
            )
        if self.shards is not None:
            raise ValueError("set either shards or shard_ids + shard_count, not both")
        if not ids:
            raise ValueError("shard_ids is empty: this instance would run no shard")
        outside = sorted({i for i in ids if not 0 <= i < count})
        if outside:
            raise ValueError(f"shard_ids {outside} are outside 0..{count - 1} (shard_count)")
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"shard_ids lists {twice} more than once")
        return self

    @field_validator("channels", "reply_all_channels", "command_guilds", mode="before")
    @classmethod
    def _ids_as_strings(cls, v: Any) -> Any:
        return _ids(v)

    @field_validator("channels", "reply_all_channels", "command_guilds")
    @classmethod
    def _numeric_ids(cls, v: list[str] | None) -> list[str] | None:
        bad = [x for x in v or [] if not x.isdigit()]
        if bad:
            raise ValueError(f"Discord ids are numbers (enable Developer Mode to copy them): {bad}")
        return v
