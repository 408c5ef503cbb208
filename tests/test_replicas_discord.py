"""Three real `uppzy-bot run` replicas on one PostgreSQL database, each running one of three Discord shards against
the fake gateway (a server's events go to shard (id >> 22) % 3, DMs to shard 0): every question answered once, by
the replica whose shard received it; a killed replica's questions are finished (posted over REST) by the others."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from simulator import Simulator
from tests.fakes.discord_fake import FakeDiscord
from tests.replica_support import Replicas, eventually

SHARDS = 3
MEMBER = 700_000_000_000_000_001


def guild_on(shard: int) -> int:
    """A realistic server id whose events Discord sends to `shard` of SHARDS."""
    guild = 900_000_000_000_000_000 + shard
    while (guild >> 22) % SHARDS != shard:
        guild += 1 << 22
    return guild


GUILDS = [guild_on(shard) for shard in range(SHARDS)]
CHANNELS = [guild + 7 for guild in GUILDS]


def tag(i: int) -> str:
    """A marker unique to one question."""
    return f"[d{i:02d}]"


@pytest.fixture
async def deployment(make_sim: Callable[..., Awaitable[Simulator]], pg_url: str, tmp_path: Path
                     ) -> AsyncIterator[tuple[Simulator, FakeDiscord, Replicas]]:
    """The simulator and one fake Discord with a server on each shard; replica i runs shard i (not started)."""
    sim = await make_sim()
    async with FakeDiscord() as fake:
        for index, (guild, channel) in enumerate(zip(GUILDS, CHANNELS, strict=True)):
            fake.add_guild(guild, name=f"server-{index}")
            fake.add_channel(guild, channel, name="help")
            for n in range(16):
                fake.add_member(guild, MEMBER + n, name=f"member{n}")
        replicas = Replicas(tmp_path, pg_url, {
            "UPPZY_BASE_URL": sim.base_url, "UPPZY_API_KEY": sim.config.api_key, "UPPZY_SITE_ID": "demo-site",
            "DISCORD_BOT_TOKEN": fake.token, "DISCORD_API_BASE_URL": fake.api_base,
            "DISCORD_GATEWAY_URL": fake.gateway_url, "DISCORD_SHARD_COUNT": str(SHARDS),
        })
        try:
            yield sim, fake, replicas
        finally:
            replicas.close()


async def ask(fake: FakeDiscord, sim: Simulator, i: int, *, latency: float, guild: int | None) -> dict[str, Any]:
    """Question i, mentioning the bot in a server's channel (or, with no server, in a DM)."""
    sim.script(tag(i), f"Answer {tag(i)}.", latency=latency)
    author = MEMBER + i  # one conversation each: none waits behind another
    if guild is None:
        return await fake.user_message(channel_id=800_000_000_000_000_000 + i, author_id=author,
                                       content=f"{tag(i)} how do returns work?")
    channel = CHANNELS[GUILDS.index(guild)]
    return await fake.user_message(channel_id=channel, guild_id=guild, author_id=author, mentions_bot=True,
                                   content=f"<@{fake.bot_id}> {tag(i)} how do returns work?")


def answers(fake: FakeDiscord, message: dict[str, Any]) -> list[str]:
    """The bot's posts answering this message: in its thread (a server) or its DM channel."""
    where = int(message["channel_id"]) if message.get("guild_id") is None else int(message["id"])
    return [m["content"] for m in fake.messages_in(where) if tag_of(message) in m["content"]]


def tag_of(message: dict[str, Any]) -> str:
    return message["content"].split("]")[0].split("[")[-1].join("[]")


async def start_all(replicas: Replicas) -> None:
    for shard in range(SHARDS):
        replicas.start(shard, DISCORD_SHARD_IDS=str(shard))
    for shard in range(SHARDS):
        await replicas.ready(shard, timeout=30)


async def test_each_shard_is_served_by_its_replica_and_every_question_answered_once(
    deployment: tuple[Simulator, FakeDiscord, Replicas],
) -> None:
    """Injected: 12 server questions spread over the three shards' servers and 3 DMs. Asserted: each replica
    logged the questions of its own shard's server only (DMs on shard 0's replica), and every question was answered
    once and submitted once."""
    sim, fake, replicas = deployment
    await start_all(replicas)
    sent = [await ask(fake, sim, i, latency=0.3, guild=GUILDS[i % SHARDS]) for i in range(12)]
    sent += [await ask(fake, sim, i, latency=0.3, guild=None) for i in range(12, 15)]
    await eventually(lambda: all(answers(fake, m) for m in sent), timeout=30,
                     what=lambda: f"an answer to every question\n{replicas.all_logs()}")
    for i, message in enumerate(sent):
        assert answers(fake, message) == [f"Answer {tag(i)}."], i
        assert sum(tag(i) in c.body["message"] for c in sim.calls("chat_async")) == 1, i
    for shard in range(SHARDS):
        log = replicas.log(shard)
        for other in range(SHARDS):
            assert (f"workspace={GUILDS[other]}" in log) == (other == shard), (shard, other, log[-3000:])
    assert "discord shards 0 of 3" in replicas.log(0)
    logs = replicas.all_logs()
    assert "Traceback" not in logs and " ERROR " not in logs, logs


async def test_a_killed_replicas_questions_are_posted_by_the_others(
    deployment: tuple[Simulator, FakeDiscord, Replicas],
) -> None:
    """Injected: 9 questions waiting at Uppzy (3 s answers) on the three shards; SIGKILL of shard 1's replica.
    Asserted: its questions are adopted and posted (over Discord's REST API) by the replicas of the other shards,
    each once, within a minute."""
    sim, fake, replicas = deployment
    await start_all(replicas)
    sent = [await ask(fake, sim, i, latency=3.0, guild=GUILDS[i % SHARDS]) for i in range(9)]
    await eventually(lambda: _pending(replicas, 9), timeout=15, what="9 questions accepted by Uppzy")
    replicas.kill(1)
    killed_at = time.monotonic()
    await eventually(lambda: all(answers(fake, m) for m in sent), timeout=60,
                     what=lambda: f"an answer to every question\n{replicas.all_logs()}")
    assert time.monotonic() - killed_at < 60
    for i, message in enumerate(sent):
        assert answers(fake, message) == [f"Answer {tag(i)}."], i
        assert sum(tag(i) in c.body["message"] for c in sim.calls("chat_async")) == 1, i
    assert any("adopted" in replicas.log(shard) for shard in (0, 2)), replicas.all_logs()
    logs = replicas.all_logs()
    assert "Traceback" not in logs and " ERROR " not in logs, logs


async def _pending(replicas: Replicas, count: int) -> bool:
    return (await replicas.states()).get("pending", 0) == count
