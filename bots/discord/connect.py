"""`/uppzy-admin connect`: a modal with "Site" and "API key" for members with Manage Server; the key is checked with
Uppzy and stored sealed by the WorkspaceConnector, and never shown or logged (discord.py's DEBUG lines included)."""

from __future__ import annotations

import logging

import discord

from bots.discord import strings as msgs
from bots.discord.translate import PLATFORM, workspace_of
from bots.form_logs import hide_form
from core.ports import WorkspaceConnector

__all__ = ["MODAL_ID", "ConnectModal", "hide_modal_logs"]

log = logging.getLogger(__name__)

MODAL_ID = "uppzy_connect_modal"
SITE_ID, KEY_ID = "uppzy_connect_site", "uppzy_connect_key"
TITLE = "Connect Uppzy"
SITE_HINT = "your Uppzy site id (Uppzy → Settings → Sites)"
KEY_HINT = "an Uppzy API key for that site (checked, stored encrypted)"
FAILED = "The connection could not be made right now; try again."
# discord.py logs every gateway event (the modal submission with its values) and its own errors on these loggers.
_LOGGERS = ("discord.gateway", "discord.client", "discord.state", "discord.ui.modal", "discord.ui.view",
            "discord.app_commands.tree", "discord.interactions", "discord.webhook.async_", "discord.http")


def hide_modal_logs() -> None:
    """Make discord.py's loggers replace any record carrying this modal by one line (see bots.form_logs)."""
    hide_form(MODAL_ID, *_LOGGERS)


class ConnectModal(discord.ui.Modal):
    """The two inputs; on submit Manage Server is checked again, then the connector decides (answer ephemeral)."""

    site: discord.ui.TextInput[ConnectModal] = discord.ui.TextInput(
        label="Site", custom_id=SITE_ID, placeholder=SITE_HINT, max_length=200)
    api_key: discord.ui.TextInput[ConnectModal] = discord.ui.TextInput(
        label="API key", custom_id=KEY_ID, placeholder=KEY_HINT, max_length=1000)

    def __init__(self, connector: WorkspaceConnector) -> None:
        super().__init__(title=TITLE, custom_id=MODAL_ID, timeout=900)
        self.connector = connector

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        """Refuse members who lost Manage Server; else connect and say how it went, privately."""
        if interaction.guild_id is None or not interaction.permissions.manage_guild:
            log.info("connect modal refused user=%s guild=%s", interaction.user.id, interaction.guild_id)
            await interaction.response.send_message(msgs.ADMIN_ONLY, ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        result = await self.connector.connect(PLATFORM, workspace_of(interaction.guild_id), str(self.site.value or ""),
                                              str(self.api_key.value or ""))
        log.info("connect modal guild=%s by=%s ok=%s", interaction.guild_id, interaction.user.id, result.ok)
        await interaction.followup.send(discord.utils.escape_mentions(result.message), ephemeral=True,
                                        allowed_mentions=discord.AllowedMentions.none())

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        """One line (the exception's type only: its text could hold what was typed) and a friendly answer."""
        log.error("connect modal failed in guild=%s: %s", interaction.guild_id, type(error).__name__)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(FAILED, ephemeral=True)
            else:
                await interaction.response.send_message(FAILED, ephemeral=True)
        except discord.HTTPException:
            log.warning("could not tell the admin that the connect modal failed")
