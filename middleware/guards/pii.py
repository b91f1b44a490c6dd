"""``pii``: e-mail addresses, phone numbers, payment card numbers and IBANs.

Detection is by precompiled patterns plus checksums where the format has one
(Luhn for cards, mod-97 for IBANs), so order numbers, timestamps and other
long digit runs are not mistaken for cards. Phone numbers need a phone-like
shape (a leading ``+``, a ``(555) 123-4567`` grouping, a trunk ``0`` with
separators) or a nearby word such as "call" or "phone"; bare digit runs alone
are too often ids. :func:`mask_pii` is the same detector as a pure function,
used by the decision log to redact text before it is stored. Verdicts name
what was found, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from middleware.guards.config import PII_KINDS, PIIGuardConfig
from middleware.guards.guard import GuardContext, findings_verdict
from middleware.guards.normalize import off_loop_if_long
from middleware.guards.spans import Span, mask, non_overlapping, scan
from middleware.types import Verdict

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![\w-])(?!:[\w~/])"  # not "git@github.com:org/repo" (an SSH address)
)
# "jane dot doe at example dot com" / "jane [at] example [dot] com"
_EMAIL_SPELLED = re.compile(
    r"(?i)(?<![\w])[a-z0-9][a-z0-9._-]{0,63}"
    r"(?:\s*(?:\(dot\)|\[dot\]|\{dot\}|\sdot\s)\s*[a-z0-9_-]{1,63}){0,3}"
    r"\s*(?:\(at\)|\[at\]|\{at\}|\sat\s)\s*"
    r"[a-z0-9-]{2,63}(?:\s*(?:\(dot\)|\[dot\]|\{dot\}|\sdot\s|\.)\s*[a-z0-9-]{2,63}){0,3}"
    r"\s*(?:\(dot\)|\[dot\]|\{dot\}|\sdot\s)\s*(?:com|org|net|edu|gov|io|co|de|uk|fr|nl|info|me)\b"
)
_CARD = re.compile(r"(?<![\d.,/-])(?:\d[ -]?){12,18}\d(?![\d/]|[.,-]\d)")
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?= ?[A-Za-z0-9])")
# Phone shapes. Separators: space, dot, dash; digits 9..15 in total.
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?![\d-])")
_PHONE_NANP = re.compile(
    r"(?<![\w(])(?<!\d[ -])(?:1[ .-]?)?(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-]|[ .]\d)"
)
_PHONE_TRUNK = re.compile(r"(?<![\w.])(?<!\d[ -])0\d{1,4}(?:[ -]\d{2,8}){1,4}(?![\w-]|[ .]\d)")
_PHONE_BARE = re.compile(r"(?<![\w.+-])\d{9,13}(?![\w-]|\.\d)")
_PHONE_WORDS = re.compile(
    r"(?i)\b(?:call|phone|tel|telephone|mobile|cell|whatsapp|text me|sms|reach me|ring me|"
    r"my number|phone number|dial)\b"
)
_DATE_LIKE = re.compile(r"^(?:19|20)\d\d[ .-]\d\d[ .-]\d\d$")

# IBAN lengths by country (ISO 13616); an unknown country is not an IBAN.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip

MASKS = {"email": "[EMAIL]", "phone": "[PHONE]", "card": "[CARD]", "iban": "[IBAN]"}


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _issuer_length_ok(d: str) -> bool:
    """Lengths of the issuer ranges in use (Visa 13 is long retired, so 13 digits is an id)."""
    n = len(d)
    if d[0] == "4":
        return n in (16, 19)
    if d[:2] in ("34", "37"):
        return n == 15
    if "51" <= d[:2] <= "55" or "2221" <= d[:4] <= "2720":
        return n == 16
    if d[:2] in ("36", "38", "39") or "300" <= d[:3] <= "305":
        return 14 <= n <= 19
    if d[0] == "3" and "3528" <= d[:4] <= "3589":
        return 16 <= n <= 19
    if d[0] in "56":  # Discover, UnionPay, Maestro
        return 16 <= n <= 19
    return False


def _is_card(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw)
    # One repeated digit is a placeholder ("0000 0000 ..."), not a card.
    if not 14 <= len(digits) <= 19 or len(set(digits)) < 2 or not _issuer_length_ok(digits):
        return False
    return luhn_valid(digits)


def _iban_end(text: str, start: int) -> int | None:
    """End of a valid IBAN starting at ``start`` (grouped by single spaces), else None."""
    length = _IBAN_LENGTHS.get(text[start : start + 2].upper())
    if length is None:
        return None
    chars: list[str] = []
    i = start
    while i < len(text) and len(chars) < length:
        c = text[i]
        if c.isascii() and c.isalnum():
            chars.append(c.upper())
        elif not (c == " " and chars and i + 1 < len(text) and text[i + 1].isalnum()):
            return None
        i += 1
    if len(chars) != length or (i < len(text) and text[i].isalnum()):
        return None
    iban = "".join(chars)
    rearranged = iban[4:] + iban[:4]
    if int("".join(str(int(c, 36)) for c in rearranged)) % 97 != 1:
        return None
    return i


def _digit_count(raw: str) -> int:
    return sum(c.isdigit() for c in raw)


def _spans(text: str, kinds: Iterable[str]) -> Iterator[tuple[int, int, str]]:
    wanted = set(kinds)
    if "email" in wanted and "@" in text:
        for m in _EMAIL.finditer(text):
            yield m.start(), m.end(), "email"
    if "email" in wanted and (" at " in text or "at]" in text or "at)" in text or "at}" in text):
        for m in _EMAIL_SPELLED.finditer(text):
            yield m.start(), m.end(), "email"
    if not any(c.isdigit() for c in text):
        return
    if "iban" in wanted:
        for m in _IBAN_START.finditer(text):
            end = _iban_end(text, m.start())
            if end is not None:
                yield m.start(), end, "iban"
    if "card" in wanted:
        for m in _CARD.finditer(text):
            if _is_card(m.group(0)):
                yield m.start(), m.end(), "card"
    if "phone" in wanted:
        yield from _phones(text)


def _phones(text: str) -> Iterator[tuple[int, int, str]]:
    for pattern in (_PHONE_INTL, _PHONE_NANP, _PHONE_TRUNK):
        for m in pattern.finditer(text):
            raw = m.group(0)
            if 9 <= _digit_count(raw) <= 15 and not _DATE_LIKE.match(raw):
                yield m.start(), m.end(), "phone"
    if _PHONE_WORDS.search(text):
        for m in _PHONE_BARE.finditer(text):
            yield m.start(), m.end(), "phone"


def find_pii(text: str, kinds: Iterable[str] = PII_KINDS) -> list[Span]:
    """Non-overlapping (start, end, kind) findings, earliest and longest first."""
    return non_overlapping(_spans(text, kinds))


def _scan(text: str, kinds: Iterable[str]) -> tuple[str, list[Span]]:
    return scan(lambda t: find_pii(t, kinds), text)


def mask_pii(text: str) -> str:
    """``text`` with every e-mail, phone, card number and IBAN replaced by ``[EMAIL]`` etc."""
    scanned, spans = _scan(text, PII_KINDS)
    return mask(scanned, spans, MASKS.__getitem__) if spans else text


class PIIGuard:
    local = True  # CPU-only and fast: run inline, no task
    offline = False

    def __init__(self, cfg: PIIGuardConfig) -> None:
        self.name = cfg.name
        self.kinds = tuple(cfg.detect)

    def _scan(self, text: str) -> tuple[str, list[Span]]:
        return _scan(text, self.kinds)

    async def check(self, text: str, context: GuardContext) -> Verdict:
        text, spans = await off_loop_if_long(self._scan, text)
        masked = mask(text, spans, MASKS.__getitem__) if spans else text
        return findings_verdict(
            self.name, context, spans, category="pii", nothing="no PII found", redacted_text=masked
        )
