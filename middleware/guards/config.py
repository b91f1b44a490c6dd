"""Configuration of guards: one ``[[guards]]`` table each, validated strictly.

Every kind has its own model (a discriminated union on ``kind``), so an option
that does not belong to a kind, or a typo, is an error naming the key. The
policy fields shared by every kind live on :class:`GuardConfigBase`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from middleware.types import Stage


class GuardConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="unique name, used in logs and admin commands")
    enabled: bool = Field(default=True, description="a disabled guard is not run")
    stage: Literal["input", "output", "both"] = Field(
        default="input", description="screen the user's message, the reply, or both"
    )
    action: Literal["block", "flag", "redact"] = Field(
        default="block",
        description="what an unsafe verdict does: refuse, only record, or mask the finding",
    )
    on_error: Literal["block", "allow"] = Field(
        default="block", description="on error or timeout: block (fail-closed) or allow (fail-open)"
    )
    timeout_s: float = Field(default=5.0, gt=0, le=600, description="per-call timeout")
    threshold: float | None = Field(
        default=None, description="score at or above which the text counts as unsafe"
    )
    channels: list[str] | None = Field(
        default=None, description="apply only in these channel ids (all channels when unset)"
    )

    def applies(self, stage: Stage, channel_id: str) -> bool:
        if not self.enabled:
            return False
        if self.stage != "both" and self.stage != stage.value:
            return False
        return self.channels is None or channel_id in self.channels


class MaxLengthGuardConfig(GuardConfigBase):
    kind: Literal["max_length"]
    max_chars: int = Field(default=4000, gt=0, description="longer texts are unsafe")


GuardConfig = Annotated[MaxLengthGuardConfig, Field(discriminator="kind")]
