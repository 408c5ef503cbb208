"""Discord `/ask <question>`: guild and user installs, answered as the interaction's response (ephemeral where the bot
cannot post), and by DM once the interaction token is too old or forgotten."""

from __future__ import annotations

from typing import Any

from bots.discord import strings as msgs
from core import messages
from tests.discord_support import GUILD_ID, TEXT_ID, USER_ID, DiscordHarness
from tests.fakes.discord_installs import PRIVATE_CHANNEL

QUESTION = "How do returns work?"
FOREIGN_GUILD = 900_000_000_000_000_001  # a server where only the user installed the app
FOREIGN_CHANNEL = 900_000_000_000_000_002
GROUP_DM = 900_000_000_000_000_003
GUILD_INSTALL, USER_INSTALL = 0, 1
IN_GUILD, BOT_DM = 0, 1


def option(question: str = QUESTION) -> list[dict[str, Any]]:
    return [{"name": "question", "value": question}]


async def answer_of(h: DiscordHarness, iid: str) -> dict[str, Any]:
    """Wait for the deferred response of interaction `iid` to be edited into the answer; return the edit."""
    def edited() -> dict[str, Any] | None:
        found = [e for e in h.fake.webhook_edits if e["interaction_id"] == iid and e["original"]]
        return found[-1] if found else None
    return await h.fake.wait_for(edited, what=f"the answer to /ask {iid}")


def response_of(h: DiscordHarness, iid: str) -> dict[str, Any]:
    return next(r for r in h.fake.interaction_responses if r["interaction_id"] == iid)


async def test_ask_is_offered_in_guild_and_user_installs_everywhere(h: DiscordHarness) -> None:
    """The synced `/ask` declares both install types and all three contexts (a top-level command, no group)."""
    synced = {cmd["name"]: cmd for cmd in h.fake.commands[None]}
    assert sorted(synced["ask"]["integration_types"]) == [GUILD_INSTALL, USER_INSTALL]
    assert sorted(synced["ask"]["contexts"]) == [IN_GUILD, BOT_DM, PRIVATE_CHANNEL]
    assert [o["name"] for o in synced["ask"]["options"]] == ["question"]


async def test_ask_in_a_guild_with_the_bot_answers_publicly_in_its_own_session(h: DiscordHarness) -> None:
    """Deferred publicly at once, then the answer replaces "thinking…" with the feedback buttons; the question
    went to Uppzy in a session apart from the channel's; a 👍 on the answer counts as feedback."""
    iid = await h.fake.slash_command(name="ask", options=option(), user_id=USER_ID, channel_id=TEXT_ID,
                                     guild_id=GUILD_ID)
    edit = await answer_of(h, iid)
    await h.wait_idle()
    deferred = response_of(h, iid)
    assert deferred["type"] == 5 and not deferred["ephemeral"]
    chat = h.chats()[-1]
    assert chat.body["message"] == QUESTION
    assert chat.body["session_id"] == f"discord-user-{USER_ID}-{TEXT_ID}-ask"
    posted = [p for p in h.posts(TEXT_ID) if p["id"] == edit["message_id"]]
    assert posted and not posted[0]["ephemeral"] and posted[0]["content"]
    buttons = [c["custom_id"] for row in posted[0]["components"] for c in row["components"]]
    assert buttons == ["uppzy:fb:good", "uppzy:fb:bad", "uppzy:human"]
    assert not h.fake.calls("POST", r"/channels/\d+/messages/\d+/threads")  # no thread from an interaction id

    before = len(h.fake.webhook_edits)
    await h.fake.component_click(custom_id="uppzy:fb:good", message_id=int(edit["message_id"]), channel_id=TEXT_ID,
                                 user_id=USER_ID, guild_id=GUILD_ID)
    await h.fake.wait_for(lambda: len(h.fake.webhook_edits) > before, what="the thank-you")
    assert h.fake.webhook_edits[-1]["data"]["content"] == messages.THANKS_GOOD


async def test_ask_from_a_user_install_where_the_bot_is_absent_answers_only_the_asker(h: DiscordHarness) -> None:
    """A server that never installed the bot: the response is ephemeral from the defer on, nothing else is posted
    there, and the conversation is the user's own (the DM workspace's settings and connection)."""
    iid = await h.fake.user_install_command(name="ask", options=option(), user_id=USER_ID,
                                            channel_id=FOREIGN_CHANNEL, guild_id=FOREIGN_GUILD)
    edit = await answer_of(h, iid)
    await h.wait_idle()
    assert response_of(h, iid)["ephemeral"]
    posted = h.fake.messages_in(FOREIGN_CHANNEL, include_ephemeral=True)
    assert [p["id"] for p in posted] == [edit["message_id"]] and posted[0]["ephemeral"]
    assert posted[0]["content"] == edit["data"]["content"] and posted[0]["components"]
    assert h.chats()[-1].body["session_id"] == f"discord-user-{USER_ID}-{FOREIGN_CHANNEL}-ask"
    assert not h.fake.messages_in(FOREIGN_CHANNEL)  # nothing public
    assert not h.fake.calls("POST", rf"/channels/{FOREIGN_CHANNEL}/messages")


async def test_ask_in_a_private_channel_is_ephemeral(h: DiscordHarness) -> None:
    """A group DM (context 2) the bot is not part of: answered privately through the interaction."""
    iid = await h.fake.user_install_command(name="ask", options=option(), user_id=USER_ID, channel_id=GROUP_DM,
                                            context=PRIVATE_CHANNEL)
    edit = await answer_of(h, iid)
    await h.wait_idle()
    assert response_of(h, iid)["ephemeral"]
    assert h.fake.message(int(edit["message_id"])) is not None


async def test_an_answer_after_the_token_lifetime_goes_to_the_asker_by_dm(h: DiscordHarness) -> None:
    """The interaction is too old by the time the answer comes: a DM naming the question, then the answer."""
    assert h.bot is not None
    h.bot.adapter.ask.lifetime = 0.0  # production: just under Discord's 15 minutes
    iid = await h.fake.user_install_command(name="ask", options=option(), user_id=USER_ID,
                                            channel_id=FOREIGN_CHANNEL, guild_id=FOREIGN_GUILD)
    await h.wait_idle()
    dms = [c for c in h.fake._channels.values()
           if c["type"] == 1 and any(r["id"] == str(USER_ID) for r in c["recipients"])]
    assert len(dms) == 1
    posts = await h.wait_posts(dms[0]["id"], 2)
    assert posts[0]["content"] == msgs.ask_answer_in_dm(QUESTION)
    assert posts[1]["content"] and posts[1]["components"]  # the answer carries its buttons
    assert not [e for e in h.fake.webhook_edits if e["interaction_id"] == iid]


def dm_of(h: DiscordHarness) -> int | None:
    """The bot's DM channel with USER_ID, once opened."""
    found = [int(c["id"]) for c in h.fake._channels.values()
             if c["type"] == 1 and any(r["id"] == str(USER_ID) for r in c["recipients"])]
    return found[0] if found else None


async def test_a_token_refused_early_falls_back_to_the_dm(h: DiscordHarness) -> None:
    """Discord refuses the token before our deadline (the fake expires it mid-wait): the answer goes by DM."""
    h.sim.script("slow", answer="Late but here.", latency=0.4)
    iid = await h.fake.slash_command(name="ask", options=option("a slow one"), user_id=USER_ID, channel_id=TEXT_ID,
                                     guild_id=GUILD_ID)
    await h.fake.wait_for(lambda: any(r["interaction_id"] == iid for r in h.fake.interaction_responses),
                          what="the defer")
    h.fake.expire_interaction(iid)
    await h.wait_idle()
    dm = dm_of(h)
    assert dm is not None
    posts = await h.wait_posts(dm, 2)
    assert posts[0]["content"] == msgs.ask_answer_in_dm("a slow one")
    assert posts[1]["content"].startswith("Late but here.")


async def test_after_a_restart_the_answer_goes_by_dm(h: DiscordHarness) -> None:
    """The token was only in the old process's memory: the recovered answer reaches the asker by DM."""
    h.sim.script("slow", answer="Recovered.", latency=0.5)
    iid = await h.fake.slash_command(name="ask", options=option("a slow one"), user_id=USER_ID, channel_id=TEXT_ID,
                                     guild_id=GUILD_ID)
    await h.fake.wait_for(lambda: h.chats(), what="the question sent to Uppzy")
    await h.restart_process()
    await h.relay.wait_idle(5)  # type: ignore[union-attr]
    dm = await h.fake.wait_for(lambda: dm_of(h), what="the DM opened")
    posts = await h.wait_posts(dm, 2)
    assert posts[0]["content"] == msgs.ask_answer_in_dm("a slow one")
    assert posts[1]["content"].startswith("Recovered.")
    assert not [e for e in h.fake.webhook_edits if e["interaction_id"] == iid]


async def test_a_refused_dm_keeps_the_answer_as_undeliverable(h: DiscordHarness) -> None:
    """Token gone and DMs closed: core keeps the answer for a later try, like any refused answer."""
    assert h.bot is not None and h.store is not None
    h.allow_errors = True  # discord.py logs the refused posts
    h.bot.adapter.ask.lifetime = 0.0
    dm = h.fake.new_id()
    h.fake.add_channel(None, dm, recipient_id=USER_ID)
    h.fake.deny_send(dm, 50007)  # Cannot send messages to this user
    await h.fake.user_install_command(name="ask", options=option(), user_id=USER_ID, channel_id=FOREIGN_CHANNEL,
                                      guild_id=FOREIGN_GUILD)
    store = h.store
    kept = await h.fake.wait_for(lambda: store.undelivered(1e12, 10), what="the answer kept")
    assert [t.target.extra("question") for t in kept] == [QUESTION]
