"""A Slack reply as it is shown: a stream where Slack allows it, else the placeholder, updated.

With ``[slack] stream_api = "auto"`` (the default) a streamed reply in a
thread uses Slack's streaming methods: the first released chunk starts a stream
(``chat.startStream``, which replaces the "thinking…" placeholder), later text
is appended (``chat.appendStream``) and ``chat.stopStream`` ends it, in
standard markdown made safe by :func:`markdown`. Otherwise (``"update"``; a
top-level DM, which has no thread to stream into; or Slack refusing to start a
stream) the placeholder itself is updated with ``chat.update``, in Slack's
mrkdwn. A refusal that says the app or workspace cannot stream turns streams
off for every later reply; any other refusal of the first ``chat.startStream``
moves only this reply to ``chat.update``, so a reply is never lost to a
method the workspace does not offer. Either way updates come at
most once per ``min_update_interval_s`` and a reply past ``max_message_chars``
continues in a new message (see :mod:`adapters.live`); a retraction replaces
what was shown, a stream by stopping it and updating it to the refusal (one
that cannot be shown by the last round deletes the reply). A streaming call
that Slack may have applied though it failed (a 5xx, no answer) is never sent
again: an append or stop is repaired by stopping the stream and updating its
message to the whole text (noted in :attr:`SlackMessages.repaired` for the
delivery record), and a start fails the reply. A reply
that was not streamed (``"off"``, or text shown whole) replaces the
placeholder, split as always.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from slack_sdk.errors import SlackApiError

from adapters.live import Restyled, Style, SurfaceError
from adapters.slack.post import DeliveryError, Poster, describe, unclear
from adapters.slack.text import escape, to_mrkdwn

log = logging.getLogger("guardbot.slack")


# Slack's answers meaning "this app (or workspace) cannot stream": use chat.update.
NO_STREAMS = {
    "unknown_method",
    "not_allowed",
    "not_allowed_token_type",
    "missing_scope",
    "method_deprecated",
}


def markdown(text: str) -> str:
    """A reply as ``markdown_text``: nothing pings (escaped) and no link hides its address.

    Slack shows a markdown link by its label, which may name another address
    than the one it opens; a space after the bracket of ``](``, ``][`` or
    ``]:`` means no link starts there, so the address shows as text. A text
    cut after ``]`` renders as a prefix of the whole, as streaming needs.
    """
    return re.sub(r"\](?=[(\[:])", "] ", escape(text))


class SlackMessages:
    """The :class:`adapters.live.Surface` of one reply: its messages in one thread."""

    def __init__(
        self,
        poster: Poster,
        channel: str,
        thread_ts: str,
        *,
        team_id: str = "",
        user_id: str = "",
    ) -> None:
        self.poster = poster
        self.channel = channel
        self.thread_ts = thread_ts
        self.team_id, self.user_id = team_id, user_id  # the asker, as streams in channels need
        self.ts: list[str] = []
        self.placeholder_ts: str | None = None
        self._placed = asyncio.Event()  # the placeholder was posted (or will not be)
        self._open: set[int] = set()  # messages whose stream is still open
        self._unsure: set[int] = set()  # a stream call may have been applied: update, never append
        self._lost: str | None = None  # a start may have been applied: the reply failed
        # Stream calls whose answer was lost, repaired by an update. The reply reads
        # right, so no round failed; the delivery record still says it happened.
        self.repaired: list[str] = []
        self._updates = Style(poster.limit, render=to_mrkdwn)
        self._stream = Style(poster.limit, render=markdown, close_open_fence=False)
        self._chosen: Style | None = None  # how this reply streams, once it does

    async def post_placeholder(self, text: str) -> None:
        """Post the progress message (runs beside the pipeline; the reply waits for it)."""
        try:
            self.placeholder_ts = await self.poster.placeholder(self.channel, self.thread_ts, text)
        finally:
            self._placed.set()

    def style(self, streamed: bool) -> Style:
        if not streamed:
            return self._updates
        if self._chosen is None:
            native = self.poster.streams and bool(self.thread_ts)
            self._chosen = self._stream if native else self._updates
        return self._chosen

    async def put(self, index: int, text: str, shown: str | None, *, sealed: bool) -> bool:
        await self._placed.wait()
        try:
            if self._chosen is self._stream:
                return await self._streamed(index, text, shown, sealed=sealed)
            return await self._updated(index, text, shown)
        except DeliveryError as exc:
            raise SurfaceError(str(exc)) from exc

    async def _updated(self, index: int, text: str, shown: str | None) -> bool:
        if text == shown:
            return False
        if shown is not None:
            self.ts[index] = await self.poster.replace(
                self.channel, self.thread_ts, self.ts[index], text
            )
        elif index == 0 and self.placeholder_ts:
            ts = await self.poster.replace(self.channel, self.thread_ts, self.placeholder_ts, text)
            self.ts.append(ts)
            self.placeholder_ts = None
        else:
            self.ts.append(await self.poster.post(self.channel, self.thread_ts, text))
        return True

    async def _streamed(self, index: int, text: str, shown: str | None, *, sealed: bool) -> bool:
        if self._lost is not None:  # a stream may have started unseen: a second one would double
            raise DeliveryError(self._lost)
        if shown is None:
            self.ts.append(await self._start(text))
            self._open.add(index)
            if self.placeholder_ts:  # the stream is the reply now
                placeholder, self.placeholder_ts = self.placeholder_ts, None
                await self._quietly_remove(placeholder)
            if sealed:  # a failed stop is left to settle(): raising would start it again
                try:
                    await self._stream_call(index, "chat.stopStream", text)
                except DeliveryError as exc:
                    log.warning("slack: %s; stopped at the end", exc)
                else:
                    self._open.discard(index)
            return True
        if not text.startswith(shown):  # a retraction: end the stream, then replace it
            await self._replace(index, text, retraction=sealed)
            return True
        if index in self._unsure:  # what it reads is unknown: never append to it again
            await self._replace(index, text)
            return True
        more = text[len(shown) :]
        if sealed:
            await self._stream_call(index, "chat.stopStream", text, more=more)
            self._open.discard(index)
            return True
        if not more:
            return False
        await self._stream_call(index, "chat.appendStream", text, more=more)
        return True

    async def _stream_call(self, index: int, method: str, text: str, *, more: str = "") -> None:
        """Append ``more`` (or stop) on message ``index``, which is to read ``text`` after.

        If Slack may have applied the call though it failed (a 5xx, no answer),
        the message reads ``text`` minus ``more`` or ``text``: it is stopped and
        updated to ``text``, so what shows stays a prefix of the released text,
        and the repair is noted in :attr:`repaired` (method and error, no text).
        """
        args = {"markdown_text": more} if more else {}
        try:
            await self._api(method, channel=self.channel, ts=self.ts[index], **args)
        except Exception as exc:
            why = describe(method, exc)
            if not unclear(exc):
                raise DeliveryError(why) from exc
            log.warning("slack: %s; Slack may have applied it: the message is updated", why)
            self._unsure.add(index)
            where = f" (message {index + 1})" if index else ""
            try:
                await self._replace(index, text)
            except DeliveryError as failed:  # the next round updates it again
                raise DeliveryError(f"{why}{where}; the repair failed: {failed}") from exc
            # "repaired" first: views clip a long line, and the method follows at once.
            self.repaired.append(f"repaired by an update: {why}{where} (Slack may have applied it)")

    async def _replace(self, index: int, text: str, *, retraction: bool = False) -> None:
        """Stop message ``index``'s stream (if open), then update it to ``text``.

        A ``retraction`` that cannot be shown on the last round deletes the
        reply's messages instead, so the retracted text does not stay up.
        """
        try:
            if index in self._open:
                await self._stop(index)
            await self._call(
                "chat.update", channel=self.channel, ts=self.ts[index], markdown_text=text
            )
        except DeliveryError as exc:
            if not retraction:
                raise
            gone = await self._delete_all()
            raise DeliveryError(f"{exc}; {gone}") from exc

    async def _delete_all(self) -> str:
        """Delete every message of the reply (a retraction that failed); says how that went."""
        failed = []
        for index in range(len(self.ts) - 1, -1, -1):
            try:
                await self.poster.remove(self.channel, self.ts[index])
            except DeliveryError as exc:
                failed.append(str(exc))
                continue
            self._open.discard(index)
        if failed:
            return "the retracted reply could not be deleted: " + "; ".join(failed)
        return "the retracted reply was deleted"

    async def _stop(self, index: int) -> None:
        """End message ``index``'s stream; it counts as open until Slack says it is not."""
        try:
            await self._api("chat.stopStream", channel=self.channel, ts=self.ts[index])
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            if error != "message_not_in_streaming_state":  # else: an earlier stop did it
                raise DeliveryError(describe("chat.stopStream", exc)) from exc
        except Exception as exc:
            raise DeliveryError(describe("chat.stopStream", exc)) from exc
        self._open.discard(index)

    async def _start(self, text: str) -> str:
        try:
            response = await self.poster.client.chat_startStream(
                channel=self.channel,
                thread_ts=self.thread_ts,
                markdown_text=text,
                recipient_team_id=self.team_id or None,
                recipient_user_id=self.user_id or None,
            )
        except Exception as exc:
            why = describe("chat.startStream", exc)
            answer = exc.response if isinstance(exc, SlackApiError) else None
            error = answer.get("error") if answer is not None else None
            if unclear(exc) or not error:
                # Slack may have started it: another stream or an update would be a second
                # reply, so this reply fails here (its placeholder is removed at the end).
                # A message it started is left as it is (Slack ends an idle stream itself):
                # chat.startStream takes no id of ours, and looking the thread up cannot
                # tell it from another reply of this bot starting there (a start still in
                # flight here, another instance), which must never be stopped or deleted.
                self._lost = f"{why} (the reply may have started; not sent again)"
                raise DeliveryError(self._lost) from exc
            if self.ts:  # a continuation: the reply already streams here, so retry it
                raise DeliveryError(why) from exc
            if error in NO_STREAMS:
                log.info("slack: streaming methods refused (%s); updating messages instead", error)
                self.poster.streams = False
            else:
                log.warning("slack: %s; this reply updates its message instead", why)
            self._chosen = self._updates
            raise Restyled from exc
        return str(response.get("ts") or "")

    async def _api(self, method: str, **args: Any) -> None:
        await self.poster.client.api_call(method, json=args)

    async def _call(self, method: str, **args: Any) -> None:
        try:
            await self._api(method, **args)
        except Exception as exc:
            raise DeliveryError(describe(method, exc)) from exc

    async def _quietly_remove(self, ts: str) -> None:
        try:
            await self.poster.remove(self.channel, ts)
        except DeliveryError as exc:
            log.warning("slack: placeholder not removed: %s", exc)

    async def remove(self, index: int) -> None:
        try:
            if index in self._open:
                await self._stop(index)
            await self.poster.remove(self.channel, self.ts[index])
        except DeliveryError as exc:
            raise SurfaceError(str(exc)) from exc
        del self.ts[index]

    async def settle(self, posted: bool) -> None:
        await self._placed.wait()
        if self.placeholder_ts:  # nothing replaced it (an empty reply, or every post failed)
            await self._quietly_remove(self.placeholder_ts)
            self.placeholder_ts = None
        for index in sorted(self._open):  # a last update failed: do not leave it "typing"
            try:
                await self._stop(index)
            except DeliveryError as exc:
                log.warning("slack: stream not stopped: %s", exc)
