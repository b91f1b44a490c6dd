"""Slack's wire text: what users typed in, and safe mrkdwn out."""

from __future__ import annotations

from adapters.slack.text import escape, from_slack, mentions, slack_messages, to_mrkdwn


def test_incoming_text_loses_the_bot_mention_and_slack_escapes() -> None:
    assert from_slack("<@UBOT> is 1 &lt; 2 &amp;&amp; 3 &gt; 2?", "UBOT") == "is 1 < 2 && 3 > 2?"
    assert from_slack("hey <@UBOT|guardbot>, ask <@U2>", "UBOT") == "hey , ask <@U2>"
    assert from_slack("&amp;lt; stays literal", "UBOT") == "&lt; stays literal"
    assert from_slack(None, "UBOT") == "" and from_slack(42, "UBOT") == ""
    assert from_slack("a\x00b", "UBOT") == "ab"
    assert mentions("hi <@UBOT>", "UBOT") and not mentions("hi <@U2>", "UBOT")
    assert not mentions(None, "UBOT")


def test_outgoing_text_cannot_mention_ping_or_link() -> None:
    for hostile in ("<!channel>", "<!here>", "<@U123>", "<#C1>", "<https://evil.example|bank>"):
        assert "<" not in escape(hostile) and ">" not in escape(hostile)
    assert escape("a & b") == "a &amp; b"


def test_markdown_becomes_mrkdwn_outside_code() -> None:
    text = "# Title\n**bold** and ~~gone~~\n* one\n- two\nsee [docs](https://x.example/a?b=1&c=2)"
    assert to_mrkdwn(text) == (
        "*Title*\n*bold* and ~gone~\n• one\n• two\nsee <https://x.example/a?b=1&amp;c=2|docs>"
    )
    code = "```\n**not bold** <tag> & [x](https://y.example)\n```"
    assert to_mrkdwn(code) == "```\n**not bold** &lt;tag&gt; &amp; [x](https://y.example)\n```"
    assert to_mrkdwn("use `**kwargs` here") == "use `**kwargs` here"
    assert to_mrkdwn("2 * 3 * 4") == "2 * 3 * 4"
    assert to_mrkdwn("[evil](javascript:alert(1))") == "[evil](javascript:alert(1))"


def test_long_replies_split_at_paragraphs_and_keep_code_blocks_valid() -> None:
    code = "```python\n" + "\n".join(f"x_{i} = {i}" for i in range(400)) + "\n```"
    text = "Intro paragraph.\n\n" + code + "\n\nOutro & done."
    parts = slack_messages(text, 1000)
    assert len(parts) > 3 and all(len(p) <= 1000 for p in parts)
    assert all(p.count("```") % 2 == 0 for p in parts)
    assert parts[0].startswith("Intro paragraph.\n\n```python") and parts[-1].endswith(
        "Outro &amp; done."
    )
    assert slack_messages("   ", 1000) == []


def test_a_link_label_cannot_show_another_address() -> None:
    target = "https://evil.example.net/phish"
    for label in (
        "https://good.example.com/login",
        "good.example.com",
        "GOOD.EXAMPLE.COM/login",
        "http://good.example.com",
        "log in at good.example.com now",
        "xn--gd-zia.example.com",  # punycode of an IDN
        "gööd.example.com",
        "good。example。com",  # ideographic full stops read as dots
        "evil.example.net.good.example.com",
        "<https://good.example.com|x>",
    ):
        posted = to_mrkdwn(f"[{label}]({target})")
        assert posted == f"<{target}>", label
    # the address really shown, and a label that names the same host, stay links with labels
    assert to_mrkdwn(f"[docs]({target})") == f"<{target}|docs>"
    assert to_mrkdwn(f"[EVIL.example.net]({target})") == f"<{target}|EVIL.example.net>"
    assert to_mrkdwn("[www.x.example/a](https://x.example/b)") == (
        "<https://x.example/b|www.x.example/a>"
    )
    # user info before "@" is not the host: the label must match evil.example.net
    tricky = "https://good.example.com@evil.example.net/"
    assert to_mrkdwn(f"[good.example.com]({tricky})") == f"<{tricky}>"
    # Slack's own link syntax written by the model stays literal text
    assert to_mrkdwn("<https://evil.example.net|https://good.example.com>") == (
        "&lt;https://evil.example.net|https://good.example.com&gt;"
    )
