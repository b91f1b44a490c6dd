"""Which Discord messages guardbot answers, and how one becomes a ChatRequest.

The rules are the ones Discord users expect: a DM or a mention (of the bot or
its managed role) is answered; so is a reply to the bot, any message in a
``reply_all_channels`` channel, and a follow-up in a thread the bot started.
Bots, webhooks and system messages are never answered (that includes the
bot's own messages, which Discord echoes back). ``[discord] channels``
limits all of it to an allow-list; a thread counts as its parent channel.

A conversation's history comes from the decision log, keyed by
``(channel_id, thread_id)``. So ``channel_id`` is the channel (a thread's
parent, so per-channel settings cover its threads) and ``thread_id`` names
the conversation: the thread's id; in a channel, the id of the first message
of the reply chain (a fresh mention starts a new conversation); "" in a DM,
where the whole DM is one conversation. A reply to someone else's message
carries that message as a quote inside the text, so the input guards screen
it too.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict

import discord

from adapters.discord.config import DiscordConfig
from adapters.discord.delivery import SEND_ERRORS
from middleware.masking import clean
from middleware.types import ChatRequest

log = logging.getLogger("guardbot.discord")

ANSWERED_TYPES = (discord.MessageType.default, discord.MessageType.reply)
MAX_CHAIN_HOPS = 8  # reply-chain walk bound; each uncached hop is one REST call
MAX_QUOTE_CHARS = 1500
_SPACES = re.compile(r"[ \t]{2,}")


def is_dm(channel: object) -> bool:
    return isinstance(channel, discord.DMChannel)


def home_channel_id(channel: object) -> int | None:
    """The channel a message counts as being in: a thread's parent, else itself."""
    if isinstance(channel, discord.Thread):
        return channel.parent_id
    return getattr(channel, "id", None)


def mentions_me(message: discord.Message, me: discord.ClientUser) -> bool:
    if any(user.id == me.id for user in message.mentions):
        return True
    own_role = message.guild.self_role if message.guild else None
    return own_role is not None and own_role in message.role_mentions


def replies_to_me(message: discord.Message, me: discord.ClientUser) -> bool:
    parent = message.reference.resolved if message.reference else None
    return isinstance(parent, discord.Message) and parent.author.id == me.id


def should_answer(message: discord.Message, me: discord.ClientUser, config: DiscordConfig) -> bool:
    author = message.author
    if author.bot or author.system or message.webhook_id is not None or author.id == me.id:
        return False
    if message.type not in ANSWERED_TYPES:
        return False
    channel = message.channel
    if is_dm(channel):
        return config.dms
    home = str(home_channel_id(channel))
    allowed = config.channels
    if allowed is not None and home not in allowed and str(channel.id) not in allowed:
        return False
    if mentions_me(message, me) or replies_to_me(message, me):
        return True
    if home in config.reply_all_channels or str(channel.id) in config.reply_all_channels:
        return True
    return (
        config.follow_threads and isinstance(channel, discord.Thread) and channel.owner_id == me.id
    )


def _mention_as(text: str, user_id: int, shown: str) -> str:
    # Plain replacement, never re.sub: a display name is user text, and a backslash in a
    # regex replacement is an escape ("\q" is an error: the message went unanswered).
    return text.replace(f"<@{user_id}>", shown).replace(f"<@!{user_id}>", shown)


def message_text(message: discord.Message, me: discord.ClientUser) -> str:
    """The message as the model should read it: own mention removed, others as names."""
    text = message.content
    own_role = message.guild.self_role if message.guild else None
    text = _mention_as(text, me.id, " ")
    if own_role is not None:
        text = text.replace(f"<@&{own_role.id}>", " ")
    for user in message.mentions:
        text = _mention_as(text, user.id, f"@{user.display_name}")
    for role in message.role_mentions:
        text = text.replace(f"<@&{role.id}>", f"@{role.name}")
    for channel in message.channel_mentions:
        text = text.replace(f"<#{channel.id}>", f"#{channel.name}")
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n")).strip()


class Conversations:
    """Maps message ids to the conversation (``thread_id``) they belong to.

    Remembering the bot's own replies makes the common case, a user replying
    to the bot, free; otherwise the reply chain is walked through the message
    cache and, at most ``MAX_CHAIN_HOPS`` times, the REST API.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._roots: OrderedDict[int, str] = OrderedDict()

    def remember(self, message_id: int, root: str) -> None:
        self._roots[message_id] = root
        self._roots.move_to_end(message_id)
        while len(self._roots) > self.capacity:
            self._roots.popitem(last=False)

    def known(self, message_id: int) -> str | None:
        return self._roots.get(message_id)

    async def root_of(self, message: discord.Message) -> str:
        current = message
        for _ in range(MAX_CHAIN_HOPS):
            ref = current.reference
            if ref is None or ref.message_id is None or not _is_reply(ref, message.channel.id):
                break
            if (root := self.known(ref.message_id)) is not None:
                return root
            parent = await _parent(current, ref)
            if parent is None:
                return str(ref.message_id)  # deleted or unreadable: start from it
            current = parent
        return str(current.id)


def _is_reply(ref: discord.MessageReference, channel_id: int) -> bool:
    """A reply in the same channel (not a forward, which also carries a reference)."""
    return ref.type is discord.MessageReferenceType.default and ref.channel_id == channel_id


async def _parent(
    message: discord.Message, ref: discord.MessageReference
) -> discord.Message | None:
    if isinstance(ref.resolved, discord.Message):
        return ref.resolved
    if ref.cached_message is not None:
        return ref.cached_message
    if isinstance(ref.resolved, discord.DeletedReferencedMessage):
        return None
    try:
        return await message.channel.fetch_message(ref.message_id)  # type: ignore[arg-type]
    except SEND_ERRORS as exc:  # an unreadable parent must not cost the reply
        log.debug("reply chain: cannot fetch %s: %r", ref.message_id, exc)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # nor a malformed one
        log.warning("reply chain: message %s is malformed (%r)", ref.message_id, exc)
    return None


def quoted_parent(message: discord.Message, me: discord.ClientUser) -> str:
    """A reply to someone else's message: that message as a one-line quote."""
    parent = message.reference.resolved if message.reference else None
    if not isinstance(parent, discord.Message) or parent.author.id == me.id:
        return ""
    quote = " ".join(message_text(parent, me).split())
    if not quote:
        return ""
    if len(quote) > MAX_QUOTE_CHARS:
        quote = quote[: MAX_QUOTE_CHARS - 1] + "…"
    return f"[replying to {parent.author.display_name}: {quote}]\n"


async def to_request(
    message: discord.Message,
    me: discord.ClientUser,
    conversations: Conversations,
    *,
    thread: discord.Thread | None = None,
) -> ChatRequest:
    """The ChatRequest for ``message``; ``thread`` is one the bot just started for it."""
    channel = thread or message.channel
    if is_dm(channel):
        channel_id, thread_id = str(channel.id), ""
    elif isinstance(channel, discord.Thread):
        channel_id, thread_id = str(channel.parent_id), str(channel.id)
    else:
        channel_id, thread_id = str(channel.id), await conversations.root_of(message)
    conversations.remember(message.id, thread_id)
    text = message_text(message, me)
    if quote := quoted_parent(message, me):
        text = quote + text
    return ChatRequest(
        platform="discord",
        channel_id=channel_id,
        thread_id=thread_id,
        user_id=str(message.author.id),
        user_name=clean(message.author.display_name),  # stored as is: no lone surrogates
        message_id=str(message.id),
        text=text,
    )
