"""A whole scenario with logging at DEBUG through the production handler: no key or token in any line, and no
question text at INFO or above.

The bot runs with Slack Socket Mode, Discord and Uppzy faults, composed as `uppzy-bot run` does; refused Slack and
Discord tokens are then tried through `run_bot` itself. Every secret contains "S3CR3T", so a partial leak
(a token cut short, a prefix) is caught as well as a whole one.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bots.discord.app import DiscordBot
from bots.runner import build_relay, build_uppzy, run_bot
from bots.slack.app import SlackBot
from core.config import ConfigError, Secret, Settings
from core.latency import LatencyModel
from core.redaction import JsonFormatter, RedactingFilter, configure_logging
from core.sqlite_store import SqliteStore
from core.tuning import Tuning
from simulator import Simulator
from tests.discord_support import GUILD_ID, TEXT_ID, USER_ID, build_world
from tests.fakes.discord_fake import FakeDiscord
from tests.fakes.slack_fake import FakeSlack
from tests.fault_support import CuttingFront, wait_until

MARK = "S3CR3T"  # early in every secret, so any leaked piece of one 12 characters or longer contains it
UPPZY_KEY = f"up_{MARK}_live_9f8e7d6c5b4a"
SLACK_BOT = f"xoxb-{MARK}-4242424242-botTOKENvalue"
SLACK_APP = f"xapp-1-{MARK}-A4242-appTOKENvalue"
SIGNING = f"sig-{MARK}-0123456789abcdef"
DISCORD = f"MT{MARK}AwMDAwMDAwMDAwMDAwMA.GAbCdE.discordTOKENvalue0123456789abc"  # Discord's token shape
WRONG_SLACK_BOT = f"xoxb-{MARK}-9999999999-WRONGtoken"
WRONG_DISCORD = f"MT{MARK}IzNDU2Nzg5MDEyMzQ1N.GhIjKl.wrongDISCORDtoken0123456789abc"
SECRETS = (UPPZY_KEY, SLACK_BOT, SLACK_APP, SIGNING, DISCORD, WRONG_SLACK_BOT, WRONG_DISCORD)
PIECES = (MARK, *SECRETS, *(s[-12:] for s in SECRETS))  # whole secrets, and their tails
# Libraries configure_logging quietens to WARNING; this test opens them up so their debug output is checked too.
LIBRARIES = ("httpx", "httpcore", "aiohttp", "websockets", "discord", "slack_bolt", "slack_sdk", "stamina")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RawRecords(logging.Handler):
    """Formats every record before any redaction runs: what our own code hands to logging."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, int, str]] = []
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, record.levelno, self.format(record)))


@pytest.fixture
def production_logging(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
                       ) -> Iterator[tuple[io.StringIO, io.StringIO, RawRecords]]:
    """configure_logging('DEBUG') as the entry point calls it, writing to a buffer instead of stderr, plus a JSON
    handler built the same way, a raw recorder ahead of both, and caplog after them; all undone afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_levels = {name: logging.getLogger(name).level for name in LIBRARIES}
    text_out, json_out = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", text_out)
    configure_logging("DEBUG", "text", [UPPZY_KEY, SLACK_BOT, SLACK_APP, SIGNING, DISCORD])
    as_json = logging.StreamHandler(json_out)
    as_json.addFilter(RedactingFilter([UPPZY_KEY, SLACK_BOT, SLACK_APP, SIGNING, DISCORD]))
    as_json.setFormatter(JsonFormatter())
    raw = RawRecords()
    root.handlers.insert(0, raw)
    root.addHandler(as_json)
    root.addHandler(caplog.handler)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield text_out, json_out, raw
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


async def test_whole_scenario_logs_no_secret_and_no_question_text_at_info(
    production_logging: tuple[io.StringIO, io.StringIO, RawRecords], caplog: pytest.LogCaptureFixture,
    make_sim, tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """Injected: Slack + Discord questions while Uppzy answers 401, 429, 503 and resets a connection, then refused
    Slack bot and Discord tokens at start-up; asserted: no secret (whole or partial) in the text or JSON output at
    DEBUG, none in what our own modules log before redaction, and no question text at INFO or above."""
    text_out, json_out, raw = production_logging
    sim: Simulator = await make_sim(api_key=UPPZY_KEY)
    front = CuttingFront(sim)
    await front.open()
    question = "where is my parcel to Berlin that I ordered last Tuesday"
    try:
        async with FakeSlack(bot_token=SLACK_BOT, app_token=SLACK_APP, signing_secret=SIGNING) as slack, \
                FakeDiscord(token=DISCORD) as discord_fake:
            build_world(discord_fake)
            settings = Settings(
                uppzy_api_key=Secret(UPPZY_KEY), uppzy_site_id="demo-site", uppzy_base_url=front.base_url,
                uppzy_max_attempts=2, slack_bot_token=Secret(SLACK_BOT), slack_app_token=Secret(SLACK_APP),
                slack_signing_secret=Secret(SIGNING), slack_api_base_url=slack.api_url,
                discord_bot_token=Secret(DISCORD), discord_api_base_url=discord_fake.api_base,
                discord_gateway_url=discord_fake.gateway_url, database_url=f"sqlite:///{tmp_path / 'bot.db'}",
                port=_free_port(), log_level="DEBUG",
            )
            await _scenario(settings, slack, discord_fake, sim, front, question)
            for wrong in (
                replace(settings, slack_bot_token=Secret(WRONG_SLACK_BOT), discord_bot_token=None, port=_free_port()),
                replace(settings, slack_bot_token=None, discord_bot_token=Secret(WRONG_DISCORD), port=_free_port()),
            ):
                with pytest.raises(ConfigError) as refused:
                    await run_bot(wrong, host="127.0.0.1")
                logging.getLogger("tests").error("start-up refused: %s", refused.value)
    finally:
        await front.close()

    text, as_json = text_out.getvalue(), json_out.getvalue()
    assert "Uppzy refused turn=" in text and "uppzy chat_status status=429" in text  # the faults did happen
    assert "Slack refused the bot token (invalid_auth)" in text and "[REDACTED]" in text
    for line in as_json.splitlines():
        json.loads(line)
    for secret in PIECES:
        assert secret not in text, _around(text, secret)
        assert secret not in as_json, _around(as_json, secret)
        ours = [m for name, _, m in raw.lines if name.startswith(("core", "bots")) and secret in m]
        assert ours == [], f"our own code logged {secret!r}: {ours[:3]}"
    loud = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records
            if r.levelno >= logging.INFO and "parcel to Berlin" in r.getMessage()]
    assert loud == [], loud
    assert any("parcel to Berlin" in m for _, level, m in raw.lines if level == logging.DEBUG)  # it did go by


def _around(text: str, secret: str) -> str:
    at = text.find(secret)
    return text[max(0, at - 300): at + 100]


async def _scenario(settings: Settings, slack: FakeSlack, discord_fake: FakeDiscord, sim: Simulator,
                    front: CuttingFront, question: str) -> None:
    """Four Slack questions and one Discord question through faults, until each has its one post.

    Composed like run_bot (production Uppzy client and retry policy, both platform bots on one relay), except
    that Discord's wait for GUILD_CREATEs is cut from 2 s to 0.05 s and the first status poll comes sooner.
    """
    store = await SqliteStore.open(settings.database_path)
    uppzy = build_uppzy(settings)
    relay = build_relay(settings, store, uppzy, tuning=Tuning(
        poll_interval=0.1, latency=LatencyModel(prior=(0.05,), floor=0.05), first_poll_floor=0.05))
    bots = [SlackBot(settings, relay), DiscordBot(settings, relay, guild_ready_timeout=0.05)]
    await relay.start()
    try:
        for bot in bots:
            await bot.start()
        sim.inject("chat_async", 401)  # the first question: key refused
        sim.inject("chat_status", 429, retry_after="0.2", times=2)
        sim.inject("chat_status", 503)
        front.cut_next("/chat/requests/", times=1)
        events = []
        for i in range(4):  # one at a time, so the first question is the one whose key is refused
            events.append(slack.app_mention_event(f"U{100 + i}", "C1", f"{question} #{i}"))
            await slack.send_event(events[-1])
            await wait_until(lambda n=i + 1: len(sim.calls("chat_async")) == n, what=f"question #{i} submitted")
        sent = await discord_fake.user_message(channel_id=TEXT_ID, guild_id=GUILD_ID, author_id=USER_ID,
                                               content=f"<@{discord_fake.bot_id}> {question}", mentions_bot=True)
        await slack.wait_until(lambda: all(any(m.get("thread_ts") == e["ts"] for m in slack.posted_messages())
                                           for e in events), timeout=12, what="a post per Slack question")
        await discord_fake.wait_for(lambda: discord_fake.messages_in(int(sent["id"])), timeout=10)
        await relay.wait_idle()
        unavailable = [m for m in slack.posted_messages() if "isn't available" in m["text"]]
        assert [m["thread_ts"] for m in unavailable] == [events[0]["ts"]]
    finally:
        for bot in reversed(bots):
            await bot.stop()
        await relay.stop()
        await uppzy.aclose()
        await store.close()
