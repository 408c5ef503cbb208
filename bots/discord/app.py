"""The Discord connection: a discord.py client with minimal intents, its lifecycle, and start-up errors as one line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bots.discord import strings as msgs
from bots.discord.admin import install, sync_commands
from bots.discord.ask import INTERACTION_LIFETIME, ask_command
from bots.discord.events import BAD_ID, GOOD_ID, HUMAN_ID, DiscordEvents, FeedbackButtons
from bots.discord.outbound import NO_PINGS, DiscordAdapter
from bots.discord.shards import IdentifyPacer, ShardedClient, ShardPlan, plan_shards
from bots.discord.translate import PLATFORM, workspace_of
from core.config import ConfigError, Settings, shown_url
from core.ports import Inbound, WorkspaceConnector

__all__ = ["DiscordBot", "DiscordUnavailable", "bot_intents", "bot_permissions", "invite_url"]

log = logging.getLogger(__name__)

TOKEN_CLOSE_CODE = 4004  # gateway: authentication failed
INVALID_SHARD_CODE, SHARDING_REQUIRED_CODE = 4010, 4011  # gateway: bad [id, count] / too many servers for one
INTENT_CLOSE_CODES = (4013, 4014)  # gateway: invalid / disallowed intents


def bot_intents() -> discord.Intents:
    """Only what the bot uses; Message Content is the one privileged intent (no members, no presences)."""
    intents = discord.Intents.none()
    intents.guilds = True  # channel and thread cache: parents, forum channels, thread owners
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = True  # read questions in "answer everything" channels and threads
    intents.guild_reactions = True
    intents.dm_reactions = True
    return intents


def bot_permissions() -> discord.Permissions:
    """What the bot does in a channel: see it, post, open public threads, post in threads, reply to messages, and
    tag forum posts (Manage Threads: Discord lets only a post's creator or thread managers change its tags)."""
    return discord.Permissions(view_channel=True, send_messages=True, create_public_threads=True,
                               send_messages_in_threads=True, read_message_history=True, manage_threads=True)


def invite_url(application_id: int) -> str:
    """The install link with exactly those permissions and the bot + applications.commands scopes."""
    return discord.utils.oauth_url(application_id, permissions=bot_permissions(),
                                   scopes=("bot", "applications.commands"))


class DiscordUnavailable(ConnectionError):
    """Discord could not be reached or failed (5xx) at start: worth retrying, not the operator's fault."""


class _Client(ShardedClient):
    """discord.py client (one gateway session per shard) whose events go to DiscordEvents; commands and buttons
    are set up before connecting."""

    def __init__(self, bot: DiscordBot, *, guild_ready_timeout: float) -> None:
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice: the warnings are noise
        super().__init__(intents=bot_intents(), allowed_mentions=NO_PINGS, guild_ready_timeout=guild_ready_timeout,
                         chunk_guilds_at_startup=False, max_messages=None)
        self.bot = bot
        self.reconnect_delay = bot.reconnect_delay
        self.tree = app_commands.CommandTree(self)

    async def setup_hook(self) -> None:
        """Persistent feedback buttons (clicks on old answers work after a restart), then command sync."""
        self.add_view(FeedbackButtons(self.bot.events))
        install(self.tree, self.bot.relay, self.bot.connector)
        self.tree.add_command(ask_command(self.bot.relay, self.bot.adapter.ask))
        await sync_commands(self.tree, self.bot.settings.discord_guild_ids)

    async def on_ready(self) -> None:
        """Log who we are; fires again after a full re-IDENTIFY."""
        log.info("discord ready as %s (id=%s) in %d servers", self.user, self.user.id if self.user else "?",
                 len(self.guilds))

    async def on_message(self, message: discord.Message) -> None:
        """New messages only: edits are deliberately not listened to."""
        await self.bot.events.on_message(self, message)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Components that are not ours (e.g. left on old messages by another version) are logged, not answered."""
        if interaction.type is discord.InteractionType.component:
            custom_id = (interaction.data or {}).get("custom_id")
            if custom_id not in (GOOD_ID, BAD_ID, HUMAN_ID):
                log.info("interaction dropped: unknown component custom_id=%r", str(custom_id)[:100])

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        """Raw, because the rated answer is usually not in discord.py's message cache."""
        await self.bot.events.on_reaction(self, payload)

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """GUILD_DELETE for a server the bot was removed from (an outage is `guild_unavailable` instead): its
        connection, settings and channel modes are forgotten."""
        forget = self.bot.forget or (self.bot.connector.forget if self.bot.connector is not None else None)
        if forget is None:
            return
        log.info("removed from guild=%s: forgetting its connection and settings", guild.id)
        try:
            await forget(PLATFORM, workspace_of(guild.id))
        except Exception as exc:
            log.error("forgetting guild=%s failed: %s", guild.id, type(exc).__name__)


class DiscordBot:
    """`uppzy-bot run`'s Discord side: registers its adapter with the relay, connects, and stops cleanly."""

    name = "discord"

    def __init__(self, settings: Settings, relay: Inbound, *, guild_ready_timeout: float = 2.0,
                 ready_timeout: float = 60.0, typing_interval: float = 8.0, reconnect_delay: float = 1.0,
                 identify_window: float = 5.0, connector: WorkspaceConnector | None = None,
                 forget: Callable[[str, str], Awaitable[None]] | None = None,
                 ask_lifetime: float = INTERACTION_LIFETIME) -> None:
        self.settings = settings
        self.relay = relay
        self.connector = connector  # admins' `/uppzy-admin connect` (only with SECRETS_KEY)
        self.forget = forget  # a server the bot was removed from: its connection and settings (else the connector's)
        self.guild_ready_timeout = guild_ready_timeout
        self.ready_timeout = ready_timeout
        self.reconnect_delay = reconnect_delay
        self.identify_window = identify_window  # Discord's: max_concurrency IDENTIFYs per bucket per 5 s
        self.adapter = DiscordAdapter(feedback_view=FeedbackButtons.rendered, typing_interval=typing_interval,
                                      typing_limit=settings.uppzy_answer_timeout + 30, ready_timeout=ready_timeout,
                                      settings_of=relay.settings, ask_lifetime=ask_lifetime)
        self.events = DiscordEvents(relay, self.adapter)
        relay.register(self.adapter)  # now, so answers the relay recovers at start wait for us to connect
        self.client: _Client | None = None
        self._gateway: asyncio.Task[None] | None = None
        self._saved_urls: tuple[str, Any] | None = None
        self.plan: ShardPlan | None = None

    @property
    def connected(self) -> bool:
        """True while the gateway session of every shard this replica runs is up."""
        client, gateway = self.client, self._gateway
        return (client is not None and client.is_ready() and not client.is_closed()
                and gateway is not None and not gateway.done() and client.shards_connected())

    def _point_at_settings(self) -> None:
        """discord.py reads both URLs from class attributes: set them before login, restore them on stop."""
        if self._saved_urls is None:
            self._saved_urls = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
        Route.BASE = self.settings.discord_api_base_url.rstrip("/")
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.settings.discord_gateway_url)

    def _restore_urls(self) -> None:
        if self._saved_urls is not None:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = self._saved_urls
            self._saved_urls = None

    async def start(self) -> None:
        """Log in, connect in the background and wait for READY; operator mistakes become one ConfigError line."""
        token = self.settings.discord_bot_token
        if not token:
            raise ConfigError("DISCORD_BOT_TOKEN", msgs.TOKEN_MISSING)
        self.settings.check_discord_shards()
        self._point_at_settings()
        client = self.client = _Client(self, guild_ready_timeout=self.guild_ready_timeout)
        try:
            await client.login(token.reveal())
            recommended, _url, limits = await client.http.get_bot_gateway()
        except discord.LoginFailure:
            await self.stop()
            raise ConfigError("DISCORD_BOT_TOKEN", msgs.TOKEN_REFUSED) from None
        except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self.stop()
            if isinstance(exc, discord.HTTPException) and exc.status < 500 and exc.status != 429:
                raise ConfigError("DISCORD_API_BASE_URL", f"Discord answered HTTP {exc.status} at login; check "
                                  f"DISCORD_API_BASE_URL ({shown_url(self.settings.discord_api_base_url)})") from None
            reason = f"HTTP {exc.status}" if isinstance(exc, discord.HTTPException) else type(exc).__name__
            raise DiscordUnavailable(msgs.api_unreachable(reason)) from None
        except discord.GatewayNotFound:
            await self.stop()
            raise DiscordUnavailable(msgs.api_unreachable("GET /gateway/bot failed")) from None
        except BaseException:
            await self.stop()
            raise
        plan = self.plan = plan_shards(self.settings, recommended, limits)
        pacer = IdentifyPacer(plan, window=self.identify_window)
        client.use_plan(plan, pacer)
        log.info("discord shards %s%s", plan.describe(),
                 "" if self.settings.discord_shard_count else " (as Discord recommends)")
        self._gateway = asyncio.create_task(self._run_gateway(client), name="discord-gateway")
        ready = asyncio.create_task(client.wait_until_ready())
        ready_timeout = self.ready_timeout + pacer.expected_delay(plan)  # IDENTIFYs paced as Discord requires
        try:
            done, _ = await asyncio.wait({self._gateway, ready}, timeout=ready_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if self._gateway in done:
            error = self._gateway.exception() if not self._gateway.cancelled() else None
            await self.stop()
            raise _startup_error(error)
        if not done:
            await self.stop()
            raise DiscordUnavailable(msgs.gateway_timeout(ready_timeout))
        self._gateway.add_done_callback(self._gateway_ended)
        self.adapter.attach(client)
        if client.application_id is not None:
            log.info("invite the bot with %s", invite_url(client.application_id))

    async def _run_gateway(self, client: _Client) -> None:
        """client.connect(), started again on fresh sessions if it fails unexpectedly.

        discord.py reconnects by itself after network trouble and gives up on bad tokens or intents; a shard that
        fails on a malformed dispatch is restarted alone by ShardedClient. This loop is the last resort.
        """
        loop = asyncio.get_running_loop()
        delay = self.reconnect_delay
        while True:
            began = loop.time()
            try:
                await client.connect(reconnect=True)
                return
            except (discord.PrivilegedIntentsRequired, discord.ConnectionClosed):
                raise
            except Exception:
                if client.is_closed():
                    raise
                if loop.time() - began > 60:
                    delay = self.reconnect_delay
                log.exception("discord.py failed on a gateway event; it is dropped and the gateway reconnects "
                              "in %.1fs on a new session", delay)
            for shard in client.shards.values():  # sockets the failure left open, with their heartbeat threads
                try:
                    await shard.disconnect()
                except Exception as exc:
                    log.debug("closing a failed gateway socket: %s", type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(60.0, delay * 2)

    def _gateway_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self.client is None or self.client.is_closed():
            return
        error = task.exception()
        log.error("the Discord gateway connection ended for good: %s", _startup_error(error) if error else "closed")

    async def stop(self) -> None:
        """Close the gateway and HTTP session, stop typing, and put discord.py's URLs back."""
        self.adapter.attach(None)
        await self.adapter.aclose()
        client, gateway = self.client, self._gateway
        if client is not None:
            await client.close()
        await self.events.drain()
        if gateway is not None:
            await asyncio.wait({gateway}, timeout=5)
            if not gateway.done():
                gateway.cancel()
            elif not gateway.cancelled():
                gateway.exception()  # already reported by start() or _gateway_ended
        self._gateway = None
        self._restore_urls()


def _startup_error(error: BaseException | None) -> BaseException:
    """Map what ended the gateway to the line an operator can act on."""
    if isinstance(error, discord.PrivilegedIntentsRequired):
        return ConfigError("DISCORD_BOT_TOKEN", msgs.INTENT_REFUSED)
    if isinstance(error, discord.ConnectionClosed):
        if error.code == TOKEN_CLOSE_CODE:
            return ConfigError("DISCORD_BOT_TOKEN", msgs.TOKEN_REFUSED)
        if error.code == INVALID_SHARD_CODE:
            return ConfigError("DISCORD_SHARD_IDS", msgs.SHARD_REFUSED)
        if error.code == SHARDING_REQUIRED_CODE:
            return ConfigError("DISCORD_SHARD_COUNT", msgs.SHARDING_REQUIRED)
        if error.code in INTENT_CLOSE_CODES:
            return ConfigError("DISCORD_BOT_TOKEN", msgs.INTENT_REFUSED)
    if error is None:
        return DiscordUnavailable("the Discord gateway closed before it was ready")
    if isinstance(error, (aiohttp.ClientError, OSError, TimeoutError, discord.HTTPException, discord.GatewayNotFound,
                          discord.ConnectionClosed)):
        return DiscordUnavailable(f"the Discord gateway failed before it was ready ({type(error).__name__}); check "
                                  "network access to Discord (or DISCORD_GATEWAY_URL)")
    return error
