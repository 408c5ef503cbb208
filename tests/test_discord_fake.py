"""Guards the FakeDiscord fixture: the real discord.py stack (REST, gateway, app commands) runs against it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import discord
import pytest
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from tests.fakes.discord_fake import MANAGE_GUILD, FakeDiscord

GUILD_ID = 111_111_111_111_111_111
CHANNEL_ID = 222_222_222_222_222_222
USER_ID = 333_333_333_333_333_333
ADMIN_ID = 444_444_444_444_444_444


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    """A started fake with one guild, one text channel, a plain user and a MANAGE_GUILD admin."""
    async with FakeDiscord() as server:
        server.add_guild(GUILD_ID, name="Test Guild")
        server.add_channel(GUILD_ID, CHANNEL_ID, name="general")
        server.add_member(GUILD_ID, USER_ID, name="alice")
        server.add_member(GUILD_ID, ADMIN_ID, name="root", permissions=MANAGE_GUILD)
        yield server


@pytest.fixture(autouse=True)
def _no_discord_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """discord.py logs (rather than raises) payload KeyErrors inside event parsing; treat them as failures."""
    yield
    errors = [r for r in caplog.records if r.name.startswith("discord") and r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture(autouse=True)
def _discord_urls(fake: FakeDiscord) -> Iterator[None]:
    """Point discord.py's two class-level knobs at the fake, and restore them for other tests."""
    old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = fake.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway


def _intents(*, message_content: bool = True) -> discord.Intents:
    """Default intents plus MESSAGE_CONTENT, as the bot runs in production."""
    intents = discord.Intents.default()
    intents.message_content = message_content
    return intents


def _client(**kwargs: Any) -> discord.Client:
    """A client that becomes ready 50 ms after the last GUILD_CREATE instead of 2 s."""
    kwargs.setdefault("intents", _intents())
    return discord.Client(guild_ready_timeout=0.05, **kwargs)


@contextlib.asynccontextmanager
async def running(client: discord.Client, fake: FakeDiscord) -> AsyncIterator[discord.Client]:
    """Log in, connect in a task, wait for on_ready; always close (the heartbeat thread needs the loop)."""
    task: asyncio.Task[None] | None = None
    try:
        await client.login(fake.token)
        task = asyncio.create_task(client.connect(reconnect=True))
        await fake.wait_ready()
        await asyncio.wait_for(client.wait_until_ready(), 5)
        yield client
        if task.done():
            task.result()  # a payload KeyError kills connect() silently; surface it here
    finally:
        await client.close()
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)


async def test_mention_creates_thread_and_replies_in_it(fake: FakeDiscord) -> None:
    """Mention → message.create_thread() → thread.send(): POST threads (id == message id) then a message."""
    client = _client()

    @client.event
    async def on_message(message: discord.Message) -> None:
        if message.author.bot or not client.user or not client.user.mentioned_in(message):
            return
        thread = await message.create_thread(name=f"uppzy: {message.content[:20]}")
        await thread.send("answer in thread")

    async with running(client, fake):
        sent = await fake.user_message(channel_id=CHANNEL_ID, guild_id=GUILD_ID, author_id=USER_ID,
                                       content=f"<@{fake.bot_id}> hello", mentions_bot=True)
        thread_id = int(sent["id"])
        posts = await fake.wait_for(lambda: fake.messages_in(thread_id), what="reply in thread")

        thread_calls = fake.calls("POST", rf"/channels/{CHANNEL_ID}/messages/{thread_id}/threads")
        assert len(thread_calls) == 1
        assert thread_calls[0].json["name"] == f"uppzy: <@{fake.bot_id}> hello"
        assert [p["content"] for p in posts] == ["answer in thread"]
        assert posts[0]["author"]["id"] == str(fake.bot_id)
        thread = fake.channel(thread_id)
        assert thread is not None and thread["type"] == 11 and thread["parent_id"] == str(CHANNEL_ID)
        # THREAD_CREATE reached discord.py's cache too.
        await fake.wait_for(lambda: client.get_channel(thread_id) is not None, what="thread cached")
        assert fake.messages_in(CHANNEL_ID) == []


async def test_reconnect_resumes_and_keeps_receiving(fake: FakeDiscord) -> None:
    """op 7 RECONNECT → the client RESUMEs on resume_gateway_url and still gets later events."""
    client = _client()
    seen: list[str] = []

    @client.event
    async def on_message(message: discord.Message) -> None:
        if not message.author.bot:
            seen.append(message.content)

    async with running(client, fake):
        await fake.send_reconnect()
        await fake.wait_for(lambda: fake.resume_count == 1 and fake.connected, what="RESUME")
        await fake.user_message(channel_id=CHANNEL_ID, guild_id=GUILD_ID, author_id=USER_ID, content="after")
        await fake.wait_for(lambda: seen == ["after"], what="message after resume")
        assert fake.identify_count == 1
        assert len(fake.live_connections()) == 1
        assert fake.message_content_intent


async def test_missed_events_replayed_and_invalid_session_reidentifies(fake: FakeDiscord) -> None:
    """Server-side close 4000 → RESUME replays what was dispatched meanwhile; op 9 → a fresh IDENTIFY."""
    client = _client()
    seen: list[str] = []

    async def no_identify_delay(shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every non-initial IDENTIFY; skip that in tests."""

    client.before_identify_hook = no_identify_delay  # type: ignore[method-assign]

    @client.event
    async def on_message(message: discord.Message) -> None:
        if not message.author.bot:
            seen.append(message.content)

    async with running(client, fake):
        await fake.disconnect(4000)
        await fake.user_message(channel_id=CHANNEL_ID, guild_id=GUILD_ID, author_id=USER_ID, content="missed")
        await fake.wait_for(lambda: seen == ["missed"], what="replay after RESUME")
        assert fake.resume_count == 1

        await fake.invalidate_session()
        await fake.wait_for(lambda: fake.identify_count == 2 and fake.connected, what="re-IDENTIFY")
        await fake.user_message(channel_id=CHANNEL_ID, guild_id=GUILD_ID, author_id=USER_ID, content="fresh")
        await fake.wait_for(lambda: seen == ["missed", "fresh"], what="message on the new session")


async def test_rate_limited_send_is_retried_once(fake: FakeDiscord) -> None:
    """A 429 with Via + retry_after makes discord.py wait and retry; the message lands exactly once."""
    client = _client()
    async with running(client, fake):
        fake.rate_limit_next("POST", rf"/channels/{CHANNEL_ID}/messages", retry_after=0.1)
        channel = client.get_channel(CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        message = await channel.send("after the limit", allowed_mentions=discord.AllowedMentions.none())

        assert [c.status for c in fake.calls("POST", r"/channels/\d+/messages")] == [429, 200]
        posts = fake.messages_in(CHANNEL_ID)
        assert [p["content"] for p in posts] == ["after the limit"]
        assert message.id == int(posts[0]["id"])
        assert posts[0]["allowed_mentions"]["parse"] == []


async def test_raw_reaction_add_fires(fake: FakeDiscord) -> None:
    """MESSAGE_REACTION_ADD with type/burst/member reaches on_raw_reaction_add."""
    client = _client()
    reactions: list[discord.RawReactionActionEvent] = []

    @client.event
    async def on_raw_reaction_add(payload: discord.RawReactionActionEvent) -> None:
        reactions.append(payload)

    async with running(client, fake):
        await fake.reaction_add(user_id=USER_ID, channel_id=CHANNEL_ID, message_id=fake.new_id(),
                                emoji_name="👍", guild_id=GUILD_ID)
        await fake.wait_for(lambda: reactions, what="on_raw_reaction_add")
        event = reactions[0]
        assert event.emoji.name == "👍" and event.user_id == USER_ID and event.guild_id == GUILD_ID
        assert event.member is not None and event.member.name == "alice"


async def test_app_commands_sync_and_interactions(fake: FakeDiscord) -> None:
    """tree.sync() (global and guild) → slash commands, subcommands, follow-ups and buttons round-trip."""
    client = _client()
    tree = app_commands.CommandTree(client)
    clicks: list[str] = []

    @tree.command(name="ping", description="Health check")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong", ephemeral=True)

    group = app_commands.Group(name="uppzy", description="Admin")

    @group.command(name="set", description="Set a key")
    async def set_key(interaction: discord.Interaction, key: str, value: str) -> None:
        allowed = interaction.permissions.manage_guild
        await interaction.response.defer()
        await interaction.followup.send(f"{key}={value} allowed={allowed}")

    tree.add_command(group, guild=discord.Object(GUILD_ID))

    class Buttons(discord.ui.View):
        @discord.ui.button(label="Yes", custom_id="confirm:yes")
        async def yes(self, interaction: discord.Interaction, button: discord.ui.Button[Buttons]) -> None:
            clicks.append(button.custom_id or "")
            await interaction.response.edit_message(content="confirmed", view=None)

    async with running(client, fake):
        synced = await tree.sync()
        await tree.sync(guild=discord.Object(GUILD_ID))
        assert [c.name for c in synced] == ["ping"] and synced[0].id == int(fake.commands[None][0]["id"])
        assert fake.calls("PUT", rf"/applications/{fake.application_id}/guilds/{GUILD_ID}/commands")

        await fake.slash_command(name="ping", options=[], user_id=USER_ID, channel_id=CHANNEL_ID,
                                 guild_id=GUILD_ID)
        await fake.wait_for(lambda: fake.interaction_responses, what="/ping callback")
        ping_resp = fake.interaction_responses[0]
        assert ping_resp["type"] == 4 and ping_resp["data"]["content"] == "pong" and ping_resp["ephemeral"]
        assert fake.messages_in(CHANNEL_ID) == []

        await fake.slash_command(name="uppzy", subcommand="set", user_id=ADMIN_ID, channel_id=CHANNEL_ID,
                                 guild_id=GUILD_ID, options=[{"name": "key", "value": "tone"},
                                                             {"name": "value", "value": "friendly"}])
        await fake.wait_for(lambda: fake.followups, what="/uppzy set follow-up")
        assert fake.interaction_responses[1]["type"] == 5
        assert fake.followups[0]["data"]["content"] == "tone=friendly allowed=True"

        channel = client.get_channel(CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        prompt = await channel.send("Sure?", view=Buttons(timeout=None))
        row = fake.messages_in(CHANNEL_ID)[-1]["components"][0]
        assert row["components"][0]["custom_id"] == "confirm:yes"
        await fake.component_click(custom_id="confirm:yes", message_id=prompt.id, channel_id=CHANNEL_ID,
                                   user_id=USER_ID, guild_id=GUILD_ID)
        await fake.wait_for(lambda: len(fake.interaction_responses) == 3, what="button callback")
        assert clicks == ["confirm:yes"] and fake.interaction_responses[2]["type"] == 7
        assert fake.message(prompt.id)["content"] == "confirmed"  # type: ignore[index]


async def test_message_content_blanked_without_intent(fake: FakeDiscord) -> None:
    """Without MESSAGE_CONTENT the fake blanks guild content unless the bot is mentioned, like Discord."""
    client = _client(intents=_intents(message_content=False))
    contents: list[str] = []

    @client.event
    async def on_message(message: discord.Message) -> None:
        contents.append(message.content)

    async with running(client, fake):
        await fake.user_message(channel_id=CHANNEL_ID, guild_id=GUILD_ID, author_id=USER_ID, content="secret")
        await fake.user_message(channel_id=CHANNEL_ID, guild_id=GUILD_ID, author_id=USER_ID,
                                content=f"<@{fake.bot_id}> hi", mentions_bot=True)
        await fake.wait_for(lambda: len(contents) == 2, what="two messages")
        assert contents == ["", f"<@{fake.bot_id}> hi"]


async def test_wrong_token_is_login_failure(fake: FakeDiscord) -> None:
    """REST answers 401 to a bad token, which discord.py turns into LoginFailure before any gateway use."""
    client = _client()
    try:
        with pytest.raises(discord.LoginFailure):
            await client.login("not-the-token")
    finally:
        await client.close()
    assert fake.calls("GET", "/users/@me")[0].status == 401
    assert fake.connections == []


async def test_bad_identify_token_closes_4004(fake: FakeDiscord) -> None:
    """A token that passes REST but not IDENTIFY gets close code 4004, which discord.py does not retry."""
    client = _client()
    try:
        await client.login(fake.token)
        client.http.token = "stale-token"
        with pytest.raises(discord.ConnectionClosed) as caught:
            await asyncio.wait_for(client.connect(reconnect=True), 5)
        assert caught.value.code == 4004
    finally:
        await client.close()


async def test_refused_privileged_intents(fake: FakeDiscord) -> None:
    """Gateway close 4014 surfaces as PrivilegedIntentsRequired from connect()."""
    fake.refuse_privileged_intents = True
    client = _client()
    try:
        await client.login(fake.token)
        with pytest.raises(discord.PrivilegedIntentsRequired):
            await asyncio.wait_for(client.connect(reconnect=True), 5)
    finally:
        await client.close()
    assert fake.identified_intents is not None and fake.identified_intents & (1 << 15)


SHARD_1_GUILD = 811_111_111_111_111_111  # (id >> 22) % 2 == 0; GUILD_ID's is 1


async def test_shards_get_their_own_sessions_and_guild_events_by_guild_id(fake: FakeDiscord) -> None:
    """Two shards of one AutoShardedClient: each IDENTIFY names [id, 2], READY/GUILD_CREATE carry only that
    shard's guilds, a guild's messages go to shard (guild_id >> 22) % 2, DMs to shard 0; /gateway/bot reports
    the configured count and limits, and each IDENTIFY takes one session start."""
    fake.add_guild(SHARD_1_GUILD, name="Other")
    fake.add_channel(SHARD_1_GUILD, CHANNEL_ID + 1, name="other")
    fake.recommended_shards = 2
    fake.set_session_start_limit(total=10, remaining=7, reset_after=60_000, max_concurrency=2)
    client = discord.AutoShardedClient(intents=_intents(), guild_ready_timeout=0.05)
    seen: list[tuple[str, int | None]] = []

    async def no_identify_delay(shard_id: int | None, *, initial: bool = False) -> None:
        """max_concurrency 2: both shards may identify at once (discord.py would sleep 5 s)."""

    client.before_identify_hook = no_identify_delay  # type: ignore[method-assign]

    @client.event
    async def on_message(message: discord.Message) -> None:
        seen.append((message.content, message.guild.shard_id if message.guild else None))

    async with running(client, fake):
        assert fake.connected_shards == [0, 1] and fake.connected
        assert {fake.shard_of(GUILD_ID), fake.shard_of(SHARD_1_GUILD)} == {0, 1}
        assert {g.id: g.shard_id for g in client.guilds} == {GUILD_ID: fake.shard_of(GUILD_ID),
                                                             SHARD_1_GUILD: fake.shard_of(SHARD_1_GUILD)}
        ready = {f["shard"]: [g["id"] for g in f["d"]["guilds"]] for f in fake.dispatched if f["t"] == "READY"}
        assert ready == {fake.shard_of(GUILD_ID): [str(GUILD_ID)], fake.shard_of(SHARD_1_GUILD): [str(SHARD_1_GUILD)]}
        limit = fake.session_start_limit
        assert (limit["remaining"], limit["max_concurrency"]) == (5, 2) and 0 < limit["reset_after"] <= 60_000
        assert sorted(fake.identify_times) == [0, 1]

        await fake.user_message(channel_id=CHANNEL_ID, guild_id=GUILD_ID, author_id=USER_ID, content="a")
        await fake.user_message(channel_id=CHANNEL_ID + 1, guild_id=SHARD_1_GUILD, author_id=USER_ID, content="b")
        await fake.user_message(channel_id=fake.new_id(), author_id=USER_ID, content="dm")
        await fake.wait_for(lambda: len(seen) == 3, what="three messages")
        shards = {f["d"].get("content"): f["shard"] for f in fake.dispatched if f["t"] == "MESSAGE_CREATE"}
        assert shards == {"a": fake.shard_of(GUILD_ID), "b": fake.shard_of(SHARD_1_GUILD), "dm": 0}


async def test_a_bad_shard_is_closed_4010(fake: FakeDiscord) -> None:
    """IDENTIFY as [2, 2] (id not below count) is closed with 4010 Invalid shard, which discord.py raises."""
    client = _client(shard_id=2, shard_count=2)
    try:
        await client.login(fake.token)
        with pytest.raises(discord.ConnectionClosed) as caught:
            await asyncio.wait_for(client.connect(reconnect=True), 5)
        assert caught.value.code == 4010
    finally:
        await client.close()
    assert fake.refused_shards == [[2, 2]] and fake.identify_times == {}


async def test_a_shard_count_other_live_shards_do_not_use_is_closed_4010(fake: FakeDiscord) -> None:
    """With shard 0 of 2 live, a client identifying as [1, 3] is refused; one as [1, 2] is accepted."""
    first, wrong = _client(shard_id=0, shard_count=2), _client(shard_id=1, shard_count=3)
    task: asyncio.Task[None] | None = None
    try:
        await first.login(fake.token)
        task = asyncio.create_task(first.connect(reconnect=True))
        await fake.wait_for(lambda: fake.connected_shards == [0], what="shard 0 of 2")
        await wrong.login(fake.token)
        with pytest.raises(discord.ConnectionClosed) as caught:
            await asyncio.wait_for(wrong.connect(reconnect=True), 5)
        assert caught.value.code == 4010
        assert fake.refused_shards == [[1, 3]] and fake.connected_shards == [0]
    finally:
        await wrong.close()
        await first.close()
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)


async def test_identify_times_show_pacing_and_over_limit_starts(fake: FakeDiscord) -> None:
    """Two IDENTIFYs in one bucket within identify_spacing count as a violation; IDENTIFYs with no session
    start remaining are counted (the fake still serves them, so a test can assert the count stays 0)."""
    fake.recommended_shards = 2
    fake.identify_spacing = 60.0
    fake.set_session_start_limit(remaining=1, max_concurrency=1)
    client = discord.AutoShardedClient(intents=_intents(), guild_ready_timeout=0.05)

    async def no_identify_delay(shard_id: int | None, *, initial: bool = False) -> None:
        """Identify at once, breaking both rules on purpose."""

    client.before_identify_hook = no_identify_delay  # type: ignore[method-assign]
    async with running(client, fake):
        assert fake.concurrency_violations == 1 and fake.over_limit_identifies == 1
        assert [len(fake.identify_times[s]) for s in (0, 1)] == [1, 1]
