"""Discord start-up and shutdown: minimal intents, one clear line for a refused token or intent, URLs restored."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bots.discord.app import DiscordBot, DiscordUnavailable
from bots.runner import build_platforms
from core.config import ConfigError, Secret
from core.uppzy import UppzyClient
from simulator import Simulator
from tests.conftest import SIM_KEY, SITE_ID
from tests.discord_support import DiscordHarness
from tests.fakes.discord_fake import FakeDiscord

ROOT = str(Path(__file__).resolve().parents[2])

# guilds, guild_messages, guild_reactions, dm_messages, dm_reactions, message_content
EXPECTED_INTENTS = (1 << 0) | (1 << 9) | (1 << 10) | (1 << 12) | (1 << 13) | (1 << 15)


@pytest.fixture
async def harness(fake: FakeDiscord, sim: Simulator, uppzy: UppzyClient,
                  tmp_path: Path) -> AsyncIterator[DiscordHarness]:
    """A harness the test starts itself (start-up may be meant to fail); always closed afterwards."""
    h = DiscordHarness(fake, sim, uppzy, tmp_path)
    try:
        yield h
    finally:
        await h.aclose()


async def test_connects_with_minimal_intents_and_restores_urls_on_stop(harness: DiscordHarness) -> None:
    """IDENTIFY asks for exactly the six intents the bot uses; stop() puts discord.py's class URLs back."""
    before = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    await harness.start()
    assert harness.bot is not None and harness.bot.connected
    assert harness.fake.identified_intents == EXPECTED_INTENTS
    assert Route.BASE == harness.fake.api_base
    assert DiscordWebSocket.DEFAULT_GATEWAY == yarl.URL(harness.fake.gateway_url)

    await harness.bot.stop()
    assert not harness.bot.connected
    assert (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY) == before
    await harness.fake.wait_for(lambda: not harness.fake.live_connections(), what="socket closed")


async def test_refused_message_content_intent_is_one_clear_line(harness: DiscordHarness) -> None:
    """Gateway close 4014 becomes a ConfigError naming the developer-portal toggle; nothing is left running."""
    before = Route.BASE
    harness.fake.refuse_privileged_intents = True
    with pytest.raises(ConfigError) as caught:
        await harness.start()

    text = str(caught.value)
    assert "Bot → Privileged Gateway Intents → Message Content Intent" in text
    assert "\n" not in text and "Traceback" not in text
    assert Route.BASE == before
    assert harness.fake.live_connections() == []


async def test_bad_token_is_one_clear_line(harness: DiscordHarness) -> None:
    """A token Discord refuses (401 at login) becomes a ConfigError for DISCORD_BOT_TOKEN, never shown itself."""
    harness.settings = replace(harness.settings, discord_bot_token=Secret("wrong-token"))
    with pytest.raises(ConfigError) as caught:
        await harness.start()

    assert caught.value.variable == "DISCORD_BOT_TOKEN"
    assert "refused" in str(caught.value) and "wrong-token" not in str(caught.value)
    assert harness.fake.connections == []


async def test_unreachable_api_is_an_outage_to_retry(harness: DiscordHarness) -> None:
    """When Discord's REST API cannot be reached at login, start-up raises DiscordUnavailable (the runner retries
    it; not a configuration error) with one line naming DISCORD_API_BASE_URL instead of a trace."""
    harness.settings = replace(harness.settings, discord_api_base_url="http://127.0.0.1:9/api/v10")
    with pytest.raises(DiscordUnavailable) as caught:
        await harness.start()

    assert "DISCORD_API_BASE_URL" in str(caught.value) and "could not reach" in str(caught.value)


async def test_discord_5xx_at_login_is_an_outage_and_the_bot_connects_on_the_next_attempt(
        harness: DiscordHarness) -> None:
    """Login answered 503 is DiscordUnavailable; a second start() on the same bot then connects."""
    harness.fake.fail_next("GET", r"/users/@me$", status=503, times=1)
    with pytest.raises(DiscordUnavailable) as caught:
        await harness.start()
    assert "HTTP 503" in str(caught.value)
    assert harness.bot is not None
    await harness.bot.start()
    assert harness.bot.connected


async def test_runner_builds_the_discord_bot_when_its_token_is_set(harness: DiscordHarness) -> None:
    """`uppzy-bot run` picks Discord when DISCORD_BOT_TOKEN is set; building it opens nothing."""
    await harness.start()
    assert harness.relay is not None
    bots = build_platforms(harness.settings, harness.relay)
    assert [type(b) for b in bots] == [DiscordBot] and bots[0].name == "discord" and not bots[0].connected
    assert harness.bot is not None
    harness.relay.register(harness.bot.adapter)  # the probe replaced our adapter in the relay; put it back



async def test_uppzy_bot_run_exits_with_one_line_when_the_intent_is_refused(fake: FakeDiscord, sim: Simulator,
                                                                            tmp_path: Path) -> None:
    """`uppzy-bot run` against a Discord that refuses Message Content prints one line naming the toggle, exits 2."""
    fake.refuse_privileged_intents = True
    env = {
        "PATH": os.environ.get("PATH", ""), "UPPZY_API_KEY": SIM_KEY, "UPPZY_SITE_ID": SITE_ID,
        "UPPZY_BASE_URL": sim.base_url, "DISCORD_BOT_TOKEN": fake.token, "DISCORD_API_BASE_URL": fake.api_base,
        "DISCORD_GATEWAY_URL": fake.gateway_url, "DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
        "LOG_LEVEL": "critical", "PYTHONPATH": ROOT,  # this checkout's code
    }
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bots", "run", env=env, cwd=tmp_path,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)

    lines = [line for line in stderr.decode().splitlines() if line.strip()]
    assert proc.returncode == 2, stderr.decode()
    assert len(lines) == 1 and "Privileged Gateway Intents → Message Content Intent" in lines[0]
    assert fake.token not in stderr.decode() + stdout.decode()
