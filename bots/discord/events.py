"""Inbound Discord events: which messages become questions, and reactions/buttons that become feedback."""

from __future__ import annotations

import logging

import discord

from bots.discord import format as fmt
from bots.discord import strings as msgs
from bots.discord.outbound import DiscordAdapter
from bots.discord.translate import (
    bot_roles,
    button_feedback,
    forwarded_content,
    is_ignorable,
    mentions_bot,
    place_of,
    reaction_feedback,
    to_inbound,
)
from core.models import HumanRequest, Rating
from core.ports import Inbound
from core.supervisor import TaskSupervisor
from core.text import is_blank

__all__ = ["DiscordEvents", "FeedbackButtons"]

log = logging.getLogger(__name__)

GOOD_ID = "uppzy:fb:good"
BAD_ID = "uppzy:fb:bad"
HUMAN_ID = "uppzy:human"


class FeedbackButtons(discord.ui.View):
    """👍/👎 and "Talk to a human" under every answer; fixed custom ids so clicks on answers from before a restart
    still work."""

    def __init__(self, events: DiscordEvents | None = None) -> None:
        super().__init__(timeout=None)
        self._events = events

    @classmethod
    def rendered(cls) -> FeedbackButtons:
        """A stopped copy used only to render the buttons, so discord.py keeps no per-message view."""
        view = cls()
        view.stop()
        return view

    @discord.ui.button(label=msgs.BUTTON_GOOD, emoji="👍", style=discord.ButtonStyle.secondary, custom_id=GOOD_ID)
    async def good(self, interaction: discord.Interaction, button: discord.ui.Button[FeedbackButtons]) -> None:
        """Rate the clicked answer good."""
        if self._events is not None:
            await self._events.on_button(interaction, "good")

    @discord.ui.button(label=msgs.BUTTON_BAD, emoji="👎", style=discord.ButtonStyle.secondary, custom_id=BAD_ID)
    async def bad(self, interaction: discord.Interaction, button: discord.ui.Button[FeedbackButtons]) -> None:
        """Rate the clicked answer bad."""
        if self._events is not None:
            await self._events.on_button(interaction, "bad")

    @discord.ui.button(label=msgs.BUTTON_HUMAN, emoji="🙋", style=discord.ButtonStyle.secondary, custom_id=HUMAN_ID)
    async def human(self, interaction: discord.Interaction, button: discord.ui.Button[FeedbackButtons]) -> None:
        """Ask for a person: escalate like 👎 and tell the clicker privately who was notified."""
        if self._events is not None:
            await self._events.on_human(interaction)


class DiscordEvents:
    """Translates messages, reactions and buttons for core; core's router decides which messages to answer."""

    def __init__(self, relay: Inbound, adapter: DiscordAdapter) -> None:
        self.relay = relay
        self.adapter = adapter
        self._handlers = TaskSupervisor("discord-events")
        self._tracked = self._handlers.track

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for event handlers still running, e.g. a question being recorded."""
        await self._handlers.drain(timeout)

    async def on_message(self, client: discord.Client, message: discord.Message) -> None:
        """Turn a triggering message into a question; everything else is ignored quietly."""
        with self._tracked():
            await self._on_message(client, message)

    async def _on_message(self, client: discord.Client, message: discord.Message) -> None:
        if client.user is None or is_ignorable(message):
            return
        bot_id = client.user.id
        channel: object = message.channel
        if isinstance(channel, discord.PartialMessageable) and channel.guild_id is not None:
            try:  # a thread discord.py has not cached: its parent decides everything
                channel = await client.fetch_channel(channel.id)
            except discord.HTTPException:
                log.warning("message in unknown channel=%s ignored", message.channel.id)
                return
        place = place_of(message, channel)
        if place is None:
            return
        roles = bot_roles(message, bot_id)
        text = fmt.question_text(message.content, bot_id, roles)
        forwarded, forwarded_files = forwarded_content(message)
        if forwarded:  # a forward is asked about: the forwarded text (after any words of the sender's own)
            forwarded = fmt.question_text(forwarded, bot_id, roles)
            text = forwarded if is_blank(text) else f"{text}\n\n{forwarded}"
        files = bool(message.attachments or message.stickers or message.message_snapshots) or forwarded_files
        inbound = to_inbound(message, place, text, mentioned=mentions_bot(message, bot_id),
                             attachments_only=is_blank(text) and files)
        outcome = await self.relay.handle_message(inbound)
        log.debug("message=%s place=%s outcome=%s", message.id, place.kind, type(outcome).__name__)

    async def on_reaction(self, client: discord.Client, payload: discord.RawReactionActionEvent) -> None:
        """A reaction on one of the bot's messages becomes feedback; the relay decides if it counts."""
        with self._tracked():
            await self._on_reaction(client, payload)

    async def _on_reaction(self, client: discord.Client, payload: discord.RawReactionActionEvent) -> None:
        bot_id = client.user.id if client.user is not None else None
        if payload.user_id == bot_id:
            return
        if payload.message_author_id is not None and payload.message_author_id != bot_id:
            return  # not on our message: skip the store lookup
        result = await self.relay.handle_feedback(reaction_feedback(payload))
        log.debug("reaction on message=%s outcome=%s", payload.message_id, result.outcome.value)

    async def on_button(self, interaction: discord.Interaction, rating: Rating) -> None:
        """A 👍/👎 click: record it and thank (or explain) privately to the clicker."""
        with self._tracked():
            await self._on_button(interaction, rating)

    async def _on_button(self, interaction: discord.Interaction, rating: Rating) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # Uppzy may take longer than 3 s
        try:
            result = await self.relay.handle_feedback(button_feedback(interaction, rating))
            text = result.message or msgs.FEEDBACK_UNKNOWN
        except Exception:
            log.exception("button feedback on message=%s failed",
                          interaction.message.id if interaction.message else None)
            text = msgs.FEEDBACK_UNKNOWN
        await interaction.edit_original_response(content=text)

    async def on_human(self, interaction: discord.Interaction) -> None:
        """A "Talk to a human" click: escalate through core and answer the clicker privately."""
        with self._tracked():
            await interaction.response.defer(ephemeral=True, thinking=True)  # the escalation posts first
            try:
                asked = button_feedback(interaction, None)
                result = await self.relay.request_human(HumanRequest(asked.platform, asked.workspace_id,
                                                                     asked.message_id, asked.user_id))
                text = msgs.human_line(result.outcome.value, result.escalation_target)
            except Exception:
                log.exception("human request on message=%s failed",
                              interaction.message.id if interaction.message else None)
                text = msgs.FEEDBACK_UNKNOWN
            await interaction.edit_original_response(content=text)
