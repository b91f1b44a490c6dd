"""`config.toml` as validated pydantic models.

Every section forbids unknown keys, so a typo such as ``temprature`` is an
error that names the key and its line instead of being silently ignored.
Secrets never live here: the file names environment variables instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from adapters.discord.config import DiscordConfig
from adapters.slack.config import SlackConfig
from middleware.guards.config import GuardConfig, check_guard_references
from middleware.selection.factory import check_criteria


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LLMConfig(Section):
    provider: Literal["auto", "openai", "echo"] = Field(
        default="auto",
        description="auto: OpenAI-compatible when a key or base_url is set, else offline echo",
    )
    model: str = Field(default="gpt-4o-mini", description="model name sent to the server")
    base_url: str = Field(default="", description="an OpenAI-compatible server; empty = OpenAI")
    api_key_env: str = Field(
        default="OPENAI_API_KEY", description="environment variable that holds the API key"
    )
    temperature: float = Field(default=0.7, ge=0, le=2, description="sampling temperature")
    timeout_s: float = Field(default=30, gt=0, le=600, description="per-call timeout")
    max_retries: int = Field(default=2, ge=0, le=10, description="retries on 429/5xx/connection")
    max_tokens: int | None = Field(default=None, gt=0, description="cap on reply tokens")
    stream: bool = Field(default=False, description="stream replies (stops tokens on cancel)")
    transport: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp",
        description="HTTP transport under the openai client: aiohttp (lean) or httpx (its default)",
    )
    system_prompt: str = Field(
        default="You are guardbot, a helpful and concise assistant.",
        description="the system message of every conversation",
    )


class PipelineConfig(Section):
    best_of: int = Field(default=1, ge=1, le=8, description="candidates generated in parallel")
    temperatures: list[float] | float | None = Field(
        default=None, description="per-candidate temperatures, or one value for all"
    )
    models: list[str] | None = Field(default=None, description="per-candidate model names")
    selection: Literal["first", "judge", "criteria", "vote"] = Field(
        default="judge", description="how best-of-N picks a reply"
    )
    judge_model: str | None = Field(default=None, description="model for judge/criteria calls")
    criteria: list[str] = Field(
        default_factory=lambda: ["accuracy", "helpfulness", "tone"],
        description="criteria scored 1..10 by `criteria` selection",
    )
    criteria_weights: dict[str, float] = Field(
        default_factory=dict, description="optional weight per criterion (default 1)"
    )
    min_confidence: float = Field(
        default=0.5, ge=0, le=1, description="`vote`: below this share the bot is unsure"
    )
    on_low_confidence: Literal["unsure", "fallback"] = Field(
        default="unsure", description="`vote` below min_confidence: say unsure, or fall back"
    )
    unsure_reply: str = Field(
        default="I'm not sure about this one; my answers disagreed.",
        description="reply when a vote is too split",
    )
    refusal: str = Field(
        default="Sorry, I can't help with that.", description="reply when a guard blocks"
    )
    error_reply: str = Field(
        default="Sorry, I couldn't produce a reply right now ({reason}). Please try again.",
        description="reply when generation fails; {reason} is filled in",
    )
    max_input_chars: int = Field(default=8000, gt=0, description="longer messages are refused")
    history_turns: int = Field(default=10, ge=0, description="earlier turns given as context")
    history_chars: int = Field(default=8000, ge=0, description="character cap on that context")
    stream: bool = Field(
        default=True,
        description="show replies while they are generated, each chunk only after the output "
        "guards passed it (console, Slack, Discord); best_of > 1 shows the chosen reply whole",
    )
    chunk_chars: int = Field(
        default=200, ge=1, le=4000, description="streaming: a chunk ends at a sentence after this"
    )
    context_chars: int = Field(
        default=200,
        ge=0,
        le=8000,
        description="streaming: text before a chunk judged with it by the output guards (0: "
        "each chunk alone; secrets are masked after the last words shown whatever this is)",
    )
    max_hold_ms: float = Field(
        default=1000, gt=0, le=60_000, description="streaming: longest wait before a shorter cut"
    )

    @field_validator("temperatures")
    @classmethod
    def _check_temperatures(cls, v: list[float] | float | None) -> list[float] | float | None:
        values = v if isinstance(v, list) else [] if v is None else [v]
        if any(not 0 <= t <= 2 for t in values):
            raise ValueError("temperatures must be between 0 and 2")
        return v

    @model_validator(mode="after")
    def _check_criteria(self) -> PipelineConfig:
        # Fail at load (and on an admin `set`), not at the first best-of-N message.
        check_criteria(tuple(self.criteria), self.criteria_weights)
        return self


class LogConfig(Section):
    path: str = Field(default="guardbot.db", description="the SQLite decision log file")
    url: str = Field(
        default="",
        description='"postgresql://user@host:port/db": a log shared by several instances '
        "(replaces path); no password here",
    )
    password_env: str = Field(
        default="PGPASSWORD", description="environment variable that holds the database password"
    )

    @field_validator("url")
    @classmethod
    def _no_password_in_url(cls, url: str) -> str:
        if url and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (or be empty for the SQLite file)")
        if url and urlsplit(url).password is not None:
            raise ValueError("must not hold a password: put it in the variable of password_env")
        return url

    @property
    def target(self) -> str:
        """What the log is opened from: the PostgreSQL URL when set, else the file."""
        return self.url or self.path

    store_text: bool = Field(
        default=True, description="false keeps hashes and lengths, not message text"
    )
    redact_pii: bool = Field(default=False, description="mask PII before storing text")


class AdminConfig(Section):
    users: list[str] = Field(
        default_factory=lambda: ["console:*"],
        description='who may run admin commands: "slack:U123", "discord:42", "console:*"',
    )
    discord_manage_guild: bool = Field(
        default=True, description="Discord members with Manage Server are admins too"
    )


class PriceConfig(Section):
    input_per_m: float = Field(default=0.0, ge=0, description="USD per 1M input tokens")
    output_per_m: float = Field(default=0.0, ge=0, description="USD per 1M output tokens")


class BudgetConfig(Section):
    user_daily_tokens: int | None = Field(default=None, gt=0, description="per user per UTC day")
    channel_daily_tokens: int | None = Field(default=None, gt=0, description="per channel per day")
    message: str = Field(
        default="You've reached today's usage limit. Please try again tomorrow.",
        description="reply when a budget is spent",
    )


class Config(Section):
    llm: LLMConfig = Field(default_factory=LLMConfig, description="the chat model")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, description="the pipeline")
    guards: list[GuardConfig] = Field(default_factory=list, description="one table per guard")
    log: LogConfig = Field(default_factory=LogConfig, description="the decision log")
    admin: AdminConfig = Field(default_factory=AdminConfig, description="admin commands")
    slack: SlackConfig = Field(default_factory=SlackConfig, description="Slack adapter")
    discord: DiscordConfig = Field(default_factory=DiscordConfig, description="Discord adapter")
    pricing: dict[str, PriceConfig] = Field(
        default_factory=dict, description="price per model, per 1M tokens"
    )
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="daily token budgets")

    @field_validator("guards")
    @classmethod
    def _unique_names(cls, guards: list[Any]) -> list[Any]:
        names = [g.name for g in guards]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"guard names must be unique; repeated: {', '.join(dupes)}")
        check_guard_references(guards)  # ensemble members exist, no cycles
        return guards

    @model_validator(mode="after")
    def _env_fields_name_variables(self) -> Config:
        # A key pasted where its variable's name belongs would be printed back (by the
        # start notice, `guardbot config`) and looked up as a name: refused, unshown.
        for path, name in _env_fields(self.model_dump()):
            if name and not _ENV_NAME.fullmatch(name):
                raise ValueError(
                    f"{path} must name an environment variable (letters, digits and _), "
                    "not hold the secret itself: secrets come from the environment"
                )
        return self

    def fingerprint(self) -> str:
        """Short hash of the effective policy, stored with every decision."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# The secrets a deployment hands the bot, by the platforms' usual names; the config
# adds every variable it names in a ``*_env`` field ([llm] api_key_env, a guard's
# api_key_env, [discord] token_env).
SECRET_ENV = (
    "OPENAI_API_KEY",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "DISCORD_TOKEN",
)


def secret_env_names(config: Config | None = None) -> list[str]:
    """The environment variables whose values are secrets, for masking by value."""
    names = dict.fromkeys(SECRET_ENV)
    if config is not None:
        names.update(dict.fromkeys(name for _, name in _env_fields(config.model_dump())))
    return list(names)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_fields(data: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every ``*_env`` field as (where, variable name), e.g. ("[llm] api_key_env", "X")."""
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, str) and key.endswith("_env"):
                yield f"[{path}] {key}" if path else key, value
            else:
                yield from _env_fields(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from _env_fields(item, f"{path}[{i}]")


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file, key and line."""


def default_config_text() -> str:
    return resources.files("bot.config").joinpath("default_config.toml").read_text(encoding="utf-8")


def resolve_config_path(explicit: str | None) -> Path | None:
    """--config, then $GUARDBOT_CONFIG, then ./config.toml; None = packaged defaults."""
    chosen = explicit or os.environ.get("GUARDBOT_CONFIG")
    if chosen:
        return Path(chosen)
    local = Path("config.toml")
    return local if local.is_file() else None


def load_config(path: Path | None) -> Config:
    if path is None:
        return parse_config(default_config_text(), "<packaged defaults>")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = _key_lines(text)
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            where = ".".join(str(p) for p in loc)
            line = _find_line(lines, loc)
            at = f" (line {line})" if line else ""
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            msg = msg.removeprefix("Value error, ")  # ours say what is wrong themselves
            problems.append(f"  {where}{at}: {msg}" if where else f"  {msg}")
        raise ConfigError(f"{source}: invalid configuration:\n" + "\n".join(problems)) from None


_TABLE = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"]+)\s*=")


def _key_lines(text: str) -> list[tuple[tuple[str | int, ...], int]]:
    """(table path + key, line number) for every key line in the TOML text."""
    found: list[tuple[tuple[str | int, ...], int]] = []
    table: tuple[str | int, ...] = ()
    arrays: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if m := _TABLE.match(line):
            name = m.group(2).replace('"', "")
            parts: tuple[str | int, ...] = tuple(name.split("."))
            if m.group(1) == "[[":
                arrays[name] = arrays.get(name, -1) + 1
                parts = (*parts, arrays[name])
            table = parts
            found.append((table, number))
        elif m := _KEY.match(line):
            found.append(((*table, m.group(1).replace('"', "")), number))
    return found


def _find_line(lines: list[tuple[tuple[str | int, ...], int]], loc: tuple[Any, ...]) -> int | None:
    """Best line for a pydantic error location (which may hold union tags in between)."""
    best: tuple[int, int] | None = None
    for path, number in lines:
        remaining = iter(loc)
        is_subsequence = all(any(p == q for q in remaining) for p in path)
        if is_subsequence and (best is None or len(path) > best[0]):
            best = (len(path), number)
    return best[1] if best else None
