"""`uppzy-bot run`: open the store and Uppzy client, start the relay and every configured platform, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol

from bots.web import WebServer
from core.config import ConfigError, Settings
from core.metrics import Metrics
from core.relay import Relay
from core.retry import RetryPolicy
from core.store import SqliteStore
from core.uppzy import Timeouts, UppzyClient

__all__ = ["PlatformBot", "build_uppzy", "run_bot"]

log = logging.getLogger(__name__)


class PlatformBot(Protocol):
    """A running platform connection (Slack app, Discord client) as the runner sees it."""

    name: str

    async def start(self) -> None:
        """Connect and begin delivering events to the relay; raise ConfigError for operator mistakes."""

    async def stop(self) -> None:
        """Stop taking events and close connections."""

    @property
    def connected(self) -> bool:
        """True while events can arrive (for /readyz)."""
        ...


def build_uppzy(settings: Settings) -> UppzyClient:
    """The one Uppzy client of the process, from settings."""
    assert settings.uppzy_api_key is not None and settings.uppzy_site_id
    return UppzyClient(
        base_url=settings.uppzy_base_url, api_key=settings.uppzy_api_key, site_id=settings.uppzy_site_id,
        tenant_id=settings.uppzy_tenant_id,
        timeouts=Timeouts(settings.uppzy_connect_timeout, settings.uppzy_timeout, settings.uppzy_chat_timeout),
        retry=RetryPolicy(attempts=settings.uppzy_max_attempts, budget=settings.uppzy_retry_budget),
    )


def build_platforms(settings: Settings, relay: Relay) -> list[PlatformBot]:
    """A bot for each platform whose token is set."""
    bots: list[PlatformBot] = []
    if settings.slack_bot_token:
        from bots.slack.app import SlackBot

        bots.append(SlackBot(settings, relay))
    if settings.discord_bot_token:
        from bots.discord.app import DiscordBot

        bots.append(DiscordBot(settings, relay))
    return bots


async def run_bot(settings: Settings, *, stop: asyncio.Event | None = None,
                  started: asyncio.Event | None = None, host: str = "0.0.0.0") -> int:
    """Run until SIGTERM/SIGINT (or `stop`), then shut down within ~10 s; unfinished work resumes next start."""
    settings.require("UPPZY_API_KEY", "UPPZY_SITE_ID")
    if not settings.slack_bot_token and not settings.discord_bot_token:
        raise ConfigError("SLACK_BOT_TOKEN", "set SLACK_BOT_TOKEN and/or DISCORD_BOT_TOKEN to choose a platform")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    metrics = Metrics()
    store = await SqliteStore.open(settings.database_path)
    uppzy = build_uppzy(settings)
    uppzy.observer = metrics.observe_call
    relay = Relay(store=store, uppzy=uppzy, settings=settings, metrics=metrics)
    bots = build_platforms(settings, relay)
    routes = [route for bot in bots if getattr(bot, "mode", None) == "http" for route in bot.http_routes()]  # type: ignore[attr-defined]
    checks: dict[str, Callable[[], Awaitable[bool] | bool]] = {"store": lambda: _store_ok(store)}
    for bot in bots:
        checks[bot.name] = lambda bot=bot: bot.connected  # type: ignore[misc]
        metrics.platform_up.labels(bot.name).set_function(lambda bot=bot: 1.0 if bot.connected else 0.0)  # type: ignore[misc]
    web = WebServer(metrics=metrics, checks=checks, routes=routes)
    running: list[PlatformBot] = []
    try:
        await web.start(host, settings.port)
        await relay.start()
        for bot in bots:
            await bot.start()
            running.append(bot)
            log.info("%s connected", bot.name)
        if started is not None:
            started.set()
        await stop.wait()
        log.info("shutting down: no new events; unfinished work stays in the store for the next start")
    finally:
        await _shutdown(running, relay, web, uppzy, store)
    return 0


async def _store_ok(store: SqliteStore) -> bool:
    await store.counts()
    return True


async def _shutdown(bots: list[PlatformBot], relay: Relay, web: WebServer, uppzy: UppzyClient,
                    store: SqliteStore) -> None:
    """Platforms first (stop taking events), then the relay (its state is durable), then connections."""
    try:
        async with asyncio.timeout(6):
            await asyncio.gather(*(bot.stop() for bot in reversed(bots)), return_exceptions=True)
    except TimeoutError:
        log.warning("a platform did not stop within 6s; closing anyway")
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await relay.stop(drain=1.5)  # submits on their way to Uppzy finish, so none comes back as "lost"
    with contextlib.suppress(Exception):
        await web.stop()
    await uppzy.aclose()
    await store.close()
