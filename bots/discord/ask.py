"""`/ask <question>`: usable from guild and user installs, answered as the interaction's own response.

The command defers at once (ephemeral where the bot cannot post: a user install in a server without the bot, or a
private channel), records the question through the usual intake in a session of its own (target extra
`session=ask`), and the answer edits the deferred response. The interaction token lives 15 minutes and only in
memory: a later answer, or one after a restart, goes to the asker's DMs with a line naming the question; if that is
refused too, the error reaches core, which keeps the answer as undeliverable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import discord
from cachetools import LRUCache
from discord import app_commands

from bots.discord import format as fmt
from bots.discord import strings as msgs
from bots.discord.admin import conversation_channel
from bots.discord.translate import DM_WORKSPACE, PLATFORM, workspace_of
from core.models import Answer, Ignored, InboundMessage, MessagePlace, Notice, NoticeKind, Rejected, ReplyTarget
from core.ports import Inbound

__all__ = ["INTERACTION_LIFETIME", "AskReplies", "ask_command", "is_ask"]

log = logging.getLogger(__name__)

INTERACTION_LIFETIME = 15 * 60 - 30  # Discord's token lives 15 minutes; keep a margin for the posts themselves
REPLY, VIA_INTERACTION = "reply", "interaction"
QUESTION_EXCERPT = 80
_QUIET = (NoticeKind.IDLE_CLOSED, NoticeKind.ENDED)  # session housekeeping: not worth a DM once the token is gone
NO_PINGS = discord.AllowedMentions.none()


def is_ask(target: ReplyTarget) -> bool:
    """A question asked with `/ask`, whose answer belongs to its interaction (else the asker's DMs)."""
    return target.extra(REPLY) == VIA_INTERACTION


def _excerpt(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= QUESTION_EXCERPT else line[: QUESTION_EXCERPT - 1] + "…"


def private_here(interaction: discord.Interaction) -> bool:
    """Whether the bot cannot post in this channel: a private channel (group DM), or a server that has only a
    member's user install (`authorizing_integration_owners` has no guild install for it)."""
    if interaction.context.private_channel:
        return True
    return interaction.guild_id is not None and not interaction.is_guild_integration()


def ask_target(interaction: discord.Interaction, question: str, *, ephemeral: bool) -> ReplyTarget:
    """The question's target: the server's workspace where the bot is installed there, else the DM workspace."""
    channel_id, thread_id = conversation_channel(interaction)
    with_bot = interaction.guild_id is not None and interaction.is_guild_integration()
    return ReplyTarget(
        platform=PLATFORM, workspace_id=workspace_of(interaction.guild_id) if with_bot else DM_WORKSPACE,
        channel_id=str(channel_id), message_channel_id=str(thread_id or channel_id),
        message_id=str(interaction.id), user_id=str(interaction.user.id),
        thread_id=None if thread_id is None else str(thread_id), is_dm=not with_bot,
        extras=((REPLY, VIA_INTERACTION), ("session", "ask"), ("question", _excerpt(question)),
                ("ephemeral", "1" if ephemeral else "0")),
    )


@dataclass(slots=True)
class _Pending:
    """A deferred `/ask` still answerable through its interaction (token in memory only)."""

    interaction: discord.Interaction
    ephemeral: bool
    deadline: float


@dataclass(slots=True)
class _Posted:
    """What one answer already posted (chunk index → message id; -1 the DM's lead line), so retries skip it."""

    via: str
    ids: dict[int, str] = field(default_factory=dict)


class AskReplies:
    """Answers and notices of `/ask` questions: through the interaction while its token lives, else by DM."""

    def __init__(self, client: Callable[[], Awaitable[discord.Client]], *,
                 feedback_view: Callable[[], discord.ui.View] | None = None,
                 lifetime: float = INTERACTION_LIFETIME) -> None:
        self._client = client
        self._feedback_view = feedback_view
        self.lifetime = lifetime
        self._pending: dict[str, _Pending] = {}
        self._posted: LRUCache[str, _Posted] = LRUCache(maxsize=10_000)

    def hold(self, interaction: discord.Interaction, *, ephemeral: bool) -> None:
        """Remember a deferred interaction until its token is too old to use."""
        deadline = asyncio.get_running_loop().time() + self.lifetime
        self._pending[str(interaction.id)] = _Pending(interaction, ephemeral, deadline)
        now = asyncio.get_running_loop().time()
        for key in [k for k, p in self._pending.items() if p.deadline <= now]:
            del self._pending[key]

    def _live(self, target: ReplyTarget) -> _Pending | None:
        pending = self._pending.get(target.message_id)
        if pending is not None and pending.deadline <= asyncio.get_running_loop().time():
            del self._pending[target.message_id]
            log.info("/ask interaction=%s token expired; answering by DM", target.message_id)
            return None
        return pending

    async def post_answer(self, target: ReplyTarget, answer: Answer) -> list[str]:
        """Edit the deferred response (more chunks as follow-ups); once the token is gone, the asker's DMs."""
        chunks = fmt.answer_chunks(answer.text, answer.low_confidence_note)
        posted = self._posted.get(answer.delivery_key)
        pending = self._live(target)
        if posted is None or (posted.via == VIA_INTERACTION and pending is None):
            posted = _Posted(VIA_INTERACTION if pending is not None else "dm")
            self._posted[answer.delivery_key] = posted
        if posted.via == VIA_INTERACTION and pending is not None:
            try:
                ids = await self._through(pending, chunks, posted)
            except discord.HTTPException as exc:  # token refused (expired early, unknown): the DM then
                log.warning("/ask interaction=%s refused the answer (%s); answering by DM", target.message_id,
                            exc.code or exc.status)
                self._pending.pop(target.message_id, None)
                posted = self._posted[answer.delivery_key] = _Posted("dm")
            else:
                self._pending.pop(target.message_id, None)
                return ids
        return await self._by_dm(target, chunks, posted, answer.delivery_key)

    async def _through(self, pending: _Pending, chunks: list[str], posted: _Posted) -> list[str]:
        interaction = pending.interaction
        for index, chunk in enumerate(chunks):
            if index in posted.ids:
                continue
            view = self._view(index, chunks)
            extra = {} if view is None else {"view": view}
            if index == 0:
                sent = await interaction.edit_original_response(content=chunk, allowed_mentions=NO_PINGS, **extra)
            else:
                sent = await interaction.followup.send(chunk, ephemeral=pending.ephemeral, wait=True,
                                                       allowed_mentions=NO_PINGS, **extra)
            posted.ids[index] = str(sent.id)
        return [posted.ids[index] for index in range(len(chunks))]

    def _view(self, index: int, chunks: list[str]) -> discord.ui.View | None:
        return self._feedback_view() if index == len(chunks) - 1 and self._feedback_view is not None else None

    async def _by_dm(self, target: ReplyTarget, chunks: list[str], posted: _Posted, key: str) -> list[str]:
        """The lead line naming the question, then the answer; an error (DMs closed) goes to core to keep it."""
        client = await self._client()
        dm = await client.create_dm(discord.Object(int(target.user_id)))
        if -1 not in posted.ids:
            sent = await dm.send(msgs.ask_answer_in_dm(target.extra("question") or ""), allowed_mentions=NO_PINGS,
                                 nonce=fmt.nonce_for(f"{key}:ask-dm", -1))
            posted.ids[-1] = str(sent.id)
        for index, chunk in enumerate(chunks):
            if index in posted.ids:
                continue
            view = self._view(index, chunks)
            extra = {} if view is None else {"view": view}
            sent = await dm.send(chunk, allowed_mentions=NO_PINGS, nonce=fmt.nonce_for(f"{key}:ask-dm", index),
                                 **extra)
            posted.ids[index] = str(sent.id)
        log.info("/ask answer for interaction=%s sent by DM", target.message_id)
        return [posted.ids[index] for index in range(len(chunks))]

    async def post_notice(self, target: ReplyTarget, notice: Notice) -> None:
        """A notice in the deferred response; once the token is gone, by DM (session housekeeping is dropped)."""
        line = msgs.TEXT_ONLY if notice.kind is NoticeKind.TEXT_ONLY else fmt.neutralise_mentions(notice.text)
        pending = self._live(target)
        if pending is not None:
            try:
                await pending.interaction.edit_original_response(content=line, allowed_mentions=NO_PINGS)
                self._pending.pop(target.message_id, None)
                return
            except discord.HTTPException as exc:
                log.warning("/ask interaction=%s refused a notice (%s)", target.message_id, exc.code or exc.status)
                self._pending.pop(target.message_id, None)
        if notice.kind in _QUIET:
            log.info("/ask %s notice for interaction=%s not sent: the interaction is over", notice.kind.value,
                     target.message_id)
            return
        client = await self._client()
        dm = await client.create_dm(discord.Object(int(target.user_id)))
        await dm.send(f"{msgs.ask_answer_in_dm(target.extra('question') or '')}\n{line}", allowed_mentions=NO_PINGS)

    async def ask(self, relay: Inbound, interaction: discord.Interaction, question: str) -> None:
        """The command: defer, record through the usual intake, and say at once why it will not be answered."""
        ephemeral = private_here(interaction)
        await interaction.response.defer(ephemeral=ephemeral, thinking=True)
        self.hold(interaction, ephemeral=ephemeral)
        target = ask_target(interaction, question, ephemeral=ephemeral)
        with_bot = not target.is_dm
        msg = InboundMessage(target=target, text=question, event_key=f"ask-{interaction.id}",
                             place=MessagePlace.CHANNEL if with_bot else MessagePlace.DIRECT, mentioned=True)
        outcome = await relay.handle_message(msg)
        if isinstance(outcome, Ignored):  # the channel is `off` in this server: /ask is not a way around that
            self._pending.pop(str(interaction.id), None)
            await interaction.edit_original_response(content=msgs.ASK_OFF)
        elif isinstance(outcome, Rejected) and outcome.duplicate:  # no notice was posted for it
            self._pending.pop(str(interaction.id), None)
            await interaction.edit_original_response(content=msgs.COMMAND_FAILED)
        log.info("/ask interaction=%s guild=%s ephemeral=%s outcome=%s", interaction.id, interaction.guild_id,
                 ephemeral, type(outcome).__name__)


def ask_command(relay: Inbound, replies: AskReplies) -> app_commands.Command[None, ..., None]:
    """The top-level `/ask`, offered in guild and user installs: servers, the bot's DMs and private channels."""

    @app_commands.command(name="ask", description=msgs.DESCRIBE_ASK)
    @app_commands.describe(question=msgs.DESCRIBE_ASK_QUESTION)
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    async def ask(interaction: discord.Interaction, question: app_commands.Range[str, 1, 4000]) -> None:
        await replies.ask(relay, interaction, question)

    return ask
