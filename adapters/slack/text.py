"""Text between Slack's wire format and plain text, in both directions.

Slack escapes ``&``, ``<`` and ``>`` in what it sends and treats ``<...>`` in
what it receives as mentions and links, so an unescaped ``<!channel>`` in a
model's reply would ping a whole channel. Incoming text is unescaped (the
model sees what the user typed, minus the bot's own mention); outgoing text is
escaped first and only then given Slack's mrkdwn for the markdown models
write (bold, strike, headings, links, bullets), outside code.

A link's label is shown instead of its address, so ``[https://bank.example](https://evil.example)``
would show one address and open another. A label that names a host (a URL or
a bare domain, in any case, punycode or not) other than the target's is not
used: the link is posted as its real address.
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import urlsplit

from adapters.message_split import split_message

_FENCED_OR_CODE = re.compile(r"(```.*?```|`[^`\n]+`)", re.S)
# Emphasis never spans its own delimiter: each try stops at the next "**" (or "__",
# "~~") instead of scanning to the end of the line, so a reply of thousands of unclosed
# "**a " costs linear time, not seconds of a blocked event loop.
_BOLD = re.compile(
    r"\*\*(?=\S)((?:[^*\n]|\*(?!\*))+?)(?<=\S)\*\*|__(?=\S)((?:[^_\n]|_(?!_))+?)(?<=\S)__"
)
_STRIKE = re.compile(r"~~(?=\S)((?:[^~\n]|~(?!~))+?)(?<=\S)~~")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
_BULLET = re.compile(r"^([ \t]*)[*-][ \t]+", re.M)
# After escaping, a URL's "&" reads "&amp;", which Slack accepts inside <url|label>.
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s()|]+)\)")
# Where a label may name a host: runs of name characters, each read once (see _hosts_in).
_NAME_RUN = re.compile(r"[\w.-]+")
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})  # dots IDNA accepts


def from_slack(text: object, bot_user_id: str = "") -> str:
    """The text a user typed: the bot's own mention removed, Slack escapes undone."""
    if not isinstance(text, str):
        return ""
    if bot_user_id:
        # "[^<>]": a try stops at the next "<", so "<@U1|" repeated costs linear time.
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^<>]*)?>", " ", text)
    text = text.replace("\x00", "")
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def mentions(text: object, user_id: str) -> bool:
    return isinstance(text, str) and bool(user_id) and f"<@{user_id}" in text


def escape(text: str) -> str:
    """Make ``text`` literal in Slack: no mentions, no channel pings, no links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(text: str) -> str:
    """Escaped Slack mrkdwn for a (markdown) reply; code spans are left as they are."""
    parts = _FENCED_OR_CODE.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # code: escaped only, so it shows exactly as written
            out.append(escape(part))
            continue
        part = escape(part)
        part = _HEADING.sub(lambda m: f"*{m.group(1)}*", part)
        part = _BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", part)
        part = _STRIKE.sub(r"~\1~", part)
        part = _BULLET.sub(r"\1• ", part)
        part = _LINK.sub(lambda m: _link(m.group(2), m.group(1)), part)
        out.append(part)
    return "".join(out)


def _link(url: str, label: str) -> str:
    """``<url|label>``, or ``<url>`` when the label names another host than the URL's."""
    target = _host(urlsplit(url.replace("&amp;", "&")).hostname or "")
    named = {_host(name) for name in _hosts_in(label.translate(_DOTS))}
    if any(host != target for host in named):
        return f"<{url}>"
    return f"<{url}|{label}>"


def _hosts_in(label: str) -> list[str]:
    """Everything in ``label`` that reads as a host name ("x.example", "https://x.example/…").

    A dotted name is two or more labels of name characters, the last at least two
    long; a shorter last label is left off ("a.example.c" names "a.example"). Done
    by hand over runs, each character read once, because the backtracking pattern
    it replaces was quadratic on a long run ("a.a.a…", "aaaa…"): seconds of a
    blocked event loop for one hostile link.
    """
    hosts = []
    for run in _NAME_RUN.findall(label):
        name: list[str] = []
        for part in [*run.split("."), ""]:  # "" ends the last dotted name
            if part:
                name.append(part)
                continue
            while name and len(name[-1]) < 2:
                name.pop()
            if len(name) >= 2:
                hosts.append(".".join(name))
            name = []
    return hosts


def _host(name: str) -> str:
    """A host name as compared: lower case, punycode, no trailing dot or leading www."""
    name = name.lower().rstrip(".")
    with contextlib.suppress(UnicodeError):  # not a valid IDN: compared as written
        name = name.encode("idna").decode("ascii")
    return name.removeprefix("www.")


def slack_messages(text: str, limit: int) -> list[str]:
    """A reply as the Slack messages to post, each at most ``limit`` characters."""
    return split_message(to_mrkdwn(text), limit)
