"""Discord as a ChatPlatform: answers and notices into threads (created lazily from the question), typing."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import discord
from cachetools import LRUCache

from bots.discord import format as fmt
from bots.discord import strings as msgs
from bots.discord.ask import INTERACTION_LIFETIME, AskReplies, is_ask
from bots.discord.forum import ForumTags, SettingsOf
from bots.discord.translate import PLATFORM
from core.models import Answer, Notice, NoticeKind, ReplyTarget

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["NO_PINGS", "DiscordAdapter"]

log = logging.getLogger(__name__)

THREAD_EXISTS = 160004  # "A thread has already been created for this message"
CANNOT_THREAD = 50024  # "Cannot execute action on this channel type"
THREAD_ARCHIVED = 50083  # "Thread is archived": the bot may unarchive it unless it is locked
THREAD_LOCKED = 160005  # "Thread is locked"
NOT_TEXT = 50008  # "Cannot send messages in a non-text channel" (a forum post's parent)
NO_PINGS = discord.AllowedMentions.none()


@dataclass(frozen=True, slots=True)
class _Dest:
    """Where to post: a channel or thread id, and the message to reply to when answering in place."""

    channel_id: int
    reply_to: int | None = None


@dataclass(slots=True)
class _Moved:
    """Where an answer went when its thread refused it: the parent channel, else the asker's DMs."""

    channel_id: int
    kind: str  # "channel" or "dm"
    lead: str
    reply_to: int | None = None
    is_dm: bool = False
    posted: dict[int, str] = field(default_factory=dict)  # chunk index (-1: the lead) -> message id


def _closed(exc: discord.HTTPException) -> bool:
    """The place refuses for good (deleted, no access, archived, locked), as opposed to a passing failure."""
    return isinstance(exc, (discord.Forbidden, discord.NotFound)) or exc.code in (THREAD_ARCHIVED, THREAD_LOCKED,
                                                                                   NOT_TEXT)


class DiscordAdapter:
    """Posts answers and notices into threads (created lazily from the question), keeps typing alive."""

    platform = PLATFORM
    feedback_emoji = (("👍",), ("👎",))

    def __init__(self, *, feedback_view: Callable[[], discord.ui.View] | None = None,
                 typing_interval: float = 8.0, typing_limit: float = 180.0, ready_timeout: float = 60.0,
                 settings_of: SettingsOf | None = None, ask_lifetime: float = INTERACTION_LIFETIME) -> None:
        self._client: discord.Client | None = None
        self.ask = AskReplies(self.client, feedback_view=feedback_view, lifetime=ask_lifetime)  # `/ask` answers
        self._forum = ForumTags(settings_of)
        self._ready = asyncio.Event()
        self._feedback_view = feedback_view
        self._typing_interval = typing_interval  # Discord shows typing for ~10 s per call
        self._typing_limit = typing_limit
        self._ready_timeout = ready_timeout
        self._typing: dict[str, asyncio.Task[None]] = {}
        self._dests: LRUCache[str, _Dest] = LRUCache(maxsize=10_000)
        self._moved: LRUCache[str, _Moved] = LRUCache(maxsize=10_000)  # delivery_key -> where the answer went

    def attach(self, client: discord.Client | None) -> None:
        """Use this connected client (None while disconnected: deliveries wait for the next one)."""
        self._client = client
        if client is None:
            self._ready.clear()
        else:
            self._ready.set()

    async def client(self) -> discord.Client:
        """The live client, waiting for it after a restart so recovered answers are not lost."""
        if self._client is None:
            async with asyncio.timeout(self._ready_timeout):
                await self._ready.wait()
        assert self._client is not None
        return self._client

    async def aclose(self) -> None:
        """Stop every typing loop."""
        for task in self._typing.values():
            task.cancel()
        await asyncio.gather(*self._typing.values(), return_exceptions=True)
        self._typing.clear()

    # ---- where answers go ----

    def _remember(self, key: str, dest: _Dest) -> _Dest:
        self._dests[key] = dest
        return dest

    async def destination(self, target: ReplyTarget, *, create: bool = True) -> _Dest:
        """The answer's channel; a top-level channel question gets a thread whose id is the message id."""
        if target.is_dm or target.thread_id is not None:
            return _Dest(int(target.message_channel_id))
        known = self._dests.get(target.message_id)
        if known is not None:
            return known
        client = await self.client()
        thread_id = int(target.message_id)
        if client.get_channel(thread_id) is not None:
            return self._remember(target.message_id, _Dest(thread_id))
        in_place = _Dest(int(target.message_channel_id), reply_to=int(target.message_id))
        if not create:
            return in_place
        name = target.extra("thread_name") or msgs.thread_fallback_name("someone")
        try:
            await client.http.start_thread_with_message(int(target.message_channel_id), thread_id, name=name,
                                                        auto_archive_duration=1440)
        except discord.HTTPException as exc:
            if exc.code == THREAD_EXISTS:
                return self._remember(target.message_id, _Dest(thread_id))
            if isinstance(exc, discord.Forbidden) or exc.code == CANNOT_THREAD:
                log.warning("cannot start a thread in channel=%s (%s); answering in place",
                            target.message_channel_id, exc.code)
                return self._remember(target.message_id, in_place)
            raise
        log.info("thread started channel=%s thread=%s", target.message_channel_id, thread_id)
        return self._remember(target.message_id, _Dest(thread_id))

    async def _send(self, target: ReplyTarget, dest: _Dest, text: str, *, view: discord.ui.View | None = None,
                    nonce: str | None = None, mentions: discord.AllowedMentions = NO_PINGS) -> discord.Message:
        client = await self.client()
        guild_id = None if target.is_dm else int(target.workspace_id)
        channel = client.get_partial_messageable(dest.channel_id, guild_id=guild_id)
        reference = None
        if dest.reply_to is not None:
            reference = discord.MessageReference(message_id=dest.reply_to, channel_id=dest.channel_id,
                                                 fail_if_not_exists=False)
        kwargs: dict[str, object] = {"allowed_mentions": mentions, "nonce": nonce, "reference": reference}
        if view is not None:
            kwargs["view"] = view
        return await channel.send(text, **kwargs)  # type: ignore[arg-type]

    # ---- ChatPlatform ----

    async def show_working(self, target: ReplyTarget) -> None:
        """Open the thread now (core calls this only once an answer is late) and keep typing alive until cleared."""
        if is_ask(target):  # the deferred response already shows "thinking…"
            return
        dest = await self.destination(target)
        client = await self.client()
        key = target.message_id
        self._stop_typing(key)
        task = asyncio.create_task(self._keep_typing(client, dest.channel_id), name=f"discord-typing-{key}")
        self._typing[key] = task
        task.add_done_callback(lambda done: self._typing.pop(key) if self._typing.get(key) is done else None)

    async def _keep_typing(self, client: discord.Client, channel_id: int) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + self._typing_limit  # never type forever if clear_working is missed
        try:
            while loop.time() < until:
                await client.http.send_typing(channel_id)
                await asyncio.sleep(self._typing_interval)
        except Exception as exc:  # cosmetic: a failed typing call must never surface anywhere
            log.debug("typing in channel=%s stopped: %s", channel_id, type(exc).__name__)

    def _stop_typing(self, key: str) -> None:
        task = self._typing.pop(key, None)
        if task is not None:
            task.cancel()

    async def clear_working(self, target: ReplyTarget) -> None:
        """Stop typing (Discord clears the indicator itself when the answer is posted)."""
        self._stop_typing(target.message_id)

    async def post_answer(self, target: ReplyTarget, answer: Answer, *, recovering: bool = False) -> list[str]:
        """Post the answer in ≤2,000-char chunks pinging nobody; buttons on the last; nonces stop re-posts.

        An archived thread is unarchived where the bot may; a thread that stays closed (locked, deleted, no
        permission) moves the answer to its channel as a reply to the question, else to the asker's DMs.
        """
        if is_ask(target):
            return await self.ask.post_answer(target, answer)
        self._stop_typing(target.message_id)  # a typing call after the answer would show typing again
        chunks = fmt.answer_chunks(answer.text, answer.low_confidence_note)
        moved = self._moved.get(answer.delivery_key)
        if moved is None:
            dest = await self.destination(target)
            try:
                ids = await self._post_chunks(target, dest, chunks, answer.delivery_key)
            except discord.HTTPException as exc:
                moved = await self._move(target, dest, exc)
                self._moved[answer.delivery_key] = moved
            else:
                if recovering:
                    log.info("answer re-posted after an interrupted delivery channel=%s", dest.channel_id)
                if target.thread_id is not None:
                    await self._forum.mark(await self.client(), target, "answered", dest.channel_id)
                return ids
        while True:
            try:
                return await self._post_moved(target, moved, chunks, answer.delivery_key)
            except discord.HTTPException as exc:
                moved = await self._move(target, moved, exc)
                self._moved[answer.delivery_key] = moved

    async def _post_chunks(self, target: ReplyTarget, dest: _Dest, chunks: list[str], key: str) -> list[str]:
        """Chunks into the thread; an archived thread is unarchived once (if the bot may) and the post retried."""
        ids: list[str] = []
        unarchived = False
        while len(ids) < len(chunks):
            index = len(ids)
            view = self._feedback_view() if index == len(chunks) - 1 and self._feedback_view is not None else None
            try:
                sent = await self._send(target, dest, chunks[index], view=view, nonce=fmt.nonce_for(key, index))
            except discord.HTTPException as exc:
                if exc.code != THREAD_ARCHIVED or unarchived or not await self._unarchive(dest.channel_id):
                    raise
                unarchived = True
                continue
            ids.append(str(sent.id))
        return ids

    async def _unarchive(self, thread_id: int) -> bool:
        """Reopen an archived thread; Discord allows it to anyone who may send there unless it is locked."""
        try:
            await (await self.client()).http.edit_channel(thread_id, archived=False)
        except discord.HTTPException as exc:
            log.info("could not unarchive thread=%s (%s)", thread_id, exc.code or exc.status)
            return False
        log.info("unarchived thread=%s to answer in it", thread_id)
        return True

    async def _move(self, target: ReplyTarget, failed: _Dest | _Moved, exc: discord.HTTPException) -> _Moved:
        """The next place after `failed` refused for good: the parent channel, then the asker's DMs; else raise."""
        if not _closed(exc) or target.is_dm or (isinstance(failed, _Moved) and failed.kind == "dm"):
            raise exc
        link = fmt.jump_link(target.workspace_id, int(target.message_channel_id), int(target.message_id))
        parent = int(target.channel_id)
        if isinstance(failed, _Dest) and failed.channel_id != parent:
            log.warning("thread=%s refused the answer (%s); answering in channel=%s", failed.channel_id,
                        exc.code or exc.status, parent)
            reply_to = int(target.message_id) if target.thread_id is None else None
            return _Moved(parent, "channel", msgs.answer_in_channel(target.user_id, link), reply_to=reply_to)
        log.warning("channel=%s refused the answer (%s); sending it to the asker by DM",
                    getattr(failed, "channel_id", "?"), exc.code or exc.status)
        dm = await (await self.client()).create_dm(discord.Object(int(target.user_id)))
        return _Moved(dm.id, "dm", msgs.answer_in_dm(link), is_dm=True)

    async def _post_moved(self, target: ReplyTarget, moved: _Moved, chunks: list[str], key: str) -> list[str]:
        """The lead line and every chunk at the new place, skipping what this process already posted there."""
        place = replace(target, is_dm=moved.is_dm)
        if -1 not in moved.posted:
            asker = discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(int(target.user_id))])
            sent = await self._send(place, _Dest(moved.channel_id, moved.reply_to), moved.lead,
                                    nonce=fmt.nonce_for(f"{key}:{moved.kind}", -1), mentions=asker)
            moved.posted[-1] = str(sent.id)
        for index, chunk in enumerate(chunks):
            if index not in moved.posted:
                last = index == len(chunks) - 1
                view = self._feedback_view() if last and self._feedback_view is not None else None
                sent = await self._send(place, _Dest(moved.channel_id), chunk, view=view,
                                        nonce=fmt.nonce_for(f"{key}:{moved.kind}", index))
                moved.posted[index] = str(sent.id)
        return [moved.posted[index] for index in range(len(chunks))]

    async def post_notice(self, target: ReplyTarget, notice: Notice) -> None:
        """A short line in the conversation; a refused question is answered in place instead of a new thread.

        Like answers, a notice the thread refuses for good goes to the channel, else to the asker's DMs.
        """
        if is_ask(target):
            await self.ask.post_notice(target, notice)
            return
        rejected = notice.kind in (NoticeKind.EMPTY, NoticeKind.TOO_LONG, NoticeKind.TEXT_ONLY)
        dest: _Dest | _Moved = await self.destination(target, create=not rejected)
        self._stop_typing(target.message_id)
        line = msgs.TEXT_ONLY if notice.kind is NoticeKind.TEXT_ONLY else fmt.neutralise_mentions(notice.text)
        while True:
            try:
                if isinstance(dest, _Dest):
                    await self._send(target, dest, line)
                else:
                    asker = discord.AllowedMentions(everyone=False, roles=False,
                                                    users=[discord.Object(int(target.user_id))])
                    await self._send(replace(target, is_dm=dest.is_dm), _Dest(dest.channel_id, dest.reply_to),
                                     f"{dest.lead}\n{line}", mentions=asker)
                return
            except discord.HTTPException as exc:
                dest = await self._move(target, dest, exc)

    async def user_email(self, workspace_id: str, user_id: str) -> str | None:
        """Bots cannot see members' email addresses here."""
        return None

    async def escalate(self, target: ReplyTarget, escalation_target: str, answer_message_id: str, *,
                       requested_by: str | None = None) -> None:
        """Ping the configured role/user in the thread, or post a jump link in the configured channel; with
        `requested_by` ("Talk to a human") worded as a request for a person rather than a bad rating."""
        await self._escalate(target, escalation_target, answer_message_id, human=requested_by is not None)

    async def _escalate(self, target: ReplyTarget, escalation_target: str, answer_message_id: str, *,
                        human: bool) -> None:
        client = await self.client()
        parsed = fmt.escalation_of(escalation_target)
        if parsed is None or target.is_dm:
            log.warning("escalation target %r is not a Discord role, user or channel", escalation_target[:40])
            return
        kind, ident = parsed
        if kind == "id":  # a bare id: find out what it names
            guild = client.get_guild(int(target.workspace_id))
            kind = "channel" if client.get_channel(ident) else "role" if guild and guild.get_role(ident) else "user"
        ask = is_ask(target)  # an `/ask` answer sits in the channel itself (its message id is no thread)
        dest = _Dest(int(target.message_channel_id)) if ask else _Dest((await self.destination(target)).channel_id)
        link = fmt.jump_link(target.workspace_id, dest.channel_id, int(answer_message_id))
        in_thread = msgs.human_in_thread if human else msgs.escalation_in_thread
        if kind == "channel":
            in_channel = msgs.human_in_channel if human else msgs.escalation_in_channel
            await self._send(target, _Dest(ident), in_channel(link))
        elif kind == "role":
            allowed = discord.AllowedMentions(everyone=False, users=False, roles=[discord.Object(ident)])
            await self._send(target, dest, in_thread(f"<@&{ident}>", link), mentions=allowed)
        else:
            allowed = discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(ident)])
            await self._send(target, dest, in_thread(f"<@{ident}>", link), mentions=allowed)
        if target.thread_id is not None and not ask:
            await self._forum.mark(client, target, "escalated", dest.channel_id)
