"""Slash commands: `/uppzy` (help, end) for everyone and `/uppzy-admin` for members with Manage Server.

Discord's default member permissions apply to a whole top-level command, never to one subcommand, so the
admin commands are their own group: hidden from non-managers by default, and checked again at run time
because server owners can override the default in Server Settings → Integrations.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bots.discord import format as fmt
from bots.discord import strings as msgs
from bots.discord.connect import ConnectModal, hide_modal_logs
from bots.discord.translate import PLATFORM, workspace_of
from core.models import ReplyTarget
from core.ports import (
    CHANNEL_MODES,
    SESSION_ENDED,
    SETTING_KEYS,
    EndResult,
    Inbound,
    SettingError,
    WorkspaceConnector,
    setting_spec,
)

__all__ = ["AdminCommands", "UserCommands", "install", "sync_commands"]

log = logging.getLogger(__name__)

NOT_IN_SERVER = "escalation_target must name a channel, role or member of this server"
_OFF = ("none", "off", "-")
_KEY_CHOICES = [app_commands.Choice(name=key, value=key) for key in SETTING_KEYS]
_MODE_CHOICES = [app_commands.Choice(name=mode, value=mode) for mode in CHANNEL_MODES]


def conversation_channel(interaction: discord.Interaction) -> tuple[int, int | None]:
    """(conversation channel, thread): inside a thread the conversation's channel is the thread's parent."""
    channel = interaction.channel
    if isinstance(channel, discord.Thread) and channel.parent_id is not None:
        return channel.parent_id, channel.id
    return interaction.channel_id or 0, None


async def in_guild(guild: discord.Guild | None, kind: str, ident: int) -> bool:
    """Whether an escalation target (kind from fmt.escalation_of) is a channel, role or member of this server."""
    if guild is None:
        return False
    if kind in ("channel", "id") and guild.get_channel_or_thread(ident) is not None:
        return True
    if kind == "channel":
        try:  # a thread or channel discord.py has not cached; one of another server raises InvalidData
            await guild.fetch_channel(ident)
        except (discord.HTTPException, discord.InvalidData):
            return False
        return True
    if kind in ("role", "id") and guild.get_role(ident) is not None:
        return True
    if kind in ("user", "id"):
        if guild.get_member(ident) is not None:
            return True
        try:
            await guild.fetch_member(ident)
        except discord.HTTPException:
            return False
        return True
    return False


def target_of(interaction: discord.Interaction) -> ReplyTarget:
    """The caller's conversation here, shaped like a question's target so core finds its session."""
    channel_id, thread_id = conversation_channel(interaction)
    return ReplyTarget(
        platform=PLATFORM, workspace_id=workspace_of(interaction.guild_id), channel_id=str(channel_id),
        message_channel_id=str(thread_id or channel_id), message_id=str(interaction.id),
        user_id=str(interaction.user.id), thread_id=None if thread_id is None else str(thread_id),
        is_dm=interaction.guild_id is None,
    )


@app_commands.allowed_installs(guilds=True, users=True)
@app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
class UserCommands(app_commands.Group, name="uppzy", description=msgs.DESCRIBE_GROUP):
    """Commands every member (and DM) may use; offered where a member installed the app for themselves too."""

    def __init__(self, relay: Inbound) -> None:
        super().__init__()
        self.relay = relay

    @app_commands.command(name="help", description=msgs.DESCRIBE_HELP)
    async def help_(self, interaction: discord.Interaction) -> None:
        """Explain how to talk to the bot."""
        await interaction.response.send_message(msgs.HELP, ephemeral=True)

    @app_commands.command(name="end", description=msgs.DESCRIBE_END)
    async def end(self, interaction: discord.Interaction) -> None:
        """Close the caller's session for this channel now."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        result = await self.relay.end_conversation(target_of(interaction))
        text = {EndResult.ENDED: SESSION_ENDED, EndResult.NO_SESSION: msgs.END_NONE,
                EndResult.BUSY: msgs.END_BUSY}[result]
        await interaction.followup.send(text, ephemeral=True)


@app_commands.allowed_installs(guilds=True, users=False)
@app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
class AdminCommands(app_commands.Group, name="uppzy-admin", description=msgs.DESCRIBE_ADMIN_GROUP,
                    guild_only=True, default_permissions=discord.Permissions(manage_guild=True)):
    """Per-server settings; only members with Manage Server."""

    def __init__(self, relay: Inbound, connector: WorkspaceConnector | None = None) -> None:
        super().__init__()
        self.relay = relay
        self.connector = connector
        if connector is None:  # `connect` exists only where keys can be stored (the composition root decides)
            self.remove_command("connect")
        else:
            hide_modal_logs()

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        """Re-check Manage Server at run time (admins can override the default permission per server)."""
        refusal = None
        if interaction.guild_id is None:
            refusal = msgs.GUILD_ONLY
        elif not interaction.permissions.manage_guild:
            refusal = msgs.ADMIN_ONLY
        if refusal is not None:
            log.info("admin command refused user=%s guild=%s", interaction.user.id, interaction.guild_id)
            await interaction.response.send_message(refusal, ephemeral=True)
            return False
        return True

    @app_commands.command(name="status", description=msgs.DESCRIBE_STATUS)
    async def status(self, interaction: discord.Interaction) -> None:
        """Settings, Uppzy reachability and counts for this server."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        report = await self.relay.status_report(PLATFORM, workspace_of(interaction.guild_id))
        text = msgs.status_report(report.settings, report.uppzy_ok, report.uppzy_detail, report.pending,
                                  report.open_sessions)
        await interaction.followup.send(text, ephemeral=True)

    @app_commands.command(name="set", description=msgs.DESCRIBE_SET)
    @app_commands.describe(key=msgs.DESCRIBE_SET_KEY, value=msgs.DESCRIBE_SET_VALUE)
    @app_commands.choices(key=_KEY_CHOICES)
    async def set_(self, interaction: discord.Interaction, key: str, value: str) -> None:
        """Validate and store one setting for this server."""
        if key == "escalation_target" and value.strip().lower() not in _OFF:
            parsed = fmt.escalation_of(value)
            problem = msgs.ESCALATION_FORMAT if parsed is None else None
            if parsed is not None and not await in_guild(interaction.guild, *parsed):
                problem = NOT_IN_SERVER
                log.info("escalation target refused: not in guild=%s", interaction.guild_id)
            if problem is not None:
                await interaction.response.send_message(msgs.setting_invalid(problem), ephemeral=True)
                return
        try:
            shown = await self.relay.set_setting(PLATFORM, workspace_of(interaction.guild_id), key, value,
                                                    by=str(interaction.user.id))
        except SettingError as exc:
            await interaction.response.send_message(msgs.setting_invalid(str(exc)), ephemeral=True)
            return
        log.info("setting %s changed guild=%s by=%s", key, interaction.guild_id, interaction.user.id)
        await interaction.response.send_message(msgs.setting_saved(key, shown), ephemeral=True)

    @set_.autocomplete("value")
    async def _value_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        """Offer the accepted values of keys that have a fixed set (modes, on/off, strategies)."""
        spec = setting_spec(str(getattr(interaction.namespace, "key", "") or ""))
        if spec is None:
            return []
        options = []
        for candidate in (part.strip() for part in spec.accepted.split(",")):
            if " " in candidate or not candidate.startswith(current.strip().lower()):
                continue
            try:
                spec.parse(candidate)
            except SettingError:
                continue
            options.append(app_commands.Choice(name=candidate, value=candidate))
        return options[:25]

    @app_commands.command(name="channel", description=msgs.DESCRIBE_CHANNEL)
    @app_commands.describe(mode=msgs.DESCRIBE_CHANNEL_MODE)
    @app_commands.choices(mode=_MODE_CHOICES)
    async def channel(self, interaction: discord.Interaction, mode: str) -> None:
        """Set how the bot listens in this channel (inside a thread: the thread's channel)."""
        channel_id, _thread = conversation_channel(interaction)
        try:
            saved = await self.relay.set_channel_mode(
                PLATFORM, workspace_of(interaction.guild_id), str(channel_id), mode, by=str(interaction.user.id))
        except SettingError as exc:
            await interaction.response.send_message(msgs.setting_invalid(str(exc)), ephemeral=True)
            return
        log.info("channel mode %s channel=%s guild=%s", saved, channel_id, interaction.guild_id)
        await interaction.response.send_message(msgs.channel_mode_set(f"<#{channel_id}>", saved), ephemeral=True)

    @app_commands.command(name="sessions", description=msgs.DESCRIBE_SESSIONS)
    @app_commands.describe(user=msgs.DESCRIBE_SESSIONS_USER)
    async def sessions(self, interaction: discord.Interaction, user: discord.User) -> None:
        """A member's Uppzy conversations on this server's site."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        found = await self.relay.list_sessions(PLATFORM, workspace_of(interaction.guild_id), None, str(user.id))
        if not found:
            await interaction.followup.send(msgs.NO_SESSIONS, ephemeral=True)
            return
        found.sort(key=lambda s: s.updated_at or s.created_at or "", reverse=True)
        rows = [(s.id, "open" if s.open else "closed", s.updated_at or s.created_at or "?") for s in found]
        await interaction.followup.send(msgs.sessions_list(f"<@{user.id}>", rows), ephemeral=True,
                                        allowed_mentions=discord.AllowedMentions.none())


    @app_commands.command(name="connect", description="Connect this server to its own Uppzy site and API key")
    async def connect(self, interaction: discord.Interaction) -> None:
        """Answer with the modal (the key is typed there, never in a command option that Discord would show)."""
        assert self.connector is not None
        await interaction.response.send_modal(ConnectModal(self.connector))


async def _on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    """Refusals were already answered; anything else gets one friendly line and a log entry."""
    if isinstance(error, app_commands.CheckFailure):
        return
    name = interaction.command.qualified_name if interaction.command else "?"
    log.error("/%s failed in guild=%s: %s", name, interaction.guild_id, type(error).__name__, exc_info=error)
    try:
        if interaction.response.is_done():
            await interaction.followup.send(msgs.COMMAND_FAILED, ephemeral=True)
        else:
            await interaction.response.send_message(msgs.COMMAND_FAILED, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not tell the user that /%s failed", name)


def install(tree: app_commands.CommandTree, relay: Inbound, connector: WorkspaceConnector | None = None) -> None:
    """Add both command groups and the friendly error handler to a client's tree."""
    tree.add_command(UserCommands(relay))
    tree.add_command(AdminCommands(relay, connector))
    tree.error(_on_error)


async def sync_commands(tree: app_commands.CommandTree, guild_ids: tuple[int, ...]) -> None:
    """Sync globally, and copy to the configured guilds so they have the commands at once."""
    try:
        await tree.sync()
    except discord.HTTPException as exc:
        log.warning("global slash-command sync failed (%s %s); existing commands stay", exc.status, exc.code)
    for guild_id in guild_ids:
        guild = discord.Object(guild_id)
        tree.copy_global_to(guild=guild)
        try:
            await tree.sync(guild=guild)
        except discord.HTTPException as exc:
            log.warning("slash-command sync to guild=%s failed (%s %s): is the bot invited there with the "
                        "applications.commands scope?", guild_id, exc.status, exc.code)
