"""Shared set-up for the Discord end-to-end tests: a FakeDiscord world, and the real bot + relay wired to it.

The bot runs exactly as in production (DiscordBot → discord.py → loopback FakeDiscord), with the Uppzy
simulator behind a real Relay and a SQLite store in tmp_path. Only timing knobs differ.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bots.discord.app import DiscordBot
from bots.runner import build_relay
from core.backoff import Backoff
from core.config import Secret, Settings
from core.latency import LatencyModel
from core.relay import Relay
from core.sqlite_store import SqliteStore
from core.tuning import Tuning
from core.uppzy import UppzyClient
from simulator import Simulator
from tests.conftest import SIM_KEY, SITE_ID
from tests.fakes.discord_fake import MANAGE_GUILD, FakeDiscord

GUILD_ID = 811_111_111_111_111_111
TEXT_ID = 822_222_222_222_222_222
FORUM_ID = 833_333_333_333_333_333
ESCALATION_ID = 844_444_444_444_444_444
USER_ID = 855_555_555_555_555_555
OTHER_ID = 866_666_666_666_666_666
ADMIN_ID = 877_777_777_777_777_777
HUMAN_ID = 888_888_888_888_888_888
ROLE_ID = 899_999_999_999_999_999


def build_world(fake: FakeDiscord) -> None:
    """One guild with a text channel, a forum, an escalation channel, two members, an admin and a role."""
    fake.add_guild(GUILD_ID, name="Support")
    fake.add_channel(GUILD_ID, TEXT_ID, name="help")
    fake.add_channel(GUILD_ID, FORUM_ID, type=15, name="questions")
    fake.add_channel(GUILD_ID, ESCALATION_ID, name="escalations")
    fake.add_member(GUILD_ID, USER_ID, name="alice")
    fake.add_member(GUILD_ID, OTHER_ID, name="bob")
    fake.add_member(GUILD_ID, ADMIN_ID, name="root", permissions=MANAGE_GUILD)
    fake.add_role(GUILD_ID, ROLE_ID, name="support-team")


class _ErrorLog(logging.Handler):
    """Collects ERROR records from discord.py and our bots, which would otherwise only be logged."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("discord", "bots", "core")):
            self.records.append(record)


class DiscordHarness:
    """Store + relay + DiscordBot against the fake; `aclose()` fails the test if anything logged an ERROR."""

    def __init__(self, fake: FakeDiscord, sim: Simulator, uppzy: UppzyClient, tmp_path: Path) -> None:
        self.fake = fake
        self.sim = sim
        self.uppzy = uppzy
        self.db_path = str(tmp_path / "bot.db")
        self.settings = Settings(
            uppzy_api_key=Secret(SIM_KEY), uppzy_site_id=SITE_ID, uppzy_base_url=sim.base_url,
            discord_bot_token=Secret(fake.token), discord_api_base_url=fake.api_base,
            discord_gateway_url=fake.gateway_url, discord_guild_ids=(GUILD_ID,), uppzy_answer_timeout=10,
        )
        self.store: SqliteStore | None = None
        self.relay: Relay | None = None
        self.bot: DiscordBot | None = None
        self.errors = _ErrorLog()
        self.allow_errors = False
        self.working_after: float | None = None  # Tuning's delay before typing starts; production's unless set

    async def start(self, **bot_kwargs: Any) -> DiscordHarness:
        """Open the store, start the relay (reaper driven by hand) and connect a bot."""
        logging.getLogger().addHandler(self.errors)
        await self._open_relay()
        await self.relay.start(reaper=False)  # type: ignore[union-attr]
        await self.start_bot(**bot_kwargs)
        return self

    async def _open_relay(self) -> None:
        self.store = await SqliteStore.open(self.db_path)
        self.relay = build_relay(self.settings, self.store, self.uppzy, tuning=Tuning(  # the simulator answers at once
            poll_interval=0.05, delivery=Backoff(attempts=3, initial=0.05, maximum=0.05),
            latency=LatencyModel(prior=(0.05,)),
            **({} if self.working_after is None else {"working_after": self.working_after})))

    async def restart_process(self, *, down_for: float = 0.0) -> None:
        """Stop bot, relay and store, then start them the way `uppzy-bot run` does (bot built, relay, connect)."""
        assert self.bot is not None and self.relay is not None and self.store is not None
        await self.bot.stop()
        await self.relay.stop()
        await self.store.close()
        await asyncio.sleep(down_for)
        await self._open_relay()
        assert self.relay is not None
        self.bot = DiscordBot(self.settings, self.relay, guild_ready_timeout=0.05, ready_timeout=5.0)
        await self.relay.start(reaper=False)  # recovers unfinished questions before the bot is connected
        await asyncio.sleep(down_for)
        await self.bot.start()

    async def start_bot(self, **bot_kwargs: Any) -> DiscordBot:
        """A fresh DiscordBot process-equivalent (new client, new caches) on the same store and relay."""
        assert self.relay is not None
        bot_kwargs.setdefault("guild_ready_timeout", 0.05)
        bot_kwargs.setdefault("ready_timeout", 5.0)
        self.bot = DiscordBot(self.settings, self.relay, **bot_kwargs)
        await self.bot.start()
        return self.bot

    async def aclose(self) -> None:
        """Stop everything in reverse order, then check the error log."""
        try:
            if self.bot is not None:
                await self.bot.stop()
            if self.relay is not None:
                await self.relay.stop()
            if self.store is not None:
                await self.store.close()
        finally:
            logging.getLogger().removeHandler(self.errors)
        if not self.allow_errors:
            assert not self.errors.records, [r.getMessage() for r in self.errors.records]

    # ---- driving the fake ----

    async def mention(self, text: str, *, channel_id: int = TEXT_ID, author_id: int = USER_ID,
                      **kwargs: Any) -> dict[str, Any]:
        """A guild message that @mentions the bot."""
        return await self.fake.user_message(channel_id=channel_id, guild_id=GUILD_ID, author_id=author_id,
                                            content=f"<@{self.fake.bot_id}> {text}", mentions_bot=True, **kwargs)

    async def say(self, text: str, *, channel_id: int, author_id: int = USER_ID, guild: bool = True,
                  **kwargs: Any) -> dict[str, Any]:
        """A message without a mention (guild channel or thread, or a DM with guild=False)."""
        return await self.fake.user_message(channel_id=channel_id, guild_id=GUILD_ID if guild else None,
                                            author_id=author_id, content=text, **kwargs)

    def posts(self, channel_id: int | str) -> list[dict[str, Any]]:
        """Messages the bot posted in a channel or thread."""
        return self.fake.messages_in(int(channel_id))

    async def wait_posts(self, channel_id: int | str, count: int = 1) -> list[dict[str, Any]]:
        """Wait until the bot has posted at least `count` messages there."""
        return await self.fake.wait_for(lambda: len(self.posts(channel_id)) >= count and self.posts(channel_id),
                                        what=f"{count} bot post(s) in {channel_id}")

    async def wait_idle(self, questions: int = 1) -> None:
        """Wait until Uppzy got `questions` questions and the relay has nothing in flight."""
        assert self.relay is not None
        await self.fake.wait_for(lambda: len(self.chats()) >= questions, what=f"{questions} question(s) asked")
        await self.relay.wait_idle(5)

    def chats(self) -> list[Any]:
        """Questions the Uppzy simulator received."""
        return self.sim.calls("chat_async") + self.sim.calls("chat")

    async def drain(self, timeout: float = 5.0) -> dict[str, Any]:
        """Prove that every gateway event sent so far has been handled, without asking Uppzy; returns the probe.

        The probe is a blank DM from USER_ID in a fresh DM channel, sent on the same gateway connection: the bot
        replies at once, in that DM, with the 'empty message' line. Dispatches arrive in order and discord.py
        starts their handlers in that order, each through the same store, so once the probe's reply is posted
        the earlier events have been handled; the idle relay awaited next means the work they started is
        finished too. Nothing lands in the guild's channels or threads, so only the DM has to be left out of
        later counts (`probe["channel_id"]`).
        """
        assert self.relay is not None
        probe = await self.fake.user_message(channel_id=self.fake.new_id(), author_id=USER_ID, content=" ")
        await self.fake.wait_for(lambda: self.posts(probe["channel_id"]), timeout=timeout,
                                 what="the probe DM's reply")
        await self.relay.wait_idle(timeout)
        return probe


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    """A started FakeDiscord with the shared test world."""
    async with FakeDiscord() as server:
        build_world(server)
        yield server


@pytest.fixture
async def h(fake: FakeDiscord, sim: Simulator, uppzy: UppzyClient, tmp_path: Path) -> AsyncIterator[DiscordHarness]:
    """The bot connected to the fake, with relay and store; closed (and error-checked) afterwards."""
    harness = DiscordHarness(fake, sim, uppzy, tmp_path)
    try:
        yield await harness.start()
    finally:
        await harness.aclose()
