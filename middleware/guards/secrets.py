"""``secrets``: API keys and tokens that must never be echoed, logged or stored.

Each pattern is specific to one issuer's format (OpenAI ``sk-…``, Slack
``xox?-…``, GitHub ``ghp_…``, AWS ``AKIA…``, PEM private-key blocks, JWTs and
a few more), which keeps false positives on ordinary code and hashes low:
a generic "long random string" rule would fire on every commit hash.
:func:`mask_secrets` is the same detector as a pure function; the decision log
runs it on everything it stores. Verdicts name the kind of secret, never the value.
"""

from __future__ import annotations

import re

from middleware.guards.config import SecretsGuardConfig
from middleware.guards.guard import GuardContext, findings_verdict
from middleware.guards.normalize import off_loop_if_long
from middleware.guards.spans import Span, mask, non_overlapping, scan
from middleware.types import Verdict

_B = r"(?<![A-Za-z0-9_\-])"  # not in the middle of a longer token
_E = r"(?![A-Za-z0-9_\-])"

# (kind, pattern). Order matters only for naming: the first kind that matches a span wins.
_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        "private_key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[\s\S]*)",
    ),
    ("anthropic", _B + r"sk-ant-[A-Za-z0-9_\-]{20,}" + _E),
    ("openrouter", _B + r"sk-or-v1-[a-f0-9]{64}" + _E),
    ("openai", _B + r"sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}" + _E),
    # DeepSeek and other OpenAI-compatible providers: "sk-" + 32 lower-case hex
    ("llm_api_key", _B + r"sk-[a-f0-9]{32}" + _E),
    ("llm_api_key", _B + r"(?:gsk_[A-Za-z0-9]{52}|xai-[A-Za-z0-9]{80}|pplx-[A-Za-z0-9]{48}|hf_[A-Za-z]{34})" + _E),
    ("slack", _B + r"xox[abposre]-(?:[A-Za-z0-9]+-){1,4}[A-Za-z0-9]{6,}" + _E),
    ("slack", _B + r"xapp-\d-[A-Z0-9]+-\d+-[a-f0-9]{20,}" + _E),
    ("slack_webhook", r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{16,}"),
    ("slack_webhook", r"https://hooks\.slack\.com/(?:workflows|triggers)/T[A-Z0-9]+/[A-Za-z0-9/]{16,}"),
    ("github", _B + r"gh[pousr]_[A-Za-z0-9]{36,255}" + _E),
    ("github", _B + r"github_pat_[A-Za-z0-9_]{50,255}" + _E),
    ("aws_access_key", _B + r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}" + _E),
    (
        "aws_secret_key",
        r"(?i)aws_?secret_?(?:access_?)?key(?:_id)?[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])",
    ),
    ("google_api_key", _B + r"AIza[0-9A-Za-z_\-]{35}" + _E),
    ("stripe", _B + r"(?:sk|rk)_(?:live|test|prod)_[0-9A-Za-z]{24,}" + _E),
    ("stripe", _B + r"whsec_[0-9A-Za-z]{32,}" + _E),
    # signed, or unsigned (alg "none": an empty third part)
    ("jwt", _B + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.(?:[A-Za-z0-9_\-]{8,}(?![A-Za-z0-9_\-])|(?![A-Za-z0-9_\-]))"),
    (
        "discord_token",
        _B + r"[MNO][A-Za-z0-9_\-]{23,25}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,38}" + _E,
    ),
)
_COMPILED = tuple((kind, re.compile(pattern)) for kind, pattern in _PATTERNS)
# Cheap pre-check: every pattern above contains one of these substrings.
_HINTS = re.compile(
    r"PRIVATE KEY|sk-|xox|xapp-|hooks\.slack|gh[pousr]_|github_pat_|A3T|AKIA|ASIA|ABIA|ACCA|"
    r"(?i:secret)|AIza|_live_|_test_|_prod_|whsec_|gsk_|xai-|pplx-|hf_|eyJ|[MNO][A-Za-z0-9_\-]{23,25}\."
)


# Kinds whose shape ("sk-" + 20 characters) also fits ordinary slugs such as
# "sk-hynix-memory-report": a real key mixes digits, upper and lower case.
_NEEDS_ENTROPY = frozenset({"openai", "anthropic", "stripe"})


def _random_looking(token: str) -> bool:
    return (
        any(c.isdigit() for c in token)
        and any(c.isupper() for c in token)
        and any(c.islower() for c in token)
    )


# The same test as ``_HINTS.search`` for ASCII text, about 4x cheaper on chat
# messages: one regex alternation of literals is tried at every position, while
# ``in`` is a fast substring search. The two regexes left run only on texts that
# hold their first character. Non-ASCII text keeps the regex: case-insensitive
# "secret" also matches "ſ" (long s), which ``lower()`` would not.
_UNDERSCORED_HINTS = re.compile(r"gh[pousr]_|github_pat_|_live_|_test_|_prod_|whsec_|gsk_|hf_")
_DISCORD_HINT = re.compile(r"[MNO][A-Za-z0-9_\-]{23,25}\.")


def _hinted(text: str) -> bool:
    if not text.isascii():
        return _HINTS.search(text) is not None
    if (
        "sk-" in text
        or "eyJ" in text
        or "xox" in text
        or "AKIA" in text
        or "AIza" in text
        or "xapp-" in text
        or "hooks.slack" in text
        or "PRIVATE KEY" in text
        or "ASIA" in text
        or "ABIA" in text
        or "ACCA" in text
        or "A3T" in text
        or "xai-" in text
        or "pplx-" in text
        or "secret" in text.lower()
    ):
        return True
    if "_" in text and _UNDERSCORED_HINTS.search(text):
        return True
    return "." in text and _DISCORD_HINT.search(text) is not None


# Documentation placeholders: "xxxx…", "…EXAMPLE…", a few characters repeated.
_PLACEHOLDER = re.compile(r"(?i)x{6,}|example|your[_-]?(?:key|token|secret)|changeme|redacted")


def _placeholder(kind: str, token: str) -> bool:
    if kind == "private_key":
        return False
    return _PLACEHOLDER.search(token) is not None or len(set(token)) < 8


def find_secrets(text: str) -> list[Span]:
    """Non-overlapping (start, end, kind) findings in text order."""
    if not _hinted(text):
        return []
    return non_overlapping(
        (m.start(), m.end(), kind)
        for kind, rx in _COMPILED
        for m in rx.finditer(text)
        if (kind not in _NEEDS_ENTROPY or _random_looking(m.group(0)))
        and not _placeholder(kind, m.group(0))
    )


SECRET_MARK = "[SECRET:"  # how every masked secret starts (replay looks for it)


def _label(kind: str) -> str:
    return f"{SECRET_MARK}{kind}]"


def mask_secrets(text: str) -> str:
    """``text`` with every recognised key or token replaced by ``[SECRET:kind]``."""
    scanned, spans = scan(find_secrets, text)
    return mask(scanned, spans, _label) if spans else text


class SecretsGuard:
    local = True  # CPU-only and fast: run inline, no task
    offline = False

    def __init__(self, cfg: SecretsGuardConfig) -> None:
        self.name = cfg.name

    async def check(self, text: str, context: GuardContext) -> Verdict:
        text, spans = await off_loop_if_long(lambda t: scan(find_secrets, t), text)
        masked = mask(text, spans, _label) if spans else text
        return findings_verdict(
            self.name,
            context,
            spans,
            category="secret",
            nothing="no secrets found",
            redacted_text=masked,
        )
