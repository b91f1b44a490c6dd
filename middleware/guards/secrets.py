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
    (
        "llm_api_key",
        _B
        + r"(?:gsk_[A-Za-z0-9]{52}|xai-[A-Za-z0-9]{80}|pplx-[A-Za-z0-9]{48}|hf_[A-Za-z]{34})"
        + _E,
    ),
    ("slack", _B + r"xox[abposre]-(?:[A-Za-z0-9]+-){1,4}[A-Za-z0-9]{6,}" + _E),
    ("slack", _B + r"xapp-\d-[A-Z0-9]+-\d+-[a-f0-9]{20,}" + _E),
    ("slack_webhook", r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{16,}"),
    (
        "slack_webhook",
        r"https://hooks\.slack\.com/(?:workflows|triggers)/T[A-Z0-9]+/[A-Za-z0-9/]{16,}",
    ),
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
    (
        "jwt",
        _B
        + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\."
        + r"(?:[A-Za-z0-9_\-]{8,}(?![A-Za-z0-9_\-])|(?![A-Za-z0-9_\-]))",
    ),
    ("gitlab", _B + r"glpat-[A-Za-z0-9_\-]{20,}" + _E),
    ("npm", _B + r"npm_[A-Za-z0-9]{36}" + _E),
    ("pypi", _B + r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}" + _E),
    ("sendgrid", _B + r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}" + _E),
    ("twilio", _B + r"SK[0-9a-fA-F]{32}" + _E),
    # A value assigned to a credential's name, in code, config, JSON or prose:
    # api_key = "…", "apiKey": "…", password: …, TOKEN=…. Only the value is the span.
    (
        "credential",
        r"(?i)(?:api[_-]?key|access[_-]?key|secret(?:[_-]?key)?|client[_-]?secret|"
        r"(?:access|auth|api|bearer|refresh)?[_-]?token|passw(?:or)?d|pwd|credentials?)"
        r"[\"']?\s*[:=]\s*[\"']?(?P<value>[A-Za-z0-9_\-./+=!@#$%^&*~]{8,200})(?=[\"'\s,;}]|$)",
    ),
    (
        "discord_token",
        _B + r"[MNO][A-Za-z0-9_\-]{23,25}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,38}" + _E,
    ),
)
_COMPILED = tuple((kind, re.compile(pattern)) for kind, pattern in _PATTERNS)
# Cheap pre-check: every pattern above contains one of these substrings.
_HINTS = re.compile(
    r"PRIVATE KEY|sk-|xox|xapp-|hooks\.slack|gh[pousr]_|github_pat_|A3T|AKIA|ASIA|ABIA|ACCA|"
    r"(?i:secret|key|token|passw|pwd|credential)|AIza|_live_|_test_|_prod_|whsec_|gsk_|xai-|"
    r"pplx-|hf_|eyJ|glpat-|npm_|pypi-|SG\.|SK[0-9a-fA-F]|[MNO][A-Za-z0-9_\-]{23,25}\."
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
_UNDERSCORED_HINTS = re.compile(r"gh[pousr]_|github_pat_|_live_|_test_|_prod_|whsec_|gsk_|hf_|npm_")
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
        or "glpat-" in text
        or "pypi-" in text
        or "SG." in text
        or "SK" in text
    ):
        return True
    lowered = text.lower()
    if (
        "secret" in lowered
        or "key" in lowered
        or "token" in lowered
        or "passw" in lowered
        or "pwd" in lowered
        or "credential" in lowered
    ):
        return True
    if "_" in text and _UNDERSCORED_HINTS.search(text):
        return True
    return "." in text and _DISCORD_HINT.search(text) is not None


# Documentation placeholders: "xxxx…", "…EXAMPLE…", a few characters repeated.
_PLACEHOLDER = re.compile(
    r"(?i)x{6,}|\*{4,}|\.{3}|example|your[_-]?(?:key|token|secret|password)|changeme|redacted|"
    r"placeholder|dummy|<|>|\$\{|\{\{"
)


def _placeholder(kind: str, token: str) -> bool:
    if kind == "private_key":
        return False
    return _PLACEHOLDER.search(token) is not None or len(set(token)) < 8


def _credential_value(value: str) -> bool:
    """A value assigned to a credential's name is a secret when it looks random:
    mixed character classes, not an identifier ("os.environ", "get_token", "None")."""
    classes = (
        any(c.isdigit() for c in value)
        + any(c.isupper() for c in value)
        + any(c.islower() for c in value)
        + any(not c.isalnum() and c not in "_-." for c in value)
    )
    if classes < 2 or value.lower() in ("none", "null", "true", "false") or value[0] in "/.~":
        return False
    # dotted or snake_case names: settings.API_KEY, os.environ, read_from_vault
    return not _NAME.fullmatch(value)


# A dotted or snake_case name: letters and "_" with a "." or an inner "_" between parts.
# Written as "[A-Za-z_]+(?:[._][A-Za-z_]+)+" it tries every way of cutting a run at its
# underscores: exponential, "password = a_a_a_…_a1" (70 characters) never returned.
_NAME = re.compile(r"[A-Za-z_]++(?:\.[A-Za-z_]++)+|[A-Za-z_][A-Za-z]*+_[A-Za-z_]++")


def find_secrets(text: str) -> list[Span]:
    """Non-overlapping (start, end, kind) findings in text order."""
    if not _hinted(text):
        return []
    spans = _found(text)
    return non_overlapping([*spans, *_split_keys(text)])


# A key written across lines or in groups ("sk-proj-Ab3d…\nkLm0", "sk-proj- Ab3dEf6h …") is
# read joined: a token that starts like a key and the random-looking tokens after it, one
# space or line break apart. What is found there covers them all, the breaks included.
_KEY_START = re.compile(
    _B + r"(?:sk-|(?:sk|rk)_(?:live|test|prod)_|xox[abposre]-|xapp-|gh[pousr]_|github_pat_|"
    r"glpat-|AKIA|ASIA|AIza|eyJ|hf_|gsk_|xai-|pplx-|npm_|pypi-|SG\.|whsec_)[A-Za-z0-9_\-.]*"
)
_NEXT_PIECE = re.compile(r"(?:[ \t]|\r?\n)([A-Za-z0-9_\-.]+)")


def _key_piece(token: str) -> bool:
    """Two of digits, capitals and small letters, and not a word ("Done", "HTTP")."""
    kinds = any(c.isdigit() for c in token) + any(c.isupper() for c in token)
    kinds += any(c.islower() for c in token)
    return kinds >= 2 and not (token[0].isupper() and token[1:].islower())


def _split_keys(text: str) -> list[Span]:
    found: list[Span] = []
    walked = 0
    for start in _KEY_START.finditer(text):
        if start.start() < walked:  # inside the pieces of the key before
            continue
        pieces = [(start.start(), start.end())]
        while (m := _NEXT_PIECE.match(text, pieces[-1][1])) and _key_piece(m[1]):
            pieces.append(m.span(1))
        walked = pieces[-1][1]
        if len(pieces) == 1:
            continue
        offsets, at = [], 0  # where each piece starts in the joined text, and in the text
        for s, e in pieces:
            offsets.append((at, s))
            at += e - s
        joined = "".join(text[s:e] for s, e in pieces)
        for s, e, kind in _found(joined):
            if e > pieces[0][1] - pieces[0][0]:  # reaches past the first piece
                found.append((_at(offsets, s), _at(offsets, e - 1) + 1, kind))
    return found


def _at(offsets: list[tuple[int, int]], index: int) -> int:
    """The text's index of a joined text's character."""
    joined_start, text_start = max(o for o in offsets if o[0] <= index)
    return text_start + index - joined_start


def _found(text: str) -> list[Span]:
    spans: list[Span] = []
    for kind, rx in _COMPILED:
        for m in rx.finditer(text):
            if kind == "credential":
                value = m["value"]
                if _credential_value(value) and not _placeholder(kind, value):
                    spans.append((m.start("value"), m.end("value"), kind))
            elif (kind not in _NEEDS_ENTROPY or _random_looking(m[0])) and not _placeholder(
                kind, m[0]
            ):
                spans.append((m.start(), m.end(), kind))
    return spans


SECRET_MARK = "[SECRET:"  # how every masked secret starts (replay looks for it)


def _label(kind: str) -> str:
    return f"{SECRET_MARK}{kind}]"


def mask_secrets(text: str, plain: str | None = None) -> str:
    """``text`` with every recognised key or token replaced by ``[SECRET:kind]``
    (``plain``: its ``strip_invisible`` form, when the caller already made it)."""
    spans = scan(find_secrets, text, plain)
    return mask(text, spans, _label) if spans else text


class SecretsGuard:
    local = True  # CPU-only and fast: run inline, no task
    offline = False

    def __init__(self, cfg: SecretsGuardConfig) -> None:
        self.name = cfg.name

    async def check(self, text: str, context: GuardContext) -> Verdict:
        spans = await off_loop_if_long(lambda t: scan(find_secrets, t), text)
        masked = mask(text, spans, _label) if spans else text
        return findings_verdict(
            self.name,
            context,
            spans,
            category="secret",
            nothing="no secrets found",
            redacted_text=masked,
        )
