"""discord.py objects as core's neutral types: pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import discord

from bots.discord import format as fmt
from core.models import FeedbackEvent, InboundMessage, MessagePlace, Rating, ReplyTarget

__all__ = [
    "DM_WORKSPACE",
    "PLATFORM",
    "Place",
    "bot_roles",
    "button_feedback",
    "forwarded_content",
    "is_ignorable",
    "mentions_bot",
    "place_of",
    "reaction_feedback",
    "to_inbound",
    "workspace_of",
]

PLATFORM = "discord"
DM_WORKSPACE = "dm"
USER_MESSAGE_TYPES = (discord.MessageType.default, discord.MessageType.reply)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a message sits for conversation purposes: its kind and the ids a ReplyTarget needs."""

    kind: Literal["dm", "channel", "thread", "forum_post"]
    workspace_id: str
    channel_id: int  # the conversation's channel: a thread's parent
    message_channel_id: int
    thread_id: int | None


def workspace_of(guild_id: int | None) -> str:
    """Settings and sessions are per guild; all DMs share one 'dm' workspace."""
    return DM_WORKSPACE if guild_id is None else str(guild_id)


def is_ignorable(message: discord.Message) -> bool:
    """Bots (the bot itself included), webhooks and system messages never start a question."""
    return message.author.bot or message.webhook_id is not None or message.type not in USER_MESSAGE_TYPES


def bot_roles(message: discord.Message, bot_id: int) -> tuple[int, ...]:
    """Ids of the bot's managed role mentioned in the message (people often pick it from the @ menu)."""
    return tuple(r.id for r in message.role_mentions if r.tags is not None and r.tags.bot_id == bot_id)


def mentions_bot(message: discord.Message, bot_id: int) -> bool:
    """A direct mention of the bot or of its managed role; @everyone/@here and other roles do not count."""
    return any(user.id == bot_id for user in message.mentions) or bool(bot_roles(message, bot_id))


def forwarded_content(message: discord.Message) -> tuple[str, bool]:
    """What a forwarded message carries (Discord sends it in `message_snapshots`, the forward's own content
    empty): the forwarded text, and whether it brought attachments or stickers."""
    texts = [snap.content.strip() for snap in message.message_snapshots if snap.content.strip()]
    files = any(snap.attachments or snap.stickers for snap in message.message_snapshots)
    return "\n\n".join(texts), files


def place_of(message: discord.Message, channel: object) -> Place | None:
    """Classify a message's (resolved) channel; None for channels the bot does not talk in (voice chat, …)."""
    if isinstance(channel, discord.DMChannel):
        return Place("dm", DM_WORKSPACE, channel.id, channel.id, None)
    guild_id = message.guild.id if message.guild is not None else getattr(channel, "guild_id", None)
    if guild_id is None:
        return None
    workspace = workspace_of(guild_id)
    if isinstance(channel, discord.Thread):
        parent_id = channel.parent_id
        if isinstance(channel.parent, discord.ForumChannel):
            kind: Literal["thread", "forum_post"] = "forum_post" if message.id == channel.id else "thread"
        else:
            kind = "thread"
        return Place(kind, workspace, parent_id, channel.id, channel.id)
    if isinstance(channel, discord.TextChannel):
        return Place("channel", workspace, channel.id, channel.id, None)
    return None


_PLACES = {"dm": MessagePlace.DIRECT, "channel": MessagePlace.CHANNEL, "thread": MessagePlace.THREAD,
           "forum_post": MessagePlace.FORUM_POST}


def to_inbound(message: discord.Message, place: Place, text: str, *, mentioned: bool = False,
               attachments_only: bool = False) -> InboundMessage:
    """The neutral message; event_key is the message id, so gateway replays after RESUME de-duplicate."""
    extras: tuple[tuple[str, str], ...] = ()
    if place.kind == "channel":
        extras = (("thread_name", fmt.thread_name(text, message.author.display_name)),)
    target = ReplyTarget(
        platform=PLATFORM, workspace_id=place.workspace_id, channel_id=str(place.channel_id),
        message_channel_id=str(place.message_channel_id), message_id=str(message.id),
        user_id=str(message.author.id), thread_id=None if place.thread_id is None else str(place.thread_id),
        is_dm=place.kind == "dm", extras=extras,
    )
    return InboundMessage(target=target, text=text, event_key=str(message.id), place=_PLACES[place.kind],
                          mentioned=mentioned, attachments_only=attachments_only)


def reaction_feedback(payload: discord.RawReactionActionEvent) -> FeedbackEvent:
    """A raw reaction (the message may not be cached) as feedback; core maps the emoji name to a rating."""
    return FeedbackEvent(
        platform=PLATFORM, workspace_id=workspace_of(payload.guild_id), message_id=str(payload.message_id),
        user_id=str(payload.user_id), source="reaction", emoji=payload.emoji.name or str(payload.emoji),
    )


def button_feedback(interaction: discord.Interaction, rating: Rating | None) -> FeedbackEvent:
    """A 👍/👎 button click on an answer as feedback; the clicked message is the rated answer."""
    message_id = interaction.message.id if interaction.message is not None else 0
    return FeedbackEvent(
        platform=PLATFORM, workspace_id=workspace_of(interaction.guild_id), message_id=str(message_id),
        user_id=str(interaction.user.id), source="button", rating=rating,
    )
