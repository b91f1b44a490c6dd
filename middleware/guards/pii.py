"""``pii``: e-mail addresses, phone numbers, payment card numbers and IBANs.

Phone numbers are recognised by Google's libphonenumber metadata (the
``phonenumbers`` package): a number written internationally (``+46 8 …``,
``0049 …``) is checked against its own country's numbering plan, a national
one (``08-31 58 43``, ``0631908681``) against each of the configured
``regions``. Card numbers need the Luhn checksum and an issuer's prefix and
length (Maestro 12-19 digits, Visa 13/16/19, JCB, ...), IBANs their country's
length and mod-97. Those checks are what keeps order numbers, timestamps,
UUIDs and hashes in logs from being flagged: most digit runs are valid
*somewhere*, so a bare run of digits only counts as a phone number next to a
word like "call" or "phone". :func:`mask_pii` is the same detector as a pure
function, used by the decision log to redact text before it is stored.
Verdicts name what was found, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

import phonenumbers

from middleware.guards.config import DEFAULT_PHONE_REGIONS, PII_KINDS, PIIGuardConfig
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
_CARD = re.compile(r"(?<![\d.,/#-])(?:\d[ -]?){11,18}\d(?![\d/]|[.,-]\d)")
# Dots between groups only in a card's own grouping (4.4.4.4, 4.6.5): a dotted run of
# digits is more often a version, an address or a decimal. (Digits first, then the look
# back: a pattern that opens with a digit is only tried where there is one.)
_CARD_DOTTED = re.compile(
    r"\d{4}(?<![\d.,/#-]\d{4})(?:(?:\.\d{4}){2}\.\d{4,7}|\.\d{6}\.\d{5})(?![\d/]|[.,-]\d)"
)
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?= ?[A-Za-z0-9])")
# Something a phone number could be: digits with the separators people write
# (space, dot, dash, slash, parentheses), an optional "+" or "00" in front and an
# optional extension. Not inside a longer token ("ORD-123…", "#123…", "v1.2.3", a UUID).
# A literal "\\n" (text pasted from JSON or a log) separates like a newline does; a
# word may follow a number directly after a dash ("993-268-7811-Office").
# Between the first and last digit, 5-24 pieces; a parenthesis takes the space after it in
# one piece ("(?>…)"). Free to give it back, "( " was one piece or two and every mix was
# tried (exponential in a run of them up to 24: 14 ms per "1( ( … ( x"). Counted as two
# only where the one-piece reading has fewer than five ({5,8}), the plain rule's matches.
_PHONE_CANDIDATE = re.compile(
    r"(?:(?<![\w+#/.\-])|(?<=\\[nrt]))(?:\+|(?<!\d)00)?\(?\d"
    r"(?:(?:[ .\-/]|(?>[()] ?)|\d){5,24}|(?:[ .\-/]|[()] ?|\d){5,8})\d"
    r"(?:[ ]?(?:x|ext\.?|#)[ ]?\d{1,6})?(?![\w/@]|-\d|[.,:]\d)"
)
_PHONE_WORDS = re.compile(
    r"(?i)(?:\b|(?<=\\[nrt]))(?:call|phone|tel|telephone|mobile|cell|whatsapp|text me|sms|"
    r"reach me|ring me|my number|phone number|dial|fax|contact)\b"
)
_CARD_WORDS = re.compile(
    r"(?i)card|visa|maestro|mastercard|amex|credit|debit|\bcc\b|charge|pay|expir|cvv|billing"
)
# An identifier's label just before a number: "order 4820…", "Meeting ID: 845 …",
# "WHERE id = 44…". Such numbers are neither cards nor phones, whatever their checksum.
_ID_LABEL = re.compile(
    r"(?i)(?:\bid|\bids|order|invoice|ticket|ref|reference|booking|tracking|meeting|build|"
    r"issue|pr|job|request|case|account|customer|no|nr|version|code|pin|otp)"
    r"\b[^\w\n]{0,4}(?:(?:number|no|is|was|=|:)[^\w\n]{0,3}){0,2}$"
)
_CARD_LABEL = re.compile(r"(?i)card\W{0,3}(?:no|nr|number|#)\W{0,3}$")
# Dates, times and version-like groupings that the candidate pattern also covers.
_NOT_PHONE = re.compile(
    r"^(?:(?:19|20)\d\d[ ./-]\d\d?[ ./-]\d\d?|\d\d?[./-]\d\d?[./-](?:19|20)?\d\d"
    r"|\d{1,3}(?:\.\d{1,3}){3}|(?:19|20)\d\d ?[-/] ?(?:19|20)\d\d)$|[-./]{2}"
)
_GROUPS = re.compile(r"\d+")
_DIGIT = re.compile(r"\d")
_EXTENSION = re.compile(r"(?i)[ ]?(?:x|ext\.?|#)[ ]?\d{1,6}$")

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


# Issuer prefixes (as ranges of the leading digits) and the lengths they issue.
# Maestro is the only scheme with 12-digit cards, so short numbers need its prefixes.
_MAESTRO = ("5018", "5020", "5038", "5893", "6304", "6390", "6759", "6761", "6762", "6763")


def _issuer_length_ok(d: str) -> bool:
    n = len(d)
    if d[0] == "4":  # Visa: 13 (older cards, still valid numbers), 16 and 19
        return n in (13, 16, 19)
    if d[:2] in ("34", "37"):  # American Express
        return n == 15
    if "51" <= d[:2] <= "55" or "2221" <= d[:4] <= "2720":  # Mastercard
        return n == 16
    if d[:2] in ("36", "38", "39") or "300" <= d[:3] <= "305":  # Diners Club
        return 14 <= n <= 19
    if d[:2] == "35":  # JCB issues 3528-3589; test generators use all of 35xx
        return 16 <= n <= 19
    if d[:4] in ("2131", "1800"):  # JCB's original 15-digit ranges
        return n == 15
    if d.startswith(_MAESTRO) or "56" <= d[:2] <= "58":
        return 12 <= n <= 19
    if d[0] == "6":  # Discover, UnionPay, RuPay
        return 16 <= n <= 19
    return False


def _is_card(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw)
    # One repeated digit is a placeholder ("0000 0000 ..."), not a card.
    if not 12 <= len(digits) <= 19 or len(set(digits)) < 2 or not _issuer_length_ok(digits):
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


def _parsed(raw: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None


def _is_phone(raw: str, regions: Sequence[str], context: bool) -> bool:
    """Whether ``raw`` is a phone number: valid in its country's plan when written
    internationally, else in one of ``regions``; with a phone word nearby, a number
    of a possible length is enough (generated and new numbers are not all "valid")."""
    number = _EXTENSION.sub("", raw)
    digits = sum(c.isdigit() for c in number)
    if not 7 <= digits <= 15 or _NOT_PHONE.search(number):
        return False
    if number.startswith("+"):
        # Written internationally on purpose: a length the country's plan allows is
        # enough (generated and newly issued numbers are not all "valid").
        parsed = _parsed(number, "ZZ")
        return parsed is not None and phonenumbers.is_possible_number(parsed)
    if number.startswith("00"):
        parsed = _parsed("+" + number[2:], "ZZ")
        if parsed is not None and (
            phonenumbers.is_valid_number(parsed)
            or (context and phonenumbers.is_possible_number(parsed))
        ):
            return True
        # else it may be a national number with a trunk "0" and a "0" area code
    # An unseparated run of digits is an order number or an id unless it looks like a
    # national number (trunk "0") or the text talks about phoning.
    if number.isdigit() and number[0] != "0" and not context:
        return False
    if len(_GROUPS.findall(number)) > 5:  # "04 12 19 23 35 41": a list of numbers
        return False
    possible = False
    for region in regions:
        parsed = _parsed(number, region)
        if parsed is None:
            continue
        if phonenumbers.is_valid_number(parsed):
            return True
        possible = possible or (context and phonenumbers.is_possible_number(parsed))
    return possible


def _spans(text: str, kinds: Iterable[str], regions: Sequence[str]) -> Iterator[Span]:
    wanted = set(kinds)
    if "email" in wanted and "@" in text:
        for m in _EMAIL.finditer(text):
            yield m.start(), m.end(), "email"
    if "email" in wanted and (" at " in text or "at]" in text or "at)" in text or "at}" in text):
        for m in _EMAIL_SPELLED.finditer(text):
            yield m.start(), m.end(), "email"
    if _DIGIT.search(text) is None:  # every pattern below needs a digit
        return
    if "iban" in wanted:
        for m in _IBAN_START.finditer(text):
            end = _iban_end(text, m.start())
            if end is not None:
                yield m.start(), end, "iban"
    cards: list[Span] = []
    if "card" in wanted:
        dotted = _CARD_DOTTED.finditer(text) if "." in text else ()
        for m in (*_CARD.finditer(text), *dotted):
            if (
                _is_card(m[0])
                and not _labelled_id(text, m.start())
                and (
                    # 12-13 digits: ids are that long too, and one in ten passes Luhn
                    sum(c.isdigit() for c in m[0]) > 13 or _CARD_WORDS.search(text)
                )
            ):
                cards.append((m.start(), m.end(), "card"))
        yield from cards
    if "phone" in wanted:
        context = _PHONE_WORDS.search(text) is not None
        for m in _PHONE_CANDIDATE.finditer(text):
            if (
                not any(s <= m.start() < e for s, e, _ in cards)
                and not _labelled_id(text, m.start())
                and _is_phone(m[0].strip(), regions, context)
            ):
                yield m.start(), m.end(), "phone"


def _labelled_id(text: str, start: int) -> bool:
    if _CARD_LABEL.search(text, max(0, start - 20), start):  # "card no 3418…" is a card
        return False
    return _ID_LABEL.search(text, max(0, start - 40), start) is not None


def find_pii(
    text: str, kinds: Iterable[str] = PII_KINDS, regions: Sequence[str] = DEFAULT_PHONE_REGIONS
) -> list[Span]:
    """Non-overlapping (start, end, kind) findings, earliest and longest first."""
    return non_overlapping(_spans(text, kinds, regions))


def _scan(text: str, kinds: Iterable[str], regions: Sequence[str]) -> list[Span]:
    return scan(lambda t: find_pii(t, kinds, regions), text)


def mask_pii(text: str) -> str:
    """``text`` with every e-mail, phone, card number and IBAN replaced by ``[EMAIL]`` etc."""
    spans = _scan(text, PII_KINDS, DEFAULT_PHONE_REGIONS)
    return mask(text, spans, MASKS.__getitem__) if spans else text


class PIIGuard:
    local = True  # CPU-only and fast: run inline, no task
    offline = False

    def __init__(self, cfg: PIIGuardConfig) -> None:
        self.name = cfg.name
        self.kinds = tuple(cfg.detect)
        self.regions = tuple(cfg.regions)

    def _scan(self, text: str) -> list[Span]:
        return _scan(text, self.kinds, self.regions)

    async def check(self, text: str, context: GuardContext) -> Verdict:
        spans = await off_loop_if_long(self._scan, text)
        masked = mask(text, spans, MASKS.__getitem__) if spans else text
        return findings_verdict(
            self.name, context, spans, category="pii", nothing="no PII found", redacted_text=masked
        )
