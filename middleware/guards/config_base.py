"""The policy fields every guard kind shares: :class:`GuardConfigBase`.

Its own module so that the kinds can live in the modules of their families
(:mod:`.config` for the offline and server kinds, :mod:`.llm_config` for the
LLM kinds) and all inherit the same strict validation: ``extra = "forbid"``,
redaction only on output, and how a streamed reply is screened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from middleware.types import Stage


class GuardConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    if TYPE_CHECKING:  # every kind declares it as a Literal (the union's discriminator)
        kind: str

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
    stream: Literal["chunk", "final"] = Field(
        default="chunk",
        description="streamed replies: judge every chunk before it is shown (chunk), or the "
        "whole reply once at the end (final: a block then retracts what was shown)",
    )

    @model_validator(mode="after")
    def _redact_only_on_output(self) -> GuardConfigBase:
        # Generation starts with the user's text at once, so masking an input can
        # not take effect; accepting it would only pretend to protect.
        if self.action == "redact" and self.stage != "output":
            raise ValueError('action = "redact" works only with stage = "output"')
        # A mask applied after the text was shown would hide nothing.
        if self.action == "redact" and self.stream == "final":
            raise ValueError(
                'action = "redact" needs stream = "chunk" (masks apply before showing)'
            )
        return self

    def applies(self, stage: Stage, channel_id: str) -> bool:
        if not self.enabled:
            return False
        if self.stage != "both" and self.stage != stage.value:
            return False
        return self.channels is None or channel_id in self.channels
