"""Discord sharding (issue 11): DISCORD_SHARD_COUNT / DISCORD_SHARD_IDS, Discord's recommended count, IDENTIFY pacing.

Replicas here are DiscordBot + Relay pairs in one process sharing one SQLite store, each bot running the real
discord.py stack against the loopback fake, which routes a guild's events to shard (guild_id >> 22) % count.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from bots.discord.app import DiscordBot
from bots.runner import build_relay
from core.backoff import Backoff
from core.config import ConfigError, Settings
from core.latency import LatencyModel
from core.relay import Relay
from core.sqlite_store import SqliteStore
from core.tuning import Tuning
from core.uppzy import UppzyClient
from simulator import Simulator
from tests.discord_support import GUILD_ID, TEXT_ID, USER_ID, DiscordHarness
from tests.fakes.discord_fake import FakeDiscord

GUILD_B = 111_111_111_111_111_111  # (id >> 22) % 2 == 1: shard 1 of 2 (GUILD_ID is on shard 0)
TEXT_B = 822_222_222_222_222_223
WINDOW = 0.25  # the bots' IDENTIFY window in these tests (Discord's is 5 s)
SLACK = 0.7  # the fake checks spacing at arrival: allow for socket jitter on a loaded machine


@dataclass
class Replica:
    """One replica: a relay and a DiscordBot; `seen` lists the message ids its bot's handler received."""

    relay: Relay
    bot: DiscordBot
    seen: list[int] = field(default_factory=list)


@pytest.fixture
async def world(fake: FakeDiscord) -> FakeDiscord:
    """The shared test world plus a second server whose events go to shard 1 of 2."""
    assert fake.shard_of(GUILD_ID) == 0 and (GUILD_B >> 22) % 2 == 1
    fake.add_guild(GUILD_B, name="Second")
    fake.add_channel(GUILD_B, TEXT_B, name="help-b")
    fake.add_member(GUILD_B, USER_ID, name="alice")
    fake.identify_spacing = WINDOW * SLACK
    return fake


class Replicas:
    """Starts replicas on one store; closes them all (and fails on logged errors) at the end."""

    def __init__(self, h: DiscordHarness) -> None:
        self.h = h
        self.replicas: list[Replica] = []

    async def start(self, **settings: Any) -> Replica:
        """A replica whose Settings differ from the harness's by `settings`; its bot is connected on return."""
        h = self.h
        if h.store is None:
            logging.getLogger().addHandler(h.errors)
            h.store = await SqliteStore.open(h.db_path)
        relay = build_relay(h.settings, h.store, h.uppzy, tuning=Tuning(
            poll_interval=0.05, delivery=Backoff(attempts=3, initial=0.05, maximum=0.05),
            latency=LatencyModel(prior=(0.05,))))
        await relay.start(reaper=False)
        bot = self.bot(replace(h.settings, **settings), relay)
        replica = Replica(relay, bot)
        self.replicas.append(replica)
        handle = bot.events.on_message

        async def recording(client: Any, message: Any) -> None:
            replica.seen.append(message.id)
            await handle(client, message)

        bot.events.on_message = recording  # type: ignore[method-assign]
        await bot.start()
        return replica

    @staticmethod
    def bot(settings: Settings, relay: Relay) -> DiscordBot:
        """A bot with test timings: a short IDENTIFY window instead of Discord's 5 s."""
        return DiscordBot(settings, relay, guild_ready_timeout=0.05, ready_timeout=5.0, identify_window=WINDOW,
                          reconnect_delay=0.05)

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.bot.stop()
            await replica.relay.stop()
        self.h.bot = None
        await self.h.aclose()


@pytest.fixture
async def replicas(world: FakeDiscord, sim: Simulator, uppzy: UppzyClient, tmp_path: Any) -> AsyncIterator[Replicas]:
    """Replicas the test starts itself, against `world`; all stopped afterwards."""
    group = Replicas(DiscordHarness(world, sim, uppzy, tmp_path))
    try:
        yield group
    finally:
        await group.aclose()


async def ask(fake: FakeDiscord, text: str, *, guild_id: int, channel_id: int) -> int:
    """A mention in a server channel; returns the message id (the bot answers in a thread of that id)."""
    sent = await fake.user_message(channel_id=channel_id, guild_id=guild_id, author_id=USER_ID,
                                   content=f"<@{fake.bot_id}> {text}", mentions_bot=True)
    return int(sent["id"])


async def wait_answer(fake: FakeDiscord, thread_id: int) -> None:
    """Wait for the answer in that thread (tests count answers once the relays are idle)."""
    await fake.wait_for(lambda: fake.messages_in(thread_id), what=f"an answer in {thread_id}")


async def test_two_replicas_each_answer_the_servers_of_their_shard_and_dms_come_via_shard_0(
        replicas: Replicas, world: FakeDiscord, sim: Simulator) -> None:
    """DISCORD_SHARD_COUNT=2 on both, DISCORD_SHARD_IDS=0 on one and =1 on the other: each identifies as
    [id, 2]; a server's question reaches (and is answered by) only the replica running its shard; a DM goes to
    shard 0; each question is asked once and answered once."""
    world.set_session_start_limit(max_concurrency=2)  # the two replicas identify at once: separate buckets
    zero = await replicas.start(discord_shard_count=2, discord_shard_ids=(0,))
    one = await replicas.start(discord_shard_count=2, discord_shard_ids=(1,))
    assert world.connected_shards == [0, 1] and world.refused_shards == []
    assert sorted(f["d"]["shard"] for f in world.gateway_frames if f.get("op") == 2) == [[0, 2], [1, 2]]
    assert zero.bot.connected and one.bot.connected

    on_a = await ask(world, "[a] returns?", guild_id=GUILD_ID, channel_id=TEXT_ID)
    on_b = await ask(world, "[b] shipping?", guild_id=GUILD_B, channel_id=TEXT_B)
    dm_channel = world.new_id()
    dm = await world.user_message(channel_id=dm_channel, author_id=USER_ID, content="[dm] hours?")
    for thread in (on_a, on_b):
        await wait_answer(world, thread)
    await world.wait_for(lambda: world.messages_in(dm_channel), what="the DM's answer")
    for replica in (zero, one):
        await replica.relay.wait_idle(5)

    assert on_a in zero.seen and on_a not in one.seen
    assert on_b in one.seen and on_b not in zero.seen
    assert int(dm["id"]) in zero.seen and int(dm["id"]) not in one.seen
    assert sorted(c.body["message"] for c in sim.calls("chat_async") + sim.calls("chat")) == [
        "[a] returns?", "[b] shipping?", "[dm] hours?"]
    assert [len(world.messages_in(c)) for c in (on_a, on_b, dm_channel)] == [1, 1, 1]


async def test_unset_runs_every_shard_discord_recommends(replicas: Replicas, world: FakeDiscord,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Neither setting set and GET /gateway/bot recommending 2: one replica opens shards 0 and 1 of 2, answers
    in both servers, and says so at start."""
    caplog.set_level(logging.INFO, logger="bots")
    world.recommended_shards = 2
    replica = await replicas.start()
    assert world.connected_shards == [0, 1] and replica.bot.connected
    assert any(r.getMessage() == "discord shards 0,1 of 2 (as Discord recommends)" for r in caplog.records)
    threads = [await ask(world, "[a] q", guild_id=GUILD_ID, channel_id=TEXT_ID),
               await ask(world, "[b] q", guild_id=GUILD_B, channel_id=TEXT_B)]
    for thread in threads:
        await wait_answer(world, thread)
    await replica.relay.wait_idle(5)
    assert [len(world.messages_in(t)) for t in threads] == [1, 1]
    assert world.concurrency_violations == 0  # max_concurrency 1: the second IDENTIFY waited a window


async def test_only_the_count_set_runs_every_id_below_it(replicas: Replicas, world: FakeDiscord,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """DISCORD_SHARD_COUNT=2 alone (Discord recommending 1): shards 0 and 1 of 2, logged as such."""
    caplog.set_level(logging.INFO, logger="bots")
    await replicas.start(discord_shard_count=2)
    assert world.connected_shards == [0, 1]
    assert any(r.getMessage() == "discord shards 0,1 of 2" for r in caplog.records)


@pytest.mark.parametrize(("shards", "remaining"), [(1, 0), (2, 1)])
async def test_too_few_session_starts_left_waits_for_the_reset(replicas: Replicas, world: FakeDiscord,
                                                               caplog: pytest.LogCaptureFixture, shards: int,
                                                               remaining: int) -> None:
    """session_start_limit with fewer starts remaining than shards to start: the replica waits reset_after before
    its first IDENTIFY, says why in one log line, and never identifies over the limit."""
    caplog.set_level(logging.INFO, logger="bots")
    world.recommended_shards = shards
    world.set_session_start_limit(total=1000, remaining=remaining, reset_after=400, max_concurrency=2)
    began = time.monotonic()
    await replicas.start()
    first = min(times[0] for times in world.identify_times.values())
    assert first - began >= 0.35, first - began
    assert world.over_limit_identifies == 0 and world.connected_shards == list(range(shards))
    waits = [r.getMessage() for r in caplog.records if "session starts" in r.getMessage()]
    assert len(waits) == 1 and f"allows {remaining} more" in waits[0] and "waiting" in waits[0], waits


async def test_identifies_are_paced_per_max_concurrency_bucket(replicas: Replicas, world: FakeDiscord) -> None:
    """max_concurrency=2 and four shards: shards 0 and 1 (buckets 0 and 1) identify at once, 2 and 3 a window
    later; with max_concurrency=1 every IDENTIFY is a window after the previous one."""
    world.set_session_start_limit(max_concurrency=2)
    await replicas.start(discord_shard_count=4)
    at = {shard: times[0] for shard, times in world.identify_times.items()}
    assert sorted(at) == [0, 1, 2, 3] and world.concurrency_violations == 0
    assert at[1] - at[0] < WINDOW
    assert at[2] - at[0] >= WINDOW * SLACK and at[3] - at[1] >= WINDOW * SLACK


async def test_identifies_one_window_apart_with_max_concurrency_1(replicas: Replicas, world: FakeDiscord) -> None:
    """max_concurrency=1, three shards: each IDENTIFY at least a window after the one before."""
    await replicas.start(discord_shard_count=3)
    at = sorted(times[0] for times in world.identify_times.values())
    assert len(at) == 3 and world.concurrency_violations == 0
    assert all(b - a >= WINDOW * SLACK for a, b in itertools.pairwise(at)), at


async def test_connected_only_while_every_shard_of_the_replica_is_up(replicas: Replicas, world: FakeDiscord) -> None:
    """/readyz's `connected`: false while one of the replica's two shards is disconnected, true once it is back."""
    replica = await replicas.start(discord_shard_count=2)
    client = replica.bot.client
    assert client is not None and replica.bot.connected
    shard = client.get_shard(1)
    assert shard is not None
    await shard.disconnect()
    await world.wait_for(lambda: world.connected_shards == [0], what="shard 1 gone")
    assert not replica.bot.connected
    await shard.connect()
    await world.wait_for(lambda: world.connected_shards == [0, 1], what="shard 1 back")
    assert replica.bot.connected


async def test_a_shard_failing_on_a_malformed_event_restarts_alone(replicas: Replicas, world: FakeDiscord) -> None:
    """A MESSAGE_CREATE discord.py cannot parse on shard 1 starts shard 1 again on a fresh session; shard 0 keeps
    its session; both servers are answered afterwards."""
    replicas.h.allow_errors = True  # the parse failure is logged at ERROR on purpose
    replica = await replicas.start(discord_shard_count=2)
    template = await world.user_message(channel_id=TEXT_B, guild_id=GUILD_B, author_id=USER_ID, content="hi")
    await world.dispatch("MESSAGE_CREATE", {**template, "id": str(world.new_id()), "channel_id": "not-a-number"})
    await world.wait_for(lambda: len(world.identify_times[1]) == 2 and world.connected, what="shard 1 re-identified")
    assert len(world.identify_times[0]) == 1 and world.resume_count == 0
    threads = [await ask(world, "[a] q", guild_id=GUILD_ID, channel_id=TEXT_ID),
               await ask(world, "[b] q", guild_id=GUILD_B, channel_id=TEXT_B)]
    for thread in threads:
        await wait_answer(world, thread)
    await replica.relay.wait_idle(5)
    assert replica.bot.connected
    errors = [r.getMessage() for r in replicas.h.errors.records]
    assert errors and all(m.startswith("discord.py failed on a gateway event") for m in errors), errors


async def test_shard_ids_without_a_count_is_one_line_before_connecting(replicas: Replicas, world: FakeDiscord) -> None:
    """Settings built without load_settings still get the cross-field check: one ConfigError line, no socket."""
    with pytest.raises(ConfigError) as caught:
        await replicas.start(discord_shard_ids=(1,))
    assert caught.value.variable == "DISCORD_SHARD_IDS" and "\n" not in str(caught.value)
    assert world.connections == []


async def test_a_shard_count_other_replicas_do_not_use_is_refused_in_one_line(replicas: Replicas,
                                                                             world: FakeDiscord) -> None:
    """A replica with DISCORD_SHARD_COUNT=3 next to one running shard 0 of 2: Discord (the fake) closes its
    IDENTIFY with 4010, which becomes one ConfigError line naming DISCORD_SHARD_IDS; nothing is left open."""
    world.set_session_start_limit(max_concurrency=2)
    await replicas.start(discord_shard_count=2, discord_shard_ids=(0,))
    with pytest.raises(ConfigError) as caught:
        await replicas.start(discord_shard_count=3, discord_shard_ids=(1,))
    text = str(caught.value)
    assert caught.value.variable == "DISCORD_SHARD_IDS" and "4010" in text and "\n" not in text
    assert world.refused_shards == [[1, 3]]
    await world.wait_for(lambda: len(world.live_connections()) == 1, what="the refused socket closed")
